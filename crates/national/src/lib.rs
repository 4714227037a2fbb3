//! National views: what crosses a city's boundary is an aggregate, never a record.
//!
//! `GET /api/aggregates/{type}` (action `aggregate.read`) releases, for one Smart Data
//! Models entity type:
//!
//! * the number of entities per city, as a differentially private histogram whose
//!   cells below k = 10 are suppressed;
//! * optionally (`attr`, `lo`, `hi`), the national mean of one numeric attribute,
//!   clamped to the declared bounds, differentially private.
//!
//! Each entity is taken to be one citizen's household (contribution bound 1). The noise
//! and the budget come from `polity-dp` (OpenDP discrete Laplace, a persistent ledger of
//! ε per citizen population and year, ε ≤ 4): a request past the budget is refused with
//! 429 and the date the budget resets. Values sealed at ingest are opened with their
//! owner's key inside the node; only the noisy aggregate leaves it.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use polity_dp::{Aggregator, CountSpec, DatasetId, DpError, Epsilon, SumSpec};
use polity_model::Value;
use polity_privacy::CitizenVault;
use polity_store::{EntityQuery, Store};
use polity_trust::{Action, Routes, Scope, problem};
use serde::Deserialize;
use serde_json::json;

/// The Smart Data Models types the national view may aggregate (each a dataset of the
/// `residents` population in the budget ledger).
pub const DATASETS: &[&str] = &[
    "WaterConsumptionObserved",
    "ACMeasurement",
    "ParkingSpot",
    "TrafficFlowObserved",
    "AirQualityObserved",
];

/// The budget group every dataset belongs to: the nation's residents.
pub const POPULATION: &str = "residents";

/// The largest ε one request may spend.
pub const MAX_REQUEST_EPSILON: f64 = 1.0;

/// Values are aggregated in thousandths of their unit, as integers.
const SCALE: f64 = 1000.0;

/// What the route needs.
#[derive(Clone)]
pub struct NationalState {
    /// Entities.
    pub store: Arc<dyn Store>,
    /// Opens sealed values.
    pub vault: Arc<CitizenVault>,
    /// Noise, suppression and the budget.
    pub aggregator: Arc<Aggregator>,
}

/// The aggregator configuration for [`DATASETS`] in one population with the anchor
/// budget (ε = 4 per citizen per year).
pub fn aggregator_config() -> polity_dp::AggregatorConfig {
    serde_json::from_value(json!({
        "groups": [{"id": POPULATION}],
        "datasets": DATASETS.iter().map(|d| json!({"id": d, "group": POPULATION, "max_contributions_per_citizen": 1})).collect::<Vec<_>>(),
    }))
    .expect("the built-in aggregator config is valid")
}

/// The national routes.
pub fn routes(state: NationalState) -> Routes {
    Routes::new()
        .get(
            "/api/aggregates/{type}",
            Action::AggregateRead,
            Scope::Node,
            aggregate,
        )
        .with_state(state)
}

/// Query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateParams {
    /// A numeric attribute (short name) to average nationally.
    pub attr: Option<String>,
    /// Its lower clamping bound, in the attribute's unit.
    pub lo: Option<f64>,
    /// Its upper clamping bound.
    pub hi: Option<f64>,
    /// ε to spend (default 0.5, at most [`MAX_REQUEST_EPSILON`]).
    pub epsilon: Option<f64>,
}

