//! The HTTP sender (Sydney): NGSI-LD batch upserts.
//!
//! Due readings are grouped per tick into batches of up to `http_batch` entities and
//! POSTed to `{base}/ngsi-ld/v1/entityOperations/upsert` with `NGSILD-Tenant: <tenant>`
//! and `Content-Type: application/json`. 201 and 204 acknowledge the whole batch; a 207
//! acknowledges its successes and counts its per-entity errors; any other status counts
//! the batch as rejected and keeps the ProblemDetails `title` and `detail` as the last
//! error. A batch that could not be delivered at all (connection refused, timeout) is
//! put back and retried after a backoff. One request is outstanding at a time.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use tokio::sync::watch;

use super::{Backoff, SendOptions, SenderStats, sleep_or_stop, source::Source, stopped, stopping};
use crate::{fault, nation::City};

/// Runs Sydney-style devices against the NGSI-LD API at `base` until shutdown.
pub async fn http_sender(
    base: String,
    city: Arc<City>,
    opts: SendOptions,
    stats: Arc<SenderStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let url = format!(
        "{}/ngsi-ld/v1/entityOperations/upsert",
        base.trim_end_matches('/')
    );
    let tenant = city.spec.tenant.to_string();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            stats.error(1, format!("cannot build an HTTP client: {e}"));
            return;
        }
    };
    let mut backoff = Backoff::new(city.seed ^ 0x4770);
    let mut source = Source::new(city, &opts, stats.clone());
    let mut ticker = tokio::time::interval(opts.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'run: while !stopping(&shutdown) {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = ticker.tick() => {}
        }
        source.poll_due();
        while !source.is_empty() {
            let batch = source.take(opts.http_batch.max(1));
            let body: Vec<Value> = batch
                .iter()
                .map(|(r, f)| fault::ngsild_entity(r, *f))
                .collect();
            let body = serde_json::to_vec(&body).unwrap_or_default();
            let n = batch.len() as u64;
            let mut req = client
                .post(&url)
                .header("NGSILD-Tenant", &tenant)
                .header("Content-Type", "application/json");
            if let Some(t) = &opts.http_token {
                req = req.bearer_auth(t);
            }
            let req = req.body(body).send();
            let res = tokio::select! {
                _ = stopped(&mut shutdown) => break 'run,
                res = req => res,
            };
            SenderStats::add(&stats.requests, 1);
            let resp = match res {
                Ok(resp) => resp,
                Err(e) => {
                    stats.error(1, format!("NGSI-LD API {url}: {}", error_chain(&e)));
                    source.requeue(&batch);
                    if sleep_or_stop(backoff.next_delay(), &mut shutdown).await {
                        break 'run;
                    }
                    continue 'run;
                }
            };
            backoff.reset();
            SenderStats::add(&stats.sent, n);
            let status = resp.status().as_u16();
            let text = tokio::select! {
                _ = stopped(&mut shutdown) => break 'run,
                t = resp.text() => t.unwrap_or_default(),
            };
            match status {
                201 | 204 => SenderStats::add(&stats.acked, n),
                207 => {
                    let (ok, failed, msg) = multi_status(&text, n);
                    SenderStats::add(&stats.acked, ok);
                    if failed > 0 {
                        stats.error(failed, msg);
                    }
                }
                _ => stats.error(n, format!("HTTP {status}: {}", problem(&text))),
            }
            source.poll_due();
        }
    }
}

/// `title: detail` from an RFC 7807 ProblemDetails body, or the start of the body.
fn problem(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v.get("title").is_some() || v.get("detail").is_some() => {
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            match (s("title"), s("detail")) {
                (t, d) if d.is_empty() => t,
                (t, d) if t.is_empty() => d,
                (t, d) => format!("{t}: {d}"),
            }
        }
        _ => text.chars().take(300).collect(),
    }
}

/// Successes, failures and the first failure's message from an NGSI-LD
/// BatchOperationResult (`{"success": [ids], "errors": [{"entityId", "error"}]}`).
fn multi_status(text: &str, n: u64) -> (u64, u64, String) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return (
            0,
            n,
            format!(
                "HTTP 207 with an unreadable body: {}",
                text.chars().take(200).collect::<String>()
            ),
        );
    };
    let errors = v
        .get("errors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ok = v
        .get("success")
        .and_then(Value::as_array)
        .map_or(n.saturating_sub(errors.len() as u64), |a| a.len() as u64);
    let msg = errors
        .first()
        .map(|e| {
            let id = e.get("entityId").and_then(Value::as_str).unwrap_or("?");
            let why = e
                .get("error")
                .map(|p| problem(&p.to_string()))
                .unwrap_or_default();
            format!("HTTP 207: entity {id} rejected: {why}")
        })
        .unwrap_or_default();
    (ok, errors.len() as u64, msg)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_details_are_summarised() {
        let p = r#"{"type":"https://uri.etsi.org/ngsi-ld/errors/BadRequestData","title":"Bad request data","detail":"id is not a URI"}"#;
        assert_eq!(problem(p), "Bad request data: id is not a URI");
        assert_eq!(problem("oops"), "oops");
        let m = r#"{"success":["urn:a","urn:b"],"errors":[{"entityId":"x y","error":{"title":"Bad request data","detail":"not a URI"}}]}"#;
        assert_eq!(
            multi_status(m, 3),
            (
                2,
                1,
                "HTTP 207: entity x y rejected: Bad request data: not a URI".into()
            )
        );
    }
}
