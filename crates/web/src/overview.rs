//! The national overview page and its JSON, SSE, health and metrics endpoints.

use std::{convert::Infallible, fmt::Write as _, time::Duration};

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{
        Html, IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::stream::{self, Stream};
use polity_model::{Timestamp, jsonld::Context};
use polity_store::DeadLetterQuery;
use serde::Serialize;
use serde_json::json;

use crate::{City, WebState, esc};

/// One city's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CityView {
    /// The city.
    #[serde(flatten)]
    pub city: City,
    /// Entities stored, in all.
    pub entities: u64,
    /// Entity counts by short type name.
    pub types: Vec<(String, u64)>,
    /// Observations per second, averaged over the last 5 s.
    pub rate: f64,
    /// The last two minutes of per-second rates.
    pub spark: Vec<f64>,
    /// Observations committed since start.
    pub committed: u64,
    /// Dead letters kept for this city (its tenant) since start.
    pub dead_letters: u64,
    /// When its sources last received anything.
    pub last_message: Option<Timestamp>,
}

/// A dead letter as shown on the page.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterView {
    /// Its id.
    pub id: u64,
    /// When it was rejected.
    pub at: Timestamp,
    /// The source that received it.
    pub source: String,
    /// The tenant, if known.
    pub tenant: Option<String>,
    /// Why it was rejected.
    pub reason: String,
}

/// Everything the overview shows.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// The node's name.
    pub node: String,
    /// When this snapshot was taken.
    pub generated_at: Timestamp,
    /// The cities.
    pub cities: Vec<CityView>,
    /// Entities in all cities.
    pub total_entities: u64,
    /// Observations per second in all cities.
    pub total_rate: f64,
    /// Dead letters kept in all.
    pub dead_letter_count: u64,
    /// The most recent dead letters.
    pub recent_dead_letters: Vec<DeadLetterView>,
}

/// Gathers the overview from the store and counters.
pub fn snapshot(st: &WebState) -> Result<Overview, polity_store::StoreError> {
    let core = Context::core();
    let sources = st.metrics.sources();
    let tenants_committed = st.metrics.tenants();
    let tenants_dead = st.metrics.tenant_dead_letters();
    let mut cities = Vec::new();
    for c in st.cities.iter() {
        let types: Vec<(String, u64)> = st
            .store
            .types(&c.tenant)?
            .into_iter()
            .map(|(t, n)| (core.compact_iri(&t).into_owned(), n))
            .collect();
        let entities = types.iter().map(|(_, n)| n).sum();
        let mine: Vec<_> = sources
            .iter()
            .filter(|s| c.sources.contains(&s.name))
            .collect();
        cities.push(CityView {
            city: c.clone(),
            entities,
            types,
            rate: st.rates.recent(&c.tenant, 5),
            spark: st.rates.series(&c.tenant),
            committed: tenants_committed
                .iter()
                .find(|(t, _)| *t == c.tenant)
                .map(|(_, n)| *n)
                .unwrap_or(0),
            dead_letters: tenants_dead
                .iter()
                .find(|(t, _)| *t == c.tenant)
                .map(|(_, n)| *n)
                .unwrap_or(0),
            last_message: mine.iter().filter_map(|s| s.last_message).max(),
        });
    }
    let q = DeadLetterQuery {
        tenant: None,
        source: None,
        after: None,
        limit: 10_000,
    };
    let mut recent = st.store.dead_letters(&q)?;
    recent.sort_by_key(|d| std::cmp::Reverse(d.id));
    let recent_dead_letters = recent
        .into_iter()
        .take(8)
        .map(|d| DeadLetterView {
            id: d.id,
            at: d.at,
            source: d.source,
            tenant: d.tenant.map(|t| t.to_string()),
            reason: d.reason,
        })
        .collect();
    Ok(Overview {
        node: st.node_name.clone(),
        generated_at: Timestamp::now(),
        total_entities: cities.iter().map(|c| c.entities).sum(),
        total_rate: cities.iter().map(|c| c.rate).sum(),
        cities,
        dead_letter_count: st.store.dead_letter_count()?,
        recent_dead_letters,
    })
}

async fn load(st: &WebState) -> Result<Overview, Response> {
    let st = st.clone();
    tokio::task::spawn_blocking(move || snapshot(&st))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())?
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

