//! Units as UN/CEFACT Recommendation 20 common codes, the codes NGSI-LD `unitCode` uses.
//!
//! (Skeleton: the code type. The table of known units and conversion between
//! commensurable units is filled in next.)

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UN/CEFACT common code: 2 or 3 upper-case letters or digits, e.g. `CEL`, `LTR`, `KWH`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitCode([u8; 3]);

/// The text is not shaped like a UN/CEFACT common code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a UN/CEFACT common code (2 or 3 letters or digits, e.g. CEL, LTR, KWH)")]
pub struct UnitCodeError(pub String);

impl UnitCode {
    /// Parses a code such as `"CEL"`.
    pub fn new(s: &str) -> Result<Self, UnitCodeError> {
        let b = s.as_bytes();
        if !(2..=3).contains(&b.len()) || !b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
            return Err(UnitCodeError(s.chars().take(16).collect()));
        }
        let mut a = [b' '; 3];
        a[..b.len()].copy_from_slice(b);
        Ok(UnitCode(a))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        let n = if self.0[2] == b' ' { 2 } else { 3 };
        std::str::from_utf8(&self.0[..n]).unwrap_or("")
    }
}

impl fmt::Debug for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnitCode({})", self.as_str())
    }
}

impl fmt::Display for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for UnitCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for UnitCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        UnitCode::new(&s).map_err(serde::de::Error::custom)
    }
}
