//! Authentication: who a request comes from.
//!
//! A request's principal comes, in this order, from:
//! 1. a bearer token (`authorization: Bearer <JWT>`), checked for its signature (HS256 with
//!    `auth.jwt_hs256_secret_file`, RS256 with `auth.jwt_rs256_public_key_file`), expiry,
//!    not-before, audience and issuer. The principal is `User:<sub>`. A token that fails any
//!    check refuses the request, even over a connection with a client certificate;
//! 2. the connection's client certificate (mutual TLS): `User:<CN>`;
//! 3. nothing: `User:ANONYMOUS`, unless `auth.required`, which refuses the request.
//!
//! A refusal is gRPC `UNAUTHENTICATED` naming what failed, and is counted in
//! `brook_authentication_failures_total{reason}`.
//!
//! The key files reload when they change (checked every `auth.reload_interval_ms`) or on
//! SIGHUP; a reload that fails keeps the keys in force.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::AuthConfig;

/// Who a request runs as: `User:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal(String);

impl Principal {
    /// The principal of requests that carry no identity.
    pub fn anonymous() -> Principal {
        Principal("User:ANONYMOUS".to_string())
    }

    /// `User:<name>`.
    pub fn user(name: &str) -> Principal {
        Principal(format!("User:{name}"))
    }

    /// From its full form (`User:alice`), as a certificate's principal is carried.
    pub fn from_full(full: &str) -> Principal {
        Principal(full.to_string())
    }

    /// The full form, `User:<name>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for [`Principal::anonymous`].
    pub fn is_anonymous(&self) -> bool {
        self.0 == "User:ANONYMOUS"
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why the `[auth]` files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A file could not be read.
    #[error("auth.{setting} = {}: cannot read it: {source}", path.display())]
    Read {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file does not hold a usable key.
    #[error("auth.{setting} = {}: {reason}", path.display())]
    Invalid {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No token and no client certificate, with `auth.required`.
    Missing,
    /// A token was sent, but this broker has no JWT key configured.
    TokensNotAccepted,
    /// The `authorization` header is not `Bearer <token>`, or the token does not decode.
    Malformed(String),
    /// The token is signed with an algorithm this broker does not take.
    Algorithm(String),
    /// The token's signature does not verify.
    Signature,
    /// The token's `exp` has passed.
    Expired,
    /// The token's `nbf` is in the future.
    NotYetValid,
    /// The token's `aud` does not name this broker's audience.
    Audience,
    /// The token's `iss` is not this broker's issuer.
    Issuer,
    /// The token's key id (`kid`) names no key of `auth.jwt_jwks_file`, or a key of another
    /// algorithm.
    Key(String),
}

impl Rejection {
    /// The `reason` label of `brook_authentication_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::TokensNotAccepted => "tokens_not_accepted",
            Rejection::Malformed(_) => "malformed",
            Rejection::Algorithm(_) => "algorithm",
            Rejection::Signature => "signature",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::Audience => "audience",
            Rejection::Issuer => "issuer",
            Rejection::Key(_) => "key",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Missing => f.write_str(
                "authentication required: send a bearer token or connect with a client certificate",
            ),
            Rejection::TokensNotAccepted => f.write_str(
                "token refused: this broker takes no tokens (no auth.jwt_* key is configured)",
            ),
            Rejection::Malformed(why) => write!(f, "token refused: {why}"),
            Rejection::Algorithm(alg) => write!(
                f,
                "token refused: signed with {alg}; this broker takes the algorithms it has a key for (HS256, RS256)"
            ),
            Rejection::Signature => f.write_str("token refused: the signature does not verify"),
            Rejection::Expired => f.write_str("token refused: it has expired"),
            Rejection::NotYetValid => f.write_str("token refused: it is not valid yet (nbf)"),
            Rejection::Audience => {
                f.write_str("token refused: its audience (aud) does not name this broker's")
            }
            Rejection::Issuer => {
                f.write_str("token refused: its issuer (iss) is not the expected one")
            }
            Rejection::Key(why) => write!(f, "token refused: {why}"),
        }
    }
}

/// The claims the broker reads; the others are checked by [`Validation`].
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Most tokens [`VerifiedTokens`] remembers; when full it starts over.
pub const MAX_VERIFIED_TOKENS: usize = 4096;
/// Longest token [`VerifiedTokens`] remembers (bytes); longer ones are verified every time.
const MAX_REMEMBERED_TOKEN: usize = 4096;

/// Tokens whose signature and claims verified, with their principal and expiry. A client
/// sends the same token on every request; checking the signature once, and the expiry on
/// each use, saves an HMAC or RSA verification per request. Keys load once at start, so a
/// verified signature stays verified; `exp` is checked against the clock on every hit, with
/// the same leeway.
#[derive(Default)]
struct VerifiedTokens {
    tokens: parking_lot::Mutex<std::collections::HashMap<String, (Principal, u64)>>,
    /// Bumped when the keys change: a token verified under older keys is not remembered.
    generation: AtomicU64,
}

impl VerifiedTokens {
    /// The principal of a token verified before, or why it no longer passes; `None` if it
    /// was not seen.
    fn get(&self, token: &str, leeway_s: u64) -> Option<Result<Principal, Rejection>> {
        let mut tokens = self.tokens.lock();
        let (principal, exp) = tokens.get(token)?;
        if jsonwebtoken::get_current_timestamp() > exp.saturating_add(leeway_s) {
            tokens.remove(token);
            return Some(Err(Rejection::Expired));
        }
        Some(Ok(principal.clone()))
    }

