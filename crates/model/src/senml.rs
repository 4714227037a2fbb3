//! SenML (RFC 8428) packs: the compact form devices send, in JSON and CBOR.
//!
//! This module owns the SenML data model ([`Record`], [`Pack`]), its JSON
//! (`application/senml+json`) and CBOR (`application/senml+cbor`) codecs, and record
//! resolution (RFC 8428 §4.6) into self-contained [`ResolvedRecord`]s. It does not map
//! SenML names to entities or attributes: that is the ingest mapping's job.
//!
//! Decoding never panics: every input, however malformed, gives a [`SenmlError`] that
//! names the record and field at fault. Record numbers in messages count from 1.

use std::collections::BTreeMap;

use ciborium::value::{Integer, Value as Cbor};
use serde_json::{Map, Value as Json};

use crate::time::Timestamp;

/// The most records a pack may hold; larger packs are rejected before resolution.
pub const MAX_RECORDS: usize = 10_000;

/// The SenML version this implementation understands (RFC 8428 is version 10).
pub const SENML_VERSION: i64 = 10;

/// Times below 2²⁸ seconds are relative to the time of resolution (RFC 8428 §4.5.3).
pub const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

/// Nesting limit for CBOR input: a pack is an array of maps; anything deeper is an
/// extension field and needs little depth.
const CBOR_DEPTH: usize = 16;

/// Why a SenML pack was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SenmlError {
    /// The bytes are not JSON.
    #[error(
        "not valid SenML JSON: {0}; send a JSON array of records such as [{{\"n\":\"temp\",\"u\":\"Cel\",\"v\":21.5}}]"
    )]
    Json(String),
    /// The bytes are not CBOR.
    #[error("not valid SenML CBOR: {0}; send a CBOR array of maps with RFC 8428 integer labels")]
    Cbor(String),
    /// The top level is not an array.
    #[error("a SenML pack must be an array of records, not {0}")]
    NotAnArray(&'static str),
    /// A record is not an object (JSON) or map (CBOR).
    #[error("record {0} is not an object; each record is a map of SenML fields")]
    RecordNotObject(usize),
    /// A field has the wrong type.
    #[error("record {record}: field `{field}` must be {expected}")]
    BadField {
        /// The record, counting from 1.
        record: usize,
        /// The field label.
        field: String,
        /// What the field must hold.
        expected: &'static str,
    },
    /// A must-understand field (name ending in `_`) that this implementation does not know.
    #[error(
        "record {record}: field `{field}` must be understood (it ends in `_`) but Polity does not support it; remove it or use a field without the `_` suffix"
    )]
    MustUnderstand {
        /// The record, counting from 1.
        record: usize,
        /// The field label.
        field: String,
    },
    /// The pack has more records than [`MAX_RECORDS`].
    #[error("pack has {count} records; at most {max} are accepted per pack, so split it")]
    TooManyRecords {
        /// How many records were sent (at least).
        count: usize,
        /// The limit.
        max: usize,
    },
    /// `bver` is newer than this implementation.
    #[error(
        "record {record}: base version {version} is newer than SenML version 10 that Polity understands; send RFC 8428 SenML"
    )]
    UnsupportedVersion {
        /// The record, counting from 1.
        record: usize,
        /// The version sent.
        version: i64,
    },
    /// A record has no value and no sum.
    #[error("record {0} has neither a value nor a sum; add one of v, vs, vb, vd or s")]
    NoValue(usize),
    /// A record has more than one of v, vs, vb, vd.
    #[error("record {0} has more than one value field; use exactly one of v, vs, vb, vd")]
    MultipleValues(usize),
    /// The resolved name is empty or uses characters SenML forbids.
    #[error(
        "record {record}: name `{name}` is invalid: it must start with a letter or digit and use only A-Z a-z 0-9 - : . / _ (base name + name)"
    )]
    BadName {
        /// The record, counting from 1.
        record: usize,
        /// The resolved name (clipped).
        name: String,
    },
    /// A resolved value, sum or time is not a finite number or is out of range.
    #[error("record {record}: {field} is out of range after adding the base field")]
    OutOfRange {
        /// The record, counting from 1.
        record: usize,
        /// Which field.
        field: &'static str,
    },
}

