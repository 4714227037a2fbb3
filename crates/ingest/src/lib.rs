//! Ingest pipeline: sources (CoAP, MQTT, HTTP), decoders, normalize, batching, group commit and dead letters.