    /// Remembers `token`, verified under the keys of `generation`.
    fn insert(&self, token: &str, principal: &Principal, exp: u64, generation: u64) {
        if token.len() > MAX_REMEMBERED_TOKEN {
            return;
        }
        let mut tokens = self.tokens.lock();
        if generation != self.generation.load(Ordering::Acquire) {
            return;
        }
        if tokens.len() >= MAX_VERIFIED_TOKENS {
            tokens.clear();
        }
        tokens.insert(token.to_string(), (principal.clone(), exp));
    }

    /// Forgets every token: the keys changed.
    fn forget_all(&self) {
        let mut tokens = self.tokens.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        tokens.clear();
    }
}

/// Most keys `auth.jwt_jwks_file` may hold (usable or not).
pub const MAX_JWKS_KEYS: usize = 64;

/// A key of `auth.jwt_jwks_file` with the one algorithm it verifies.
struct SetKey {
    kid: String,
    alg: Algorithm,
    key: DecodingKey,
}

/// The keys and rules tokens are checked with.
struct Jwt {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    /// The JWKS file's usable keys, in file order; key ids are unique.
    set: Vec<SetKey>,
    audience: String,
    issuer: String,
    leeway_s: u64,
}

/// Turns a request's credentials into its [`Principal`].
pub struct Authenticator {
    required: bool,
    config: AuthConfig,
    /// The keys in force, swapped whole on reload.
    jwt: parking_lot::RwLock<Option<Arc<Jwt>>>,
    /// The key files as they were when last loaded.
    stamps: parking_lot::Mutex<Vec<Stamp>>,
    verified: VerifiedTokens,
}

/// What a file looked like when it was read: a change of either means it was replaced.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(config: &AuthConfig) -> Vec<Stamp> {
    [
        &config.jwt_hs256_secret_file,
        &config.jwt_rs256_public_key_file,
        &config.jwt_jwks_file,
    ]
    .iter()
    .map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
    .collect()
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("required", &self.required)
            .field("jwt", &self.jwt.read().is_some())
            .finish()
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::Read {
        setting,
        path: path.to_path_buf(),
        source,
    })
}

impl Authenticator {
    /// Reads the key files `config` names.
    pub fn load(config: &AuthConfig) -> Result<Authenticator, AuthError> {
        let stamped = stamps(config);
        let jwt = Authenticator::load_jwt(config)?;
        Ok(Authenticator {
            required: config.required,
            config: config.clone(),
            jwt: parking_lot::RwLock::new(jwt.map(Arc::new)),
            stamps: parking_lot::Mutex::new(stamped),
            verified: VerifiedTokens::default(),
        })
    }

    /// Tokens are taken: a JWT key is configured.
    pub fn takes_tokens(&self) -> bool {
        self.config.takes_tokens()
    }

    /// Reads the key files again and puts them in force; on error the keys in force stay.
    /// Tokens remembered as verified are forgotten.
    pub fn reload(&self) -> Result<(), AuthError> {
        let stamped = stamps(&self.config);
        let jwt = Authenticator::load_jwt(&self.config)?;
        *self.jwt.write() = jwt.map(Arc::new);
        *self.stamps.lock() = stamped;
        self.verified.forget_all();
        metrics::counter!("brook_auth_reloads_total").increment(1);
        Ok(())
    }

