//! The admin API over HTTP. Every failure becomes a sentence that says what to do.

use anyhow::{anyhow, bail, Context};
use reqwest::blocking::{Client as Http, RequestBuilder};
use serde_json::Value;
use std::time::Duration;

/// The environment variable holding the admin token.
pub const TOKEN_ENV: &str = "CHAT_ADMIN_TOKEN";

/// How a [`Refusal`]'s code starts when the Worker failed (5xx) instead of refusing.
pub const SERVER_FAILED: &str = "server_";

/// A step that cannot run now (409), or that failed in the Worker (5xx, code
/// `server_<status>[<code>]`): what the Worker said, and how long to wait when waiting is the
/// answer.
#[derive(Debug)]
pub struct Refusal {
    pub code: String,
    pub message: String,
    pub retry_after: Option<u64>,
}

pub struct Client {
    http: Http,
    base: String,
    token: String,
}

impl Client {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let token = std::env::var(TOKEN_ENV).unwrap_or_default();
        if token.trim().is_empty() {
            bail!("set {TOKEN_ENV} to the chat Worker's ADMIN_TOKEN (locally it is in .dev.vars)");
        }
        let base = url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base)
            .with_context(|| format!("--url {url:?} is not a URL (try http://localhost:8787)"))?;
        let http = Http::builder().timeout(Duration::from_secs(60)).build()?;
        Ok(Self { http, base, token })
    }

    pub fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    /// A step of a bucket move: its answer, or its 409 refusal or 5xx failure as data, so
    /// that the caller can wait and try again when waiting is the answer.
    pub fn post_step(&self, path: &str, body: &Value) -> anyhow::Result<Result<Value, Refusal>> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| anyhow!("request to {} failed: {e}", self.base))?;
        let status = response.status();
        if status.as_u16() != 409 && !status.is_server_error() {
            let body: Value = response.json().unwrap_or(Value::Null);
            return self.judge(status, body).map(Ok);
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body: Value = response.json().unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
        Ok(Err(Refusal {
            // A failure of the Worker or of a database (every step can be run again).
            code: if status.is_server_error() {
                format!("{SERVER_FAILED}{}{code}", status.as_u16())
            } else {
                code
            },
            message: body["error"]["message"].as_str().unwrap_or("").to_owned(),
            retry_after,
        }))
    }

    /// A GET whose successful answer is text (an export's JSON lines).
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| anyhow!("request to {} failed: {e}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.text()?);
        }
        let body: Value = response.json().unwrap_or(Value::Null);
        self.judge(status, body).map(|_| String::new())
    }

    fn send(&self, req: RequestBuilder) -> anyhow::Result<Value> {
        let response = req.bearer_auth(&self.token).send().map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow!(
                    "cannot reach {}: is the chat Worker running? Start it with `bash scripts/dev.sh`, or pass --url",
                    self.base
                )
            } else {
                anyhow!("request to {} failed: {e}", self.base)
            }
        })?;
        let status = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        self.judge(status, body)
    }

    /// The body of a successful answer, or a sentence saying what went wrong.
    fn judge(&self, status: reqwest::StatusCode, body: Value) -> anyhow::Result<Value> {
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or("");
        let message = body["error"]["message"].as_str().unwrap_or("");
        match status.as_u16() {
            401 => bail!(
                "the admin token was refused: set {TOKEN_ENV} to the Worker's ADMIN_TOKEN \
                 (.dev.vars locally; `wrangler secret put ADMIN_TOKEN` in production)"
            ),
            404 if code == "letter_not_found" => {
                bail!("no dead letter has this id (see `chat-admin list`)")
            }
            404 if code == "player_not_found" => {
                bail!(
                    "no player has this id here: nothing of theirs is stored (or they were erased)"
                )
            }
            404 => bail!(
                "{} has no admin API here: is --url the chat Worker?",
                self.base
            ),
            s if s >= 500 => {
                bail!("the Worker failed ({s} {code}): {message}; check its logs and retry")
            }
            s => bail!("refused ({s} {code}): {message}"),
        }
    }

    /// Up to `limit` letters matching `filter`, following the cursor across pages.
    pub fn list_all(&self, filter: &[(&str, String)], limit: u32) -> anyhow::Result<Vec<Value>> {
        let mut letters = Vec::new();
        let mut cursor: Option<String> = None;
        while letters.len() < limit as usize {
            let page_size = (limit as usize - letters.len()).min(500);
            let mut query = filter.to_vec();
            query.push(("limit", page_size.to_string()));
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let page = self.get("/admin/dead-letters", &query)?;
            letters.extend(page["letters"].as_array().cloned().unwrap_or_default());
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        Ok(letters)
    }
}