fn dp_problem(e: DpError) -> Response {
    match e {
        DpError::BudgetExhausted { .. } => problem(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        other => problem(StatusCode::BAD_REQUEST, other.to_string()),
    }
}

async fn aggregate(
    State(st): State<NationalState>,
    Path(ty): Path<String>,
    q: Result<Query<AggregateParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return problem(
            StatusCode::BAD_REQUEST,
            "parameters: attr, lo, hi (numbers), epsilon (0 < ε ≤ 1)",
        );
    };
    if !DATASETS.contains(&ty.as_str()) {
        return problem(
            StatusCode::NOT_FOUND,
            format!("`{ty}` is not a dataset of the national view; use one of {DATASETS:?}"),
        );
    }
    let eps = q.epsilon.unwrap_or(0.5);
    if !(eps > 0.0 && eps <= MAX_REQUEST_EPSILON) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("epsilon must be in (0, {MAX_REQUEST_EPSILON}]"),
        );
    }
    let mean = match (&q.attr, q.lo, q.hi) {
        (None, None, None) => None,
        (Some(a), Some(lo), Some(hi)) if lo < hi && lo.is_finite() && hi.is_finite() => {
            Some((a.clone(), lo, hi))
        }
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "a mean needs attr, lo and hi together, with lo < hi (the clamping bounds, in the attribute's unit)",
            );
        }
    };
    // Gather per city inside the node: counts, and the attribute's values.
    let (store, vault) = (st.store.clone(), st.vault.clone());
    let attr = mean.as_ref().map(|(a, _, _)| a.clone());
    let ty2 = ty.clone();
    let gathered = tokio::task::spawn_blocking(move || {
        let mut cells = Vec::new();
        let mut values = Vec::new();
        for tenant in store.tenants()? {
            // Only the tenant's types whose short name is the dataset's.
            let mut found = Vec::new();
            for (iri, _) in store.types(&tenant)? {
                if polity_ingest::protect::short_name(&iri) == ty2 {
                    found.extend(store.entities(&tenant, &EntityQuery::all(Some(iri)))?);
                }
            }
            let n = found.len() as u64;
            for e in found {
                let Some(attr) = &attr else { continue };
                let owner = polity_ngsild::access::owner_of(&e);
                let Some(o) = e
                    .attrs
                    .iter()
                    .find(|o| polity_ingest::protect::short_name(&o.attr) == attr)
                else {
                    continue;
                };
                let v = match (&o.value, &owner) {
                    (Value::Number(x), _) => Some(*x),
                    (Value::Text(t), Some(owner))
                        if t.starts_with(polity_ingest::protect::SEALED_PREFIX) =>
                    {
                        vault
                            .open(
                                &tenant,
                                owner,
                                t,
                                &polity_ingest::protect::seal_aad(e.id.as_str(), &o.attr),
                            )
                            .ok()
                            .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
                            .and_then(|v| v.as_f64())
                    }
                    _ => None,
                };
                if let Some(v) = v {
                    values.push((v * SCALE).round() as i64);
                }
            }
            cells.push((tenant.to_string(), n));
        }
        Ok::<_, polity_store::StoreError>((cells, values))
    })
    .await;
    let (cells, values) = match gathered {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let dataset = match DatasetId::new(ty.clone()) {
        Ok(d) => d,
        Err(e) => return dp_problem(e),
    };
    let share = if mean.is_some() { eps / 2.0 } else { eps };
    let eps_share = match Epsilon::from_f64(share) {
        Ok(e) => e,
        Err(e) => return dp_problem(e),
    };
    let agg = st.aggregator.clone();
    let released = tokio::task::spawn_blocking(move || {
        let counts = agg.release_counts(
            &dataset,
            &cells,
            CountSpec {
                epsilon: eps_share,
                max_contributions_per_citizen: 1,
            },
        )?;
        let mean = match mean {
            Some((attr, lo, hi)) => {
                let r = agg.release_sum(
                    &dataset,
                    &values,
                    SumSpec {
                        epsilon: eps_share,
                        max_contributions_per_citizen: 1,
                        bounds: ((lo * SCALE).floor() as i64, (hi * SCALE).ceil() as i64),
                    },
                )?;
                Some(json!({
                    "attribute": attr,
                    "mean": r.mean.map(|m| m / SCALE),
                    "count": r.count,
                    "bounds": [lo, hi],
                }))
            }
            None => None,
        };
        let budget = agg.budget(&dataset)?;
        Ok::<_, DpError>((counts, mean, budget))
    })
    .await;
    match released {
        Ok(Ok((counts, mean, budget))) => Json(json!({
            "type": ty,
            "epsilon": eps,
            "k": st.aggregator.k(),
            "cities": counts.iter().map(|c| json!({
                "tenant": c.label,
                "count": c.value,
                "suppressed": c.value.is_none(),
            })).collect::<Vec<_>>(),
            "mean": mean,
            "budget": {
                "population": POPULATION,
                "spent": budget.spent.to_string(),
                "remaining": budget.remaining.to_string(),
                "cap": budget.cap.to_string(),
                "resetsAt": budget.resets_at.to_rfc3339(),
            },
            "method": "OpenDP discrete Laplace; counts below k suppressed on the noisy value; one household per entity",
        }))
        .into_response(),
        Ok(Err(e)) => dp_problem(e),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_config_is_valid_and_keeps_the_anchor() {
        let c = super::aggregator_config();
        assert_eq!(c.datasets.len(), super::DATASETS.len());
        let dir = std::env::temp_dir().join(format!("polity-national-{}", std::process::id()));
        let a = polity_dp::Aggregator::open(&dir, c).expect("opens");
        let b = a
            .budget(&polity_dp::DatasetId::new("WaterConsumptionObserved").unwrap())
            .unwrap();
        assert_eq!(
            b.cap.to_string(),
            polity_dp::Epsilon::ANCHOR_PER_CITIZEN_YEAR.to_string()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
