//! Privy sign-in as a Worker does it on every request, made cheap:
//!
//! - signatures are checked by WebCrypto (`webcrypto`), with the key imported once per
//!   isolate; `PRIVY_VERIFIER=wasm` checks them with the pure-Rust `p256` code instead (the
//!   benchmark's "before", and the fallback if the import ever fails);
//! - verified sign-ins are remembered per isolate, keyed by the SHA-256 of the whole tokens
//!   (`chat_core::privy::cache_key`) and dropped at the tokens' `exp`, since a client sends
//!   the same access token for up to an hour. `PRIVY_TOKEN_CACHE` bounds the entries
//!   (default 4096; 0 turns it off). A cached sign-in is exactly what verifying again would
//!   give until `exp`: the claims cannot change without changing the token.

use crate::webcrypto::WebCryptoP256;
use chat_core::identity::SignIn;
use chat_core::jwt::Es256Verifier;
use chat_core::privy::{cache_key, PrivyApp};
use chat_core::refusal::Refusal;
use chat_core::ttl_cache::TtlCache;
use std::cell::RefCell;
use std::rc::Rc;

/// Entries of the verified-token cache unless `PRIVY_TOKEN_CACHE` says otherwise.
pub const DEFAULT_CACHE_ENTRIES: usize = 4096;

/// How signatures are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verifier {
    WebCrypto,
    Wasm,
}

impl Verifier {
    pub fn parse(setting: Option<&str>) -> Result<Self, String> {
        match setting.unwrap_or("webcrypto") {
            "webcrypto" => Ok(Self::WebCrypto),
            "wasm" => Ok(Self::Wasm),
            other => Err(format!("PRIVY_VERIFIER={other:?} is not webcrypto or wasm")),
        }
    }
}

thread_local! {
    /// The parsed settings, keyed by the configuration they came from: the PEM is parsed
    /// once per isolate, not per request.
    static SETTINGS: RefCell<Option<(String, Rc<PrivyAuth>)>> = const { RefCell::new(None) };
    /// The imported WebCrypto key, keyed by the app's configuration (id and PEM).
    static KEY: RefCell<Option<(String, Rc<WebCryptoP256>)>> = const { RefCell::new(None) };
    /// Verified sign-ins by token hash, with their expiry (ms), for the configuration named.
    static VERIFIED: RefCell<(String, TtlCache<[u8; 32], SignIn>)> =
        RefCell::new((String::new(), TtlCache::new(DEFAULT_CACHE_ENTRIES)));
}

/// One app's sign-in settings.
pub struct PrivyAuth {
    pub app: Rc<PrivyApp>,
    /// The app's id and PEM: which key and cache entries belong to this configuration.
    pub config: String,
    pub verifier: Verifier,
    pub cache_entries: usize,
}

/// The Worker's Privy variables, as its configuration read them.
#[derive(Debug, Clone, Default)]
pub struct PrivySettings {
    pub app_id: Option<String>,
    pub verification_key: Option<String>,
    pub verifier: Option<String>,
    pub token_cache: Option<String>,
}

impl PrivySettings {
    /// `PRIVY_APP_ID`, `PRIVY_VERIFICATION_KEY`, `PRIVY_VERIFIER` and `PRIVY_TOKEN_CACHE`.
    pub fn from_env(env: &worker::Env) -> Self {
        let var = |name: &str| crate::env::var(env, name);
        Self {
            app_id: var("PRIVY_APP_ID").filter(|s| !s.is_empty()),
            verification_key: var("PRIVY_VERIFICATION_KEY").filter(|s| !s.is_empty()),
            verifier: var("PRIVY_VERIFIER"),
            token_cache: var("PRIVY_TOKEN_CACHE"),
        }
    }
}

