//! The built-in token issuer for the embedded demo.
//!
//! [`Issuer::open`] keeps Ed25519 signing keys in `DIR/identity/keys.json` (directory
//! `0700`, file `0600` on Unix). Tokens are RFC 9068 JWT access tokens signed with
//! EdDSA; the header is `{"alg":"EdDSA","typ":"at+jwt","kid":…}` where `kid` is the
//! RFC 7638 thumbprint of the public key.
//!
//! Rotation: [`Issuer::rotate`] makes a new key current and keeps the previous ones in
//! [`Issuer::jwks`], so tokens they signed still verify; [`Issuer::remove_key`] retires a
//! previous key once its tokens have expired.
//!
//! This issuer is meant for a single-node demo. Production deployments point the
//! [`Verifier`](crate::Verifier) at an external OpenID provider instead.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::{
    rand::{SecureRandom, SystemRandom},
    signature::{Ed25519KeyPair, KeyPair},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{AT_JWT, claims::Claims, principal::Principal, verifier::IssuerConfig};

/// The key file, relative to the data directory.
const KEY_FILE: &str = "identity/keys.json";

/// Why the issuer could not open, rotate or sign.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// Reading or writing the key store failed.
    #[error(
        "cannot access the identity key store at {path}: {source}; check that the data directory exists and is writable by this user"
    )]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file is not what this version writes.
    #[error(
        "the identity key store {path} is corrupt ({reason}); restore it from backup, or delete it to create a new key (all issued tokens become invalid)"
    )]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed; check that /dev/urandom is available")]
    Random,
    /// `remove_key` was asked to remove the key that signs new tokens.
    #[error("key `{0}` is the current signing key; rotate first, then remove it")]
    RemoveCurrent(String),
    /// `remove_key` was given a kid the store does not hold.
    #[error("no key with kid `{0}`; list the kids with `jwks()`")]
    UnknownKid(String),
    /// The issuer URL is empty.
    #[error("the issuer URL is empty; use the node's public base URL, e.g. https://polity.example")]
    EmptyIssuerUrl,
    /// Signing failed (a corrupt key).
    #[error("signing the token failed ({0}); the key store may be corrupt, rotate the key")]
    Sign(String),
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    /// PKCS#8 v2 document, base64url.
    pkcs8: String,
    created: u64,
}

#[derive(Serialize, Deserialize)]
struct KeyStore {
    version: u32,
    /// Oldest first; the last is current.
    keys: Vec<StoredKey>,
}

struct LoadedKey {
    kid: String,
    public: Vec<u8>,
    encoding: EncodingKey,
    pkcs8: Vec<u8>,
    created: u64,
}

/// The built-in issuer: signs access tokens and publishes its JWKS.
pub struct Issuer {
    url: String,
    path: PathBuf,
    keys: Vec<LoadedKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("url", &self.url)
            .field("path", &self.path)
            .field("kids", &self.kids())
            .finish_non_exhaustive()
    }
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key.
fn thumbprint(public: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        B64.encode(public)
    );
    B64.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IssuerError + '_ {
    move |source| IssuerError::Io {
        path: path.to_owned(),
        source,
    }
}

impl LoadedKey {
    fn from_pkcs8(pkcs8: Vec<u8>, created: u64, path: &Path) -> Result<Self, IssuerError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).map_err(|e| {
            IssuerError::Corrupt {
                path: path.to_owned(),
                reason: format!("not an Ed25519 PKCS#8 key: {e}"),
            }
        })?;
        let public = pair.public_key().as_ref().to_vec();
        Ok(LoadedKey {
            kid: thumbprint(&public),
            public,
            encoding: EncodingKey::from_ed_der(&pkcs8),
            pkcs8,
            created,
        })
    }
}

impl Issuer {
    /// Opens (or creates, with one fresh key) the key store under `data_dir/identity/`.
    /// `issuer_url` becomes the tokens' `iss`.
    pub fn open(data_dir: &Path, issuer_url: &str) -> Result<Self, IssuerError> {
        if issuer_url.is_empty() {
            return Err(IssuerError::EmptyIssuerUrl);
        }
        let path = data_dir.join(KEY_FILE);
        let mut issuer = Issuer {
            url: issuer_url.to_owned(),
            path,
            keys: Vec::new(),
            rng: SystemRandom::new(),
        };
        match fs::read(&issuer.path) {
            Ok(bytes) => {
                issuer.load(&bytes)?;
                restrict(&issuer.path, 0o600)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                issuer.rotate()?;
            }
            Err(e) => return Err(io(&issuer.path)(e)),
        }
        Ok(issuer)
    }

    fn load(&mut self, bytes: &[u8]) -> Result<(), IssuerError> {
        let corrupt = |reason: String| IssuerError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let store: KeyStore = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if store.version != 1 {
            return Err(corrupt(format!("unknown version {}", store.version)));
        }
        if store.keys.is_empty() {
            return Err(corrupt("no keys".into()));
        }
        for k in store.keys {
            let pkcs8 = B64
                .decode(&k.pkcs8)
                .map_err(|e| corrupt(format!("key `{}`: {e}", k.kid)))?;
            let key = LoadedKey::from_pkcs8(pkcs8, k.created, &self.path)?;
            if key.kid != k.kid {
                return Err(corrupt(format!("kid `{}` does not match its key", k.kid)));
            }
            self.keys.push(key);
        }
        Ok(())
    }

