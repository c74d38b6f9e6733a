//! The load's players: Privy access tokens signed with the bench's own P-256 key (the
//! Workers under test hold its public half as `PRIVY_VERIFICATION_KEY`), or the development
//! header for the one local-build row, and a session each.

use chat_core::jwt::signing::{privy_token, public_pem, test_key};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// The Privy app id the benchmarked Workers expect.
pub const APP_ID: &str = "bench-app";
/// The bench key's seed (a fixed test key, never a real secret).
const KEY_SEED: u8 = 77;

/// How a player signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// `Authorization: Bearer <Privy access token>`, as production.
    Privy,
    /// `X-Dev-User`, which only the local build knows.
    DevHeader,
}

/// One player: the header that signs it in.
#[derive(Debug, Clone)]
pub struct Player {
    pub header: (&'static str, String),
}

/// The public key, as a one-line `--var` value.
pub fn verification_key_var() -> String {
    public_pem(&test_key(KEY_SEED)).replace('\n', "\\n")
}

/// `n` players named `<prefix>-<i>`, signed in as `how`; tokens valid for two hours.
pub fn players(n: usize, prefix: &str, how: SignIn) -> Vec<Player> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (0..n)
        .map(|i| match how {
            SignIn::Privy => {
                let claims = json!({
                    "sub": format!("did:privy:{prefix}-{i}"), "sid": format!("bench-{i}"),
                    "iss": "privy.io", "aud": APP_ID, "iat": now - 5, "exp": now + 7200,
                });
                Player {
                    header: (
                        "Authorization",
                        format!("Bearer {}", privy_token(&test_key(KEY_SEED), &claims)),
                    ),
                }
            }
            SignIn::DevHeader => Player {
                header: ("X-Dev-User", format!("x:{prefix}-{i}")),
            },
        })
        .collect()
}

/// Starts a session for each player, `per_player` times over: (player, session id).
pub async fn sessions(
    http: &reqwest::Client,
    base: &str,
    players: &[Player],
    per_player: usize,
) -> anyhow::Result<Vec<(Player, String)>> {
    let mut out = Vec::new();
    for round in 0..per_player {
        for (i, p) in players.iter().enumerate() {
            let character = ["sakura", "rin", "kai"][(i + round) % 3];
            let r = http
                .post(format!("{base}/api/sessions"))
                .header(p.header.0, &p.header.1)
                .json(&json!({ "characterType": character, "username": format!("Bench {i}"), "locale": "en" }))
                .send()
                .await?;
            let status = r.status();
            let body: Value = r.json().await?;
            anyhow::ensure!(status == 201, "starting a session: {status} {body}");
            out.push((
                p.clone(),
                body["sessionId"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    Ok(out)
}
