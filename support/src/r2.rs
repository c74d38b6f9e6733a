//! The archive's object store (`chat_core::archive::ports`) over an R2 bucket binding.

use chat_core::archive::ports::{ObjectReader, ObjectStore};
use worker::{Bucket, Env};

/// The binding of the archive's bucket, in both Workers' wrangler.toml.
pub const ARCHIVE: &str = "ARCHIVE";

/// An R2 bucket, as the archive's flows take it.
pub struct R2Store(pub Bucket);

impl R2Store {
    /// The archive bucket, or why this Worker has none.
    pub fn from_env(env: &Env) -> Result<Self, String> {
        env.bucket(ARCHIVE).map(Self).map_err(|_| {
            format!("this Worker has no R2 binding {ARCHIVE}: bind it in wrangler.toml")
        })
    }
}

impl R2Store {
    /// Deletes the objects `keys` (R2 takes up to 1,000 a call); a key with no object is
    /// no error, so a deletion run again changes nothing.
    pub async fn delete(&self, keys: &[String]) -> Result<(), String> {
        for chunk in keys.chunks(1000) {
            self.0
                .delete_multiple(chunk.iter().map(String::as_str).collect())
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl ObjectReader for R2Store {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(object) = self.0.get(key).execute().await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let body = object.body().ok_or_else(|| format!("{key} has no body"))?;
        body.bytes().await.map(Some).map_err(|e| e.to_string())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut list = self.0.list().prefix(prefix);
            if let Some(c) = cursor.take() {
                list = list.cursor(c);
            }
            let page = list.execute().await.map_err(|e| e.to_string())?;
            keys.extend(page.objects().iter().map(|o| o.key()));
            match page.cursor() {
                Some(c) if page.truncated() => cursor = Some(c),
                _ => return Ok(keys),
            }
        }
    }
}

impl ObjectStore for R2Store {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), String> {
        self.0
            .put(key, bytes.to_vec())
            .execute()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