    /// Reloads when a key file's modification time or length changed since it was last
    /// loaded. Returns whether it reloaded.
    pub fn reload_if_changed(&self) -> Result<bool, AuthError> {
        if stamps(&self.config) == *self.stamps.lock() {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// The keys `config` names, read and checked; `None` when it names none.
    fn load_jwt(config: &AuthConfig) -> Result<Option<Jwt>, AuthError> {
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        let hs256 = if set(&config.jwt_hs256_secret_file) {
            let path = &config.jwt_hs256_secret_file;
            let mut secret = read("jwt_hs256_secret_file", path)?;
            while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                secret.pop();
            }
            if let Some(reason) = short_secret(secret.len()) {
                return Err(AuthError::Invalid {
                    setting: "jwt_hs256_secret_file",
                    path: path.clone(),
                    reason,
                });
            }
            Some(
                DecodingKey::from_secret(&secret).map_err(|e| AuthError::Invalid {
                    setting: "jwt_hs256_secret_file",
                    path: path.clone(),
                    reason: e.to_string(),
                })?,
            )
        } else {
            None
        };
        let rs256 = if set(&config.jwt_rs256_public_key_file) {
            let path = &config.jwt_rs256_public_key_file;
            let pem = read("jwt_rs256_public_key_file", path)?;
            Some(
                DecodingKey::from_rsa_pem(&pem).map_err(|e| AuthError::Invalid {
                    setting: "jwt_rs256_public_key_file",
                    path: path.clone(),
                    reason: format!("not a PEM RSA public key: {e}"),
                })?,
            )
        } else {
            None
        };
        let key_set = if set(&config.jwt_jwks_file) {
            load_jwks(&config.jwt_jwks_file)?
        } else {
            Vec::new()
        };
        Ok(
            (hs256.is_some() || rs256.is_some() || !key_set.is_empty()).then(|| Jwt {
                hs256,
                rs256,
                set: key_set,
                audience: config.jwt_audience.clone(),
                issuer: config.jwt_issuer.clone(),
                leeway_s: config.jwt_leeway_s,
            }),
        )
    }

    /// The principal of a request with the `authorization` header value `authorization`
    /// (`None` when absent) over a connection whose client certificate stands for
    /// `certificate`.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        certificate: Option<&str>,
    ) -> Result<Principal, Rejection> {
        if let Some(header) = authorization {
            return self.token_principal(header);
        }
        if let Some(principal) = certificate {
            return Ok(Principal::from_full(principal));
        }
        if self.required {
            return Err(Rejection::Missing);
        }
        Ok(Principal::anonymous())
    }

    fn token_principal(&self, header: &[u8]) -> Result<Principal, Rejection> {
        let malformed = |why: &str| Rejection::Malformed(why.to_string());
        let header = std::str::from_utf8(header)
            .map_err(|_| malformed("the authorization header is not text"))?;
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(malformed(
                    "the authorization header is not \"Bearer <token>\"",
                ));
            }
        };
        // The generation first: a reload after it keeps this verification from being
        // remembered.
        let generation = self.verified.generation.load(Ordering::Acquire);
        let Some(jwt) = self.jwt.read().clone() else {
            return Err(Rejection::TokensNotAccepted);
        };
        if let Some(known) = self.verified.get(token, jwt.leeway_s) {
            return known;
        }
        let head = jsonwebtoken::decode_header(token)
            .map_err(|e| Rejection::Malformed(format!("not a JWT: {e}")))?;
        let keys = jwt.keys_for(head.alg, head.kid.as_deref())?;
        let mut validation = Validation::new(head.alg);
        validation.leeway = jwt.leeway_s;
        validation.validate_nbf = true;
        validation.set_audience(&[&jwt.audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        if !jwt.issuer.is_empty() {
            validation.set_issuer(&[&jwt.issuer]);
            validation.required_spec_claims.insert("iss".to_string());
        }
        // Each candidate key in turn: the first whose signature verifies decides.
        let mut verified = Err(ErrorKind::InvalidSignature.into());
        for key in keys {
            verified = jsonwebtoken::decode::<Claims>(token, key, &validation);
            if !matches!(&verified, Err(e) if *e.kind() == ErrorKind::InvalidSignature) {
                break;
            }
        }
        let data = verified.map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => Rejection::Signature,
            ErrorKind::ExpiredSignature => Rejection::Expired,
            ErrorKind::ImmatureSignature => Rejection::NotYetValid,
            ErrorKind::InvalidAudience => Rejection::Audience,
            ErrorKind::InvalidIssuer => Rejection::Issuer,
            ErrorKind::MissingRequiredClaim(claim) => {
                Rejection::Malformed(format!("it has no {claim} claim"))
            }
            _ => Rejection::Malformed(format!("not a valid JWT: {e}")),
        })?;
        if data.claims.sub.is_empty() {
            return Err(malformed("its subject (sub) is empty"));
        }
        let principal = Principal::user(&data.claims.sub);
        (self.verified).insert(token, &principal, data.claims.exp, generation);
        Ok(principal)
    }
}

