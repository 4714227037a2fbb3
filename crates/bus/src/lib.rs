//! In-process bus: bounded fan-out of committed batches to sinks.
