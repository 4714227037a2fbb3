//! The group-committing writer: how HTTP handlers record audit entries without
//! blocking the async runtime.
//!
//! Owns one dedicated std thread that owns the [`AuditLog`]; nothing else touches the
//! log while it runs, so there are no locks. Handlers hold cheap [`AuditWriter`]
//! clones and talk to the thread over a bounded queue, each request with a tokio
//! oneshot for its answer.
//!
//! # Group commit
//!
//! The thread waits for a request, then drains everything already queued (up to
//! [`WriterConfig::max_batch_entries`]), appends all their entries with one
//! [`AuditLog::append_batch`] (one fsync), and only then answers every caller.
//! [`AuditWriter::record`] therefore returns once its entry is durable. Under load
//! many callers share one fsync; idle, a record costs one fsync.
//!
//! # Backpressure
//!
//! The queue holds at most [`WriterConfig::queue_requests`] requests. When it is
//! full, `record` waits for room, which slows the handlers calling it; memory does
//! not grow with load.
//!
//! # No fire-and-forget
//!
//! There is deliberately no `try_record` or detached send: an access to personal data
//! must never be released before its audit entry is durable. A handler awaits
//! [`AuditWriter::record`] and refuses the access if it fails. If a write fails with
//! an I/O error, the writer refuses every later entry ([`WriteError::Failed`]) until
//! the node restarts, so the node fails closed instead of serving unaudited.
//!
//! # Signed heads
//!
//! After a commit the writer publishes a signed tree head when
//! [`WriterConfig::head_every_entries`] entries are not yet covered by one, or when
//! unsigned entries are older than [`WriterConfig::head_every`] (it also wakes on its
//! own for that when idle). The defaults, 16,384 entries or 1 s, keep at most about a
//! second of entries protected only by their stored hashes, at a cost of three fsyncs
//! per head. [`AuditWriter::access_report`] and [`AuditWriter::head`] always answer
//! with a head covering every entry committed before them.
//!
//! # Shutdown
//!
//! When every [`AuditWriter`] clone is dropped, the thread finishes the queued
//! requests, publishes a final head over any unsigned entries and exits;
//! [`WriterHandle::join`] returns the log. A `record` future dropped after its request
//! was queued still gets its entry written.

use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::bundle::ProofBundle;
use crate::head::SignedTreeHead;
use crate::log::{AuditEntry, AuditLog, LogError};

/// How the writer batches and how often it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// Requests that may wait in the queue before callers are made to wait.
    pub queue_requests: usize,
    /// Entries appended with one fsync at most (a single larger `record_many` still
    /// goes in one batch).
    pub max_batch_entries: usize,
    /// Publish a signed head once this many entries are not covered by one.
    pub head_every_entries: u64,
    /// Publish a signed head once unsigned entries have waited this long.
    pub head_every: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_requests: 1024,
            max_batch_entries: 4096,
            head_every_entries: 16_384,
            head_every: Duration::from_secs(1),
        }
    }
}

