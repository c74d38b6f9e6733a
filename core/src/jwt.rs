//! ES256 JSON Web Tokens, as Privy signs its access and identity tokens.
//!
//! The signature check is behind [`Es256Key`]: the `p256` crate's ([`Es256Verifier`], pure
//! Rust, natively tested) or, in the Workers, the runtime's WebCrypto (`worker-support`),
//! which is several times faster than the same curve arithmetic in wasm. This module is the
//! strict parsing around either. It accepts exactly `alg: ES256` (so `none`, HS256 "signed" with the public key, and every
//! other algorithm are refused before any signature check), bounds the token's size before
//! decoding anything, checks the signature before reading any claim, and then checks
//! issuer, audience and the time claims with a small leeway. Errors never carry the token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::{Map, Value};

/// Longest token accepted, in bytes (Privy's are well under 2 KB; identity tokens with many
/// linked accounts stay under 8 KB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest header segment accepted, in bytes.
pub const MAX_HEADER_BYTES: usize = 512;
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECONDS: i64 = 60;

/// Why a token was refused. Each maps to a 401 with [`TokenError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes or its header is oversized")]
    TooLarge,
    #[error("the token is not a well-formed JWT ({0})")]
    Malformed(&'static str),
    #[error("the token's algorithm is not ES256")]
    UnsupportedAlgorithm,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token was issued for another app")]
    WrongAudience,
    #[error("the token lacks the '{0}' claim")]
    MissingClaim(&'static str),
}

impl TokenError {
    /// The error code a client sees.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "token_too_large",
            Self::Malformed(_) => "malformed_token",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired_token",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "invalid_claims",
        }
    }
}

/// Why a verification key was refused (a configuration error, not a client's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the verification key is not a P-256 public key in PEM (SPKI) form: {0}")]
pub struct KeyError(String);

/// What a valid token must say.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    /// The current time, in seconds since the epoch.
    pub now: i64,
}

/// A parsed verification key: build it once, verify many tokens.
#[derive(Debug, Clone)]
pub struct Es256Verifier {
    key: VerifyingKey,
}

impl Es256Verifier {
    /// Parses a PEM public key. Literal `\n` sequences are accepted for newlines, since
    /// secrets and `--var` values are often single-line.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let pem = pem.trim().replace("\\n", "\n");
        let key = VerifyingKey::from_public_key_pem(&pem).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self { key })
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(
        &self,
        token: &str,
        expected: &Expected<'_>,
    ) -> Result<Map<String, Value>, TokenError> {
        resolve_now(verify_with(self, token, expected))
    }

    /// The key as DER (SPKI), the form WebCrypto imports.
    pub fn spki_der(&self) -> Vec<u8> {
        use p256::pkcs8::EncodePublicKey;
        self.key
            .to_public_key_der()
            .expect("a P-256 public key always encodes")
            .into_vec()
    }
}

/// Something that checks an ES256 signature (ECDSA P-256 with SHA-256, `r‖s`, 64 bytes).
/// Async, because WebCrypto is.
#[allow(async_fn_in_trait)] // The Workers are single-threaded; no Send bound is wanted.
pub trait Es256Key {
    async fn signature_verifies(&self, signed: &[u8], signature: &[u8; 64]) -> bool;
}

impl Es256Key for Es256Verifier {
    async fn signature_verifies(&self, signed: &[u8], signature: &[u8; 64]) -> bool {
        Signature::from_slice(signature).is_ok_and(|s| self.key.verify(signed, &s).is_ok())
    }
}

/// A token split and checked for shape, before its signature is checked.
pub struct Parsed<'t> {
    /// `header.payload`, the bytes the signature covers.
    pub signed: &'t str,
    pub signature: [u8; 64],
    payload: &'t str,
}

/// Checks everything that needs no key: size, three parts, `alg: ES256`, a 64-byte
/// signature. A signature of another length can never verify.
pub fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    if header.len() > MAX_HEADER_BYTES {
        return Err(TokenError::TooLarge);
    }
    let header_json = decode_json(header, "header")?;
    if header_json.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
    let signature: [u8; 64] = signature.try_into().map_err(|_| TokenError::BadSignature)?;
    Ok(Parsed {
        signed: &token[..header.len() + 1 + payload.len()],
        signature,
        payload,
    })
}

