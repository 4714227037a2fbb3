//! Decoders: device payloads (SenML JSON/CBOR, Polity device JSON) → [`Observation`]s.
//!
//! Decoders are pure functions of the payload bytes and a [`DecodeContext`] (tenant,
//! defaults from the source's config, the receive time). They do no I/O, hold no state
//! and never panic: every rejected payload gives a [`DecodeError`] whose message tells
//! the device owner what is wrong and what to send instead. The sources (CoAP, MQTT)
//! choose the decoder, and put rejected payloads in the dead-letter store with that
//! message as the reason. Decoders do not normalize units (the pipeline's `normalize`
//! transform does) and do not touch storage.
//!
//! | module | format |
//! |---|---|
//! | [`senml`] | SenML (RFC 8428) packs, JSON and CBOR |
//! | [`json`] | Polity device JSON: flat objects, one per entity |

pub mod json;
pub mod senml;

use std::sync::Arc;

use polity_model::{EntityId, Observation, PrivacyClass, SenmlError, Tenant, Timestamp};

pub use json::decode_json;
pub use senml::{decode_senml_cbor, decode_senml_json};

/// Largest payload any decoder accepts, in bytes (1 MiB). Transports have their own,
/// usually smaller, limits.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// Most observations one message may carry. Larger messages are rejected whole, so the
/// sender learns to split them instead of losing the tail.
pub const MAX_OBSERVATIONS: usize = 10_000;

/// What a decoder needs besides the bytes.
#[derive(Debug, Clone)]
pub struct DecodeContext {
    /// The city the data belongs to.
    pub tenant: Tenant,
    /// Entity type to use when the payload does not give one (a short term such as
    /// `TrafficFlowObserved`, or an IRI). From the source's config.
    pub entity_type: Option<Arc<str>>,
    /// Prefix that turns a bare device id (`dev42`) into an entity id
    /// (`urn:ngsi-ld:TrafficFlowObserved:dev42`). From the source's config.
    pub id_prefix: Option<String>,
    /// When the message was received: the default observation time, and the reference
    /// for SenML relative times.
    pub now: Timestamp,
    /// Privacy class given to every observation (the normalizer may raise it).
    pub privacy: PrivacyClass,
}

impl DecodeContext {
    /// A context for `tenant` at `now`, with no defaults and public data.
    pub fn new(tenant: Tenant, now: Timestamp) -> Self {
        DecodeContext {
            tenant,
            entity_type: None,
            id_prefix: None,
            now,
            privacy: PrivacyClass::Public,
        }
    }
}

/// The payload formats Polity decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Polity device JSON (`application/json`), see [`json`].
    Json,
    /// SenML JSON (`application/senml+json`).
    SenmlJson,
    /// SenML CBOR (`application/senml+cbor`).
    SenmlCbor,
}

impl Format {
    /// The media type of the format, as recorded with dead letters.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::SenmlJson => "application/senml+json",
            Format::SenmlCbor => "application/senml+cbor",
        }
    }

    /// Guesses the format from the payload, for transports without content types.
    ///
    /// A CBOR array (first byte 0x80–0x9f) is SenML CBOR. JSON starting with `{` is
    /// device JSON. A JSON array is device JSON when its first element has an `"id"`
    /// key (SenML records never do) and SenML JSON otherwise. Anything else is treated
    /// as device JSON, whose decoder then explains what is wrong.
    pub fn detect(payload: &[u8]) -> Format {
        let Some(pos) = payload.iter().position(|b| !b.is_ascii_whitespace()) else {
            return Format::Json;
        };
        let body = &payload[pos..];
        match body[0] {
            0x80..=0x9f => Format::SenmlCbor,
            b'[' => {
                let after = body[1..].iter().find(|b| !b.is_ascii_whitespace());
                // Device JSON arrays hold objects with an `"id"`; SenML records never do.
                if after == Some(&b'{') && first_object_has_id(body) {
                    Format::Json
                } else {
                    Format::SenmlJson
                }
            }
            _ => Format::Json,
        }
    }
}

/// Whether the first object of a JSON array has a top-level `"id"` key. Parses at most
/// the first element; malformed input answers `false`.
fn first_object_has_id(body: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(body);
    struct First(bool);
    impl<'de> serde::Deserialize<'de> for First {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = First;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an array")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<First, A::Error> {
                    let first: Option<serde_json::Map<String, serde_json::Value>> =
                        seq.next_element()?;
                    // Skip the rest without building it.
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                    Ok(First(first.is_some_and(|m| m.contains_key("id"))))
                }
            }
            d.deserialize_seq(V)
        }
    }
    <First as serde::Deserialize>::deserialize(&mut de)
        .map(|f| f.0)
        .unwrap_or(false)
}

/// Decodes `payload` in `format`.
pub fn decode(
    format: Format,
    payload: &[u8],
    ctx: &DecodeContext,
) -> Result<Vec<polity_model::Observation>, DecodeError> {
    match format {
        Format::Json => decode_json(payload, ctx),
        Format::SenmlJson => decode_senml_json(payload, ctx),
        Format::SenmlCbor => decode_senml_cbor(payload, ctx),
    }
}

