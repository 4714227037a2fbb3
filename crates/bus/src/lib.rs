//! In-process bus: fans committed batches out to sinks.
//!
//! The ingest pipeline publishes each batch after it is durable, so anything a sink sees
//! is already stored. Sinks that must not miss data (subscriptions, uplink) read what they
//! missed back from the store: the bus is a low-latency notification path, not the
//! system of record. A slow subscriber lags and is told how many batches it skipped;
//! it never slows ingest and never grows memory.
//!
//! NATS JetStream replaces this bus when a deployment scales past one machine.

use std::sync::Arc;

use polity_model::Batch;
use tokio::sync::broadcast;

/// A batch that has been committed durably.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The batch, shared with every subscriber.
    pub batch: Arc<Batch>,
}

/// The bus. Cloning gives another handle to the same bus.
#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<Committed>,
}

/// What a subscriber receives.
pub type Subscription = broadcast::Receiver<Committed>;

impl Bus {
    /// A bus that holds at most `capacity` batches for its slowest subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Bus { tx }
    }

    /// Publishes a committed batch to every current subscriber. Returns how many
    /// subscribers it reached (zero is fine: nobody is listening).
    pub fn publish(&self, batch: Arc<Batch>) -> usize {
        self.tx.send(Committed { batch }).unwrap_or(0)
    }

    /// Subscribes to batches published from now on.
    pub fn subscribe(&self) -> Subscription {
        self.tx.subscribe()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new(1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polity_model::Tenant;

    fn batch(n: usize) -> Arc<Batch> {
        Arc::new(Batch::of(
            Tenant::new("adelaide").unwrap(),
            Arc::from(format!("s{n}")),
            vec![],
        ))
    }

    #[tokio::test]
    async fn subscribers_receive_in_order_and_slow_ones_lag() {
        let bus = Bus::new(2);
        let mut rx = bus.subscribe();
        for n in 0..4 {
            bus.publish(batch(n));
        }
        // Capacity 2: the two oldest are gone, and the subscriber is told so.
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(2))
        ));
        assert_eq!(&*rx.recv().await.unwrap().batch.source, "s2");
        assert_eq!(&*rx.recv().await.unwrap().batch.source, "s3");
    }

    #[test]
    fn publishing_without_subscribers_is_fine() {
        assert_eq!(Bus::default().publish(batch(0)), 0);
    }
}
