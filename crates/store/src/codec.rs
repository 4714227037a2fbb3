//! The on-disk byte layout of the embedded backend: order-preserving keys and compact,
//! versioned values.
//!
//! This module owns every byte the fjall backend writes. It does no I/O. Decoding never
//! panics: any malformed input gives a [`DecodeError`], which the backend turns into a
//! [`crate::StoreError::Corrupt`] naming the key.
//!
//! Keys are built from components that sort the way the values they encode sort:
//! strings are escaped (`00` becomes `00 FF`) and terminated by `00 00`, so a shorter
//! string sorts before its extensions and any byte may appear in a name; timestamps are
//! big-endian with the sign bit flipped, so negative times sort before positive ones.

use std::sync::Arc;

use polity_model::{EntityId, Observation, PrivacyClass, Tenant, Timestamp, UnitCode, Value};

/// Malformed bytes: what was expected where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

impl DecodeError {
    fn new(what: impl Into<String>) -> Self {
        DecodeError(what.into())
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type DResult<T> = Result<T, DecodeError>;

/// The value format version written as the first byte of every value.
pub(crate) const VALUE_VERSION: u8 = 1;

/// The format of entity values: 2 adds further types, scope and each attribute
/// instance's createdAt/modifiedAt. Format 1 entity values still read.
pub(crate) const ENTITY_VERSION: u8 = 2;

/// The bit of the privacy byte that says the observation had no `observedAt`.
const IMPLICIT_TIME: u8 = 0x80;

// ---------------------------------------------------------------------------------------
// Primitive writers and a bounds-checked reader.

pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(crate) fn put_i64(buf: &mut Vec<u8>, v: i64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

pub(crate) fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_bytes(buf, s.as_bytes());
}

pub(crate) fn put_opt_str(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            put_str(buf, s);
        }
    }
}

/// A cursor over a byte slice whose every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn u8(&mut self) -> DResult<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| DecodeError::new("unexpected end of record"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> DResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| DecodeError::new("a length runs past the end of the record"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> DResult<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn varint(&mut self) -> DResult<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::new("varint longer than 10 bytes"))
    }

    pub(crate) fn len(&mut self) -> DResult<usize> {
        let n = self.varint()?;
        let n =
            usize::try_from(n).map_err(|_| DecodeError::new("length does not fit in memory"))?;
        if n > self.buf.len().saturating_sub(self.pos) {
            return Err(DecodeError::new("a length runs past the end of the record"));
        }
        Ok(n)
    }

    pub(crate) fn i64(&mut self) -> DResult<i64> {
        Ok(i64::from_le_bytes(self.array::<8>()?))
    }

    pub(crate) fn bytes(&mut self) -> DResult<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    pub(crate) fn str(&mut self) -> DResult<&'a str> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| DecodeError::new("text is not UTF-8"))
    }

    pub(crate) fn opt_str(&mut self) -> DResult<Option<&'a str>> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            t => Err(DecodeError::new(format!(
                "option tag {t} is neither 0 nor 1"
            ))),
        }
    }

    pub(crate) fn timestamp(&mut self) -> DResult<Timestamp> {
        let ms = self.i64()?;
        let t = Timestamp::from_millis(ms);
        if t.as_millis() != ms {
            return Err(DecodeError::new(format!(
                "time {ms} ms is outside years 1 to 9999"
            )));
        }
        Ok(t)
    }

    pub(crate) fn finish(&self) -> DResult<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::new(format!(
                "{} unexpected bytes after the end of the record",
                self.buf.len() - self.pos
            )))
        }
    }

    pub(crate) fn version(&mut self) -> DResult<()> {
        match self.u8()? {
            VALUE_VERSION => Ok(()),
            v => Err(DecodeError::new(format!(
                "record format {v} is not known to this build (it reads format {VALUE_VERSION}); \
                 was the data directory written by a newer polity?"
            ))),
        }
    }

    // Key components.

    /// An escaped, terminated key string (see the module docs).
    pub(crate) fn key_str(&mut self) -> DResult<String> {
        let mut out = Vec::new();
        loop {
            let b = self.u8()?;
            if b != 0 {
                out.push(b);
                continue;
            }
            match self.u8()? {
                0x00 => break,
                0xFF => out.push(0),
                x => {
                    return Err(DecodeError::new(format!(
                        "bad escape 00 {x:02X} in a key string"
                    )));
                }
            }
        }
        String::from_utf8(out).map_err(|_| DecodeError::new("key text is not UTF-8"))
    }

    pub(crate) fn key_time(&mut self) -> DResult<Timestamp> {
        let raw = u64::from_be_bytes(self.array::<8>()?);
        let ms = (raw ^ (1 << 63)) as i64;
        let t = Timestamp::from_millis(ms);
        if t.as_millis() != ms {
            return Err(DecodeError::new(format!(
                "time {ms} ms is outside years 1 to 9999"
            )));
        }
        Ok(t)
    }

    pub(crate) fn key_u64(&mut self) -> DResult<u64> {
        Ok(u64::from_be_bytes(self.array::<8>()?))
    }

    pub(crate) fn key_tenant(&mut self) -> DResult<Tenant> {
        let s = self.key_str()?;
        Tenant::new(&s).map_err(|e| DecodeError::new(e.to_string()))
    }

    pub(crate) fn key_entity(&mut self) -> DResult<EntityId> {
        let s = self.key_str()?;
        EntityId::new(&s).map_err(|e| DecodeError::new(e.to_string()))
    }
}