/// `GET /api/overview`.
pub async fn json(State(st): State<WebState>) -> Response {
    match load(&st).await {
        Ok(o) => axum::Json(o).into_response(),
        Err(r) => r,
    }
}

/// `GET /api/cities`: the cities, their tenants and what feeds each.
pub async fn cities(State(st): State<WebState>) -> Response {
    let sources = st.metrics.sources();
    let body: Vec<_> = st
        .cities
        .iter()
        .map(|c| {
            let feeds: Vec<_> = sources
                .iter()
                .filter(|s| c.sources.contains(&s.name))
                .map(|s| json!({ "source": s.name, "kind": s.kind, "detail": s.detail }))
                .collect();
            json!({ "name": c.name, "tenant": c.tenant, "feed": c.feed, "sources": feeds })
        })
        .collect();
    axum::Json(body).into_response()
}

/// `GET /health`.
pub async fn health(State(st): State<WebState>) -> Response {
    let store = st.store.clone();
    let store_ok = tokio::task::spawn_blocking(move || store.tenants().is_ok())
        .await
        .unwrap_or(false);
    let mut sources = serde_json::Map::new();
    let mut all_up = true;
    for (name, up) in st.links.iter() {
        let up = up.load(std::sync::atomic::Ordering::Relaxed);
        all_up &= up;
        sources.insert(
            name.clone(),
            json!(if up { "connected" } else { "disconnected" }),
        );
    }
    // A disconnected source degrades the node but does not make it unavailable: the
    // API still serves and other sources still ingest.
    let (code, status) = match (store_ok, all_up) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable"),
        (true, false) => (StatusCode::OK, "degraded"),
        (true, true) => (StatusCode::OK, "ok"),
    };
    (code, axum::Json(json!({ "status": status, "store": if store_ok { "ok" } else { "unavailable" }, "sources": sources }))).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(st): State<WebState>) -> Response {
    let mut out = String::new();
    st.metrics.render_prometheus(&mut out);
    st.gate.render_prometheus(&mut out);
    (st.more_metrics)(&mut out);
    let store = st.store.clone();
    let cities = st.cities.clone();
    let extra = tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        let _ = writeln!(s, "# HELP polity_entities Entities stored per tenant and type.\n# TYPE polity_entities gauge");
        for c in cities.iter() {
            for (ty, n) in store.types(&c.tenant).unwrap_or_default() {
                let _ = writeln!(s, "polity_entities{{tenant=\"{}\",type=\"{}\"}} {n}", c.tenant, polity_ingest::metrics::escape(&ty));
            }
        }
        let _ = writeln!(
            s,
            "# HELP polity_dead_letters Dead letters kept.\n# TYPE polity_dead_letters gauge\npolity_dead_letters {}",
            store.dead_letter_count().unwrap_or(0)
        );
        s
    })
    .await
    .unwrap_or_default();
    out.push_str(&extra);
    let mut r = out.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `GET /api/overview/stream`: the live sections as server-rendered HTML, every 2 s.
pub async fn stream(
    State(st): State<WebState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let s = stream::unfold((st, true), |(st, first)| async move {
        // The stream ends when the node shuts down, so an open page never holds it up.
        let mut down = st.shutdown.clone();
        if !first {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = down.wait_for(|s| *s) => return None,
            }
        }
        if *down.borrow() {
            return None;
        }
        let ev = match load(&st).await {
            Ok(o) => Event::default()
                .event("overview")
                .data(render_live(&o).replace('\n', "")),
            Err(_) => Event::default()
                .event("error")
                .data("the overview could not be read"),
        };
        Some((Ok(ev), (st, false)))
    });
    Sse::new(s).keep_alive(KeepAlive::default())
}

/// `GET /`: the national overview.
pub async fn page(State(st): State<WebState>) -> Response {
    match load(&st).await {
        Ok(o) => Html(render_page(&o)).into_response(),
        Err(r) => r,
    }
}

fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ago(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let s = (now.as_millis() - t.as_millis()).max(0) / 1000;
            if s < 60 {
                format!("{s} s ago")
            } else if s < 3600 {
                format!("{} min ago", s / 60)
            } else {
                format!("{} h ago", s / 3600)
            }
        }
    }
}