impl Jwt {
    /// The keys a token signed with `alg` under key id `kid` may verify with, tried in order:
    /// - With a JWKS file and a `kid`, the set's key of that id, which must be for `alg`.
    /// - Otherwise the key file for `alg`, else each key of the set for `alg` (a token without
    ///   a `kid`, during a rotation, verifies with whichever key signed it).
    fn keys_for(&self, alg: Algorithm, kid: Option<&str>) -> Result<Vec<&DecodingKey>, Rejection> {
        if let Some(kid) = kid.filter(|_| !self.set.is_empty()) {
            let Some(found) = self.set.iter().find(|k| k.kid == kid) else {
                return Err(Rejection::Key(format!(
                    "its key id (kid) \"{kid}\" is not in this broker's key set"
                )));
            };
            if found.alg != alg {
                return Err(Rejection::Key(format!(
                    "it is signed with {alg:?}, but its key \"{kid}\" is for {:?}",
                    found.alg
                )));
            }
            return Ok(vec![&found.key]);
        }
        let file = match alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        };
        let keys: Vec<&DecodingKey> = match file {
            Some(key) => vec![key],
            None => (self.set.iter())
                .filter(|k| k.alg == alg)
                .map(|k| &k.key)
                .collect(),
        };
        if keys.is_empty() {
            return Err(Rejection::Algorithm(format!("{alg:?}")));
        }
        Ok(keys)
    }
}

/// Why an HS256 secret of `len` bytes is refused, if it is: HS256 needs 32 bytes or more.
fn short_secret(len: usize) -> Option<String> {
    (len < 32).then(|| format!("the secret is {len} bytes; HS256 needs at least 32"))
}

