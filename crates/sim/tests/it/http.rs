//! The HTTP sender against a minimal HTTP/1.1 server on a tokio TcpListener.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use polity_sim::{SenderStats, send::http_sender};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

use crate::{city, fast, wait_for};

#[derive(Default)]
struct Seen {
    batches: Vec<Value>,
}

/// Reads requests on one connection and answers each with `status` (and a
/// ProblemDetails body for errors).
async fn serve(mut conn: TcpStream, status: u16, seen: Arc<Mutex<Seen>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let lower = head.to_ascii_lowercase();
        assert!(
            head.starts_with("POST /ngsi-ld/v1/entityOperations/upsert HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(lower.contains("\r\nngsild-tenant: sydney\r\n"), "{head}");
        assert!(
            lower.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        let len: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 65536];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Value =
            serde_json::from_slice(&buf[head_end..head_end + len]).expect("body is JSON");
        buf.drain(..head_end + len);
        seen.lock().unwrap().batches.push(body);
        let resp = if status == 204 {
            "HTTP/1.1 204 No Content\r\n\r\n".to_string()
        } else {
            let p = r#"{"type":"https://uri.etsi.org/ngsi-ld/errors/BadRequestData","title":"Bad request data","detail":"the test server refuses everything"}"#;
            format!(
                "HTTP/1.1 {status} Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\n\r\n{p}",
                p.len()
            )
        };
        if conn.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn server(listener: TcpListener, status: u16) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, status, s.clone()));
        }
    });
    seen
}

#[tokio::test]
async fn http_batches_are_acked_and_are_ngsild_entities() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = server(listener, 204).await;
    let stats = Arc::new(SenderStats::default());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(http_sender(
        base,
        city(2, 150, 0.0),
        fast(),
        stats.clone(),
        rx,
    ));
    let s = wait_for(&stats, Duration::from_secs(10), |s| s.acked >= 900).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("sender stops promptly")
        .unwrap();
    assert!(s.acked >= 900 && s.errors == 0, "{s:?}");
    let seen = seen.lock().unwrap();
    let sizes: Vec<usize> = seen
        .batches
        .iter()
        .map(|b| b.as_array().unwrap().len())
        .collect();
    assert!(sizes.iter().all(|&n| (1..=100).contains(&n)), "{sizes:?}");
    assert_eq!(sizes[0], 100, "backfill goes out in full batches");
    let e = &seen.batches[0][0];
    assert_eq!(e["type"], "WaterConsumptionObserved");
    assert_eq!(e["waterConsumption"]["type"], "Property");
    assert_eq!(e["waterConsumption"]["unitCode"], "LTR");
    assert!(
        e["waterConsumption"]["observedAt"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(e["location"]["value"]["type"], "Point");
    let speeds: Vec<&Value> = seen
        .batches
        .iter()
        .flat_map(|b| b.as_array().unwrap())
        .filter(|e| e["type"] == "TrafficFlowObserved")
        .map(|e| &e["averageVehicleSpeed"]["unitCode"])
        .collect();
    assert!(!speeds.is_empty() && speeds.iter().all(|u| *u == "HM"));
}

#[tokio::test]
async fn http_errors_keep_the_problem_details() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    server(listener, 400).await;
    let stats = Arc::new(SenderStats::default());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(http_sender(
        base,
        city(2, 20, 0.0),
        fast(),
        stats.clone(),
        rx,
    ));
    let s = wait_for(&stats, Duration::from_secs(5), |s| s.errors >= 20).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(s.acked, 0);
    assert_eq!(
        s.last_error.as_deref(),
        Some("HTTP 400: Bad request data: the test server refuses everything"),
        "{s:?}"
    );
}

#[tokio::test]
async fn http_backs_off_while_the_server_is_down_then_delivers() {
    // Find a free port, leave it closed for a while, then start serving on it.
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let stats = Arc::new(SenderStats::default());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(http_sender(
        format!("http://{addr}"),
        city(2, 20, 0.0),
        fast(),
        stats.clone(),
        rx,
    ));
    let down = wait_for(&stats, Duration::from_secs(3), |s| s.errors >= 2).await;
    assert!(down.errors >= 2 && down.acked == 0, "{down:?}");
    assert!(down.errors < 20, "backs off rather than spinning: {down:?}");
    assert!(
        down.last_error.as_deref().unwrap().contains("NGSI-LD API"),
        "{down:?}"
    );
    let seen = server(TcpListener::bind(addr).await.unwrap(), 204).await;
    // Requeued backfill (4 × 20) is delivered once the server is up.
    let up = wait_for(&stats, Duration::from_secs(15), |s| s.acked >= 80).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(up.acked >= 80, "{up:?}");
    assert!(!seen.lock().unwrap().batches.is_empty());
}