impl PrivyAuth {
    /// The app of `PRIVY_APP_ID` and `PRIVY_VERIFICATION_KEY`, checked as `PRIVY_VERIFIER`
    /// says, remembering up to `PRIVY_TOKEN_CACHE` sign-ins. Err says what is misconfigured.
    pub fn from_settings(settings: &PrivySettings) -> Result<Rc<Self>, String> {
        let app_id = settings.app_id.clone().ok_or("PRIVY_APP_ID is not set")?;
        let pem = settings
            .verification_key
            .clone()
            .ok_or("PRIVY_VERIFICATION_KEY is not set")?;
        let verifier = settings.verifier.clone();
        let cache = settings.token_cache.clone();
        let config = format!("{app_id}\n{pem}\n{verifier:?}\n{cache:?}");
        if let Some(hit) = SETTINGS.with(|s| {
            s.borrow()
                .as_ref()
                .filter(|(c, _)| *c == config)
                .map(|(_, a)| a.clone())
        }) {
            return Ok(hit);
        }
        let key =
            Es256Verifier::from_pem(&pem).map_err(|e| format!("PRIVY_VERIFICATION_KEY: {e}"))?;
        let cache_entries = match cache.as_deref() {
            None | Some("") => DEFAULT_CACHE_ENTRIES,
            Some(n) => n
                .parse()
                .map_err(|_| format!("PRIVY_TOKEN_CACHE={n:?} is not a number of entries"))?,
        };
        let auth = Rc::new(Self {
            app: Rc::new(PrivyApp {
                app_id,
                verifier: key,
            }),
            config: config.clone(),
            verifier: Verifier::parse(verifier.as_deref())?,
            cache_entries,
        });
        SETTINGS.with(|s| *s.borrow_mut() = Some((config, auth.clone())));
        Ok(auth)
    }

    /// The player behind the tokens at `now_ms`, and until when the sign-in holds.
    pub async fn sign_in(
        &self,
        access_token: &str,
        id_token: Option<&str>,
        now_ms: i64,
    ) -> Result<SignIn, Refusal> {
        let key = (self.cache_entries > 0).then(|| cache_key(access_token, id_token));
        if let Some(k) = &key {
            let hit = VERIFIED.with(|c| {
                let c = c.borrow();
                (c.0 == self.config).then(|| c.1.get(k, now_ms)).flatten()
            });
            if let Some(hit) = hit {
                return Ok(hit);
            }
        }
        let now = now_ms.div_euclid(1000);
        let verified = match self.webcrypto_key().await {
            Some(web) => {
                self.app
                    .verify_with(web.as_ref(), access_token, id_token, now)
                    .await?
            }
            None => {
                self.app
                    .verify_with(&self.app.verifier, access_token, id_token, now)
                    .await?
            }
        };
        let signed = SignIn {
            identity: verified.identity,
            valid_until: Some(verified.expires_at.saturating_mul(1000)),
        };
        if let Some(k) = key {
            VERIFIED.with(|c| {
                let mut c = c.borrow_mut();
                // Another app, key or bound: what was verified before no longer counts.
                if c.0 != self.config || c.1.capacity() != self.cache_entries {
                    *c = (self.config.clone(), TtlCache::new(self.cache_entries));
                }
                c.1.put(
                    k,
                    signed.clone(),
                    now_ms,
                    verified.expires_at.saturating_mul(1000),
                );
            });
        }
        Ok(signed)
    }

    /// This isolate's WebCrypto key for the app, imported on first use; `None` with
    /// `PRIVY_VERIFIER=wasm`, or if the import fails (logged once per attempt).
    async fn webcrypto_key(&self) -> Option<Rc<WebCryptoP256>> {
        if self.verifier != Verifier::WebCrypto {
            return None;
        }
        let cached = KEY.with(|k| {
            k.borrow()
                .as_ref()
                .filter(|(config, _)| *config == self.config)
                .map(|(_, key)| key.clone())
        });
        if cached.is_some() {
            return cached;
        }
        match WebCryptoP256::import_spki(&self.app.verifier.spki_der()).await {
            Ok(key) => {
                let key = Rc::new(key);
                KEY.with(|k| *k.borrow_mut() = Some((self.config.clone(), key.clone())));
                Some(key)
            }
            Err(e) => {
                tracing::error!(error = %e, "WebCrypto refused the Privy key; verifying in wasm");
                None
            }
        }
    }
}