    fn save(&self) -> Result<(), IssuerError> {
        let store = KeyStore {
            version: 1,
            keys: self
                .keys
                .iter()
                .map(|k| StoredKey {
                    kid: k.kid.clone(),
                    pkcs8: B64.encode(&k.pkcs8),
                    created: k.created,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&store).map_err(|e| IssuerError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = create_private_file(&tmp)?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        Ok(())
    }

    /// The issuer URL (`iss`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key ids in the JWKS, oldest first; the last signs new tokens.
    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// The kid of the key that signs new tokens.
    pub fn current_kid(&self) -> &str {
        self.keys.last().map(|k| k.kid.as_str()).unwrap_or_default()
    }

    /// Generates a new signing key, makes it current, and persists the store. Previous
    /// keys stay in the JWKS until [`Issuer::remove_key`]. Returns the new kid.
    pub fn rotate(&mut self) -> Result<String, IssuerError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&self.rng).map_err(|_| IssuerError::Random)?;
        let key = LoadedKey::from_pkcs8(doc.as_ref().to_vec(), crate::now_secs(), &self.path)?;
        let kid = key.kid.clone();
        self.keys.push(key);
        if let Err(e) = self.save() {
            self.keys.pop();
            return Err(e);
        }
        Ok(kid)
    }

    /// Removes a previous key from the store and the JWKS: tokens it signed stop
    /// verifying once verifiers reload the JWKS.
    pub fn remove_key(&mut self, kid: &str) -> Result<(), IssuerError> {
        let pos = self
            .keys
            .iter()
            .position(|k| k.kid == kid)
            .ok_or_else(|| IssuerError::UnknownKid(kid.chars().take(64).collect()))?;
        if pos + 1 == self.keys.len() {
            return Err(IssuerError::RemoveCurrent(kid.to_owned()));
        }
        let removed = self.keys.remove(pos);
        if let Err(e) = self.save() {
            self.keys.insert(pos, removed);
            return Err(e);
        }
        Ok(())
    }

    /// The public keys as an RFC 7517 JWK Set of Ed25519 (`OKP`) keys.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": B64.encode(&k.public),
                    "kid": k.kid,
                    "use": "sig",
                    "alg": "EdDSA",
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    /// A verifier configuration trusting this issuer for `audience`.
    pub fn config(&self, audience: &str) -> IssuerConfig {
        IssuerConfig {
            url: self.url.clone(),
            audience: audience.to_owned(),
            jwks: self.jwks(),
            tenants: Vec::new(),
        }
    }

    /// Issues an access token for `principal`, valid for `ttl`, for `audience`.
    pub fn issue(
        &self,
        principal: &Principal,
        audience: &str,
        ttl: Duration,
    ) -> Result<String, IssuerError> {
        let mut claims = Claims::for_principal(principal, &self.url, audience, ttl);
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).map_err(|_| IssuerError::Random)?;
        claims.jti = Some(B64.encode(jti));
        self.sign(&claims)
    }

    /// Signs arbitrary claims with the current key and the standard header. The
    /// verifier still enforces issuer, audience and lifetime; this exists for tests
    /// and tooling that need unusual claims (e.g. already expired).
    pub fn sign(&self, claims: &Claims) -> Result<String, IssuerError> {
        let key = self
            .keys
            .last()
            .ok_or_else(|| IssuerError::Sign("no signing key".into()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(AT_JWT.to_owned());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| IssuerError::Sign(e.to_string()))
    }

    /// Signs an arbitrary JSON header and payload with the current key (EdDSA). Nothing
    /// is checked: this is for interoperability and negative tests only. The verifier
    /// rejects anything that does not follow the profile.
    pub fn sign_raw(&self, header: &Value, payload: &Value) -> Result<String, IssuerError> {
        let key = self
            .keys
            .last()
            .ok_or_else(|| IssuerError::Sign("no signing key".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&key.pkcs8)
            .map_err(|e| IssuerError::Sign(e.to_string()))?;
        let message = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(payload.to_string())
        );
        let sig = pair.sign(message.as_bytes());
        Ok(format!("{message}.{}", B64.encode(sig.as_ref())))
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> Result<(), IssuerError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> Result<(), IssuerError> {
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), IssuerError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(io(dir))?;
    restrict(dir, 0o700)
}

fn create_private_file(path: &Path) -> Result<fs::File, IssuerError> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o.open(path).map_err(io(path))?;
    restrict(path, 0o600)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_reloads_keys() {
        let dir = tempfile::tempdir().unwrap();
        let a = Issuer::open(dir.path(), "https://polity.test").unwrap();
        let kid = a.current_kid().to_owned();
        assert_eq!(kid.len(), 43);
        let b = Issuer::open(dir.path(), "https://polity.test").unwrap();
        assert_eq!(b.kids(), vec![kid]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = fs::metadata(dir.path().join(KEY_FILE)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
            let m = fs::metadata(dir.path().join("identity")).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o700);
        }
    }

    #[test]
    fn rotate_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Issuer::open(dir.path(), "https://polity.test").unwrap();
        let old = a.current_kid().to_owned();
        let new = a.rotate().unwrap();
        assert_ne!(old, new);
        assert_eq!(a.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(matches!(
            a.remove_key(&new),
            Err(IssuerError::RemoveCurrent(_))
        ));
        assert!(matches!(
            a.remove_key("nope"),
            Err(IssuerError::UnknownKid(_))
        ));
        a.remove_key(&old).unwrap();
        let b = Issuer::open(dir.path(), "https://polity.test").unwrap();
        assert_eq!(b.kids(), vec![new]);
    }

    #[test]
    fn corrupt_store_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("identity")).unwrap();
        fs::write(dir.path().join(KEY_FILE), b"{").unwrap();
        let e = Issuer::open(dir.path(), "https://polity.test").unwrap_err();
        assert!(matches!(e, IssuerError::Corrupt { .. }));
        assert!(e.to_string().contains("delete it"));
    }
}
