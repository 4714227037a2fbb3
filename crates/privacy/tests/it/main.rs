//! Integration tests of polity-privacy: the mechanisms together, over real key
//! directories, as the ingest pipeline and the erasure route will use them.

mod concurrency;
mod erasure;