/// Verifies `token` with `key`, then reads and checks its claims.
pub async fn verify_with<K: Es256Key>(
    key: &K,
    token: &str,
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, TokenError> {
    let parsed = parse(token)?;
    if !key
        .signature_verifies(parsed.signed.as_bytes(), &parsed.signature)
        .await
    {
        return Err(TokenError::BadSignature);
    }
    let claims = decode_json(parsed.payload, "payload")?;
    check_claims(&claims, expected)?;
    Ok(claims)
}

/// The output of a future that never waits (a pure-Rust key's check): polled once.
pub(crate) fn resolve_now<F: std::future::Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => unreachable!("a synchronous key never waits"),
    }
}

fn decode_json(segment: &str, what: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| {
        TokenError::Malformed(if what == "header" {
            "the header is not base64url"
        } else {
            "the payload is not base64url"
        })
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed(if what == "header" {
            "the header is not a JSON object"
        } else {
            "the payload is not a JSON object"
        })),
    }
}

fn check_claims(claims: &Map<String, Value>, expected: &Expected<'_>) -> Result<(), TokenError> {
    let time = |name: &'static str| claims.get(name).and_then(Value::as_i64);
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(TokenError::WrongIssuer);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == expected.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expected.audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(TokenError::WrongAudience);
    }
    let exp = time("exp").ok_or(TokenError::MissingClaim("exp"))?;
    if expected.now > exp + LEEWAY_SECONDS {
        return Err(TokenError::Expired);
    }
    if time("nbf").is_some_and(|nbf| nbf > expected.now + LEEWAY_SECONDS)
        || time("iat").is_some_and(|iat| iat > expected.now + LEEWAY_SECONDS)
    {
        return Err(TokenError::NotYetValid);
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => Ok(()),
        _ => Err(TokenError::MissingClaim("sub")),
    }
}

