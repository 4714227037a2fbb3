//! What a sender sends next: backfilled history first, then live readings as devices
//! fall due, with faults applied and a bounded queue.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    sync::Arc,
    time::Instant,
};

use polity_model::Timestamp;

use crate::{
    fault::{self, Fault},
    nation::City,
    prng,
    reading::Reading,
};

use super::{SendOptions, SenderStats};

/// When each device is next due, in milliseconds since the schedule started.
struct Schedule {
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    interval_ms: f64,
    jitter: f64,
    start: Instant,
    round: u64,
}

impl Schedule {
    fn new(city: &City, opts: &SendOptions) -> Self {
        let interval_ms = opts.report_interval.as_secs_f64().max(0.001) * 1000.0;
        // Devices start spread evenly over the first interval, in a stable random order.
        let heap = city
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| Reverse(((prng::unit(&[d.key, 1]) * interval_ms) as u64, i)))
            .collect();
        Schedule {
            heap,
            interval_ms,
            jitter: opts.jitter.clamp(0.0, 0.99),
            start: Instant::now(),
            round: 0,
        }
    }

    /// Pops every device due by now, reschedules it, and hands its index to `due`.
    fn poll(&mut self, city: &City, mut due: impl FnMut(usize)) {
        let now = self.start.elapsed().as_millis() as u64;
        while let Some(&Reverse((at, i))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            self.round = self.round.wrapping_add(1);
            let j = 1.0 + self.jitter * prng::noise(&[city.devices[i].key, at, self.round]);
            let step = (self.interval_ms * j).max(1.0) as u64;
            // A sender that fell behind does not replay every missed report.
            let next = if at + step > now {
                at + step
            } else {
                now + step
            };
            self.heap.push(Reverse((next, i)));
            due(i);
        }
    }
}

/// Backfill position: `step` counts down to 1, `device` runs over the city.
struct Backfill {
    now_ms: i64,
    step_ms: i64,
    step: i64,
    device: usize,
}

/// The stream of readings one sender sends.
pub(crate) struct Source {
    city: Arc<City>,
    stats: Arc<SenderStats>,
    schedule: Schedule,
    backfill: Option<Backfill>,
    pending: VecDeque<(usize, Timestamp)>,
    limit: usize,
}

impl Source {
    pub(crate) fn new(city: Arc<City>, opts: &SendOptions, stats: Arc<SenderStats>) -> Self {
        let step_ms = (opts.backfill_step.as_millis() as i64).max(1000);
        let steps = (opts.backfill_hours.max(0.0) * 3_600_000.0 / step_ms as f64).floor() as i64;
        let backfill = (steps > 0 && !city.devices.is_empty()).then(|| Backfill {
            now_ms: Timestamp::now().as_millis(),
            step_ms,
            step: steps,
            device: 0,
        });
        Source {
            schedule: Schedule::new(&city, opts),
            city,
            stats,
            backfill,
            pending: VecDeque::new(),
            limit: opts.queue_limit.max(1),
        }
    }

    /// Queues every device that is due now.
    pub(crate) fn poll_due(&mut self) {
        let now = Timestamp::now();
        let (pending, limit, stats) = (&mut self.pending, self.limit, &self.stats);
        self.schedule.poll(&self.city, |i| {
            if pending.len() >= limit {
                pending.pop_front();
                SenderStats::add(&stats.dropped, 1);
            }
            pending.push_back((i, now));
        });
    }

    /// Whether anything is waiting to be sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.backfill.is_none() && self.pending.is_empty()
    }

    /// Up to `max` readings with their faults: backfill first, then due devices.
    pub(crate) fn take(&mut self, max: usize) -> Vec<(Reading, Option<Fault>)> {
        let mut out = Vec::with_capacity(max.min(256));
        while out.len() < max {
            let (i, t) = if let Some(b) = &mut self.backfill {
                let d = &self.city.devices[b.device];
                let offset = (d.key % b.step_ms as u64) as i64;
                let t = Timestamp::from_millis(b.now_ms - b.step * b.step_ms + offset);
                let i = b.device;
                b.device += 1;
                if b.device == self.city.devices.len() {
                    b.device = 0;
                    b.step -= 1;
                    if b.step == 0 {
                        self.backfill = None;
                    }
                }
                (i, t)
            } else if let Some(x) = self.pending.pop_front() {
                x
            } else {
                break;
            };
            let d = &self.city.devices[i];
            let r = self.city.reading(d, t);
            let f = fault::fault_of(&self.city, d, &r);
            if f.is_some() {
                SenderStats::add(&self.stats.faults, 1);
            }
            out.push((r, f));
        }
        out
    }

    /// Puts readings back at the front (a request that could not be delivered).
    pub(crate) fn requeue(&mut self, readings: &[(Reading, Option<Fault>)]) {
        // Readings are recomputed from (device, time), so only the keys go back; faults
        // are a pure function of those too.
        let index: std::collections::HashMap<&str, usize> = self
            .city
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| (&*d.id, i))
            .collect();
        for (r, _) in readings.iter().rev() {
            if let Some(&i) = index.get(&*r.device) {
                if self.pending.len() >= self.limit {
                    SenderStats::add(&self.stats.dropped, 1);
                    continue;
                }
                self.pending.push_front((i, r.observed_at));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nation::NationSpec;
    use std::time::Duration;

    #[test]
    fn backfill_comes_first_then_live_readings() {
        let city = Arc::new(NationSpec::demo(12).build().remove(0));
        let opts = SendOptions {
            backfill_hours: 1.0,
            report_interval: Duration::from_millis(1),
            ..SendOptions::default()
        };
        let stats = Arc::new(SenderStats::default());
        let mut s = Source::new(city, &opts, stats);
        let first = s.take(1000);
        assert_eq!(first.len(), 4 * 12);
        // Oldest step first; within a step each device at its own offset.
        assert!(first[0].0.observed_at < first[47].0.observed_at);
        assert!(
            first[..12]
                .iter()
                .all(|(r, _)| r.observed_at < first[12].0.observed_at)
        );
        assert!(s.is_empty());
        std::thread::sleep(Duration::from_millis(5));
        s.poll_due();
        let live = s.take(1000);
        assert_eq!(
            live.len(),
            12,
            "each device due once after its first interval"
        );
        let now = Timestamp::now().as_millis();
        assert!(
            live.iter()
                .all(|(r, _)| now - r.observed_at.as_millis() < 1000)
        );
    }

    #[test]
    fn queue_is_bounded_and_sheds_the_oldest() {
        let city = Arc::new(NationSpec::demo(50).build().remove(1));
        let opts = SendOptions {
            backfill_hours: 0.0,
            report_interval: Duration::from_millis(1),
            queue_limit: 10,
            ..SendOptions::default()
        };
        let stats = Arc::new(SenderStats::default());
        let mut s = Source::new(city, &opts, stats.clone());
        std::thread::sleep(Duration::from_millis(5));
        s.poll_due();
        assert_eq!(s.take(1000).len(), 10);
        assert_eq!(stats.snapshot().dropped, 40);
    }
}
