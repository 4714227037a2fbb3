//! Principals: who is acting, and over which tenants (cities).
//!
//! A [`Principal`] has a compact text form used in configuration, logs and the CLI:
//!
//! | Principal | Text |
//! |---|---|
//! | [`Principal::Operator`] | `operator` |
//! | [`Principal::CityAdmin`] | `city-admin:adelaide` |
//! | [`Principal::CityAnalyst`] | `city-analyst:adelaide` |
//! | [`Principal::SecurityAnalyst`] | `security-analyst` |
//! | [`Principal::Application`] | `app:<client>:<tenant>[,<tenant>…]` |
//! | [`Principal::Citizen`] | `citizen:<tenant>:<id>` |

use std::{fmt, str::FromStr};

use polity_model::{IdError, Tenant};

/// Longest accepted client id or citizen id, in bytes.
const MAX_ID_LEN: usize = 128;

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Runs the node: every tenant, every administrative action.
    Operator,
    /// Administers one city.
    CityAdmin(Tenant),
    /// Reads (aggregated) data of one city.
    CityAnalyst(Tenant),
    /// Reads the audit log and security events, across tenants.
    SecurityAnalyst,
    /// A machine client (OAuth 2.0 client credentials) acting on some tenants.
    Application {
        /// The OAuth 2.0 client id.
        client_id: String,
        /// The tenants the client may act on; never empty.
        tenants: Vec<Tenant>,
    },
    /// A resident of one city, acting on their own data.
    Citizen {
        /// The citizen's stable id at the issuer (the token's `sub`).
        id: String,
        /// The citizen's city.
        tenant: Tenant,
    },
}

/// Why a principal (text form or token claims) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    /// The role / prefix is not one Polity knows.
    #[error(
        "unknown principal kind `{0}`; use operator, city-admin:<tenant>, city-analyst:<tenant>, security-analyst, app:<client>:<tenant>[,<tenant>…] or citizen:<tenant>:<id>"
    )]
    UnknownKind(String),
    /// A tenant name is invalid.
    #[error(transparent)]
    BadTenant(#[from] IdError),
    /// The principal kind needs tenants but none were given.
    #[error(
        "principal `{0}` needs at least one tenant; add it after the role, e.g. city-admin:adelaide"
    )]
    MissingTenant(String),
    /// The principal kind takes exactly one tenant.
    #[error("principal `{0}` takes exactly one tenant; issue one token per city")]
    TooManyTenants(String),
    /// The principal kind takes no tenant.
    #[error("principal `{0}` is not bound to a tenant; remove the tenant")]
    UnexpectedTenant(String),
    /// A client id is empty, too long, or has characters other than `A-Z a-z 0-9 . _ -`.
    #[error(
        "client id `{0}` is invalid: use 1 to 128 characters from A-Z, a-z, 0-9, '.', '_' and '-'"
    )]
    BadClientId(String),
    /// A citizen id is empty, too long, or has whitespace or control characters.
    #[error("citizen id `{0}` is invalid: use 1 to 128 printable characters without whitespace")]
    BadCitizenId(String),
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn check_client_id(s: &str) -> Result<String, PrincipalError> {
    let ok = (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(PrincipalError::BadClientId(clip(s)))
    }
}

fn check_citizen_id(s: &str) -> Result<String, PrincipalError> {
    let ok = (1..=MAX_ID_LEN).contains(&s.len())
        && !s.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(PrincipalError::BadCitizenId(clip(s)))
    }
}

fn tenant_list(role: &str, s: &str) -> Result<Vec<Tenant>, PrincipalError> {
    if s.is_empty() {
        return Err(PrincipalError::MissingTenant(role.to_owned()));
    }
    let mut out: Vec<Tenant> = Vec::new();
    for t in s.split(',') {
        let t = Tenant::new(t)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

impl Principal {
    /// The role name used in the text form and in the token's `role` claim.
    pub fn role(&self) -> &'static str {
        match self {
            Principal::Operator => "operator",
            Principal::CityAdmin(_) => "city-admin",
            Principal::CityAnalyst(_) => "city-analyst",
            Principal::SecurityAnalyst => "security-analyst",
            Principal::Application { .. } => "app",
            Principal::Citizen { .. } => "citizen",
        }
    }

    /// The tenants the principal is bound to (empty for cross-tenant roles).
    pub fn tenants(&self) -> Vec<Tenant> {
        match self {
            Principal::Operator | Principal::SecurityAnalyst => Vec::new(),
            Principal::CityAdmin(t) | Principal::CityAnalyst(t) => vec![t.clone()],
            Principal::Application { tenants, .. } => tenants.clone(),
            Principal::Citizen { tenant, .. } => vec![tenant.clone()],
        }
    }

    /// The token subject (`sub`) the built-in issuer uses: the citizen id for citizens,
    /// the client id for applications, and the text form for everyone else.
    pub fn subject(&self) -> String {
        match self {
            Principal::Citizen { id, .. } => id.clone(),
            Principal::Application { client_id, .. } => client_id.clone(),
            other => other.to_string(),
        }
    }

    /// Rebuilds a principal from token claims: `role`, `tenants`, `sub` and, for
    /// applications, `client_id` (falling back to `sub`).
    pub fn from_role(
        role: &str,
        tenants: &[String],
        sub: &str,
        client_id: Option<&str>,
    ) -> Result<Self, PrincipalError> {
        let mut ts: Vec<Tenant> = Vec::with_capacity(tenants.len());
        for t in tenants {
            let t = Tenant::new(t)?;
            if !ts.contains(&t) {
                ts.push(t);
            }
        }
        let one = |ts: Vec<Tenant>| -> Result<Tenant, PrincipalError> {
            let mut it = ts.into_iter();
            match (it.next(), it.next()) {
                (Some(t), None) => Ok(t),
                (None, _) => Err(PrincipalError::MissingTenant(role.to_owned())),
                (Some(_), Some(_)) => Err(PrincipalError::TooManyTenants(role.to_owned())),
            }
        };
        let none = |p: Principal, ts: &[Tenant]| {
            if ts.is_empty() {
                Ok(p)
            } else {
                Err(PrincipalError::UnexpectedTenant(role.to_owned()))
            }
        };
        match role {
            "operator" => none(Principal::Operator, &ts),
            "security-analyst" => none(Principal::SecurityAnalyst, &ts),
            "city-admin" => Ok(Principal::CityAdmin(one(ts)?)),
            "city-analyst" => Ok(Principal::CityAnalyst(one(ts)?)),
            "citizen" => Ok(Principal::Citizen {
                id: check_citizen_id(sub)?,
                tenant: one(ts)?,
            }),
            "app" => {
                if ts.is_empty() {
                    return Err(PrincipalError::MissingTenant(role.to_owned()));
                }
                Ok(Principal::Application {
                    client_id: check_client_id(client_id.unwrap_or(sub))?,
                    tenants: ts,
                })
            }
            other => Err(PrincipalError::UnknownKind(clip(other))),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Operator | Principal::SecurityAnalyst => f.write_str(self.role()),
            Principal::CityAdmin(t) | Principal::CityAnalyst(t) => {
                write!(f, "{}:{t}", self.role())
            }
            Principal::Application { client_id, tenants } => {
                write!(f, "app:{client_id}:")?;
                for (i, t) in tenants.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(t.as_str())?;
                }
                Ok(())
            }
            Principal::Citizen { id, tenant } => write!(f, "citizen:{tenant}:{id}"),
        }
    }
}

