//! Citizen services: what a data subject can do with their own data.
//!
//! | route | action | what |
//! |---|---|---|
//! | `GET /api/me/access-log` | `audit.read-own` | who read my personal data, when, why; each entry with its RFC 9162 inclusion proof |
//! | `GET /api/me/consents` | `consent.manage` | my consents, with their state |
//! | `POST /api/me/consents` | `consent.manage` | grant a consent (≤ 12 months); answers with the signed receipt |
//! | `DELETE /api/me/consents/{id}` | `consent.manage` | withdraw it, effective before the next request; answers with a receipt |
//! | `GET /api/me/export` | `subject.export` | everything held about me, machine-readable (GDPR Art. 15 and 20) |
//! | `POST /api/me/erase` | `subject.erase` | erase by crypto-shredding: my key is destroyed, so my sealed values are unreadable in the store, caches and backups; my consents are deleted |
//!
//! Every route is `Scope::Own`: the gate lets only a citizen through, to their own
//! records, identified by their pseudonym. This crate reads the store and the audit log
//! and owns no storage of its own.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use polity_audit::AuditWriter;
use polity_consent::{
    ConsentId, ConsentRequest, ConsentStore, DataCategory, PiiController, Purpose,
};
use polity_model::{Tenant, Timestamp, jsonld::Context, ngsild};
use polity_privacy::CitizenVault;
use polity_store::{EntityQuery, SeriesQuery, Store};
use polity_trust::{Access, Action, Routes, Scope, problem};
use serde::Deserialize;
use serde_json::json;

/// What the routes share.
#[derive(Clone)]
pub struct PortalState {
    /// Entities and series.
    pub store: Arc<dyn Store>,
    /// The audit log (access reports).
    pub audit: AuditWriter,
    /// Consents.
    pub consents: Arc<ConsentStore>,
    /// Per-citizen keys.
    pub vault: Arc<CitizenVault>,
    /// The data controller of each city, for consent records (`City of Adelaide`).
    pub controllers: Arc<HashMap<Tenant, String>>,
    /// The privacy notice consents refer to.
    pub policy_url: String,
}

/// The citizen routes.
pub fn routes(state: PortalState) -> Routes {
    use Action::*;
    Routes::new()
        .get("/api/me/access-log", AuditReadOwn, Scope::Own, access_log)
        .get("/api/me/consents", ConsentManage, Scope::Own, list_consents)
        .post("/api/me/consents", ConsentManage, Scope::Own, grant)
        .delete("/api/me/consents/{id}", ConsentManage, Scope::Own, withdraw)
        .get("/api/me/export", SubjectExport, Scope::Own, export)
        .post("/api/me/erase", SubjectErase, Scope::Own, erase)
        .with_state(state)
}

/// The citizen's tenant and pseudonym, which the gate established.
fn me(access: &Access) -> Option<(Tenant, String)> {
    match (&access.tenant, &access.caller.pseudonym) {
        (Some(t), Some(p)) => Some((t.clone(), p.clone())),
        _ => None,
    }
}

fn not_a_citizen() -> Response {
    problem(StatusCode::FORBIDDEN, "only citizens have these records")
}

async fn access_log(State(st): State<PortalState>, access: Access) -> Response {
    let Some((_, subject)) = me(&access) else {
        return not_a_citizen();
    };
    match st.audit.access_report(&subject).await {
        Ok(bundle) => Json(bundle).into_response(),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the audit log cannot be read right now ({e}); retry later"),
        ),
    }
}

async fn list_consents(State(st): State<PortalState>, access: Access) -> Response {
    let Some((tenant, subject)) = me(&access) else {
        return not_a_citizen();
    };
    Json(st.consents.list_for_subject(&tenant, &subject)).into_response()
}

/// The body of `POST /api/me/consents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Grant {
    /// Who may use the data: an application principal, e.g. `app:parking:adelaide`.
    pub recipient: String,
    /// Why, e.g. `billing`.
    pub purpose: Purpose,
    /// Free text describing the purpose.
    #[serde(default)]
    pub purpose_description: Option<String>,
    /// Which data, e.g. `["water-consumption"]`.
    pub data_categories: Vec<DataCategory>,
    /// For how long, in days (at most 12 months).
    pub duration_days: u32,
}