// ---------------------------------------------------------------------------------------
// Key components.

pub(crate) fn put_key_str(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        if b == 0 {
            buf.extend_from_slice(&[0, 0xFF]);
        } else {
            buf.push(b);
        }
    }
    buf.extend_from_slice(&[0, 0]);
}

pub(crate) fn key_time_bytes(t: Timestamp) -> [u8; 8] {
    ((t.as_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

/// `tenant ‖ entity`: the key of an entity's record.
pub(crate) fn entity_key(tenant: &Tenant, id: &EntityId) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.as_str().len() + id.as_str().len() + 4);
    put_entity_key(&mut k, tenant, id);
    k
}

/// Appends `tenant ‖ entity` to `buf`.
pub(crate) fn put_entity_key(buf: &mut Vec<u8>, tenant: &Tenant, id: &EntityId) {
    put_key_str(buf, tenant.as_str());
    put_key_str(buf, id.as_str());
}

pub(crate) fn tenant_prefix(tenant: &Tenant) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.as_str().len() + 2);
    put_key_str(&mut k, tenant.as_str());
    k
}

/// `series id ‖ time`: one point of a series. The id is big-endian, the time as in
/// [`key_time_bytes`], so a series' points are contiguous and in time order.
pub(crate) fn point_key(series: u64, t: Timestamp) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&series.to_be_bytes());
    k[8..].copy_from_slice(&key_time_bytes(t));
    k
}

/// Splits a point key into its series id and time.
pub(crate) fn decode_point_key(k: &[u8]) -> DResult<(u64, Timestamp)> {
    let mut r = Reader::new(k);
    let id = r.key_u64()?;
    let t = r.key_time()?;
    r.finish()?;
    Ok((id, t))
}

/// What a series id stands for: one attribute instance of one entity of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesIdentity {
    pub(crate) tenant: Tenant,
    pub(crate) entity: EntityId,
    pub(crate) attr: String,
    pub(crate) dataset_id: Option<String>,
}

/// A `series_ids` value: `version ‖ tenant ‖ entity ‖ attr ‖ datasetId`, appended to
/// `buf`. (The key is the id, big-endian.)
pub(crate) fn put_series_identity(
    buf: &mut Vec<u8>,
    tenant: &Tenant,
    entity: &EntityId,
    attr: &str,
    dataset_id: Option<&str>,
) {
    buf.push(VALUE_VERSION);
    put_str(buf, tenant.as_str());
    put_str(buf, entity.as_str());
    put_str(buf, attr);
    put_opt_str(buf, dataset_id);
}

pub(crate) fn decode_series_identity(v: &[u8]) -> DResult<SeriesIdentity> {
    let mut r = Reader::new(v);
    r.version()?;
    let tenant = Tenant::new(r.str()?).map_err(|e| DecodeError::new(e.to_string()))?;
    let entity = EntityId::new(r.str()?).map_err(|e| DecodeError::new(e.to_string()))?;
    let attr = r.str()?.to_owned();
    let dataset_id = r.opt_str()?.map(str::to_owned);
    r.finish()?;
    Ok(SeriesIdentity {
        tenant,
        entity,
        attr,
        dataset_id,
    })
}