/// Why a payload was rejected. Messages are written for the device owner.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is larger than [`MAX_PAYLOAD`].
    #[error("payload is {size} bytes; at most {max} bytes are accepted per message, so split it")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The payload would give more than [`MAX_OBSERVATIONS`] observations.
    #[error("message carries more than {max} values; split it into smaller messages")]
    TooManyObservations {
        /// The limit.
        max: usize,
    },
    /// The payload carries no data at all.
    #[error("message carries no values; send at least one record or attribute")]
    Empty,
    /// The SenML pack itself is malformed.
    #[error("{0}")]
    Senml(#[from] SenmlError),
    /// A resolved SenML record cannot be mapped to an entity attribute.
    #[error("SenML record {record} (`{name}`): {problem}")]
    SenmlRecord {
        /// The record, counting from 1.
        record: usize,
        /// Its resolved name (clipped).
        name: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The bytes are not JSON.
    #[error(
        "not valid JSON: {0}; send one JSON object (or an array of objects) such as {{\"id\":\"urn:ngsi-ld:TrafficFlowObserved:dev42\",\"type\":\"TrafficFlowObserved\",\"intensity\":12}}"
    )]
    Json(String),
    /// A value is stamped too far in the future (a device clock is wrong).
    #[error(
        "`{name}` is stamped {at}, more than 10 minutes after the time of receipt {now}; fix the device clock or send the time of observation"
    )]
    FutureTime {
        /// The attribute (expanded IRI) or record name.
        name: String,
        /// Its time.
        at: Timestamp,
        /// The time of receipt.
        now: Timestamp,
    },
    /// The JSON is valid but not objects.
    #[error("device JSON must be an object or an array of objects, not {0}")]
    NotAnObject(&'static str),
    /// A key of a device JSON object is wrong.
    #[error("object {object}, key `{key}`: {problem}")]
    Field {
        /// The object, counting from 1.
        object: usize,
        /// The key (clipped).
        key: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

/// Clips user text for error messages.
pub(crate) fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(96).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Expands a term (attribute or type name) against the built-in NGSI-LD core context.
/// Absolute IRIs are kept as they are.
pub fn expand(term: &str) -> Arc<str> {
    Arc::from(
        polity_model::jsonld::Context::core()
            .expand_term(term)
            .as_ref(),
    )
}

/// The entity type encoded in an `urn:ngsi-ld:<Type>:<local>` id, if any.
pub fn type_from_urn(id: &EntityId) -> Option<&str> {
    let rest = id.as_str().strip_prefix("urn:ngsi-ld:")?;
    let (ty, local) = rest.split_once(':')?;
    (!ty.is_empty() && !local.is_empty()).then_some(ty)
}

/// Resolves an id from a payload: an absolute URI as it is, otherwise `id_prefix` + id
/// when the source has a prefix. `Err` carries what to fix.
pub(crate) fn resolve_id(raw: &str, ctx: &DecodeContext) -> Result<EntityId, String> {
    if polity_model::id::is_absolute_uri(raw) {
        return EntityId::new(raw).map_err(|e| e.to_string());
    }
    match &ctx.id_prefix {
        Some(prefix) => EntityId::new(&format!("{prefix}{raw}")).map_err(|e| e.to_string()),
        None => Err(format!(
            "`{}` is not a URI; send a URN such as urn:ngsi-ld:TrafficFlowObserved:dev42, or set `id_prefix` on the source so bare device ids are accepted",
            clip(raw)
        )),
    }
}

/// Rejects a message any of whose values is stamped more than
/// [`polity_model::time::MAX_FUTURE_SKEW_MS`] after `now`.
pub(crate) fn not_in_future(
    obs: Vec<Observation>,
    now: Timestamp,
) -> Result<Vec<Observation>, DecodeError> {
    let limit = Timestamp::from_millis(
        now.as_millis()
            .saturating_add(polity_model::time::MAX_FUTURE_SKEW_MS),
    );
    match obs.iter().find(|o| o.observed_at > limit) {
        Some(o) => Err(DecodeError::FutureTime {
            name: o.attr.to_string(),
            at: o.observed_at,
            now,
        }),
        None => Ok(obs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats() {
        assert_eq!(Format::detect(b"  {\"id\":\"x\"}"), Format::Json);
        assert_eq!(
            Format::detect(b"[{\"id\":\"urn:a:b\"},{\"n\":1}]"),
            Format::Json
        );
        assert_eq!(
            Format::detect(b"[{\"bn\":\"urn:a:\",\"n\":\"t\",\"v\":1}]"),
            Format::SenmlJson
        );
        assert_eq!(
            Format::detect(&[0x81, 0xa1, 0x00, 0x61, 0x74]),
            Format::SenmlCbor
        );
        assert_eq!(Format::detect(b""), Format::Json);
        assert_eq!(Format::detect(b"[1,2"), Format::SenmlJson);
    }

    #[test]
    fn urn_types() {
        let id = EntityId::new("urn:ngsi-ld:TrafficFlowObserved:melbourne-42").unwrap();
        assert_eq!(type_from_urn(&id), Some("TrafficFlowObserved"));
        assert_eq!(
            type_from_urn(&EntityId::new("urn:ngsi-ld:X").unwrap()),
            None
        );
        assert_eq!(
            type_from_urn(&EntityId::new("https://e.org/a").unwrap()),
            None
        );
    }
}