/// One SenML record as sent: every field optional, base fields not yet applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// Base version (`bver`, CBOR -1).
    pub bver: Option<i64>,
    /// Base name (`bn`, CBOR -2).
    pub bn: Option<String>,
    /// Base time in seconds (`bt`, CBOR -3).
    pub bt: Option<f64>,
    /// Base unit (`bu`, CBOR -4).
    pub bu: Option<String>,
    /// Base value (`bv`, CBOR -5).
    pub bv: Option<f64>,
    /// Base sum (`bs`, CBOR -6).
    pub bs: Option<f64>,
    /// Name (`n`, CBOR 0).
    pub n: Option<String>,
    /// Unit (`u`, CBOR 1).
    pub u: Option<String>,
    /// Numeric value (`v`, CBOR 2).
    pub v: Option<f64>,
    /// String value (`vs`, CBOR 3).
    pub vs: Option<String>,
    /// Boolean value (`vb`, CBOR 4).
    pub vb: Option<bool>,
    /// Data value (`vd`, CBOR 8; base64url in JSON, a byte string in CBOR).
    pub vd: Option<Vec<u8>>,
    /// Sum (`s`, CBOR 5).
    pub s: Option<f64>,
    /// Time in seconds (`t`, CBOR 6).
    pub t: Option<f64>,
    /// Update time in seconds (`ut`, CBOR 7).
    pub ut: Option<f64>,
}

/// A SenML pack: an ordered list of records.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pack(pub Vec<Record>);

/// The value of a resolved record.
#[derive(Debug, Clone, PartialEq)]
pub enum SenmlValue {
    /// `v`, plus any base value.
    Number(f64),
    /// `vs`.
    String(String),
    /// `vb`.
    Bool(bool),
    /// `vd`, decoded.
    Data(Vec<u8>),
    /// The record carries only a sum (see [`ResolvedRecord::sum`]).
    SumOnly,
}

/// A record with base fields applied, relative time made absolute and the name complete
/// (RFC 8428 §4.6).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRecord {
    /// Base name + name.
    pub name: String,
    /// Unit, or base unit.
    pub unit: Option<String>,
    /// The value.
    pub value: SenmlValue,
    /// Sum plus base sum, if the record has a sum.
    pub sum: Option<f64>,
    /// Absolute time of the measurement.
    pub time: Timestamp,
    /// Update time in seconds (the maximum time before the next update), if given.
    pub update_time: Option<f64>,
}

// Field labels: (JSON name, CBOR label).
const BVER: (&str, i64) = ("bver", -1);
const BN: (&str, i64) = ("bn", -2);
const BT: (&str, i64) = ("bt", -3);
const BU: (&str, i64) = ("bu", -4);
const BV: (&str, i64) = ("bv", -5);
const BS: (&str, i64) = ("bs", -6);
const N: (&str, i64) = ("n", 0);
const U: (&str, i64) = ("u", 1);
const V: (&str, i64) = ("v", 2);
const VS: (&str, i64) = ("vs", 3);
const VB: (&str, i64) = ("vb", 4);
const S: (&str, i64) = ("s", 5);
const T: (&str, i64) = ("t", 6);
const UT: (&str, i64) = ("ut", 7);
const VD: (&str, i64) = ("vd", 8);

const LABELS: [(&str, i64); 15] = [BVER, BN, BT, BU, BV, BS, N, U, V, VS, VB, S, T, UT, VD];

/// A field value independent of the encoding.
enum Field<'a> {
    Num(f64),
    Int(i64),
    Str(&'a str),
    Bool(bool),
    Bytes(&'a [u8]),
    Other,
}

fn bad(record: usize, field: &str, expected: &'static str) -> SenmlError {
    SenmlError::BadField {
        record,
        field: field.to_owned(),
        expected,
    }
}

impl Record {
    /// Sets one known field from a decoded value; `json` selects vd's text form.
    fn set(
        &mut self,
        rec: usize,
        label: (&str, i64),
        f: Field<'_>,
        json: bool,
    ) -> Result<(), SenmlError> {
        let name = label.0;
        let num = |f: &Field<'_>| match *f {
            Field::Num(x) if x.is_finite() => Ok(x),
            Field::Int(i) => Ok(i as f64),
            _ => Err(bad(rec, name, "a finite number")),
        };
        let text = |f: &Field<'_>| match *f {
            Field::Str(s) => Ok(s.to_owned()),
            _ => Err(bad(rec, name, "a string")),
        };
        match label.1 {
            -1 => {
                self.bver = Some(match f {
                    Field::Int(i) => i,
                    Field::Num(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => x as i64,
                    _ => return Err(bad(rec, name, "an integer")),
                })
            }
            -2 => self.bn = Some(text(&f)?),
            -3 => self.bt = Some(num(&f)?),
            -4 => self.bu = Some(text(&f)?),
            -5 => self.bv = Some(num(&f)?),
            -6 => self.bs = Some(num(&f)?),
            0 => self.n = Some(text(&f)?),
            1 => self.u = Some(text(&f)?),
            2 => self.v = Some(num(&f)?),
            3 => self.vs = Some(text(&f)?),
            4 => {
                self.vb = Some(match f {
                    Field::Bool(b) => b,
                    _ => return Err(bad(rec, name, "true or false")),
                })
            }
            5 => self.s = Some(num(&f)?),
            6 => self.t = Some(num(&f)?),
            7 => self.ut = Some(num(&f)?),
            _ => {
                self.vd = Some(match f {
                    Field::Str(s) if json => base64url_decode(s).ok_or_else(|| {
                        bad(rec, name, "base64url text (RFC 4648 §5, no padding)")
                    })?,
                    Field::Bytes(b) if !json => b.to_vec(),
                    _ => {
                        return Err(bad(
                            rec,
                            name,
                            if json {
                                "base64url text"
                            } else {
                                "a byte string"
                            },
                        ));
                    }
                })
            }
        }
        Ok(())
    }
}