pub(crate) fn decode_entity_key(k: &[u8]) -> DResult<(Tenant, EntityId)> {
    let mut r = Reader::new(k);
    let t = r.key_tenant()?;
    let e = r.key_entity()?;
    r.finish()?;
    Ok((t, e))
}

/// `tenant ‖ device id`.
pub(crate) fn device_key(tenant: &Tenant, device_id: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    put_key_str(&mut k, device_id);
    k
}

pub(crate) fn decode_device_key(k: &[u8]) -> DResult<(Tenant, String)> {
    let mut r = Reader::new(k);
    let t = r.key_tenant()?;
    let d = r.key_str()?;
    r.finish()?;
    Ok((t, d))
}

/// `kind ‖ tenant ‖ id`: one document (a subscription, a registration, …).
pub(crate) fn document_key(kind: &str, tenant: &Tenant, id: &str) -> Vec<u8> {
    let mut k = document_prefix(kind);
    put_key_str(&mut k, tenant.as_str());
    put_key_str(&mut k, id);
    k
}

/// `kind`: the prefix of every document of that kind.
pub(crate) fn document_prefix(kind: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + 2);
    put_key_str(&mut k, kind);
    k
}

pub(crate) fn decode_document_key(k: &[u8]) -> DResult<(String, Tenant, String)> {
    let mut r = Reader::new(k);
    let kind = r.key_str()?;
    let t = r.key_tenant()?;
    let id = r.key_str()?;
    r.finish()?;
    Ok((kind, t, id))
}

// ---------------------------------------------------------------------------------------
// Observation payload: value, unit, privacy, meta.

const V_NUMBER: u8 = 0;
const V_BOOL: u8 = 1;
const V_TEXT: u8 = 2;
const V_REL: u8 = 3;
const V_GEO: u8 = 4;
const V_JSON: u8 = 5;
const V_LANG: u8 = 6;
const V_VOCAB: u8 = 7;
const V_JSONPROP: u8 = 8;
const V_LIST: u8 = 9;
const V_LISTREL: u8 = 10;

