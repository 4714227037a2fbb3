//! The NGSI-LD HTTP API (axum): entities, types, temporal, ProblemDetails, and HTTP ingest.