fn check_len(n: usize) -> Result<(), SenmlError> {
    if n > MAX_RECORDS {
        Err(SenmlError::TooManyRecords {
            count: n,
            max: MAX_RECORDS,
        })
    } else {
        Ok(())
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// A JSON number as f64 if it is one; integers beyond 2^53 lose precision as in any
/// JSON consumer.
fn json_num(n: &serde_json::Number) -> Field<'static> {
    if let Some(i) = n.as_i64() {
        Field::Int(i)
    } else {
        n.as_f64().map_or(Field::Other, Field::Num)
    }
}

/// A number for output: integral values as integers (compact and exact), others as floats.
fn int_if_integral(x: f64) -> Option<i64> {
    (x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 && !(x == 0.0 && x.is_sign_negative()))
        .then_some(x as i64)
}

impl Pack {
    /// Parses `application/senml+json`.
    pub fn from_json(bytes: &[u8]) -> Result<Pack, SenmlError> {
        let doc: Json =
            serde_json::from_slice(bytes).map_err(|e| SenmlError::Json(e.to_string()))?;
        let Json::Array(items) = doc else {
            return Err(SenmlError::NotAnArray(json_kind(&doc)));
        };
        check_len(items.len())?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let rec = i + 1;
            let Json::Object(map) = item else {
                return Err(SenmlError::RecordNotObject(rec));
            };
            let mut r = Record::default();
            for (k, v) in map {
                let Some(label) = LABELS.iter().find(|l| l.0 == k) else {
                    if k.ends_with('_') {
                        return Err(SenmlError::MustUnderstand {
                            record: rec,
                            field: k.clone(),
                        });
                    }
                    continue;
                };
                let f = match v {
                    Json::Number(n) => json_num(n),
                    Json::String(s) => Field::Str(s),
                    Json::Bool(b) => Field::Bool(*b),
                    _ => Field::Other,
                };
                r.set(rec, *label, f, true)?;
            }
            out.push(r);
        }
        Ok(Pack(out))
    }

    /// Encodes as `application/senml+json`, fields in the order of the RFC 8428 examples.
    pub fn to_json(&self) -> Vec<u8> {
        let arr: Vec<Json> = self
            .0
            .iter()
            .map(|r| {
                let mut m = Map::new();
                let num = |x: f64| match int_if_integral(x) {
                    Some(i) => Json::from(i),
                    None => Json::from(x),
                };
                if let Some(x) = r.bn.as_ref() {
                    m.insert(BN.0.into(), Json::from(x.as_str()));
                }
                if let Some(x) = r.bt {
                    m.insert(BT.0.into(), num(x));
                }
                if let Some(x) = r.bu.as_ref() {
                    m.insert(BU.0.into(), Json::from(x.as_str()));
                }
                if let Some(x) = r.bv {
                    m.insert(BV.0.into(), num(x));
                }
                if let Some(x) = r.bs {
                    m.insert(BS.0.into(), num(x));
                }
                if let Some(x) = r.bver {
                    m.insert(BVER.0.into(), Json::from(x));
                }
                if let Some(x) = r.n.as_ref() {
                    m.insert(N.0.into(), Json::from(x.as_str()));
                }
                if let Some(x) = r.u.as_ref() {
                    m.insert(U.0.into(), Json::from(x.as_str()));
                }
                if let Some(x) = r.t {
                    m.insert(T.0.into(), num(x));
                }
                if let Some(x) = r.v {
                    m.insert(V.0.into(), num(x));
                }
                if let Some(x) = r.vs.as_ref() {
                    m.insert(VS.0.into(), Json::from(x.as_str()));
                }
                if let Some(x) = r.vb {
                    m.insert(VB.0.into(), Json::from(x));
                }
                if let Some(x) = r.vd.as_ref() {
                    m.insert(VD.0.into(), Json::from(base64url_encode(x)));
                }
                if let Some(x) = r.s {
                    m.insert(S.0.into(), num(x));
                }
                if let Some(x) = r.ut {
                    m.insert(UT.0.into(), num(x));
                }
                Json::Object(m)
            })
            .collect();
        // Serializing a Value built from finite numbers and strings cannot fail.
        serde_json::to_vec(&Json::Array(arr)).unwrap_or_default()
    }

    /// Parses `application/senml+cbor` (RFC 8428 §6, integer labels).
    ///
    /// Errors say what is wrong in words, not in the decoder's internal terms.
    pub fn from_cbor(bytes: &[u8]) -> Result<Pack, SenmlError> {
        let mut rd = bytes;
        let doc: Cbor = ciborium::de::from_reader_with_recursion_limit(&mut rd, CBOR_DEPTH)
            .map_err(|e| SenmlError::Cbor(cbor_problem(&e, bytes.len())))?;
        if !rd.is_empty() {
            return Err(SenmlError::Cbor(format!(
                "{} bytes after the end of the pack",
                rd.len()
            )));
        }
        let Cbor::Array(items) = doc else {
            return Err(SenmlError::NotAnArray("a single CBOR item"));
        };
        check_len(items.len())?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let rec = i + 1;
            let Cbor::Map(map) = item else {
                return Err(SenmlError::RecordNotObject(rec));
            };
            let mut r = Record::default();
            for (k, v) in map {
                let label = match k {
                    Cbor::Integer(n) => {
                        let n = i128::from(*n);
                        match LABELS.iter().find(|l| i128::from(l.1) == n) {
                            Some(l) => *l,
                            // Unknown integer labels are extensions we may ignore.
                            None => continue,
                        }
                    }
                    Cbor::Text(t) => {
                        if t.ends_with('_') {
                            return Err(SenmlError::MustUnderstand {
                                record: rec,
                                field: t.clone(),
                            });
                        }
                        continue;
                    }
                    _ => return Err(bad(rec, "(label)", "an integer or text label")),
                };
                let f = match v {
                    Cbor::Integer(n) => i64::try_from(*n).map_or(Field::Other, Field::Int),
                    Cbor::Float(x) => Field::Num(*x),
                    Cbor::Text(s) => Field::Str(s),
                    Cbor::Bool(b) => Field::Bool(*b),
                    Cbor::Bytes(b) => Field::Bytes(b),
                    _ => Field::Other,
                };
                r.set(rec, label, f, false)?;
            }
            out.push(r);
        }
        Ok(Pack(out))
    }

    /// Encodes as `application/senml+cbor`. Integral numbers are written as CBOR
    /// integers and others as the shortest float that keeps their value, as in RFC 8428 §6.
    pub fn to_cbor(&self) -> Vec<u8> {
        let key = |l: (&str, i64)| Cbor::Integer(Integer::from(l.1));
        let num = |x: f64| match int_if_integral(x) {
            Some(i) => Cbor::Integer(Integer::from(i)),
            None => Cbor::Float(x),
        };
        let arr: Vec<Cbor> = self
            .0
            .iter()
            .map(|r| {
                let mut m: Vec<(Cbor, Cbor)> = Vec::new();
                if let Some(x) = r.bn.as_ref() {
                    m.push((key(BN), Cbor::Text(x.clone())));
                }
                if let Some(x) = r.bt {
                    m.push((key(BT), num(x)));
                }
                if let Some(x) = r.bu.as_ref() {
                    m.push((key(BU), Cbor::Text(x.clone())));
                }
                if let Some(x) = r.bv {
                    m.push((key(BV), num(x)));
                }
                if let Some(x) = r.bs {
                    m.push((key(BS), num(x)));
                }
                if let Some(x) = r.bver {
                    m.push((key(BVER), Cbor::Integer(Integer::from(x))));
                }
                if let Some(x) = r.n.as_ref() {
                    m.push((key(N), Cbor::Text(x.clone())));
                }
                if let Some(x) = r.u.as_ref() {
                    m.push((key(U), Cbor::Text(x.clone())));
                }
                if let Some(x) = r.t {
                    m.push((key(T), num(x)));
                }
                if let Some(x) = r.v {
                    m.push((key(V), num(x)));
                }
                if let Some(x) = r.vs.as_ref() {
                    m.push((key(VS), Cbor::Text(x.clone())));
                }
                if let Some(x) = r.vb {
                    m.push((key(VB), Cbor::Bool(x)));
                }
                if let Some(x) = r.s {
                    m.push((key(S), num(x)));
                }
                if let Some(x) = r.ut {
                    m.push((key(UT), num(x)));
                }
                if let Some(x) = r.vd.as_ref() {
                    m.push((key(VD), Cbor::Bytes(x.clone())));
                }
                Cbor::Map(m)
            })
            .collect();
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = ciborium::ser::into_writer(&Cbor::Array(arr), &mut out);
        out
    }

    /// Resolves every record (RFC 8428 §4.6): base fields carried forward, names
    /// concatenated and checked, base value and sum added, base time added and relative
    /// times (below 2²⁸ s) taken relative to `now`.
    pub fn resolve(&self, now: Timestamp) -> Result<Vec<ResolvedRecord>, SenmlError> {
        check_len(self.0.len())?;
        let mut bn: Option<&str> = None;
        let mut bt = 0.0f64;
        let mut bu: Option<&str> = None;
        let mut bv = 0.0f64;
        let mut bs = 0.0f64;
        let mut out = Vec::with_capacity(self.0.len());
        for (i, r) in self.0.iter().enumerate() {
            let rec = i + 1;
            if let Some(v) = r.bver
                && v > SENML_VERSION
            {
                return Err(SenmlError::UnsupportedVersion {
                    record: rec,
                    version: v,
                });
            }
            if let Some(x) = r.bn.as_deref() {
                bn = Some(x);
            }
            if let Some(x) = r.bt {
                bt = x;
            }
            if let Some(x) = r.bu.as_deref() {
                bu = Some(x);
            }
            if let Some(x) = r.bv {
                bv = x;
            }
            if let Some(x) = r.bs {
                bs = x;
            }
            let mut name =
                String::with_capacity(bn.map_or(0, str::len) + r.n.as_deref().map_or(0, str::len));
            name.push_str(bn.unwrap_or(""));
            name.push_str(r.n.as_deref().unwrap_or(""));
            if !valid_name(&name) {
                return Err(SenmlError::BadName {
                    record: rec,
                    name: name.chars().take(128).collect(),
                });
            }
            let values = [
                r.v.is_some(),
                r.vs.is_some(),
                r.vb.is_some(),
                r.vd.is_some(),
            ];
            let value = match values.iter().filter(|b| **b).count() {
                0 if r.s.is_none() => return Err(SenmlError::NoValue(rec)),
                0 => SenmlValue::SumOnly,
                1 => {
                    if let Some(v) = r.v {
                        SenmlValue::Number(finite(bv + v, rec, "value")?)
                    } else if let Some(v) = r.vs.as_ref() {
                        SenmlValue::String(v.clone())
                    } else if let Some(v) = r.vb {
                        SenmlValue::Bool(v)
                    } else {
                        SenmlValue::Data(r.vd.clone().unwrap_or_default())
                    }
                }
                _ => return Err(SenmlError::MultipleValues(rec)),
            };
            let sum = match r.s {
                Some(s) => Some(finite(bs + s, rec, "sum")?),
                None => None,
            };
            let t = finite(bt + r.t.unwrap_or(0.0), rec, "time")?;
            let secs = if t < RELATIVE_TIME_LIMIT {
                now.as_secs_f64() + t
            } else {
                t
            };
            let time = Timestamp::from_secs_f64(secs).ok_or(SenmlError::OutOfRange {
                record: rec,
                field: "time",
            })?;
            out.push(ResolvedRecord {
                name,
                unit: r.u.as_deref().or(bu).map(str::to_owned),
                value,
                sum,
                time,
                update_time: r.ut,
            });
        }
        Ok(out)
    }
}