/// The parts of an observation that are not in its key.
#[derive(Debug)]
pub(crate) struct Payload {
    pub(crate) value: Value,
    pub(crate) unit: Option<UnitCode>,
    pub(crate) privacy: PrivacyClass,
    pub(crate) observed: bool,
    pub(crate) meta: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

pub(crate) fn put_payload(buf: &mut Vec<u8>, o: &Observation) {
    match &o.value {
        Value::Number(n) => {
            buf.push(V_NUMBER);
            buf.extend_from_slice(&n.to_bits().to_le_bytes());
        }
        Value::Bool(b) => {
            buf.push(V_BOOL);
            buf.push(u8::from(*b));
        }
        Value::Text(s) => {
            buf.push(V_TEXT);
            put_str(buf, s);
        }
        Value::Relationship(id) => {
            buf.push(V_REL);
            put_str(buf, id.as_str());
        }
        Value::Geo(j) => {
            buf.push(V_GEO);
            put_cbor(buf, j);
        }
        Value::Json(j) => {
            buf.push(V_JSON);
            put_cbor(buf, j);
        }
        Value::LanguageMap(j) => {
            buf.push(V_LANG);
            put_cbor(buf, j);
        }
        Value::Vocab(j) => {
            buf.push(V_VOCAB);
            put_cbor(buf, j);
        }
        Value::JsonValue(j) => {
            buf.push(V_JSONPROP);
            put_cbor(buf, j);
        }
        Value::List(j) => {
            buf.push(V_LIST);
            put_cbor(buf, j);
        }
        Value::ListRelationship(j) => {
            buf.push(V_LISTREL);
            put_cbor(buf, j);
        }
    }
    match o.unit {
        None => buf.push(0),
        Some(u) => put_str(buf, u.as_str()),
    }
    buf.push(o.privacy.code() | if o.observed { 0 } else { IMPLICIT_TIME });
    match &o.meta {
        None => buf.push(0),
        Some(m) => {
            buf.push(1);
            put_cbor(buf, &**m);
        }
    }
}

/// Structured values are stored as CBOR, not JSON text: serde_json's parser (without
/// its `float_roundtrip` feature) can be one ulp off on a float, and a stored coordinate
/// must read back exactly.
fn put_cbor<T: serde::Serialize>(buf: &mut Vec<u8>, v: &T) {
    let mut c = Vec::new();
    if ciborium::into_writer(v, &mut c).is_err() {
        // Serializing JSON values into memory cannot fail; store `null` if it ever does.
        c = vec![0xf6];
    }
    put_bytes(buf, &c);
}

fn cbor(b: &[u8]) -> DResult<serde_json::Value> {
    ciborium::from_reader(b)
        .map_err(|e| DecodeError::new(format!("stored structured value does not decode: {e}")))
}

pub(crate) fn get_payload(r: &mut Reader<'_>) -> DResult<Payload> {
    let value = match r.u8()? {
        V_NUMBER => Value::Number(f64::from_bits(u64::from_le_bytes(r.array::<8>()?))),
        V_BOOL => match r.u8()? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => {
                return Err(DecodeError::new(format!(
                    "boolean byte {b} is neither 0 nor 1"
                )));
            }
        },
        V_TEXT => Value::Text(Arc::from(r.str()?)),
        V_REL => Value::Relationship(
            EntityId::new(r.str()?).map_err(|e| DecodeError::new(e.to_string()))?,
        ),
        V_GEO => Value::Geo(Arc::new(cbor(r.bytes()?)?)),
        V_JSON => Value::Json(Arc::new(cbor(r.bytes()?)?)),
        V_LANG => Value::LanguageMap(Arc::new(cbor(r.bytes()?)?)),
        V_VOCAB => Value::Vocab(Arc::new(cbor(r.bytes()?)?)),
        V_JSONPROP => Value::JsonValue(Arc::new(cbor(r.bytes()?)?)),
        V_LIST => Value::List(Arc::new(cbor(r.bytes()?)?)),
        V_LISTREL => Value::ListRelationship(Arc::new(cbor(r.bytes()?)?)),
        t => return Err(DecodeError::new(format!("unknown value kind {t}"))),
    };
    let unit = match r.str()? {
        "" => None,
        s => Some(UnitCode::new(s).map_err(|e| DecodeError::new(e.to_string()))?),
    };
    let flags = r.u8()?;
    let privacy = match flags & !IMPLICIT_TIME {
        c @ 0..=2 => PrivacyClass::from_code(c),
        c => return Err(DecodeError::new(format!("unknown privacy class {c}"))),
    };
    let observed = flags & IMPLICIT_TIME == 0;
    let meta = match r.u8()? {
        0 => None,
        1 => match cbor(r.bytes()?)? {
            serde_json::Value::Object(m) => Some(Arc::new(m)),
            _ => return Err(DecodeError::new("attribute metadata is not a JSON object")),
        },
        t => {
            return Err(DecodeError::new(format!(
                "metadata tag {t} is neither 0 nor 1"
            )));
        }
    };
    Ok(Payload {
        value,
        unit,
        privacy,
        observed,
        meta,
    })
}

/// The format of series values: 2 adds when the point was recorded (committed), for
/// NGSI-LD `createdAt`/`modifiedAt` of temporal instances. Format 1 values still read.
pub(crate) const SERIES_VERSION: u8 = 2;

/// A series value: `version ‖ entity type id ‖ payload ‖ recorded at`.
#[cfg(test)]
pub(crate) fn series_value(type_id: u32, o: &Observation) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    put_series_value(&mut v, type_id, o, Timestamp::from_millis(0));
    v
}

/// Appends a series value (see [`series_value`]) to `buf`.
pub(crate) fn put_series_value(
    buf: &mut Vec<u8>,
    type_id: u32,
    o: &Observation,
    recorded: Timestamp,
) {
    buf.push(SERIES_VERSION);
    put_varint(buf, u64::from(type_id));
    put_payload(buf, o);
    put_i64(buf, recorded.as_millis());
}

/// Decodes a series value into its entity type id, payload and, for format 2, when it
/// was recorded.
pub(crate) fn decode_series_value(v: &[u8]) -> DResult<(u32, Payload, Option<Timestamp>)> {
    let mut r = Reader::new(v);
    let version = match r.u8()? {
        v @ (VALUE_VERSION | SERIES_VERSION) => v,
        v => {
            return Err(DecodeError::new(format!(
                "series record format {v} is not known to this build (it reads formats 1 and {SERIES_VERSION}); was the data directory written by a newer polity?"
            )));
        }
    };
    let ty = u32::try_from(r.varint()?).map_err(|_| DecodeError::new("type id out of range"))?;
    let p = get_payload(&mut r)?;
    let recorded = if version >= 2 {
        Some(r.timestamp()?)
    } else {
        None
    };
    r.finish()?;
    Ok((ty, p, recorded))
}