/// An SVG sparkline of rates.
pub fn sparkline(values: &[f64]) -> String {
    let (w, h) = (240.0, 40.0);
    if values.len() < 2 {
        return format!(
            "<svg class=\"spark\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"ingest rate\"></svg>"
        );
    }
    let max = values.iter().copied().fold(1.0f64, f64::max);
    let step = w / (values.len() - 1) as f64;
    let pts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 2.0 - (v / max) * (h - 4.0)
            )
        })
        .collect();
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"ingest rate, last {} s\">\
         <polyline points=\"0,{h} {} {w},{h}\" class=\"area\"/><polyline points=\"{}\" class=\"line\"/></svg>",
        values.len(),
        pts.join(" "),
        pts.join(" ")
    )
}

/// The live part of the page: totals, city cards and dead letters.
pub fn render_live(o: &Overview) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<section class=\"kpis\">\
           <div class=\"kpi\"><span class=\"label\">Cities</span><span class=\"value\" data-kpi=\"cities\">{}</span></div>\
           <div class=\"kpi\"><span class=\"label\">Entities</span><span class=\"value\" data-kpi=\"entities\">{}</span></div>\
           <div class=\"kpi\"><span class=\"label\">Observations / s</span><span class=\"value\" data-kpi=\"rate\">{:.0}</span></div>\
           <div class=\"kpi {}\"><span class=\"label\">Dead letters</span><span class=\"value\" data-kpi=\"dead-letters\">{}</span></div>\
         </section><section class=\"cities\">",
        o.cities.len(),
        fmt_int(o.total_entities),
        o.total_rate,
        if o.dead_letter_count > 0 { "warn" } else { "" },
        fmt_int(o.dead_letter_count)
    );
    for c in &o.cities {
        let _ = write!(
            h,
            "<article class=\"city\" data-tenant=\"{t}\"><header><h2>{name}</h2><span class=\"tenant\">NGSILD-Tenant: {t}</span></header>\
             <p class=\"feed\">{feed}</p>\
             <div class=\"rate\"><span class=\"big\" data-rate>{rate:.0}</span> obs/s {spark}</div>\
             <table class=\"types\"><thead><tr><th>Entity type</th><th class=\"n\">Entities</th></tr></thead><tbody>",
            t = esc(c.city.tenant.as_str()),
            name = esc(&c.city.name),
            feed = esc(&c.city.feed),
            rate = c.rate,
            spark = sparkline(&c.spark),
        );
        for (ty, n) in &c.types {
            let _ = write!(
                h,
                "<tr><td data-type=\"{e}\">{e}</td><td class=\"n\" data-count=\"{e}\">{}</td></tr>",
                fmt_int(*n),
                e = esc(ty)
            );
        }
        if c.types.is_empty() {
            h.push_str("<tr><td colspan=\"2\" class=\"muted\">No entities yet</td></tr>");
        }
        let _ = write!(
            h,
            "</tbody><tfoot><tr><td>All types</td><td class=\"n\">{}</td></tr></tfoot></table>\
             <footer><span>{} committed</span><span>{} dead letter{}</span><span>last message {}</span></footer></article>",
            fmt_int(c.entities),
            fmt_int(c.committed),
            fmt_int(c.dead_letters),
            if c.dead_letters == 1 { "" } else { "s" },
            ago(c.last_message, o.generated_at)
        );
    }
    h.push_str("</section><section class=\"dead\"><h2>Dead letters</h2>");
    if o.recent_dead_letters.is_empty() {
        h.push_str("<p class=\"muted\">None: every message so far was decoded and stored.</p>");
    } else {
        let _ = write!(
            h,
            "<p class=\"muted\">{} kept in all, each with its payload and reason; the latest are below.</p>\
             <table class=\"dl\"><thead><tr><th>#</th><th>When</th><th>Source</th><th>City</th><th>Reason</th></tr></thead><tbody>",
            fmt_int(o.dead_letter_count)
        );
        for d in &o.recent_dead_letters {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"reason\">{}</td></tr>",
                d.id,
                ago(Some(d.at), o.generated_at),
                esc(&d.source),
                esc(d.tenant.as_deref().unwrap_or("—")),
                esc(&d.reason)
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");
    h
}

const STYLE: &str = r#"
:root{--bg:#0f1720;--panel:#16212d;--line:#243445;--text:#e6edf3;--muted:#8ba1b5;--accent:#38bdf8;--warn:#f59e0b;--ok:#34d399}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--text)}
header.top{display:flex;align-items:center;justify-content:space-between;padding:18px 32px;border-bottom:1px solid var(--line);background:#0b121a}
header.top h1{margin:0;font-size:20px;letter-spacing:.02em}header.top h1 span{color:var(--accent)}
.status{color:var(--muted);font-size:13px}.status .dot{display:inline-block;width:8px;height:8px;border-radius:50%;background:var(--ok);margin-right:6px}
.status.stale .dot{background:var(--warn)}
main{padding:24px 32px;max-width:1400px;margin:0 auto}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:16px;margin-bottom:24px}
.kpi{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:14px 18px}
.kpi .label{display:block;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.08em}
.kpi .value{font-size:28px;font-weight:600;font-variant-numeric:tabular-nums}.kpi.warn .value{color:var(--warn)}
.cities{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:16px}
.city{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:16px 18px}
.city header{display:flex;justify-content:space-between;align-items:baseline}.city h2{margin:0;font-size:19px}
.tenant{font:12px ui-monospace,monospace;color:var(--muted)}.feed{margin:4px 0 10px;color:var(--accent);font-size:13px}
.rate{display:flex;align-items:center;gap:8px;color:var(--muted);font-size:13px}.rate .big{font-size:22px;color:var(--text);font-weight:600;font-variant-numeric:tabular-nums}
.spark{width:100%;height:40px;flex:1}.spark .line{fill:none;stroke:var(--accent);stroke-width:1.5}.spark .area{fill:rgba(56,189,248,.12);stroke:none}
table{width:100%;border-collapse:collapse;margin-top:10px;font-size:14px}th,td{text-align:left;padding:5px 4px;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:500;font-size:12px;text-transform:uppercase;letter-spacing:.06em}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tfoot td{font-weight:600;border-bottom:none}a{color:var(--text);text-decoration:none}a:hover{color:var(--accent)}
.city footer{display:flex;gap:14px;flex-wrap:wrap;margin-top:10px;color:var(--muted);font-size:12px}
.dead{margin-top:28px;background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:16px 18px}.dead h2{margin:0 0 6px;font-size:17px}
.dl td.reason{font:13px ui-monospace,monospace;color:#fca5a5}.muted{color:var(--muted)}
nav.links{margin-top:24px;color:var(--muted);font-size:13px}nav.links a{color:var(--accent);margin-right:16px}
@media (max-width:800px){.kpis{grid-template-columns:repeat(2,1fr)}main,header.top{padding:16px}}
"#;

const SCRIPT: &str = r#"
(function(){
  var live=document.getElementById('live'),status=document.getElementById('status'),last=Date.now();
  function mark(ok){status.className='status'+(ok?'':' stale');status.lastChild.textContent=ok?' live':' reconnecting…';}
  var es=new EventSource('/api/overview/stream');
  es.addEventListener('overview',function(e){live.innerHTML=e.data;last=Date.now();mark(true);document.body.dataset.updates=(+(document.body.dataset.updates||0)+1);});
  es.onerror=function(){mark(false);};
  setInterval(function(){if(Date.now()-last>8000)mark(false);},2000);
})();
"#;

/// The whole page.
pub fn render_page(o: &Overview) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Polity · {node} · national overview</title><style>{STYLE}</style></head><body>\
         <header class=\"top\"><h1><span>Polity</span> · national overview</h1>\
         <div id=\"status\" class=\"status\"><span class=\"dot\"></span><span> live</span></div></header>\
         <main><div id=\"live\">{live}</div>\
         <nav class=\"links\"><a href=\"/api/cities\">/api/cities</a><a href=\"/api/overview\">/api/overview</a>\
         <a href=\"/metrics\">/metrics</a><a href=\"/health\">/health</a></nav></main>\
         <script>{SCRIPT}</script></body></html>",
        node = esc(&o.node),
        live = render_live(o),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_sparklines() {
        assert_eq!(fmt_int(1234567), "1,234,567");
        assert_eq!(fmt_int(12), "12");
        let s = sparkline(&[0.0, 5.0, 10.0]);
        assert!(s.contains("<polyline") && s.contains("240.0,2.0"), "{s}");
    }
}
