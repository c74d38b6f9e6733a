//! ES256 signatures checked by the runtime's WebCrypto (`crypto.subtle`), which runs the
//! curve arithmetic natively: several times faster than the same check compiled to wasm.
//! The key is imported once (per isolate, by its user) and then verifies any number of
//! tokens.

use chat_core::jwt::Es256Key;
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, SubtleCrypto, WorkerGlobalScope};

/// A P-256 public key held by WebCrypto, for ECDSA with SHA-256.
pub struct WebCryptoP256 {
    key: CryptoKey,
    subtle: SubtleCrypto,
}

fn subtle() -> SubtleCrypto {
    js_sys::global()
        .unchecked_into::<WorkerGlobalScope>()
        .crypto()
        .expect("the Workers runtime has crypto")
        .subtle()
}

/// `{ name: "ECDSA", ... }` with the other fields given.
fn algorithm(fields: &[(&str, &str)]) -> Object {
    let o = Object::new();
    let _ = Reflect::set(&o, &"name".into(), &"ECDSA".into());
    for (k, v) in fields {
        let _ = Reflect::set(&o, &(*k).into(), &(*v).into());
    }
    o
}

fn describe(e: JsValue) -> String {
    e.as_string()
        .or_else(|| {
            Reflect::get(&e, &"message".into())
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

impl WebCryptoP256 {
    /// Imports a public key given as DER (SPKI).
    pub async fn import_spki(der: &[u8]) -> Result<Self, String> {
        let subtle = subtle();
        let data = Uint8Array::from(der);
        let promise = subtle
            .import_key_with_object(
                "spki",
                &data,
                &algorithm(&[("namedCurve", "P-256")]),
                false,
                &Array::of1(&"verify".into()),
            )
            .map_err(describe)?;
        let key = JsFuture::from(promise).await.map_err(describe)?;
        Ok(Self {
            key: key.unchecked_into(),
            subtle,
        })
    }
}

impl Es256Key for WebCryptoP256 {
    async fn signature_verifies(&self, signed: &[u8], signature: &[u8; 64]) -> bool {
        // WebCrypto's ECDSA signature is r‖s, exactly JWT's ES256 form.
        let Ok(promise) = self.subtle.verify_with_object_and_u8_array_and_u8_array(
            &algorithm(&[("hash", "SHA-256")]),
            &self.key,
            signature,
            signed,
        ) else {
            return false;
        };
        JsFuture::from(promise)
            .await
            .is_ok_and(|v| v.as_bool() == Some(true))
    }
}