// ---------------------------------------------------------------------------------------
// Entity state.

use polity_model::{AttrTimes, EntityState};

/// What an entity value holds besides its attributes.
pub(crate) struct EntityHead<'a> {
    pub(crate) entity_type: &'a str,
    pub(crate) other_types: &'a [Arc<str>],
    pub(crate) scope: &'a [Arc<str>],
    pub(crate) created_at: Timestamp,
    pub(crate) modified_at: Timestamp,
}

impl<'a> EntityHead<'a> {
    pub(crate) fn of(e: &'a EntityState) -> Self {
        EntityHead {
            entity_type: &e.entity_type,
            other_types: &e.other_types,
            scope: &e.scope,
            created_at: e.created_at,
            modified_at: e.modified_at,
        }
    }
}

/// An attribute instance with its createdAt and modifiedAt.
pub(crate) type TimedAttr<'a> = (&'a Observation, Timestamp, Timestamp);

/// The attributes of `e` with their times (the entity's own when unknown).
pub(crate) fn timed_attrs(e: &EntityState) -> impl Iterator<Item = TimedAttr<'_>> {
    e.attrs.iter().map(move |a| {
        let t = e.times(&a.attr, a.dataset_id.as_deref());
        (
            a,
            t.map_or(e.created_at, |t| t.created_at),
            t.map_or(e.modified_at, |t| t.modified_at),
        )
    })
}

/// `2 ‖ type ‖ createdAt ‖ modifiedAt ‖ other types ‖ scopes ‖ n ‖ n × (attr ‖ datasetId
/// ‖ observedAt ‖ type-or-same ‖ payload ‖ createdAt ‖ modifiedAt)`. The entity id lives
/// in the key.
#[cfg(test)]
pub(crate) fn entity_value(e: &EntityState) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + 32 * e.attrs.len());
    put_entity_value(&mut v, &EntityHead::of(e), e.attrs.len(), timed_attrs(e));
    v
}

fn put_strs(v: &mut Vec<u8>, list: &[Arc<str>]) {
    put_varint(v, list.len() as u64);
    for s in list {
        put_str(v, s);
    }
}

/// Appends an entity value (see [`entity_value`]) to `buf`, from its parts: `attrs`
/// yields exactly `n` attribute instances, sorted and unique by (attr, datasetId).
pub(crate) fn put_entity_value<'a>(
    v: &mut Vec<u8>,
    head: &EntityHead<'_>,
    n: usize,
    attrs: impl Iterator<Item = TimedAttr<'a>>,
) {
    v.push(ENTITY_VERSION);
    put_str(v, head.entity_type);
    put_i64(v, head.created_at.as_millis());
    put_i64(v, head.modified_at.as_millis());
    put_strs(v, head.other_types);
    put_strs(v, head.scope);
    put_varint(v, n as u64);
    let mut written = 0usize;
    for (a, created, modified) in attrs {
        put_str(v, &a.attr);
        put_opt_str(v, a.dataset_id.as_deref());
        put_i64(v, a.observed_at.as_millis());
        if &*a.entity_type == head.entity_type {
            v.push(0);
        } else {
            v.push(1);
            put_str(v, &a.entity_type);
        }
        put_payload(v, a);
        put_i64(v, created.as_millis());
        put_i64(v, modified.as_millis());
        written += 1;
    }
    debug_assert_eq!(written, n, "the attribute count matches the attributes");
}

fn get_strs(r: &mut Reader<'_>) -> DResult<Vec<Arc<str>>> {
    let n = r.len()?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        out.push(Arc::from(r.str()?));
    }
    Ok(out)
}

