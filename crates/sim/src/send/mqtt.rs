//! The MQTT sender (Melbourne): one JSON object per reading, published at QoS 1.
//!
//! A rumqttc `AsyncClient` publishes to `polity/<tenant>/<Type>/<device>`; its
//! `EventLoop` runs in its own task, counts PUBACKs, and on connection errors backs off
//! (exponential with jitter, capped at 10 s) before polling again, which reconnects.
//! rumqttc keeps at most `max_in_flight` unacknowledged publishes; beyond that
//! `publish` waits, which slows the sender rather than growing memory.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use super::{Backoff, SendOptions, SenderStats, sleep_or_stop, source::Source, stopped, stopping};
use crate::{fault, nation::City};

/// Runs Melbourne-style devices against the MQTT broker at `broker` until shutdown.
pub async fn mqtt_sender(
    broker: SocketAddr,
    city: Arc<City>,
    opts: SendOptions,
    stats: Arc<SenderStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client_id = format!(
        "polity-sim-{}-{:x}",
        city.spec.tenant,
        city.seed & 0xFFFF_FFFF
    );
    let mut mqtt = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
    mqtt.set_keep_alive(Duration::from_secs(30));
    mqtt.set_clean_session(true);
    mqtt.set_inflight(opts.max_in_flight.clamp(1, usize::from(u16::MAX)) as u16);
    let (client, mut eventloop) = AsyncClient::new(mqtt, opts.max_in_flight.max(1) * 2);

    let loop_stats = stats.clone();
    let mut loop_shutdown = shutdown.clone();
    let seed = city.seed;
    let driver = tokio::spawn(async move {
        let mut backoff = Backoff::new(seed ^ 0x3077);
        loop {
            tokio::select! {
                _ = stopped(&mut loop_shutdown) => break,
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::PubAck(_))) => SenderStats::add(&loop_stats.acked, 1),
                    Ok(Event::Incoming(Packet::ConnAck(_))) => backoff.reset(),
                    Ok(_) => {}
                    Err(e) => {
                        loop_stats.error(1, format!("MQTT broker {broker}: {e}"));
                        if sleep_or_stop(backoff.next_delay(), &mut loop_shutdown).await {
                            break;
                        }
                    }
                },
            }
        }
        // Flush the DISCONNECT the publisher queued, briefly.
        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    });

    let mut source = Source::new(city, &opts, stats.clone());
    let mut ticker = tokio::time::interval(opts.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'run: while !stopping(&shutdown) {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            _ = ticker.tick() => {}
        }
        source.poll_due();
        loop {
            let batch = source.take(opts.max_in_flight.max(1));
            if batch.is_empty() {
                break;
            }
            for (r, f) in batch {
                let (topic, payload) = fault::mqtt_message(&r, f);
                tokio::select! {
                    _ = stopped(&mut shutdown) => break 'run,
                    res = client.publish(topic, QoS::AtLeastOnce, false, payload) => match res {
                        Ok(()) => {
                            SenderStats::add(&stats.sent, 1);
                            SenderStats::add(&stats.requests, 1);
                        }
                        Err(e) => stats.error(1, format!("MQTT client stopped: {e}")),
                    },
                }
            }
            // Let live readings in between bursts of backfill.
            source.poll_due();
        }
    }
    let _ = client.try_disconnect();
    let _ = driver.await;
}
