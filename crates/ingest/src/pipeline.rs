//! The write path: bounded submission queue → group commit → acknowledgement → bus.
//!
//! Sources decode and normalize on their own tasks, then [`IngestHandle::submit`] a
//! [`Batch`] and wait. One writer thread takes everything queued, commits it to the store
//! in one atomic write followed by one fsync (group commit), then acknowledges every
//! sender and publishes the batches on the bus. A sender is acknowledged only after its
//! data is durable, so an acknowledged observation survives `kill -9`.
//!
//! The queue is bounded: when the writer falls behind, `submit` waits, which slows the
//! source (an MQTT client stops acking, CoAP and HTTP answer later). Memory never grows
//! with load. Input that cannot be decoded or mapped is written to the dead-letter store
//! with its reason through the same writer, and counted.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    thread,
    time::Instant,
};

use polity_bus::Bus;
use polity_model::{Batch, Tenant, Timestamp};
use polity_store::{NewDeadLetter, Store};
use tokio::sync::{mpsc, oneshot};

use crate::{
    metrics::{Metrics, SourceCounters},
    normalize::Normalizer,
};

/// Tuning of the write path. Defaults suit one node on a small machine.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Submissions that may wait for the writer before `submit` blocks. Default 4096.
    pub queue_capacity: usize,
    /// Most observations folded into one group commit. Default 100 000.
    pub max_group_observations: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            queue_capacity: 4096,
            max_group_observations: 100_000,
        }
    }
}

/// Why a submission was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store refused the commit; nothing of the group was acknowledged.
    #[error("the store could not commit the data: {0}")]
    Store(String),
    /// The node is shutting down and no longer accepts data.
    #[error("the node is shutting down; retry against it once it is back")]
    ShuttingDown,
}

enum Work {
    Batch {
        batch: Batch,
        counters: Arc<SourceCounters>,
        ack: oneshot::Sender<Result<(), IngestError>>,
    },
    DeadLetter {
        letter: NewDeadLetter,
        counters: Arc<SourceCounters>,
        ack: oneshot::Sender<Result<u64, IngestError>>,
    },
}

/// A cheap, cloneable handle sources use to submit data.
#[derive(Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Work>,
    metrics: Arc<Metrics>,
    normalizer: Arc<Normalizer>,
}

/// The running writer. Dropping every [`IngestHandle`] lets it finish; `join` waits.
pub struct Writer {
    thread: Option<thread::JoinHandle<()>>,
}

impl Writer {
    /// Waits for the writer to drain its queue and stop (after every handle is dropped).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the writer thread and returns the handle sources submit through.
pub fn start(
    store: Arc<dyn Store>,
    bus: Bus,
    metrics: Arc<Metrics>,
    normalizer: Normalizer,
    opts: PipelineOptions,
) -> std::io::Result<(IngestHandle, Writer)> {
    let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
    let m = metrics.clone();
    let thread = thread::Builder::new()
        .name("polity-writer".into())
        .spawn(move || writer_loop(rx, store, bus, m, opts.max_group_observations.max(1)))?;
    Ok((
        IngestHandle {
            tx,
            metrics,
            normalizer: Arc::new(normalizer),
        },
        Writer {
            thread: Some(thread),
        },
    ))
}

impl IngestHandle {
    /// Normalizes `batch` (units, privacy) and waits until it is durable.
    /// Waits for queue space first when the writer is behind (backpressure).
    pub async fn submit(
        &self,
        mut batch: Batch,
        counters: &Arc<SourceCounters>,
    ) -> Result<(), IngestError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.normalizer.normalize(&mut batch);
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Work::Batch {
                batch,
                counters: counters.clone(),
                ack,
            })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        done.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// Keeps input that could not be decoded or mapped, with the reason, and counts it.
    /// Returns the dead letter's id once it is durable.
    pub async fn dead_letter(
        &self,
        counters: &Arc<SourceCounters>,
        tenant: Option<Tenant>,
        reason: String,
        content_type: Option<String>,
        payload: Vec<u8>,
    ) -> Result<u64, IngestError> {
        tracing::debug!(source = %counters.name, %reason, bytes = payload.len(), "input rejected to the dead-letter store");
        let letter = NewDeadLetter {
            at: Timestamp::now(),
            tenant,
            source: counters.name.clone(),
            reason,
            content_type,
            payload,
        };
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Work::DeadLetter {
                letter,
                counters: counters.clone(),
                ack,
            })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        done.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// The metrics registry the pipeline counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Submissions waiting for the writer right now.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// A sender waiting for its group to commit: its counters, its observation count, its ack.
type Waiting = (
    Arc<SourceCounters>,
    usize,
    oneshot::Sender<Result<(), IngestError>>,
);

fn writer_loop(
    mut rx: mpsc::Receiver<Work>,
    store: Arc<dyn Store>,
    bus: Bus,
    metrics: Arc<Metrics>,
    max_group: usize,
) {
    let mut batches: Vec<Batch> = Vec::new();
    let mut waiting: Vec<Waiting> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        let mut group_size = 0usize;
        // Take everything already queued, up to the group limit: this is the group commit.
        while let Some(work) = next.take() {
            match work {
                Work::Batch {
                    batch,
                    counters,
                    ack,
                } => {
                    group_size += batch.observations.len();
                    waiting.push((counters, batch.observations.len(), ack));
                    batches.push(batch);
                }
                Work::DeadLetter {
                    letter,
                    counters,
                    ack,
                } => {
                    let tenant = letter.tenant.clone();
                    let r = store
                        .put_dead_letter(letter)
                        .map_err(|e| IngestError::Store(e.to_string()));
                    if r.is_ok() {
                        counters.dead_letters.fetch_add(1, Relaxed);
                        if let Some(t) = &tenant {
                            metrics.add_tenant_dead_letter(t);
                        }
                    } else {
                        counters.errors.fetch_add(1, Relaxed);
                    }
                    let _ = ack.send(r);
                }
            }
            if group_size < max_group {
                next = rx.try_recv().ok();
            }
        }
        if batches.is_empty() {
            continue;
        }
        let started = Instant::now();
        let result = store.commit(&batches);
        metrics
            .commit_micros
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        match result {
            Ok(_) => {
                metrics.commits.fetch_add(1, Relaxed);
                metrics.committed.fetch_add(group_size as u64, Relaxed);
                for b in &batches {
                    metrics.add_tenant(&b.tenant, b.observations.len() as u64);
                }
                for (counters, n, ack) in waiting.drain(..) {
                    counters.committed.fetch_add(n as u64, Relaxed);
                    let _ = ack.send(Ok(()));
                }
                for b in batches.drain(..) {
                    bus.publish(Arc::new(b));
                }
            }
            Err(e) => {
                metrics.commit_failures.fetch_add(1, Relaxed);
                tracing::error!(error = %e, observations = group_size, "group commit failed; senders are told and nothing is acknowledged");
                let msg = e.to_string();
                for (counters, _, ack) in waiting.drain(..) {
                    counters.errors.fetch_add(1, Relaxed);
                    let _ = ack.send(Err(IngestError::Store(msg.clone())));
                }
                batches.clear();
            }
        }
    }
    tracing::info!("writer stopped: every handle was dropped");
}
