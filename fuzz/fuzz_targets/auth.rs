//! What faces untrusted credentials: the development header, bearer tokens, Privy JWTs,
//! X's answers. Any input must be refused or accepted, never panic.
//!
//! A random signature never verifies, so the input is also read as a claims object and
//! signed with the fixed test key: mutated claims then reach the claim checks, the
//! access/identity token distinction and the identity token's `linked_accounts` parsing.
#![no_main]
use chat_core::identity::Identity;
use chat_core::jwt::signing::{privy_token, test_key};
use chat_core::jwt::{Es256Verifier, Expected};
use chat_core::privy::PrivyApp;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;


fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Identity::parse_dev_header(text);
    let _ = chat_core::admin::bearer_matches(Some(text), Some("token"));
    let _ = chat_core::x_auth::identity_from_users_me(200, text);
    static VERIFIER: OnceLock<Option<Es256Verifier>> = OnceLock::new();
    let pem = || chat_core::jwt::signing::public_pem(&chat_core::jwt::signing::test_key(7));
    if let Some(v) = VERIFIER.get_or_init(|| Es256Verifier::from_pem(&pem()).ok()) {
        let _ = v.verify(text, &Expected { issuer: "privy.io", audience: "app", now: 1_800_000_000 });
    }
    let _ = Es256Verifier::from_pem(text);
    if let (Some(Some(verifier)), Ok(claims)) =
        (VERIFIER.get(), serde_json::from_str::<serde_json::Value>(text))
    {
        let app = PrivyApp { app_id: "app".into(), verifier: verifier.clone() };
        let signed = privy_token(&test_key(7), &claims);
        let access = privy_token(
            &test_key(7),
            &serde_json::json!({ "sub": "did:privy:f", "sid": "s", "iss": "privy.io", "aud": "app", "exp": 1_800_000_600i64 }),
        );
        let _ = app.identity(&signed, None, 1_800_000_000);
        let _ = app.identity(&access, Some(&signed), 1_800_000_000);
    }
});