pub(crate) fn decode_entity_value(id: EntityId, v: &[u8]) -> DResult<EntityState> {
    let mut r = Reader::new(v);
    let version = match r.u8()? {
        v @ (VALUE_VERSION | ENTITY_VERSION) => v,
        v => {
            return Err(DecodeError::new(format!(
                "entity record format {v} is not known to this build (it reads formats 1 and {ENTITY_VERSION}); was the data directory written by a newer polity?"
            )));
        }
    };
    let entity_type: Arc<str> = Arc::from(r.str()?);
    let created_at = r.timestamp()?;
    let modified_at = r.timestamp()?;
    let (other_types, scope) = if version >= 2 {
        (get_strs(&mut r)?, get_strs(&mut r)?)
    } else {
        (Vec::new(), Vec::new())
    };
    let n = r.varint()?;
    let mut attrs: Vec<Observation> = Vec::new();
    let mut attr_times: Vec<AttrTimes> = Vec::new();
    for _ in 0..n {
        let attr: Arc<str> = Arc::from(r.str()?);
        let dataset_id = r.opt_str()?.map(Arc::from);
        let observed_at = r.timestamp()?;
        let ty = match r.u8()? {
            0 => entity_type.clone(),
            1 => Arc::from(r.str()?),
            t => {
                return Err(DecodeError::new(format!(
                    "attribute type tag {t} is neither 0 nor 1"
                )));
            }
        };
        let p = get_payload(&mut r)?;
        let (a_created, a_modified) = if version >= 2 {
            (r.timestamp()?, r.timestamp()?)
        } else {
            (created_at, modified_at)
        };
        let o = Observation {
            entity: id.clone(),
            entity_type: ty,
            attr,
            dataset_id,
            value: p.value,
            unit: p.unit,
            observed_at,
            observed: p.observed,
            privacy: p.privacy,
            meta: p.meta,
        };
        if let Some(prev) = attrs.last() {
            let ordered =
                (&*prev.attr, prev.dataset_id.as_deref()) < (&*o.attr, o.dataset_id.as_deref());
            if !ordered {
                return Err(DecodeError::new("attributes are not sorted and unique"));
            }
        }
        attr_times.push(AttrTimes {
            attr: o.attr.clone(),
            dataset_id: o.dataset_id.clone(),
            created_at: a_created,
            modified_at: a_modified,
        });
        attrs.push(o);
    }
    r.finish()?;
    Ok(EntityState {
        id,
        entity_type,
        other_types,
        scope,
        created_at,
        modified_at,
        attrs,
        attr_times,
    })
}

// ---------------------------------------------------------------------------------------
// Dead letters and devices.

use crate::{DeadLetter, Device};

pub(crate) fn dead_letter_value(d: &DeadLetter) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + d.payload.len() + d.reason.len());
    v.push(VALUE_VERSION);
    put_i64(&mut v, d.at.as_millis());
    put_opt_str(&mut v, d.tenant.as_ref().map(Tenant::as_str));
    put_str(&mut v, &d.source);
    put_str(&mut v, &d.reason);
    put_opt_str(&mut v, d.content_type.as_deref());
    put_bytes(&mut v, &d.payload);
    v
}

pub(crate) fn decode_dead_letter(id: u64, v: &[u8]) -> DResult<DeadLetter> {
    let mut r = Reader::new(v);
    r.version()?;
    let at = r.timestamp()?;
    let tenant = match r.opt_str()? {
        None => None,
        Some(t) => Some(Tenant::new(t).map_err(|e| DecodeError::new(e.to_string()))?),
    };
    let source = r.str()?.to_owned();
    let reason = r.str()?.to_owned();
    let content_type = r.opt_str()?.map(str::to_owned);
    let payload = r.bytes()?.to_vec();
    r.finish()?;
    Ok(DeadLetter {
        id,
        at,
        tenant,
        source,
        reason,
        content_type,
        payload,
    })
}

pub(crate) fn device_value(d: &Device) -> Vec<u8> {
    let mut v = Vec::with_capacity(128);
    v.push(VALUE_VERSION);
    put_str(&mut v, d.entity.as_str());
    put_str(&mut v, &d.entity_type);
    put_str(&mut v, &d.source);
    put_i64(&mut v, d.first_seen.as_millis());
    put_i64(&mut v, d.last_seen.as_millis());
    put_varint(&mut v, d.labels.len() as u64);
    for (k, val) in &d.labels {
        put_str(&mut v, k);
        put_str(&mut v, val);
    }
    v
}

pub(crate) fn decode_device(tenant: Tenant, device_id: String, v: &[u8]) -> DResult<Device> {
    let mut r = Reader::new(v);
    r.version()?;
    let entity = EntityId::new(r.str()?).map_err(|e| DecodeError::new(e.to_string()))?;
    let entity_type = Arc::from(r.str()?);
    let source = r.str()?.to_owned();
    let first_seen = r.timestamp()?;
    let last_seen = r.timestamp()?;
    let n = r.varint()?;
    let mut labels = std::collections::BTreeMap::new();
    for _ in 0..n {
        let k = r.str()?.to_owned();
        let val = r.str()?.to_owned();
        labels.insert(k, val);
    }
    r.finish()?;
    Ok(Device {
        tenant,
        device_id,
        entity,
        entity_type,
        source,
        first_seen,
        last_seen,
        labels,
    })
}

