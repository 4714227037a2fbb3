//! Handshake and connection counters, shared by the HTTPS server and the MQTT front.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of one TLS listener, for `/metrics`. Cheap to update from every connection.
#[derive(Debug, Default)]
pub struct TlsCounters {
    handshakes_ok: AtomicU64,
    handshakes_failed: AtomicU64,
    handshake_timeouts: AtomicU64,
    connections_refused: AtomicU64,
    upstream_failures: AtomicU64,
    active: AtomicU64,
}

/// A copy of [`TlsCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsCountersSnapshot {
    /// Handshakes that completed.
    pub handshakes_ok: u64,
    /// Handshakes that failed, timeouts included (plain HTTP on the TLS port, an
    /// untrusted or missing client certificate, a client that went away).
    pub handshakes_failed: u64,
    /// Of the failed handshakes, those that did not finish in time.
    pub handshake_timeouts: u64,
    /// Connections closed at once because the listener was at its connection limit.
    pub connections_refused: u64,
    /// MQTT front only: TLS connections whose upstream (the broker) could not be
    /// reached.
    pub upstream_failures: u64,
    /// Connections open now (handshaking or established).
    pub active_connections: u64,
}

impl TlsCounters {
    /// A copy of the counters now.
    pub fn snapshot(&self) -> TlsCountersSnapshot {
        TlsCountersSnapshot {
            handshakes_ok: self.handshakes_ok.load(Relaxed),
            handshakes_failed: self.handshakes_failed.load(Relaxed),
            handshake_timeouts: self.handshake_timeouts.load(Relaxed),
            connections_refused: self.connections_refused.load(Relaxed),
            upstream_failures: self.upstream_failures.load(Relaxed),
            active_connections: self.active.load(Relaxed),
        }
    }

    pub(crate) fn handshake_ok(&self) {
        self.handshakes_ok.fetch_add(1, Relaxed);
    }

    pub(crate) fn handshake_failed(&self, timed_out: bool) {
        self.handshakes_failed.fetch_add(1, Relaxed);
        if timed_out {
            self.handshake_timeouts.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn upstream_failed(&self) {
        self.upstream_failures.fetch_add(1, Relaxed);
    }

    /// Counts a connection as active until the guard is dropped.
    pub(crate) fn open(&self) -> ActiveGuard<'_> {
        self.active.fetch_add(1, Relaxed);
        ActiveGuard(self)
    }
}

/// Decrements the active-connection gauge when dropped.
pub(crate) struct ActiveGuard<'a>(&'a TlsCounters);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_also_failures_and_the_gauge_follows_guards() {
        let c = TlsCounters::default();
        c.handshake_ok();
        c.handshake_failed(false);
        c.handshake_failed(true);
        c.refused();
        let g1 = c.open();
        let g2 = c.open();
        assert_eq!(c.snapshot().active_connections, 2);
        drop(g1);
        let s = c.snapshot();
        assert_eq!(
            (s.handshakes_ok, s.handshakes_failed, s.handshake_timeouts),
            (1, 2, 1)
        );
        assert_eq!((s.connections_refused, s.active_connections), (1, 1));
        drop(g2);
        assert_eq!(c.snapshot().active_connections, 0);
    }
}
