//! Storage traits (entity state, temporal series, registry, dead letters) and the embedded fjall backend.