fn finite(x: f64, record: usize, field: &'static str) -> Result<f64, SenmlError> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(SenmlError::OutOfRange { record, field })
    }
}

/// RFC 8428 §4.5.1: names use A-Z a-z 0-9 - : . / _ and start with a letter or digit.
fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b':' | b'.' | b'/' | b'_'))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url (RFC 4648 §5) without padding.
pub fn base64url_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for k in 0..chars {
            s.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
        }
    }
    s
}

/// Decodes base64url (RFC 4648 §5); trailing `=` padding is tolerated. `None` if the
/// text is not base64url.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Groups resolved records by name, keeping each name's records in time order. A
/// convenience for mappings that turn one SenML name into one attribute.
pub fn group_by_name(records: &[ResolvedRecord]) -> BTreeMap<&str, Vec<&ResolvedRecord>> {
    let mut m: BTreeMap<&str, Vec<&ResolvedRecord>> = BTreeMap::new();
    for r in records {
        m.entry(r.name.as_str()).or_default().push(r);
    }
    for v in m.values_mut() {
        v.sort_by_key(|r| r.time);
    }
    m
}

/// A CBOR decoding error in words a device developer can act on.
fn cbor_problem(e: &ciborium::de::Error<std::io::Error>, len: usize) -> String {
    use ciborium::de::Error as E;
    match e {
        E::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("the {len}-byte payload ends in the middle of a CBOR item (truncated?)")
        }
        E::Io(io) => format!("could not be read: {io}"),
        E::Syntax(at) => format!("malformed CBOR at byte {at}"),
        E::Semantic(Some(at), m) => format!("unexpected CBOR at byte {at}: {m}"),
        E::Semantic(None, m) => format!("unexpected CBOR: {m}"),
        E::RecursionLimitExceeded => format!("nested deeper than {CBOR_DEPTH} levels"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cbor_errors_are_in_words() {
        // A pack of one map whose text key is cut short.
        let e = Pack::from_cbor(&[0x81, 0xa1, 0x62, 0x62])
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        assert!(!e.contains("Io(") && !e.contains("kind:"), "{e}");
    }

    use super::*;
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn resolve(json: &str) -> Result<Vec<ResolvedRecord>, SenmlError> {
        Pack::from_json(json.as_bytes())?.resolve(NOW)
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 8428 §5.1.1.
    #[test]
    fn single_datapoint() {
        let r = resolve(r#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "urn:dev:ow:10e2073a01080063");
        assert_eq!(r[0].unit.as_deref(), Some("Cel"));
        assert_eq!(r[0].value, SenmlValue::Number(23.1));
        assert_eq!(r[0].time, NOW, "no time means now");
    }

    // RFC 8428 §5.1.2.
    #[test]
    fn multiple_datapoints() {
        let r = resolve(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
                {"n":"current","u":"A","v":1.2}]"#,
        )
        .unwrap();
        assert_eq!(r[0].name, "urn:dev:ow:10e2073a01080063:voltage");
        assert_eq!(r[1].name, "urn:dev:ow:10e2073a01080063:current");
        assert_eq!(r[1].unit.as_deref(), Some("A"));
        assert_eq!(r[1].value, SenmlValue::Number(1.2));
    }

    const MULTI: &str = r#"[
        {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
        {"n":"current","t":-5,"v":1.2},
        {"n":"current","t":-4,"v":1.3},
        {"n":"current","t":-3,"v":1.4},
        {"n":"current","t":-2,"v":1.5},
        {"n":"current","t":-1,"v":1.6},
        {"n":"current","t":0,"v":1.7}]"#;

    // RFC 8428 §5.1.3 (and its resolved form, §5.1.4).
    #[test]
    fn multiple_measurements_resolve_as_in_5_1_4() {
        let r = resolve(MULTI).unwrap();
        assert_eq!(r.len(), 7);
        assert_eq!(r[0].name, "urn:dev:ow:10e2073a0108006:voltage");
        assert_eq!(r[0].unit.as_deref(), Some("V"));
        assert_eq!(r[0].time.as_millis(), 1_276_020_076_001);
        for (k, rec) in r[1..].iter().enumerate() {
            assert_eq!(rec.name, "urn:dev:ow:10e2073a0108006:current");
            assert_eq!(rec.unit.as_deref(), Some("A"), "base unit applies");
            assert_eq!(rec.time.as_millis(), 1_276_020_071_001 + 1000 * k as i64);
        }
        assert_eq!(r[6].value, SenmlValue::Number(1.7));
    }

    // RFC 8428 §5.1.3: humidity with location, one base name used as the whole name.
    #[test]
    fn multiple_measurements_with_times() {
        let r = resolve(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,"bu":"%RH","v":20},
                {"u":"lon","v":24.30621},{"u":"lat","v":60.07965},
                {"t":60,"v":20.3},{"u":"lon","t":60,"v":24.30622},{"u":"lat","t":60,"v":60.07965},
                {"t":120,"v":20.7},{"u":"lon","t":120,"v":24.30623},{"u":"lat","t":120,"v":60.07966},
                {"u":"%EL","t":150,"v":98},
                {"t":180,"v":21.2},{"u":"lon","t":180,"v":24.30628},{"u":"lat","t":180,"v":60.07967}]"#,
        )
        .unwrap();
        assert_eq!(r.len(), 13);
        assert!(r.iter().all(|r| r.name == "urn:dev:ow:10e2073a01080063"));
        assert_eq!(r[0].unit.as_deref(), Some("%RH"));
        assert_eq!(r[1].unit.as_deref(), Some("lon"));
        assert_eq!(r[9].unit.as_deref(), Some("%EL"));
        assert_eq!(r[9].time.as_millis(), 1_320_067_614_000);
        assert_eq!(r[12].time.as_millis(), 1_320_067_644_000);
    }

    // RFC 8428 §5.1.4: resolved records resolve to themselves.
    #[test]
    fn resolved_data_is_a_fixed_point() {
        let json = r#"[{"n":"urn:dev:ow:10e2073a01080063:voltage","u":"V","v":120.1,"t":1.276020076e+09},
                       {"n":"urn:dev:ow:10e2073a01080063:current","u":"A","v":1.2,"t":1.276020076e+09}]"#;
        let r = resolve(json).unwrap();
        assert_eq!(r[0].time.as_millis(), 1_276_020_076_000);
        assert_eq!(r[1].name, "urn:dev:ow:10e2073a01080063:current");
        let again = Pack(
            r.iter()
                .map(|x| Record {
                    n: Some(x.name.clone()),
                    u: x.unit.clone(),
                    v: match x.value {
                        SenmlValue::Number(v) => Some(v),
                        _ => None,
                    },
                    t: Some(x.time.as_secs_f64()),
                    ..Record::default()
                })
                .collect(),
        );
        assert_eq!(again.resolve(Timestamp::from_millis(0)).unwrap(), r);
    }

    // RFC 8428 §5.1.5.
    #[test]
    fn multiple_data_types() {
        let r = resolve(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.4},
                {"n":"label","vs":"Machine Room"},{"n":"open","vb":false},
                {"n":"nfc-reader","vd":"aGkgCg"}]"#,
        )
        .unwrap();
        assert_eq!(r[0].value, SenmlValue::Number(23.4));
        assert_eq!(r[1].value, SenmlValue::String("Machine Room".into()));
        assert_eq!(r[2].value, SenmlValue::Bool(false));
        assert_eq!(r[3].value, SenmlValue::Data(b"hi \n".to_vec()));
        assert_eq!(r[3].name, "urn:dev:ow:10e2073a01080063:nfc-reader");
    }

    // RFC 8428 §5.1.6: a collection of resources under one base name.
    #[test]
    fn collection_of_resources() {
        let r = resolve(
            r#"[{"bn":"2001:db8::2/","n":"temperature","u":"Cel","v":27.2},
                {"n":"humidity","u":"%RH","v":80}]"#,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "2001:db8::2/temperature");
        assert_eq!(r[1].name, "2001:db8::2/humidity");
        assert_eq!(r[1].unit.as_deref(), Some("%RH"));
    }

    // RFC 8428 §6: the CBOR encoding of the §5.1.3 pack.
    const RFC_CBOR: &str = "87a721781b75726e3a6465763a6f773a3130653230373361303130383030363a22fb41d303a15b00106223614120050067766f6c7461676501615602fb405e066666666666a3006763757272656e74062402fb3ff3333333333333a3006763757272656e74062302fb3ff4cccccccccccda3006763757272656e74062202fb3ff6666666666666a3006763757272656e74062102f93e00a3006763757272656e74062002fb3ff999999999999aa3006763757272656e74060002fb3ffb333333333333";

    #[test]
    fn cbor_example_matches_json_example() {
        let from_cbor = Pack::from_cbor(&hex(RFC_CBOR)).unwrap();
        let from_json = Pack::from_json(MULTI.as_bytes()).unwrap();
        assert_eq!(from_cbor, from_json);
        assert_eq!(
            from_cbor.to_cbor(),
            hex(RFC_CBOR),
            "re-encoding gives the RFC's bytes"
        );
    }

    #[test]
    fn base_value_and_sum_are_added() {
        let r = resolve(r#"[{"bn":"x","bv":100,"bs":1000,"v":1,"s":5},{"v":2},{"s":7}]"#).unwrap();
        assert_eq!(r[0].value, SenmlValue::Number(101.0));
        assert_eq!(r[0].sum, Some(1005.0));
        assert_eq!(r[1].value, SenmlValue::Number(102.0));
        assert_eq!(r[2].value, SenmlValue::SumOnly);
        assert_eq!(r[2].sum, Some(1007.0));
    }

    #[test]
    fn later_base_fields_replace_earlier_ones() {
        let r = resolve(r#"[{"bn":"a:","n":"x","v":1},{"bn":"b:","n":"y","v":2},{"n":"z","v":3}]"#)
            .unwrap();
        let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a:x", "b:y", "b:z"]);
    }

    #[test]
    fn rejections_name_the_record() {
        let e = resolve(r#"[{"n":"a","v":1},{"n":"b","v":1},{"n":"c"}]"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "record 3 has neither a value nor a sum; add one of v, vs, vb, vd or s"
        );
        assert!(matches!(
            resolve(r#"[{"n":"a","v":1,"vs":"x"}]"#),
            Err(SenmlError::MultipleValues(1))
        ));
        assert!(matches!(
            resolve(r#"[{"n":"a b","v":1}]"#),
            Err(SenmlError::BadName { .. })
        ));
        assert!(matches!(
            resolve(r#"[{"n":"_a","v":1}]"#),
            Err(SenmlError::BadName { .. })
        ));
        assert!(matches!(
            resolve(r#"[{"v":1}]"#),
            Err(SenmlError::BadName { .. })
        ));
        assert!(matches!(
            resolve(r#"[{"bver":11,"n":"a","v":1}]"#),
            Err(SenmlError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            resolve(r#"[{"n":"a","v":"1"}]"#),
            Err(SenmlError::BadField { .. })
        ));
        assert!(matches!(
            resolve(r#"[{"n":"a","v":1,"foo_":1}]"#),
            Err(SenmlError::MustUnderstand { .. })
        ));
        assert!(
            resolve(r#"[{"n":"a","v":1,"foo":1}]"#).is_ok(),
            "unknown fields are ignored"
        );
        assert!(matches!(
            resolve(r#"{"n":"a"}"#),
            Err(SenmlError::NotAnArray(_))
        ));
        assert!(matches!(
            resolve(r#"[1]"#),
            Err(SenmlError::RecordNotObject(1))
        ));
        assert!(matches!(
            resolve(r#"[{"n":"a","vd":"a*b"}]"#),
            Err(SenmlError::BadField { .. })
        ));
        assert!(matches!(
            resolve(r#"[{"n":"a","v":1e308,"bv":1e308}]"#),
            Err(SenmlError::OutOfRange { .. })
        ));
        assert!(matches!(Pack::from_json(b"[{"), Err(SenmlError::Json(_))));
        assert!(
            matches!(Pack::from_cbor(&[0x80, 0x00]), Err(SenmlError::Cbor(_))),
            "trailing bytes"
        );
    }

    #[test]
    fn too_many_records() {
        let body = format!(
            "[{}]",
            vec![r#"{"n":"a","v":1}"#; MAX_RECORDS + 1].join(",")
        );
        let e = Pack::from_json(body.as_bytes()).unwrap_err();
        assert!(matches!(e, SenmlError::TooManyRecords { count, .. } if count == MAX_RECORDS + 1));
    }

    #[test]
    fn base64url() {
        assert_eq!(base64url_encode(b"hi \n"), "aGkgCg");
        assert_eq!(base64url_decode("aGkgCg"), Some(b"hi \n".to_vec()));
        assert_eq!(base64url_decode("aGkgCg=="), Some(b"hi \n".to_vec()));
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url_decode("a"), None);
    }

    /// Numbers as sensors send them: up to 15 significant digits. (serde_json, without
    /// its `float_roundtrip` feature, may misround 16- and 17-digit decimals by one ulp,
    /// so JSON identity is only promised for these.)
    fn finite_f64() -> impl Strategy<Value = f64> {
        (-999_999_999_999_999i64..=999_999_999_999_999, -10i32..=10).prop_map(|(m, k)| {
            if k >= 0 {
                m as f64 * 10f64.powi(k)
            } else {
                m as f64 / 10f64.powi(-k)
            }
        })
    }

    fn record() -> impl Strategy<Value = Record> {
        let base = (
            proptest::option::of(0i64..=10),
            proptest::option::of("[a-z][a-z0-9:]{0,10}"),
            proptest::option::of(finite_f64()),
            proptest::option::of("[A-Za-z%/]{1,4}"),
            proptest::option::of(finite_f64()),
            proptest::option::of(finite_f64()),
        );
        let rest = (
            proptest::option::of("[a-z0-9._-]{1,10}"),
            proptest::option::of("[A-Za-z%/]{1,4}"),
            proptest::option::of(finite_f64()),
            proptest::option::of(".{0,12}"),
            proptest::option::of(any::<bool>()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
            proptest::option::of(finite_f64()),
            proptest::option::of(finite_f64()),
            proptest::option::of(finite_f64()),
        );
        (base, rest).prop_map(
            |((bver, bn, bt, bu, bv, bs), (n, u, v, vs, vb, vd, s, t, ut))| Record {
                bver,
                bn,
                bt,
                bu,
                bv,
                bs,
                n,
                u,
                v,
                vs,
                vb,
                vd,
                s,
                t,
                ut,
            },
        )
    }

    proptest! {
        #[test]
        fn json_round_trip(recs in proptest::collection::vec(record(), 0..6)) {
            let p = Pack(recs);
            prop_assert_eq!(Pack::from_json(&p.to_json()).unwrap(), p);
        }

        #[test]
        fn cbor_round_trip(recs in proptest::collection::vec(record(), 0..6)) {
            let p = Pack(recs);
            prop_assert_eq!(Pack::from_cbor(&p.to_cbor()).unwrap(), p);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for p in [Pack::from_json(&bytes), Pack::from_cbor(&bytes)].into_iter().flatten() {
                let _ = p.resolve(NOW);
            }
        }

        #[test]
        fn arbitrary_packs_resolve_without_panic(recs in proptest::collection::vec(record(), 0..6)) {
            let _ = Pack(recs).resolve(NOW);
        }

        #[test]
        fn base64_round_trip(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(base64url_decode(&base64url_encode(&data)), Some(data));
        }
    }
}