/// Signs tokens the way Privy does, for tests (feature `test-signing`).
#[cfg(any(test, feature = "test-signing"))]
pub mod signing {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    /// A fixed test key pair (never a real secret).
    pub fn test_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed.max(1); 32]).expect("a valid scalar")
    }

    /// The PEM (SPKI) public key of `key`.
    pub fn public_pem(key: &SigningKey) -> String {
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("a PEM")
    }

    /// `base64url(header).base64url(claims).base64url(ES256 signature)`.
    pub fn sign(key: &SigningKey, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = key.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// An ES256 token with Privy's header.
    pub fn privy_token(key: &SigningKey, claims: &Value) -> String {
        sign(
            key,
            &serde_json::json!({ "alg": "ES256", "typ": "JWT" }),
            claims,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::signing::*;
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const APP: &str = "app-123";

    fn claims() -> Value {
        json!({ "sid": "s1", "sub": "did:privy:abc", "iss": "privy.io", "aud": APP, "iat": NOW - 10, "exp": NOW + 3600 })
    }

    fn verifier() -> Es256Verifier {
        Es256Verifier::from_pem(&public_pem(&test_key(7))).unwrap()
    }

    fn check(token: &str) -> Result<Map<String, Value>, TokenError> {
        verifier().verify(
            token,
            &Expected {
                issuer: "privy.io",
                audience: APP,
                now: NOW,
            },
        )
    }

    #[test]
    fn a_changed_signature_character_is_a_bad_signature_unless_it_breaks_the_base64() {
        for n in 0..200 {
            let token = with(|c| c["sub"] = json!(format!("did:privy:{n}")));
            let mut chars: Vec<char> = token.chars().collect();
            // The tenth character from the end: all six of its bits are signature bits.
            let at = chars.len() - 10;
            chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
            let changed: String = chars.iter().collect();
            assert_eq!(check(&changed), Err(TokenError::BadSignature), "{n}");
            // The last character carries two bits and four zero bits: setting one of those
            // is non-canonical base64, refused as malformed before any signature check.
            let mut last: Vec<char> = token.chars().collect();
            let end = last.len() - 1;
            last[end] = match last[end] {
                'A' => 'B',
                c => c,
            };
            if last[end] == 'B' {
                let odd: String = last.iter().collect();
                assert!(matches!(check(&odd), Err(TokenError::Malformed(_))), "{n}");
            }
        }
    }

    fn with(f: impl FnOnce(&mut Value)) -> String {
        let mut c = claims();
        f(&mut c);
        privy_token(&test_key(7), &c)
    }

    fn code(token: &str) -> &'static str {
        check(token).unwrap_err().code()
    }

    #[test]
    fn a_privy_token_verifies() {
        let claims = check(&privy_token(&test_key(7), &claims())).unwrap();
        assert_eq!(claims["sub"], "did:privy:abc");
        // Escaped newlines in the key are accepted.
        let one_line = public_pem(&test_key(7)).replace('\n', "\\n");
        assert!(Es256Verifier::from_pem(&one_line).is_ok());
        assert!(Es256Verifier::from_pem("not a key").is_err());
    }

    #[test]
    fn time_issuer_and_audience_are_checked() {
        assert_eq!(
            code(&with(|c| c["exp"] = json!(NOW - LEEWAY_SECONDS - 1))),
            "expired_token"
        );
        assert!(
            check(&with(|c| c["exp"] = json!(NOW - LEEWAY_SECONDS + 1))).is_ok(),
            "within the leeway"
        );
        assert_eq!(
            code(&with(|c| c["nbf"] = json!(NOW + 600))),
            "token_not_yet_valid"
        );
        assert_eq!(
            code(&with(|c| c["iat"] = json!(NOW + 600))),
            "token_not_yet_valid"
        );
        assert_eq!(
            code(&with(|c| c["aud"] = json!("other-app"))),
            "wrong_audience"
        );
        assert!(check(&with(|c| c["aud"] = json!(["x", APP]))).is_ok());
        assert_eq!(code(&with(|c| c["iss"] = json!("evil.io"))), "wrong_issuer");
        assert_eq!(
            code(&with(|c| c
                .as_object_mut()
                .unwrap()
                .remove("exp")
                .map(|_| ())
                .unwrap())),
            "invalid_claims"
        );
        assert_eq!(code(&with(|c| c["sub"] = json!(""))), "invalid_claims");
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let token = privy_token(&test_key(7), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            json!({ "sub": "did:privy:mallory", "iss": "privy.io", "aud": APP, "exp": NOW + 60 })
                .to_string(),
        );
        assert_eq!(
            code(&format!("{}.{forged_claims}.{}", parts[0], parts[2])),
            "bad_signature"
        );
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        assert_eq!(
            code(&format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                URL_SAFE_NO_PAD.encode(sig)
            )),
            "bad_signature"
        );
        assert_eq!(
            code(&privy_token(&test_key(8), &claims())),
            "bad_signature",
            "another key"
        );
    }

    #[test]
    fn only_es256_is_accepted() {
        let none = sign(&test_key(7), &json!({ "alg": "none" }), &claims());
        let parts: Vec<&str> = none.split('.').collect();
        assert_eq!(
            code(&format!("{}.{}.", parts[0], parts[1])),
            "unsupported_algorithm"
        );
        // HS256 "signed" with the public key as the HMAC secret: the classic confusion attack.
        use sha2::Digest;
        let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "HS256", "typ": "JWT" }).to_string());
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        let fake_mac = sha2::Sha256::digest(format!("{}{header}.{body}", public_pem(&test_key(7))));
        assert_eq!(
            code(&format!(
                "{header}.{body}.{}",
                URL_SAFE_NO_PAD.encode(fake_mac)
            )),
            "unsupported_algorithm"
        );
        assert_eq!(
            code(&sign(&test_key(7), &json!({ "alg": "ES384" }), &claims())),
            "unsupported_algorithm"
        );
        assert_eq!(
            code(&sign(&test_key(7), &json!({ "typ": "JWT" }), &claims())),
            "unsupported_algorithm"
        );
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        let token = privy_token(&test_key(7), &claims());
        for cut in 1..=12 {
            let c = code(&token[..token.len() - cut]);
            assert!(
                matches!(c, "malformed_token" | "bad_signature"),
                "cut {cut}: {c}"
            );
        }
        assert_eq!(
            code(&token[..token.len() - 5]),
            "malformed_token",
            "cut mid-character"
        );
        let short_sig = format!(
            "{}{}",
            &token[..token.rfind('.').unwrap() + 1],
            URL_SAFE_NO_PAD.encode([1u8; 60])
        );
        assert_eq!(code(&short_sig), "bad_signature", "a 60-byte signature");
        assert_eq!(
            code(&token[..token.rfind('.').unwrap()]),
            "malformed_token",
            "two parts"
        );
        for bad in [
            "",
            ".",
            "..",
            "a.b.c.d",
            "!!!.???.***",
            "e30.e30.e30",
            "bm90IGpzb24.e30.AA",
            "😀.😀.😀",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        let huge_header = format!(
            "{}.e30.AA",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"ES256","x":"{}"}}"#, "a".repeat(4000)))
        );
        assert_eq!(code(&huge_header), "token_too_large");
        assert_eq!(code(&"a".repeat(MAX_TOKEN_BYTES + 1)), "token_too_large");
        assert_eq!(
            code("e30.e30.e30"),
            "unsupported_algorithm",
            "an empty header names no algorithm"
        );
        let array_payload = sign(&test_key(7), &json!({ "alg": "ES256" }), &json!([1]));
        assert_eq!(code(&array_payload), "malformed_token");
    }
}
