//! The audit routes: `GET /api/audit/head`, the latest signed tree head, for security
//! analysts and witnesses. (A citizen's own entries, with proofs, are served by
//! `polity-portal` at `/api/me/access-log`.)

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use polity_audit::AuditWriter;

use crate::{Action, Routes, Scope};

/// The routes, reading the log through `audit`.
pub fn routes(audit: AuditWriter) -> Routes {
    Routes::new()
        .get("/api/audit/head", Action::AuditRead, Scope::Node, head)
        .with_state(audit)
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "the audit log cannot be read");
    crate::problem(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the audit log cannot be read right now ({e}); retry later"),
    )
}

async fn head(State(audit): State<AuditWriter>) -> Response {
    match audit.head().await {
        Ok(h) => Json(h).into_response(),
        Err(e) => unavailable(e),
    }
}