async fn grant(
    State(st): State<PortalState>,
    access: Access,
    body: Result<Json<Grant>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some((tenant, subject)) = me(&access) else {
        return not_a_citizen();
    };
    let g = match body {
        Ok(Json(g)) => g,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}; send {{\"recipient\": \"app:CLIENT:CITY\", \"purpose\": \"billing\", \"dataCategories\": [\"water-consumption\"], \"durationDays\": 90}}",
                    e.body_text()
                ),
            );
        }
    };
    if g.recipient.parse::<polity_identity::Principal>().is_err() {
        return problem(
            StatusCode::BAD_REQUEST,
            format!(
                "recipient `{}` is not a principal; name an application as app:CLIENT:CITY",
                g.recipient
            ),
        );
    }
    let controller = st
        .controllers
        .get(&tenant)
        .cloned()
        .unwrap_or_else(|| format!("City of {tenant}"));
    let req = ConsentRequest {
        tenant: tenant.clone(),
        subject,
        recipient: g.recipient,
        purpose: g.purpose,
        purpose_description: g.purpose_description,
        data_categories: g.data_categories,
        duration_days: g.duration_days,
        jurisdiction: "AU".into(),
        collection_method: "Polity citizen API, POST /api/me/consents".into(),
        policy_url: st.policy_url.clone(),
        language: "en".into(),
        pii_controller: PiiController {
            name: controller,
            contact: None,
            address: None,
            country: None,
            email: None,
            phone: None,
            url: None,
        },
    };
    let store = st.consents.clone();
    let done = tokio::task::spawn_blocking(move || store.grant(req, Timestamp::now())).await;
    match done {
        Ok(Ok((record, receipt))) => {
            let entry = access.entry(
                Action::ConsentManage.name(),
                format!("consent {} granted", record.consent_id),
                "allowed",
            );
            access.audit(vec![entry]).await;
            (
                StatusCode::CREATED,
                Json(json!({ "consent": record, "receipt": receipt.jws })),
            )
                .into_response()
        }
        Ok(Err(e)) => problem(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn withdraw(
    State(st): State<PortalState>,
    access: Access,
    Path(id): Path<String>,
) -> Response {
    let Some((tenant, subject)) = me(&access) else {
        return not_a_citizen();
    };
    let Ok(id) = id.parse::<ConsentId>() else {
        return problem(StatusCode::NOT_FOUND, format!("no consent `{id}`"));
    };
    let store = st.consents.clone();
    let done = tokio::task::spawn_blocking(move || {
        store.withdraw(&tenant, &subject, id, Timestamp::now())
    })
    .await;
    match done {
        Ok(Ok((record, receipt))) => {
            Json(json!({ "consent": record, "receipt": receipt.jws })).into_response()
        }
        Ok(Err(e)) => problem(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn export(State(st): State<PortalState>, access: Access) -> Response {
    let Some((tenant, subject)) = me(&access) else {
        return not_a_citizen();
    };
    let store = st.store.clone();
    let t = tenant.clone();
    let owner = subject.clone();
    // The citizen's entities: those whose owner link is their pseudonym.
    let found = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for e in store.entities(&t, &EntityQuery::all(None))? {
            if polity_ngsild::access::owner_of(&e).as_deref() == Some(owner.as_str()) {
                let series = store.series(
                    &t,
                    &e.id,
                    &SeriesQuery {
                        attrs: None,
                        from: None,
                        to: None,
                        last_n: None,
                        limit: 100_000,
                    },
                )?;
                out.push((e, series));
            }
        }
        Ok::<_, polity_store::StoreError>(out)
    })
    .await;
    let found = match found {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let ctx = Context::core();
    let mut view =
        polity_ngsild::access::View::new(&access, Action::EntityRead, Some(st.vault.clone()));
    let mut entities = Vec::new();
    for (state, mut series) in found {
        let r = polity_ngsild::access::entity_ref(&tenant, &state);
        let state = view.redact(&tenant, state);
        view.redact_attrs(&r, &mut series);
        let opts = ngsild::RenderOptions {
            format: ngsild::Format::Normalized,
            sys_attrs: true,
            attrs: None,
            include_context: None,
        };
        let temporal = ngsild::render_temporal(
            &state.id,
            &state.entity_type,
            &series,
            ctx,
            &ngsild::TemporalOptions {
                temporal_values: false,
                attrs: None,
                include_context: None,
            },
        );
        entities.push(json!({
            "entity": ngsild::render_entity(&state, ctx, &opts),
            "temporal": temporal,
        }));
    }
    let _ = view.audit().await;
    let consents = st.consents.list_for_subject(&tenant, &subject);
    let log = st.audit.access_report(&subject).await.ok();
    Json(json!({
        "format": "polity-subject-export/1",
        "generatedAt": Timestamp::now().to_string(),
        "tenant": tenant,
        "subject": subject,
        "entities": entities,
        "consents": consents,
        "accessLog": log,
        "receiptKey": st.consents.receipt_public_jwk(),
    }))
    .into_response()
}

async fn erase(State(st): State<PortalState>, access: Access) -> Response {
    let Some((tenant, subject)) = me(&access) else {
        return not_a_citizen();
    };
    let (vault, consents) = (st.vault.clone(), st.consents.clone());
    let done = tokio::task::spawn_blocking(move || {
        let key = vault.erase(&tenant, &subject).map_err(|e| e.to_string())?;
        let c = consents
            .erase_subject(&tenant, &subject)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((key, c))
    })
    .await;
    match done {
        Ok(Ok((key, consents))) => Json(json!({
            "erased": true,
            "keyDestroyed": key,
            "consentsDeleted": consents,
            "note": "your personal values are sealed with your key, which is destroyed: they can no longer be read anywhere, including backups. Public measurements of your devices remain, without anything linking them to you beyond a pseudonym."
        }))
        .into_response(),
        Ok(Err(e)) => problem(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
