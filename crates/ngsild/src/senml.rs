//! The HTTP SenML source: `POST /api/ingest/senml` with a SenML pack in JSON or CBOR.
//!
//! The tenant comes from `NGSILD-Tenant`. Names follow the SenML convention of
//! `polity_ingest::decode::senml` (`<entity-id>:<attribute>`). The response is 204 once
//! the data is durable; a pack that cannot be decoded is kept as a dead letter and
//! answered with 400 and a ProblemDetails body.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use polity_ingest::decode::{DecodeContext, senml};
use polity_model::{Batch, PrivacyClass, Timestamp};

use crate::{
    ApiState,
    problem::{ErrorType, Problem},
    request,
};

/// `POST /api/ingest/senml`.
pub async fn ingest(
    State(st): State<ApiState>,
    access: polity_trust::Access,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let (tenant, explicit) = request::tenant(&headers, &st.default_tenant)?;
    if !explicit {
        return Err(Problem::bad_data(
            "SenML ingest needs an NGSILD-Tenant header naming the city",
        ));
    }
    // A pack may name any entity, so pushing one needs write access to the whole tenant.
    if !access.on_tenant(polity_trust::Action::EntityWrite) {
        return Err(Problem::forbidden(format!(
            "`{}` may not push observations into tenant `{tenant}`",
            access.caller.actor()
        )));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                ErrorType::PayloadTooLarge,
                "the pack is larger than this node accepts; send smaller packs",
            )
        } else {
            Problem::invalid(format!("could not read the body: {e}"))
        }
    })?;
    st.senml_source.message(body.len());
    let ct = request::media_type(&headers);
    let ctx = DecodeContext {
        tenant: tenant.clone(),
        entity_type: None,
        id_prefix: None,
        now: Timestamp::now(),
        privacy: PrivacyClass::Public,
    };
    let decoded = match ct.as_str() {
        "application/senml+json" | "application/json" => senml::decode_senml_json(&body, &ctx),
        "application/senml+cbor" | "application/cbor" => senml::decode_senml_cbor(&body, &ctx),
        other => {
            return Err(Problem::new(
                ErrorType::UnsupportedMediaType,
                format!(
                    "Content-Type `{other}` is not SenML; send application/senml+json or application/senml+cbor"
                ),
            ));
        }
    };
    match decoded {
        Ok(observations) => {
            let batch = Batch::of(
                tenant,
                Arc::from(st.senml_source.name.as_str()),
                observations,
            );
            st.ingest
                .submit(batch, &st.senml_source)
                .await
                .map_err(|e| Problem::new(ErrorType::ServiceUnavailable, e.to_string()))?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => {
            let reason = e.to_string();
            if let Err(err) = st
                .ingest
                .dead_letter(
                    &st.senml_source,
                    Some(tenant),
                    reason.clone(),
                    Some(ct),
                    body.to_vec(),
                )
                .await
            {
                tracing::error!(error = %err, "could not keep a rejected SenML pack");
            }
            Err(Problem::bad_data(reason))
        }
    }
}