/// Reads a JSON Web Key Set (RFC 7517), the format identity providers publish at their
/// `jwks_uri`. Keys for signatures with RS256 (`kty` RSA) or HS256 (`kty` oct) are kept;
/// keys for encryption or other algorithms are skipped, as a provider's set may hold them.
/// Every kept key needs a unique `kid`; an HS256 secret needs 32 bytes or more.
fn load_jwks(path: &Path) -> Result<Vec<SetKey>, AuthError> {
    const SETTING: &str = "jwt_jwks_file";
    let invalid = |reason: String| AuthError::Invalid {
        setting: SETTING,
        path: path.to_path_buf(),
        reason,
    };
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet = serde_json::from_slice(&read(SETTING, path)?)
        .map_err(|e| invalid(format!("not a JSON Web Key Set ({{\"keys\": [...]}}): {e}")))?;
    if raw.keys.len() > MAX_JWKS_KEYS {
        return Err(invalid(format!(
            "it holds {} keys; at most {MAX_JWKS_KEYS} are taken",
            raw.keys.len()
        )));
    }
    let mut set: Vec<SetKey> = Vec::new();
    let mut skipped = Vec::new();
    for (i, value) in raw.keys.into_iter().enumerate() {
        let jwk: Jwk = serde_json::from_value(value)
            .map_err(|e| invalid(format!("key {i} is not a JSON Web Key: {e}")))?;
        let name = match &jwk.common.key_id {
            Some(kid) => format!("key {i} (\"{kid}\")"),
            None => format!("key {i}"),
        };
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::OctetKey(_), None | Some(KeyAlgorithm::HS256)) => {
                Algorithm::HS256
            }
            _ => {
                skipped.push(format!("{name}: neither an RS256 nor an HS256 key"));
                continue;
            }
        };
        if matches!(
            jwk.common.public_key_use,
            Some(ref u) if *u != PublicKeyUse::Signature
        ) {
            skipped.push(format!("{name}: not for signatures (use)"));
            continue;
        }
        let Some(kid) = jwk.common.key_id.clone().filter(|k| !k.is_empty()) else {
            return Err(invalid(format!(
                "{name} has no key id (kid); tokens name their key by it"
            )));
        };
        if set.iter().any(|k| k.kid == kid) {
            return Err(invalid(format!("{name}: key id \"{kid}\" appears twice")));
        }
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| invalid(format!("{name} is not a usable {alg:?} key: {e}")))?;
        if alg == Algorithm::HS256 {
            let len = key.try_get_as_bytes().map_or(0, <[u8]>::len);
            if let Some(reason) = short_secret(len) {
                return Err(invalid(format!("{name}: {reason}")));
            }
        }
        set.push(SetKey { kid, alg, key });
    }
    if set.is_empty() {
        let why = if skipped.is_empty() {
            "it holds no keys".to_string()
        } else {
            format!(
                "it holds no RS256 or HS256 signing key ({})",
                skipped.join("; ")
            )
        };
        return Err(invalid(why));
    }
    for why in skipped {
        tracing::info!(file = %path.display(), "auth.jwt_jwks_file: skipped {why}");
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde::Serialize;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    /// A 2048-bit RSA pair made for these tests with `openssl genrsa` (used nowhere else).
    const RSA_KEY: &str = include_str!("../../tests/data/jwt-rs256-test.key");
    const RSA_PUB: &str = include_str!("../../tests/data/jwt-rs256-test.pub");

    #[derive(Serialize)]
    struct TestClaims<'a> {
        sub: &'a str,
        aud: &'a str,
        exp: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        nbf: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        iss: Option<&'a str>,
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims(sub: &str) -> TestClaims<'_> {
        TestClaims {
            sub,
            aud: "brook",
            exp: now() + 600,
            nbf: None,
            iss: None,
        }
    }

    fn hs256(c: &TestClaims<'_>, secret: &[u8]) -> Vec<u8> {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            c,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap();
        format!("Bearer {token}").into_bytes()
    }

    fn rs256(c: &TestClaims<'_>) -> Vec<u8> {
        let key = EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), c, &key).unwrap();
        format!("Bearer {token}").into_bytes()
    }

    fn files() -> (tempfile::TempDir, AuthConfig) {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, [SECRET, b"\n"].concat()).unwrap();
        let public = dir.path().join("rs256.pub");
        std::fs::write(&public, RSA_PUB).unwrap();
        let config = AuthConfig {
            jwt_hs256_secret_file: secret,
            jwt_rs256_public_key_file: public,
            jwt_audience: "brook".into(),
            ..AuthConfig::default()
        };
        (dir, config)
    }

    fn authenticator(f: impl FnOnce(&mut AuthConfig)) -> (tempfile::TempDir, Authenticator) {
        let (dir, mut config) = files();
        f(&mut config);
        (dir, Authenticator::load(&config).unwrap())
    }

    #[test]
    fn changed_keys_reload_forget_remembered_tokens_and_a_bad_file_keeps_the_old_ones() {
        let (dir, auth) = authenticator(|_| {});
        let old = hs256(&claims("alice"), SECRET);
        assert_eq!(
            auth.authenticate(Some(&old), None),
            Ok(Principal::user("alice"))
        );
        assert!(!auth.reload_if_changed().unwrap());
        // A new secret, one byte longer (the length is part of what a change is seen by).
        let new_secret = b"fedcba9876543210fedcba9876543210x";
        std::fs::write(dir.path().join("secret"), new_secret).unwrap();
        assert!(auth.reload_if_changed().unwrap());
        // The old token was remembered as verified; the reload forgot it.
        assert_eq!(
            auth.authenticate(Some(&old), None),
            Err(Rejection::Signature)
        );
        let new = hs256(&claims("alice"), new_secret);
        assert_eq!(
            auth.authenticate(Some(&new), None),
            Ok(Principal::user("alice"))
        );
        // A secret too short is refused; the keys in force stay.
        std::fs::write(dir.path().join("secret"), b"short").unwrap();
        let err = auth.reload_if_changed().unwrap_err();
        assert!(
            err.to_string()
                .ends_with("the secret is 5 bytes; HS256 needs at least 32"),
            "{err}"
        );
        assert_eq!(
            auth.authenticate(Some(&new), None),
            Ok(Principal::user("alice"))
        );
        std::fs::remove_file(dir.path().join("secret")).unwrap();
        assert!(matches!(auth.reload(), Err(AuthError::Read { .. })));
        assert_eq!(
            auth.authenticate(Some(&new), None),
            Ok(Principal::user("alice"))
        );
    }

    #[test]
    fn valid_tokens_of_both_algorithms_name_their_subject() {
        let (_d, auth) = authenticator(|_| {});
        let alice = auth.authenticate(Some(&hs256(&claims("alice"), SECRET)), None);
        assert_eq!(alice, Ok(Principal::user("alice")));
        let bob = auth.authenticate(Some(&rs256(&claims("bob"))), None);
        assert_eq!(bob.unwrap().as_str(), "User:bob");
        // The token wins over the connection's certificate.
        let both = auth.authenticate(Some(&hs256(&claims("alice"), SECRET)), Some("User:cert"));
        assert_eq!(both, Ok(Principal::user("alice")));
    }

    #[test]
    fn a_remembered_token_is_refused_once_it_expires_and_the_memory_is_bounded() {
        let (_d, auth) = authenticator(|c| c.jwt_leeway_s = 0);
        let mut short = claims("alice");
        short.exp = now() + 1;
        let token = hs256(&short, SECRET);
        assert_eq!(
            auth.authenticate(Some(&token), None),
            Ok(Principal::user("alice"))
        );
        assert_eq!(auth.verified.tokens.lock().len(), 1);
        // Remembered: the same token passes without its signature being checked again.
        assert_eq!(
            auth.authenticate(Some(&token), None),
            Ok(Principal::user("alice"))
        );
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(
            auth.authenticate(Some(&token), None),
            Err(Rejection::Expired)
        );
        assert_eq!(auth.verified.tokens.lock().len(), 0);
        // A tampered copy of a remembered token is not the same string: verified, refused.
        let good = hs256(&claims("bob"), SECRET);
        auth.authenticate(Some(&good), None).unwrap();
        let mut tampered = good.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(auth.authenticate(Some(&tampered), None).is_err());
        for i in 0..MAX_VERIFIED_TOKENS + 10 {
            let mut c = claims("many");
            c.exp = now() + 600 + i as u64;
            auth.authenticate(Some(&hs256(&c, SECRET)), None).unwrap();
        }
        assert!(auth.verified.tokens.lock().len() <= MAX_VERIFIED_TOKENS);
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let (_d, auth) = authenticator(|c| c.jwt_issuer = "https://issuer.example".into());
        let with_issuer = |mut c: TestClaims<'static>| {
            c.iss = Some("https://issuer.example");
            c
        };
        let check = |token: Vec<u8>, expected: Rejection| {
            assert_eq!(auth.authenticate(Some(&token), None), Err(expected));
        };
        let mut expired = with_issuer(claims("alice"));
        expired.exp = now() - 120;
        check(hs256(&expired, SECRET), Rejection::Expired);
        let mut early = with_issuer(claims("alice"));
        early.nbf = Some(now() + 600);
        check(hs256(&early, SECRET), Rejection::NotYetValid);
        let mut elsewhere = with_issuer(claims("alice"));
        elsewhere.aud = "another-service";
        check(hs256(&elsewhere, SECRET), Rejection::Audience);
        let mut issuer = claims("alice");
        issuer.iss = Some("https://evil.example");
        check(hs256(&issuer, SECRET), Rejection::Issuer);
        check(
            hs256(&claims("alice"), SECRET),
            Rejection::Malformed("it has no iss claim".into()),
        );
        // Signed with another secret.
        check(
            hs256(
                &with_issuer(claims("alice")),
                b"another secret of thirty-two bytes!",
            ),
            Rejection::Signature,
        );
        // A good token with its payload swapped for another's: the signature no longer fits.
        let good = String::from_utf8(hs256(&with_issuer(claims("alice")), SECRET)).unwrap();
        let admin = String::from_utf8(hs256(&with_issuer(claims("admin")), SECRET)).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let admin_payload = admin.split('.').nth(1).unwrap();
        let tampered = format!("{}.{}.{}", parts[0], admin_payload, parts[2]);
        check(tampered.into_bytes(), Rejection::Signature);
        let mut nameless = with_issuer(claims(""));
        nameless.sub = "";
        check(
            hs256(&nameless, SECRET),
            Rejection::Malformed("its subject (sub) is empty".into()),
        );
    }

    #[test]
    fn algorithms_without_a_key_and_malformed_headers_are_refused() {
        let (_d, hs_only) = authenticator(|c| c.jwt_rs256_public_key_file = PathBuf::new());
        assert_eq!(
            hs_only.authenticate(Some(&rs256(&claims("bob"))), None),
            Err(Rejection::Algorithm("RS256".into()))
        );
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims("alice"),
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap();
        assert_eq!(
            hs_only.authenticate(Some(format!("Bearer {hs384}").as_bytes()), None),
            Err(Rejection::Algorithm("HS384".into()))
        );
        for (header, why) in [
            (
                &b"Basic YWxpY2U6c2VjcmV0"[..],
                "the authorization header is not \"Bearer <token>\"",
            ),
            (
                b"Bearer",
                "the authorization header is not \"Bearer <token>\"",
            ),
            (b"\xff\xfe", "the authorization header is not text"),
        ] {
            assert_eq!(
                hs_only.authenticate(Some(header), None),
                Err(Rejection::Malformed(why.into()))
            );
        }
        let garbage = hs_only.authenticate(Some(b"Bearer not.a.jwt"), None);
        assert!(
            matches!(&garbage, Err(Rejection::Malformed(why)) if why.starts_with("not a JWT: ")),
            "{garbage:?}"
        );
        // No key at all: tokens are refused, not ignored.
        let none = Authenticator::load(&AuthConfig::default()).unwrap();
        assert_eq!(
            none.authenticate(Some(&hs256(&claims("alice"), SECRET)), None),
            Err(Rejection::TokensNotAccepted)
        );
    }

    #[test]
    fn without_a_token_the_certificate_or_anonymous_unless_required() {
        let open = Authenticator::load(&AuthConfig::default()).unwrap();
        assert_eq!(open.authenticate(None, None), Ok(Principal::anonymous()));
        assert!(open.authenticate(None, None).unwrap().is_anonymous());
        assert_eq!(
            open.authenticate(None, Some("User:alice")),
            Ok(Principal::user("alice"))
        );
        let required = Authenticator::load(&AuthConfig {
            required: true,
            ..AuthConfig::default()
        })
        .unwrap();
        assert_eq!(required.authenticate(None, None), Err(Rejection::Missing));
        assert_eq!(
            required.authenticate(None, Some("User:alice")),
            Ok(Principal::user("alice"))
        );
        assert_eq!(
            Rejection::Missing.to_string(),
            "authentication required: send a bearer token or connect with a client certificate"
        );
    }

    #[test]
    fn key_files_are_checked_at_load() {
        let (dir, mut config) = files();
        let short = dir.path().join("short");
        std::fs::write(&short, "too short\n").unwrap();
        config.jwt_hs256_secret_file = short.clone();
        assert_eq!(
            Authenticator::load(&config).unwrap_err().to_string(),
            format!(
                "auth.jwt_hs256_secret_file = {}: the secret is 9 bytes; HS256 needs at least 32",
                short.display()
            )
        );
        let (dir, mut config) = files();
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        config.jwt_rs256_public_key_file = not_pem.clone();
        let err = Authenticator::load(&config).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "auth.jwt_rs256_public_key_file = {}: not a PEM RSA public key",
                not_pem.display()
            )),
            "{err}"
        );
        config.jwt_rs256_public_key_file = dir.path().join("missing.pem");
        let err = Authenticator::load(&config).unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::Read {
                    setting: "jwt_rs256_public_key_file",
                    ..
                }
            ),
            "{err}"
        );
    }

    const RSA_JWK: &str = include_str!("../../tests/data/jwt-rs256-test.jwk.json");

    fn with_kid(
        c: &TestClaims<'_>,
        alg: Algorithm,
        kid: Option<&str>,
        key: &EncodingKey,
    ) -> Vec<u8> {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        let token = jsonwebtoken::encode(&header, c, key).unwrap();
        format!("Bearer {token}").into_bytes()
    }

    /// An HS256 key of a JWKS file.
    fn oct(kid: &str, secret: &[u8]) -> serde_json::Value {
        use base64::Engine as _;
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        serde_json::json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": k})
    }

    fn write_set(path: &Path, keys: &[serde_json::Value]) {
        let set = serde_json::json!({ "keys": keys });
        std::fs::write(path, serde_json::to_vec_pretty(&set).unwrap()).unwrap();
    }

    #[test]
    fn a_key_set_verifies_by_key_id_and_rotates_with_an_overlap() {
        const SECRET_2: &[u8] = b"the second secret, 32 bytes long";
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        let rsa: serde_json::Value = serde_json::from_str(RSA_JWK).unwrap();
        write_set(&jwks, &[oct("k1", SECRET), rsa.clone()]);
        let config = AuthConfig {
            jwt_jwks_file: jwks.clone(),
            jwt_audience: "brook".into(),
            ..AuthConfig::default()
        };
        let auth = Authenticator::load(&config).unwrap();
        let k1 = EncodingKey::from_secret(SECRET).unwrap();
        let k2 = EncodingKey::from_secret(SECRET_2).unwrap();
        let rsa_key = EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).unwrap();
        let alice = with_kid(&claims("alice"), Algorithm::HS256, Some("k1"), &k1);
        assert_eq!(
            auth.authenticate(Some(&alice), None),
            Ok(Principal::user("alice"))
        );
        let bob = with_kid(&claims("bob"), Algorithm::RS256, Some("rsa-test"), &rsa_key);
        assert_eq!(
            auth.authenticate(Some(&bob), None),
            Ok(Principal::user("bob"))
        );
        // Without a kid, the set's keys of the token's algorithm are tried.
        let carol = with_kid(&claims("carol"), Algorithm::HS256, None, &k1);
        assert_eq!(
            auth.authenticate(Some(&carol), None),
            Ok(Principal::user("carol"))
        );
        let forged = with_kid(&claims("eve"), Algorithm::HS256, None, &k2);
        assert_eq!(
            auth.authenticate(Some(&forged), None),
            Err(Rejection::Signature)
        );
        let forged = with_kid(&claims("eve"), Algorithm::HS256, Some("k1"), &k2);
        assert_eq!(
            auth.authenticate(Some(&forged), None),
            Err(Rejection::Signature)
        );
        let unknown = with_kid(&claims("eve"), Algorithm::HS256, Some("k9"), &k1);
        let refused = auth.authenticate(Some(&unknown), None).unwrap_err();
        assert_eq!(refused.reason(), "key");
        assert_eq!(
            refused.to_string(),
            "token refused: its key id (kid) \"k9\" is not in this broker's key set"
        );
        let crossed = with_kid(&claims("eve"), Algorithm::HS256, Some("rsa-test"), &k1);
        assert_eq!(
            auth.authenticate(Some(&crossed), None)
                .unwrap_err()
                .to_string(),
            "token refused: it is signed with HS256, but its key \"rsa-test\" is for RS256"
        );

        // Rotation, step 1: the new key joins the set; tokens of both keys pass.
        write_set(
            &jwks,
            &[oct("k1", SECRET), oct("k2", SECRET_2), rsa.clone()],
        );
        assert!(auth.reload_if_changed().unwrap());
        let new = with_kid(&claims("alice"), Algorithm::HS256, Some("k2"), &k2);
        assert_eq!(
            auth.authenticate(Some(&new), None),
            Ok(Principal::user("alice"))
        );
        assert_eq!(
            auth.authenticate(Some(&alice), None),
            Ok(Principal::user("alice"))
        );
        assert_eq!(
            auth.authenticate(Some(&forged), None),
            Err(Rejection::Signature)
        );
        // Step 2, once the old tokens have expired: the old key leaves the set.
        write_set(&jwks, &[oct("k2", SECRET_2), rsa]);
        assert!(auth.reload_if_changed().unwrap());
        assert_eq!(
            auth.authenticate(Some(&new), None),
            Ok(Principal::user("alice"))
        );
        assert_eq!(
            auth.authenticate(Some(&alice), None)
                .unwrap_err()
                .to_string(),
            "token refused: its key id (kid) \"k1\" is not in this broker's key set"
        );
        assert_eq!(
            auth.authenticate(Some(&carol), None),
            Err(Rejection::Signature)
        );
        assert_eq!(
            auth.authenticate(Some(&bob), None),
            Ok(Principal::user("bob"))
        );
    }

    #[test]
    fn key_files_take_precedence_for_tokens_without_a_key_id() {
        let (dir, mut config) = files();
        let jwks = dir.path().join("jwks.json");
        write_set(&jwks, &[oct("k2", b"the second secret, 32 bytes long")]);
        config.jwt_jwks_file = jwks;
        let auth = Authenticator::load(&config).unwrap();
        // No kid: the HS256 file's secret, not the set's.
        let file = hs256(&claims("alice"), SECRET);
        assert_eq!(
            auth.authenticate(Some(&file), None),
            Ok(Principal::user("alice"))
        );
        let k2 = EncodingKey::from_secret(b"the second secret, 32 bytes long").unwrap();
        let set_no_kid = with_kid(&claims("bob"), Algorithm::HS256, None, &k2);
        assert_eq!(
            auth.authenticate(Some(&set_no_kid), None),
            Err(Rejection::Signature)
        );
        let set_kid = with_kid(&claims("bob"), Algorithm::HS256, Some("k2"), &k2);
        assert_eq!(
            auth.authenticate(Some(&set_kid), None),
            Ok(Principal::user("bob"))
        );
        // An RS256 token without a kid still verifies with the RS256 file.
        assert_eq!(
            auth.authenticate(Some(&rs256(&claims("carol"))), None),
            Ok(Principal::user("carol"))
        );
    }

    #[test]
    fn key_sets_are_checked_at_load() {
        use serde_json::json;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let config = AuthConfig {
                jwt_jwks_file: path.clone(),
                jwt_audience: "brook".into(),
                ..AuthConfig::default()
            };
            Authenticator::load(&config).map(|_| ())
        };
        let prefix = format!("auth.jwt_jwks_file = {}: ", path.display());
        let refused = |text: String| {
            let err = load(&text).unwrap_err().to_string();
            err.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{err}"))
                .to_string()
        };
        let good = oct("a", SECRET);
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "ec", "x": "AAAA", "y": "AAAA"});
        let mut enc: serde_json::Value = serde_json::from_str(RSA_JWK).unwrap();
        enc["use"] = json!("enc");
        let mut hs512 = oct("h", SECRET);
        hs512["alg"] = json!("HS512");
        let mut no_kid = oct("a", SECRET);
        no_kid.as_object_mut().unwrap().remove("kid");
        let set = |keys: Vec<serde_json::Value>| json!({ "keys": keys }).to_string();
        assert!(
            refused("not json".into()).starts_with("not a JSON Web Key Set ({\"keys\": [...]}): "),
        );
        assert!(refused("{\"key\": []}".into()).starts_with("not a JSON Web Key Set"));
        assert_eq!(refused(set(vec![])), "it holds no keys");
        let many: Vec<_> = (0..65).map(|i| oct(&format!("k{i}"), SECRET)).collect();
        assert_eq!(refused(set(many)), "it holds 65 keys; at most 64 are taken");
        assert!(refused(set(vec![json!(42)])).starts_with("key 0 is not a JSON Web Key: "));
        assert_eq!(
            refused(set(vec![no_kid])),
            "key 0 has no key id (kid); tokens name their key by it"
        );
        assert_eq!(
            refused(set(vec![good.clone(), good.clone()])),
            "key 1 (\"a\"): key id \"a\" appears twice"
        );
        assert_eq!(
            refused(set(vec![oct("a", b"short")])),
            "key 0 (\"a\"): the secret is 5 bytes; HS256 needs at least 32"
        );
        assert_eq!(
            refused(set(vec![ec.clone(), enc, hs512])),
            "it holds no RS256 or HS256 signing key (key 0 (\"ec\"): neither an RS256 nor an \
             HS256 key; key 1 (\"rsa-test\"): not for signatures (use); key 2 (\"h\"): neither \
             an RS256 nor an HS256 key)"
        );
        let bad_n = json!({"kty": "RSA", "kid": "r", "n": "!!", "e": "AQAB"});
        assert!(refused(set(vec![bad_n])).starts_with("key 0 (\"r\") is not a usable RS256 key: "));
        // Keys Brook cannot use are skipped when usable ones remain.
        load(&set(vec![ec, good])).unwrap();
    }
}
