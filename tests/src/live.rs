//! Clients of the live answers: server-sent events read as they arrive, and the session's
//! live socket (tickets, frames) over a plain WebSocket.

use crate::Workers;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One server-sent event, with when it arrived since the request was sent.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: String,
    pub at: Duration,
}

/// A streamed answer: status, `Idempotent-Replayed`, content type, and the events in order.
pub struct Streamed {
    pub status: u16,
    pub replayed: bool,
    pub content_type: String,
    pub events: Vec<Event>,
    /// The body, when the answer was not an event stream (a refusal's JSON).
    pub body: String,
}

/// Reads an answer as events arrive (or whole, when it is not an event stream).
pub async fn read_events(request: reqwest::RequestBuilder) -> Streamed {
    let sent = Instant::now();
    let r = request
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("answered");
    let status = r.status().as_u16();
    let replayed = r.headers().contains_key("idempotent-replayed");
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !content_type.starts_with("text/event-stream") {
        return Streamed {
            status,
            replayed,
            content_type,
            events: Vec::new(),
            body: r.text().await.unwrap_or_default(),
        };
    }
    let mut stream = r.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let (mut name, mut data) = (String::new(), Vec::<String>::new());
    while let Some(chunk) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("the stream reads")));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() {
                    events.push(Event {
                        name: std::mem::take(&mut name),
                        data: data.join("\n"),
                        at: sent.elapsed(),
                    });
                    data.clear();
                }
            } else if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push(v.to_owned());
            }
        }
    }
    Streamed {
        status,
        replayed,
        content_type,
        events,
        body: String::new(),
    }
}

/// A session's live socket.
pub struct Live {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// A ticket for `user`'s `session` (status and body of `POST …/ticket`).
pub async fn ticket(w: &Workers, user: &str, session: &str) -> (u16, Value) {
    w.post(&format!("/api/sessions/{session}/ticket"), user, &json!({}))
        .await
}

/// The live URL of `session` with `ticket` (and `after`).
pub fn live_url(w: &Workers, session: &str, ticket: &str, after: Option<i64>) -> String {
    let base = w.base.replacen("http://", "ws://", 1);
    let mut url = format!("{base}/api/sessions/{session}/live?ticket={ticket}");
    if let Some(after) = after {
        url.push_str(&format!("&after={after}"));
    }
    url
}

/// Tries to open a socket at `url`, with an `Origin` when given: the socket, or the status
/// and body of the refusal.
pub async fn try_open(url: &str, origin: Option<&str>) -> Result<Live, (u16, String)> {
    let mut request = url.into_client_request().expect("a ws URL");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(Live { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err((
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => Err((0, e.to_string())),
    }
}

/// Asks for a socket at `url` over plain HTTP and reads the refusal: status and error code
/// (a `101` means it would have opened).
pub async fn refusal(w: &Workers, url: &str, origin: Option<&str>) -> (u16, String) {
    let url = url.replacen("ws://", "http://", 1);
    let mut req = w
        .http
        .get(url)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(origin) = origin {
        req = req.header("Origin", origin);
    }
    let r = req.send().await.expect("answered");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

impl Live {
    /// Opens `user`'s socket to `session` with a fresh ticket.
    pub async fn open(w: &Workers, user: &str, session: &str, after: Option<i64>) -> Self {
        Self::open_as(w, ("X-Dev-User", user), session, after)
            .await
            .unwrap_or_else(|e| panic!("the socket opens: {e}"))
    }

    /// Opens a socket to `session` for the player `header` signs in.
    pub async fn open_as(
        w: &Workers,
        header: (&str, &str),
        session: &str,
        after: Option<i64>,
    ) -> Result<Self, String> {
        let r = w
            .http
            .post(w.url(&format!("/api/sessions/{session}/ticket")))
            .header(header.0, header.1)
            .json(&json!({}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let t: Value = r.json().await.unwrap_or(Value::Null);
        if status != 201 {
            return Err(format!("ticket: {status} {t}"));
        }
        try_open(
            &live_url(w, session, t["ticket"].as_str().unwrap_or(""), after),
            None,
        )
        .await
        .map_err(|e| format!("{e:?}"))
    }

    pub async fn send(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned()))
            .await
            .expect("the frame is sent");
    }

    /// The next text frame within `timeout`, parsed; `None` on timeout or close.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(timeout, self.ws.next()).await.ok()??;
            match message.ok()? {
                Message::Text(t) => {
                    return Some(serde_json::from_str(&t).unwrap_or(Value::String(t)))
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Frames until the `done` or `error` of `key` (included), each with when it arrived.
    pub async fn until_end(&mut self, key: &str) -> Vec<(Value, Instant)> {
        let mut frames = Vec::new();
        while let Some(f) = self.next(Duration::from_secs(20)).await {
            let end = f["key"] == json!(key) && (f["type"] == "done" || f["type"] == "error");
            frames.push((f, Instant::now()));
            if end {
                return frames;
            }
        }
        panic!("the turn {key} never ended: {frames:?}");
    }

    /// The close code, once the server closes the socket.
    pub async fn closed(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(500), self.ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(frame))))) => return Some(frame.code.into()),
                Ok(Some(Ok(Message::Close(None)))) | Ok(None) | Ok(Some(Err(_))) => return Some(0),
                _ => {}
            }
        }
        None
    }

    /// Sends raw `ping` text: the runtime answers `pong` without the actor.
    pub async fn ping(&mut self) -> Option<String> {
        self.send_text("ping").await;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(t) = message {
                return Some(t);
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Closes the socket with `code`, as a client does, and waits up to `timeout` for the
    /// server's Close: its code, or `None` if none came.
    pub async fn close_with(mut self, code: u16, timeout: Duration) -> Option<u16> {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        self.ws
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "bye".into(),
            })))
            .await
            .ok()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(100), self.ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(frame))))) => return Some(frame.code.into()),
                Ok(Some(Ok(Message::Close(None)))) => return Some(1005),
                Ok(None) | Ok(Some(Err(_))) => return None,
                _ => {}
            }
        }
        None
    }
}