impl FromStr for Principal {
    type Err = PrincipalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (s, None),
        };
        match (kind, rest) {
            ("operator", None) => Ok(Principal::Operator),
            ("security-analyst", None) => Ok(Principal::SecurityAnalyst),
            ("operator" | "security-analyst", Some(_)) => {
                Err(PrincipalError::UnexpectedTenant(kind.to_owned()))
            }
            ("city-admin" | "city-analyst", None) => {
                Err(PrincipalError::MissingTenant(kind.to_owned()))
            }
            ("city-admin", Some(t)) => Ok(Principal::CityAdmin(Tenant::new(t)?)),
            ("city-analyst", Some(t)) => Ok(Principal::CityAnalyst(Tenant::new(t)?)),
            ("app", Some(r)) => {
                let Some((client, tenants)) = r.split_once(':') else {
                    return Err(PrincipalError::MissingTenant("app".to_owned()));
                };
                Ok(Principal::Application {
                    client_id: check_client_id(client)?,
                    tenants: tenant_list("app", tenants)?,
                })
            }
            ("citizen", Some(r)) => {
                let Some((tenant, id)) = r.split_once(':') else {
                    return Err(PrincipalError::BadCitizenId(String::new()));
                };
                Ok(Principal::Citizen {
                    id: check_citizen_id(id)?,
                    tenant: Tenant::new(tenant)?,
                })
            }
            ("app" | "citizen", None) => Err(PrincipalError::MissingTenant(kind.to_owned())),
            (other, _) => Err(PrincipalError::UnknownKind(clip(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Tenant {
        Tenant::new(s).unwrap()
    }

    #[test]
    fn text_round_trip() {
        let all = [
            Principal::Operator,
            Principal::CityAdmin(t("adelaide")),
            Principal::CityAnalyst(t("adelaide")),
            Principal::SecurityAnalyst,
            Principal::Application {
                client_id: "parking-app".into(),
                tenants: vec![t("adelaide"), t("perth")],
            },
            Principal::Citizen {
                id: "u-42".into(),
                tenant: t("adelaide"),
            },
        ];
        let texts = [
            "operator",
            "city-admin:adelaide",
            "city-analyst:adelaide",
            "security-analyst",
            "app:parking-app:adelaide,perth",
            "citizen:adelaide:u-42",
        ];
        for (p, s) in all.iter().zip(texts) {
            assert_eq!(p.to_string(), s);
            assert_eq!(&s.parse::<Principal>().unwrap(), p);
            let back = Principal::from_role(
                p.role(),
                &p.tenants()
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>(),
                &p.subject(),
                None,
            )
            .unwrap();
            assert_eq!(&back, p);
        }
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "root",
            "operator:adelaide",
            "city-admin",
            "city-admin:",
            "city-admin:Adelaide",
            "app:x",
            "app::adelaide",
            "app:x:",
            "app:x y:adelaide",
            "citizen:adelaide",
            "citizen:adelaide:",
            "citizen:adelaide:a b",
        ] {
            assert!(bad.parse::<Principal>().is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_tenant_arity() {
        let two = ["a".to_owned(), "b".to_owned()];
        assert!(matches!(
            Principal::from_role("city-admin", &two, "x", None),
            Err(PrincipalError::TooManyTenants(_))
        ));
        assert!(matches!(
            Principal::from_role("operator", &two, "x", None),
            Err(PrincipalError::UnexpectedTenant(_))
        ));
        assert!(matches!(
            Principal::from_role("app", &[], "x", None),
            Err(PrincipalError::MissingTenant(_))
        ));
    }
}