/// Why an entry could not be recorded or a read answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The writer thread is gone: shut down, or it stopped after an error.
    #[error(
        "the audit writer is not running (shut down, or stopped after an error logged earlier); refuse the access and check the node's logs"
    )]
    Stopped,
    /// An earlier write failed; the writer refuses everything until restarted.
    #[error(
        "the audit log could not be written ({0}); every access needing an audit entry is refused until the disk is fixed and the node restarted"
    )]
    Failed(#[source] Arc<LogError>),
    /// This request was refused; the writer carries on (e.g. an entry too large).
    #[error(transparent)]
    Rejected(Arc<LogError>),
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread: {0}; the system is short of threads or memory")]
    Start(#[source] Arc<std::io::Error>),
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

enum Request {
    Record {
        entries: Vec<AuditEntry>,
        reply: Reply<Range<u64>>,
    },
    Read(Query),
}

enum Query {
    Report {
        subject: String,
        reply: Reply<ProofBundle>,
    },
    Head {
        reply: Reply<SignedTreeHead>,
    },
}

/// A handle for recording audit entries from async code. Cheap to clone; the writer
/// thread stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Request>,
}

/// The writer thread. [`WriterHandle::join`] waits for it after every
/// [`AuditWriter`] is dropped.
#[derive(Debug)]
pub struct WriterHandle {
    thread: JoinHandle<Result<AuditLog, WriteError>>,
}

impl WriterHandle {
    /// Whether the thread has exited (every [`AuditWriter`] dropped and the queue
    /// drained).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread to drain its queue, publish a final head and exit, and
    /// returns the log. Blocks: from async code, call it inside `spawn_blocking`.
    ///
    /// Returns [`WriteError::Failed`] if a write failed while it ran.
    pub fn join(self) -> Result<AuditLog, WriteError> {
        self.thread.join().unwrap_or_else(|_| {
            tracing::error!(message = "the audit writer thread panicked");
            Err(WriteError::Stopped)
        })
    }
}

impl AuditWriter {
    /// Starts the writer thread with the default [`WriterConfig`].
    pub fn start(log: AuditLog) -> Result<(AuditWriter, WriterHandle), WriteError> {
        Self::start_with(log, WriterConfig::default())
    }

    /// Starts the writer thread.
    pub fn start_with(
        log: AuditLog,
        config: WriterConfig,
    ) -> Result<(AuditWriter, WriterHandle), WriteError> {
        let start_err = |e: std::io::Error| WriteError::Start(Arc::new(e));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(start_err)?;
        let (tx, rx) = mpsc::channel(config.queue_requests.max(1));
        let thread = std::thread::Builder::new()
            .name("polity-audit-writer".into())
            .spawn(move || {
                let mut w = Thread::new(log, config);
                runtime.block_on(w.run(rx));
                w.finish()
            })
            .map_err(start_err)?;
        Ok((AuditWriter { tx }, WriterHandle { thread }))
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Records one entry and returns its index once it is durable.
    pub async fn record(&self, entry: AuditEntry) -> Result<u64, WriteError> {
        self.record_many(vec![entry]).await.map(|r| r.start)
    }

    /// Records entries, contiguously and in order, and returns their indices once
    /// they are all durable. Either all are recorded or none.
    pub async fn record_many(&self, entries: Vec<AuditEntry>) -> Result<Range<u64>, WriteError> {
        self.ask(|reply| Request::Record { entries, reply }).await
    }

    /// Every entry about `subject` with inclusion proofs against a signed head that
    /// covers every entry committed before this call ([`AuditLog::access_report`]).
    pub async fn access_report(&self, subject: &str) -> Result<ProofBundle, WriteError> {
        let subject = subject.to_owned();
        self.ask(|reply| Request::Read(Query::Report { subject, reply }))
            .await
    }

    /// A published signed head covering every entry committed before this call
    /// ([`AuditLog::current_head`]).
    pub async fn head(&self) -> Result<SignedTreeHead, WriteError> {
        self.ask(|reply| Request::Read(Query::Head { reply })).await
    }
}

/// The records drained for one group commit.
#[derive(Default)]
struct Batch {
    /// Every caller's entries, in queue order.
    entries: Vec<AuditEntry>,
    /// Each caller's entry count and reply.
    callers: Vec<(usize, Reply<Range<u64>>)>,
}

/// The state of the writer thread.
struct Thread {
    log: AuditLog,
    config: WriterConfig,
    failed: Option<Arc<LogError>>,
    /// When the last head was published (or the writer started).
    last_head: Instant,
}

impl Thread {
    fn new(log: AuditLog, config: WriterConfig) -> Self {
        Thread {
            log,
            config,
            failed: None,
            last_head: Instant::now(),
        }
    }

    fn unsigned(&self) -> u64 {
        self.log.len() - self.log.latest_head().map_or(0, |h| h.tree_size)
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<Request>) {
        tracing::info!(message = "audit writer started", entries = self.log.len());
        let mut batch = Batch::default();
        let mut queries = Vec::new();
        loop {
            let first = if self.unsigned() > 0 && self.failed.is_none() {
                let deadline = self.last_head + self.config.head_every;
                match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                    Ok(r) => r,
                    Err(_elapsed) => {
                        self.publish_head();
                        continue;
                    }
                }
            } else {
                rx.recv().await
            };
            let Some(first) = first else { break };
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req {
                    Request::Record { mut entries, reply } => {
                        batch.callers.push((entries.len(), reply));
                        batch.entries.append(&mut entries);
                    }
                    Request::Read(q) => queries.push(q),
                }
                if batch.entries.len() < self.config.max_batch_entries {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(&mut batch);
            for q in queries.drain(..) {
                self.answer(q);
            }
        }
    }

    /// Appends every queued record with one fsync, then answers their callers.
    fn commit(&mut self, batch: &mut Batch) {
        if batch.callers.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut batch.entries);
        let callers = batch.callers.drain(..);
        if let Some(cause) = &self.failed {
            for (_, reply) in callers {
                let _ = reply.send(Err(WriteError::Failed(cause.clone())));
            }
            return;
        }
        match self.log.append_batch(&entries) {
            Ok(range) => {
                tracing::trace!(
                    message = "audit group committed",
                    entries = entries.len(),
                    callers = callers.len()
                );
                let mut at = range.start;
                for (n, reply) in callers {
                    let end = at + n as u64;
                    let _ = reply.send(Ok(at..end));
                    at = end;
                }
            }
            Err(LogError::EntryTooLarge { .. }) => {
                // Nothing was written; retry each caller alone so only the offender
                // is refused.
                let mut at = 0;
                for (n, reply) in callers {
                    let mine = entries.get(at..at + n).unwrap_or_default();
                    at += n;
                    let answer = match self.failed.clone() {
                        Some(cause) => Err(WriteError::Failed(cause)),
                        None => match self.log.append_batch(mine) {
                            Ok(r) => Ok(r),
                            Err(e @ LogError::EntryTooLarge { .. }) => {
                                Err(WriteError::Rejected(Arc::new(e)))
                            }
                            Err(e) => Err(self.fail(e)),
                        },
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                let err = self.fail(e);
                for (_, reply) in callers {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
        // Reuse the allocation for the next group.
        batch.entries = entries;
        batch.entries.clear();
        let unsigned = self.unsigned();
        if unsigned >= self.config.head_every_entries
            || (unsigned > 0 && self.last_head.elapsed() >= self.config.head_every)
        {
            self.publish_head();
        }
    }

    fn answer(&mut self, query: Query) {
        let failed = self.failed.clone().map(WriteError::Failed);
        match query {
            Query::Report { subject, reply } => {
                let answer = match failed {
                    Some(e) => Err(e),
                    None => self.with_head(|log| log.access_report(&subject)),
                };
                let _ = reply.send(answer);
            }
            Query::Head { reply } => {
                let answer = match failed {
                    Some(e) => Err(e),
                    None => self.with_head(AuditLog::current_head),
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Runs a read that may publish a head, noting the publication time.
    fn with_head<T>(
        &mut self,
        read: impl FnOnce(&mut AuditLog) -> Result<T, LogError>,
    ) -> Result<T, WriteError> {
        let before = self.unsigned();
        let out = read(&mut self.log);
        if before > 0 && self.unsigned() == 0 {
            self.last_head = Instant::now();
        }
        out.map_err(|e| match e {
            LogError::Io { .. } => self.fail(e),
            other => WriteError::Rejected(Arc::new(other)),
        })
    }

    fn publish_head(&mut self) {
        match self.log.publish_head() {
            Ok(head) => {
                self.last_head = Instant::now();
                tracing::debug!(message = "audit head published", tree_size = head.tree_size);
            }
            Err(e) => {
                self.fail(e);
            }
        }
    }

    /// Marks the writer failed: it refuses everything from now on.
    fn fail(&mut self, e: LogError) -> WriteError {
        tracing::error!(
            message = "audit log write failed; refusing every further audit entry until restart",
            error = %e
        );
        let cause = Arc::new(e);
        self.failed = Some(cause.clone());
        WriteError::Failed(cause)
    }

    /// After the queue closed: sign whatever is unsigned and hand the log back.
    fn finish(mut self) -> Result<AuditLog, WriteError> {
        if self.failed.is_none() && self.unsigned() > 0 {
            self.publish_head();
        }
        if let Some(cause) = self.failed {
            return Err(WriteError::Failed(cause));
        }
        tracing::info!(message = "audit writer stopped", entries = self.log.len());
        Ok(self.log)
    }
}