/// A key shown to a user in an error message: printable ASCII, escaped, clipped.
pub(crate) fn show_key(k: &[u8]) -> String {
    let s: String = k.escape_ascii().to_string();
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tenant() -> Tenant {
        Tenant::new("adelaide").unwrap()
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            (-1e9f64..1e9).prop_map(|n| serde_json::json!(n)),
            ".{0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<f64>()
                .prop_filter("NaN never equals itself", |n| !n.is_nan())
                .prop_map(Value::Number),
            any::<bool>().prop_map(Value::Bool),
            ".{0,24}".prop_map(|s| Value::Text(Arc::from(s.as_str()))),
            "[a-z]{1,8}:[a-zA-Z0-9:._-]{1,20}"
                .prop_map(|s| Value::Relationship(EntityId::new(&s).unwrap())),
            arb_json().prop_map(|j| Value::Geo(Arc::new(j))),
            arb_json().prop_map(|j| Value::Json(Arc::new(j))),
            arb_json().prop_map(|j| Value::LanguageMap(Arc::new(j))),
            arb_json().prop_map(|j| Value::Vocab(Arc::new(j))),
            arb_json().prop_map(|j| Value::JsonValue(Arc::new(j))),
            arb_json().prop_map(|j| Value::List(Arc::new(j))),
            arb_json().prop_map(|j| Value::ListRelationship(Arc::new(j))),
        ]
    }

    prop_compose! {
        fn arb_obs()(
            local in "[a-zA-Z0-9:._-]{1,20}",
            ty in ".{0,20}",
            attr in ".{0,20}",
            dataset in proptest::option::of(".{0,10}"),
            value in arb_value(),
            unit in proptest::option::of("[A-Z0-9]{2,3}"),
            ms in polity_model::time::MIN_MS..=polity_model::time::MAX_MS,
            privacy in 0u8..3,
            observed in any::<bool>(),
            meta in proptest::option::of(prop::collection::btree_map(".{0,6}", arb_json(), 0..3)),
        ) -> Observation {
            Observation {
                entity: EntityId::new(&format!("urn:x:{local}")).unwrap(),
                entity_type: Arc::from(ty.as_str()),
                attr: Arc::from(attr.as_str()),
                dataset_id: dataset.map(|d| Arc::from(d.as_str())),
                value,
                unit: unit.map(|u| UnitCode::new(&u).unwrap()),
                observed_at: Timestamp::from_millis(ms),
                observed,
                privacy: PrivacyClass::from_code(privacy),
                meta: meta.map(|m| Arc::new(m.into_iter().collect())),
            }
        }
    }

    fn decode_series(type_name: &Arc<str>, ident: &[u8], k: &[u8], v: &[u8]) -> Observation {
        let key = decode_series_identity(ident).unwrap();
        assert_eq!(key.tenant, tenant());
        let (id, observed_at) = decode_point_key(k).unwrap();
        assert_eq!(id, 0x0102_0304_0506_0708);
        let (ty, p, _) = decode_series_value(v).unwrap();
        assert_eq!(ty, 7);
        Observation {
            entity: key.entity,
            entity_type: type_name.clone(),
            attr: Arc::from(key.attr.as_str()),
            dataset_id: key.dataset_id.map(|d| Arc::from(d.as_str())),
            value: p.value,
            unit: p.unit,
            observed_at,
            observed: p.observed,
            privacy: p.privacy,
            meta: p.meta,
        }
    }

    proptest! {
        #[test]
        fn series_points_round_trip(o in arb_obs()) {
            let mut ident = Vec::new();
            put_series_identity(&mut ident, &tenant(), &o.entity, &o.attr, o.dataset_id.as_deref());
            let k = point_key(0x0102_0304_0506_0708, o.observed_at);
            let v = series_value(7, &o);
            let back = decode_series(&o.entity_type, &ident, &k, &v);
            prop_assert_eq!(back, o);
        }

        #[test]
        fn entity_states_round_trip(
            obs in prop::collection::vec(arb_obs(), 0..8),
            other_type in ".{0,5}",
            more_types in prop::collection::vec(".{1,5}", 0..3),
            scope in prop::collection::vec("/[a-z]{1,5}", 0..3),
        ) {
            let id = EntityId::new("urn:ngsi-ld:X:1").unwrap();
            let ty: Arc<str> = Arc::from("T");
            let mut e = EntityState::new(id.clone(), ty.clone(), Timestamp::from_millis(5));
            let more: Vec<Arc<str>> = more_types.iter().map(|t| Arc::from(t.as_str())).collect();
            e.add_types(&more);
            e.scope = scope.iter().map(|s| Arc::from(s.as_str())).collect();
            for (i, mut o) in obs.into_iter().enumerate() {
                o.entity = id.clone();
                // Mostly the entity's own type; sometimes another.
                o.entity_type = if i % 3 == 2 { Arc::from(other_type.as_str()) } else { ty.clone() };
                e.apply(&o, Timestamp::from_millis(10 + i as i64));
            }
            let v = entity_value(&e);
            prop_assert_eq!(decode_entity_value(id, &v).unwrap(), e);
        }

        #[test]
        fn key_strings_keep_order(a in ".{0,12}", b in ".{0,12}") {
            let (mut ka, mut kb) = (Vec::new(), Vec::new());
            put_key_str(&mut ka, &a);
            put_key_str(&mut kb, &b);
            prop_assert_eq!(a.as_bytes().cmp(b.as_bytes()), ka.cmp(&kb));
            prop_assert_eq!(Reader::new(&ka).key_str().unwrap(), a);
        }

        #[test]
        fn key_times_keep_order(a in polity_model::time::MIN_MS..=polity_model::time::MAX_MS,
                                b in polity_model::time::MIN_MS..=polity_model::time::MAX_MS) {
            let (ta, tb) = (Timestamp::from_millis(a), Timestamp::from_millis(b));
            prop_assert_eq!(a.cmp(&b), key_time_bytes(ta).cmp(&key_time_bytes(tb)));
            prop_assert_eq!(Reader::new(&key_time_bytes(ta)).key_time().unwrap(), ta);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let id = EntityId::new("urn:x:1").unwrap();
            let _ = decode_point_key(&bytes);
            let _ = decode_series_identity(&bytes);
            let _ = decode_series_value(&bytes);
            let _ = decode_entity_key(&bytes);
            let _ = decode_entity_value(id, &bytes);
            let _ = decode_dead_letter(1, &bytes);
            let _ = decode_device_key(&bytes);
            let _ = decode_device(tenant(), "d".into(), &bytes);
        }

        #[test]
        fn truncated_records_are_errors_not_panics(o in arb_obs(), cut in 0usize..64) {
            let v = series_value(1, &o);
            let cut = cut.min(v.len().saturating_sub(1));
            prop_assert!(decode_series_value(&v[..cut]).is_err());
        }
    }

    #[test]
    fn nan_bits_survive() {
        let mut o = Observation {
            entity: EntityId::new("urn:x:1").unwrap(),
            entity_type: Arc::from("T"),
            attr: Arc::from("a"),
            dataset_id: None,
            value: Value::Number(f64::NAN),
            unit: None,
            observed_at: Timestamp::from_millis(0),
            observed: true,
            privacy: PrivacyClass::Public,
            meta: None,
        };
        let (_, p, _) = decode_series_value(&series_value(0, &o)).unwrap();
        assert!(p.value.as_f64().unwrap().is_nan());
        o.value = Value::Number(-0.0);
        let (_, p, _) = decode_series_value(&series_value(0, &o)).unwrap();
        assert!(p.value.as_f64().unwrap().is_sign_negative());
    }

    #[test]
    fn point_keys_order_by_series_then_time() {
        let t = |ms| Timestamp::from_millis(ms);
        assert!(point_key(1, t(5)) < point_key(1, t(6)));
        assert!(point_key(1, t(-5)) < point_key(1, t(0)));
        assert!(
            point_key(1, t(polity_model::time::MAX_MS))
                < point_key(2, t(polity_model::time::MIN_MS))
        );
        assert_eq!(decode_point_key(&point_key(9, t(-7))).unwrap(), (9, t(-7)));
        assert!(decode_point_key(&point_key(9, t(0))[..15]).is_err());
    }

    #[test]
    fn unknown_versions_name_the_problem() {
        let e = decode_series_value(&[9, 0]).unwrap_err();
        assert!(e.0.contains("newer polity"), "{e}");
    }
}
