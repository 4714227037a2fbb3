//! Names of datasets and of budget groups (the citizen populations that share one
//! budget). Both are short, printable, and safe to write into the ledger and logs.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{DpError, Result};

fn validate(kind: &'static str, value: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/');
    if value.is_empty() || value.len() > 128 || !value.chars().all(ok_char) {
        return Err(DpError::InvalidId {
            kind,
            value: value.chars().take(64).collect(),
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps a name.
            ///
            /// # Errors
            ///
            /// [`DpError::InvalidId`] unless it is 1–128 characters of ASCII letters,
            /// digits, `-`, `_`, `.`, `:` or `/`.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                validate($kind, &value)?;
                Ok(Self(value))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = DpError;
            fn try_from(value: String) -> Result<Self> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A dataset that aggregates are released from, e.g. `adelaide/energy-daily`.
    DatasetId,
    "dataset id"
);

id_type!(
    /// A budget group: the citizen population a set of datasets describes.
    ///
    /// Every dataset over the same citizens must name the same group, because a
    /// citizen's privacy loss adds up over every release that includes them
    /// (sequential composition). The ledger charges and caps per group.
    DatasetGroup,
    "budget group"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_rejects_others() {
        assert!(DatasetId::new("adelaide/energy-daily:v1").is_ok());
        for bad in ["", "has space", "new\nline", "ü", &"x".repeat(129)] {
            assert!(DatasetId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serde_checks_on_the_way_in() {
        let parsed: std::result::Result<DatasetGroup, _> = serde_json::from_str("\"a b\"");
        assert!(parsed.is_err());
        let ok: DatasetGroup = serde_json::from_str("\"adelaide-residents\"").expect("valid");
        assert_eq!(ok.as_str(), "adelaide-residents");
    }
}
