//! Temporal retrieval: `GET /ngsi-ld/v1/temporal/entities/{id}` with `timerel`.

use axum::{
    extract::{Path, Query, RawQuery, State, rejection::QueryRejection},
    http::StatusCode,
    response::Response,
};
use polity_model::{
    EntityId, Timestamp,
    ngsild::{TemporalOptions, render_temporal},
};
use polity_store::SeriesQuery;
use serde::Deserialize;

use crate::{
    ApiState,
    entities::{blocking, require_tenant, respond},
    problem::Problem,
    request::Read,
};

/// Most instances one temporal request returns per attribute.
pub const MAX_INSTANCES: usize = 10_000;

/// Query parameters of temporal retrieval.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemporalParams {
    /// `before`, `after` or `between`.
    pub timerel: Option<String>,
    /// The reference time.
    pub time_at: Option<String>,
    /// The end of a `between` interval.
    pub end_time_at: Option<String>,
    /// Attributes to return, comma-separated.
    pub attrs: Option<String>,
    /// The latest N instances per attribute.
    pub last_n: Option<usize>,
    /// `temporalValues`, `sysAttrs`.
    pub options: Option<String>,
    /// Only `observedAt` is supported.
    pub timeproperty: Option<String>,
}

fn time(name: &str, v: &Option<String>) -> Result<Timestamp, Problem> {
    let s = v.as_deref().ok_or_else(|| {
        Problem::bad_data(format!(
            "this timerel needs {name} (timerel=between needs both timeAt and endTimeAt)"
        ))
    })?;
    Timestamp::parse(s).map_err(|e| Problem::bad_data(format!("{name}: {e}")))
}

/// Translates `timerel` into a half-open interval [from, to).
pub fn interval(p: &TemporalParams) -> Result<(Option<Timestamp>, Option<Timestamp>), Problem> {
    match p.timerel.as_deref() {
        None => {
            if p.time_at.is_some() {
                return Err(Problem::bad_data(
                    "timeAt was given without timerel; add timerel=before, after or between",
                ));
            }
            Ok((None, None))
        }
        Some("before") => Ok((None, Some(time("timeAt", &p.time_at)?))),
        Some("after") => {
            let t = time("timeAt", &p.time_at)?;
            Ok((
                Some(Timestamp::from_millis(t.as_millis().saturating_add(1))),
                None,
            ))
        }
        Some("between") => {
            let from = time("timeAt", &p.time_at)?;
            let to = time("endTimeAt", &p.end_time_at)?;
            if to < from {
                return Err(Problem::bad_data("endTimeAt is before timeAt"));
            }
            Ok((Some(from), Some(to)))
        }
        Some(other) => Err(Problem::bad_data(format!(
            "timerel `{other}` is not one of before, after, between"
        ))),
    }
}

/// `GET /ngsi-ld/v1/temporal/entities/{id}`.
pub async fn retrieve(
    State(st): State<ApiState>,
    access: polity_trust::Access,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    p: Result<Query<TemporalParams>, QueryRejection>,
    Read {
        media,
        ctx,
        tenant,
        explicit,
    }: Read,
) -> Result<Response, Problem> {
    let p = crate::entities::params(p)?;
    crate::request::known_params(
        raw.as_deref(),
        &[
            "timerel",
            "timeAt",
            "endTimeAt",
            "attrs",
            "lastN",
            "options",
            "timeproperty",
        ],
    )?;
    let id = EntityId::new(&id).map_err(|e| Problem::bad_data(e.to_string()))?;
    match p.timeproperty.as_deref() {
        None | Some("observedAt") => {}
        // Valid NGSI-LD values this node does not keep series for yet.
        Some(tp @ ("createdAt" | "modifiedAt" | "deletedAt")) => {
            return Err(Problem::new(
                crate::problem::ErrorType::OperationNotSupported,
                format!("timeproperty `{tp}` is not supported yet; use observedAt"),
            ));
        }
        Some(tp) => {
            return Err(Problem::bad_data(format!(
                "timeproperty `{tp}` is not one of observedAt, createdAt, modifiedAt, deletedAt"
            )));
        }
    }
    let (from, to) = interval(&p)?;
    let mut temporal_values = false;
    for o in p.options.iter().flat_map(|s| s.split(',')) {
        match o.trim() {
            "temporalValues" => temporal_values = true,
            "sysAttrs" => {}
            o @ ("aggregatedValues" | "aggregatedvalues") => {
                return Err(Problem::new(
                    crate::problem::ErrorType::OperationNotSupported,
                    format!(
                        "options={o} is not supported yet; use temporalValues or the normalized form"
                    ),
                ));
            }
            "" => {}
            other => {
                return Err(Problem::bad_data(format!(
                    "unknown option `{other}`; use temporalValues or sysAttrs"
                )));
            }
        }
    }
    let attrs: Option<Vec<std::sync::Arc<str>>> = p.attrs.as_ref().map(|a| {
        a.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| std::sync::Arc::from(ctx.context.expand_term(s.trim()).as_ref()))
            .collect()
    });
    require_tenant(&st, &tenant, explicit).await?;
    let store = st.store.clone();
    let (t, i) = (tenant.clone(), id.clone());
    let last_n = p.last_n;
    let found = blocking(move || {
        let Some(state) = store.entity(&t, &i)? else {
            return Ok(None);
        };
        let q = SeriesQuery {
            attrs,
            from,
            to,
            last_n,
            limit: MAX_INSTANCES,
        };
        let series = store.series(&t, &i, &q)?;
        Ok(Some((state, series)))
    })
    .await?;
    let mut view = crate::access::View::reading(&access, polity_trust::Action::TemporalRead, &st);
    let Some((state, mut series)) = found.filter(|(s, _)| view.sees(&tenant, s)) else {
        return Err(Problem::not_found(format!(
            "entity `{id}` does not exist in tenant `{tenant}`"
        )));
    };
    // Personal instances go out only to those who may read the entity's personal data,
    // opened with the owner's key; the release is audited.
    let r = crate::access::entity_ref(&tenant, &state);
    view.redact_attrs(&r, &mut series);
    if !view.audit().await {
        return Err(Problem::audit_unavailable());
    }
    let opts = TemporalOptions {
        temporal_values,
        attrs: None,
        include_context: None,
    };
    let body = render_temporal(&state.id, &state.entity_type, &series, &ctx.context, &opts);
    Ok(respond(StatusCode::OK, body, media, &ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timerel_intervals() {
        let p = TemporalParams {
            timerel: Some("between".into()),
            time_at: Some("2026-01-01T00:00:00Z".into()),
            end_time_at: Some("2026-01-02T00:00:00Z".into()),
            ..Default::default()
        };
        let (a, b) = interval(&p).unwrap();
        assert_eq!(a.unwrap().to_string(), "2026-01-01T00:00:00.000Z");
        assert_eq!(b.unwrap().to_string(), "2026-01-02T00:00:00.000Z");
        let bad = TemporalParams {
            timerel: Some("during".into()),
            ..Default::default()
        };
        assert!(interval(&bad).is_err());
        let missing = TemporalParams {
            timerel: Some("before".into()),
            ..Default::default()
        };
        assert!(interval(&missing).unwrap_err().detail.contains("timeAt"));
    }
}
