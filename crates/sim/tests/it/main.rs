//! Scenario tests: each sender against a real peer on loopback.
//!
//! CoAP and HTTP peers are tiny servers written here (a UDP socket that decodes with
//! coap-lite and answers ACKs; a TCP listener that speaks just enough HTTP/1.1). MQTT
//! runs against a real Mosquitto at 127.0.0.1:1883 only when `POLITY_TEST_MOSQUITTO=1`.

mod coap;
mod http;
mod mqtt;

use std::{sync::Arc, time::Duration};

use polity_sim::{City, NationSpec, SendOptions, SenderStats, StatsSnapshot};

/// A small city (`index` 0 Adelaide, 1 Melbourne, 2 Sydney) with `n` devices.
pub fn city(index: usize, n: usize, fault_rate: f64) -> Arc<City> {
    let mut spec = NationSpec::demo(n);
    spec.fault_rate = fault_rate;
    Arc::new(spec.build().remove(index))
}

/// Fast pacing for tests: every device every 200 ms, one hour of backfill (4 steps).
pub fn fast() -> SendOptions {
    SendOptions {
        report_interval: Duration::from_millis(200),
        backfill_hours: 1.0,
        tick: Duration::from_millis(20),
        ..SendOptions::default()
    }
}

/// Polls `stats` until `done` holds or `within` passes; returns the last snapshot.
pub async fn wait_for(
    stats: &SenderStats,
    within: Duration,
    done: impl Fn(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    let end = tokio::time::Instant::now() + within;
    loop {
        let s = stats.snapshot();
        if done(&s) || tokio::time::Instant::now() >= end {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
