// The play page's live connection to its session: a WebSocket to the session's actor
// (POST /api/sessions/{id}/ticket, then GET /api/sessions/{id}/live?ticket=…), on which the
// page sends its turns and every tab of the session sees them written. A dropped socket
// reconnects with `after` = the last frame it saw, so a reply in progress is finished. Where
// a socket cannot open, turns go over server-sent events (POST /api/chat with
// Accept: text/event-stream), with the same keys and the same answers.

import { ApiError, call } from "./api";

export interface Answer {
  reply: string;
  score: number;
  emotion: string;
  isGameOver: boolean;
  messageId: string;
}

/** What the page hears of a session's turns, whoever sent them. */
export interface LiveEvents {
  player(key: string | null, message: string): void;
  delta(key: string | null, text: string): void;
  done(key: string | null, answer: Answer, replayed: boolean): void;
  error(key: string | null, code: string, message: string): void;
  /** The socket opened (true) or is gone for good and turns go over SSE (false). */
  live(open: boolean): void;
}

const RECONNECT_TRIES = 4;

export class LiveSession {
  private ws: WebSocket | null = null;
  private lastSeq: number | null = null;
  private closedByUs = false;
  private tries = 0;
  /** Keys this tab sent over the socket and not yet ended: a replay is answered to us only. */
  private mine = new Set<string>();
  available = typeof WebSocket !== "undefined";

  constructor(
    private readonly sessionId: string,
    private readonly headers: () => Record<string, string>,
    private readonly events: LiveEvents,
  ) {}

  get open(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Opens the socket (again, after a drop, asking for what was missed). */
  async connect(): Promise<void> {
    if (!this.available || this.closedByUs) return;
    let ticket: string;
    try {
      ({ ticket } = await call<{ ticket: string }>(`/api/sessions/${this.sessionId}/ticket`, {
        method: "POST",
        headers: this.headers(),
        body: {},
      }));
    } catch (e) {
      this.retryLater(e);
      return;
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const after = this.lastSeq === null ? "" : `&after=${this.lastSeq}`;
    const ws = new WebSocket(`${scheme}//${location.host}/api/sessions/${this.sessionId}/live?ticket=${encodeURIComponent(ticket)}${after}`);
    this.ws = ws;
    ws.onopen = () => {
      this.tries = 0;
      this.events.live(true);
    };
    ws.onmessage = (ev) => this.frame(String(ev.data));
    ws.onclose = () => {
      if (this.ws === ws) this.ws = null;
      if (!this.closedByUs) this.retryLater(null);
    };
  }

  private retryLater(e: unknown): void {
    if (e instanceof ApiError && !e.retryable) {
      this.giveUp();
      return;
    }
    if (++this.tries > RECONNECT_TRIES) {
      this.giveUp();
      return;
    }
    setTimeout(() => void this.connect(), 300 * 2 ** (this.tries - 1));
  }

  private giveUp(): void {
    this.available = false;
    this.events.live(false);
  }

  private frame(text: string): void {
    if (text === "pong") return;
    let f: any;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof f.seq === "number") this.lastSeq = Math.max(this.lastSeq ?? 0, f.seq);
    const key: string | null = typeof f.key === "string" ? f.key : null;
    switch (f.type) {
      case "player":
        this.events.player(key, f.message);
        break;
      case "delta":
        this.events.delta(key, f.text);
        break;
      case "done":
        if (key) this.mine.delete(key);
        this.events.done(key, f.answer as Answer, false);
        break;
      case "error":
        if (key) this.mine.delete(key);
        this.events.error(key, f.error?.code ?? "error", f.error?.message ?? "");
        break;
    }
  }

  /** Sends a turn over the socket; false when it is not open. */
  send(key: string, message: string, locale?: string): boolean {
    if (!this.open) return false;
    this.mine.add(key);
    this.ws!.send(JSON.stringify({ type: "turn", key, message, ...(locale ? { locale } : {}) }));
    return true;
  }

  stop(key: string): void {
    if (this.open) this.ws!.send(JSON.stringify({ type: "stop", key }));
  }

  /** Drops the socket as a network would: the page reconnects and finishes what it missed. */
  drop(): void {
    this.ws?.close();
  }

  close(): void {
    this.closedByUs = true;
    this.ws?.close();
  }
}

/**
 * Sends a turn over server-sent events and tells `events` as they arrive. Refusals known
 * before the stream (sign-in, validation, 409, 422, 429) throw as any call does.
 */
export async function sendOverEvents(
  sessionId: string,
  key: string,
  message: string,
  headers: Record<string, string>,
  events: LiveEvents,
): Promise<void> {
  let response: Response;
  try {
    response = await fetch("/api/chat", {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/json", Accept: "text/event-stream", "Idempotency-Key": key },
      body: JSON.stringify({ sessionId, message }),
    });
  } catch (e) {
    throw new ApiError(0, "network", String(e));
  }
  if (!response.ok || !response.headers.get("Content-Type")?.startsWith("text/event-stream")) {
    let err: any = {};
    try {
      err = (await response.json())?.error ?? {};
    } catch {
      // not JSON
    }
    throw new ApiError(response.status, err.code ?? "http_" + response.status, err.message ?? `HTTP ${response.status}`);
  }
  const replayed = response.headers.get("Idempotent-Replayed") === "true";
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let ended = false;
  events.player(key, message);
  for (;;) {
    const { value, done } = await reader.read().catch((e) => {
      throw new ApiError(0, "network", String(e));
    });
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const name = /^event: (.*)$/m.exec(block)?.[1] ?? "message";
      const data = /^data: (.*)$/m.exec(block)?.[1] ?? "";
      const parsed = JSON.parse(data);
      if (name === "delta") events.delta(key, parsed.text);
      if (name === "done") {
        ended = true;
        events.done(key, parsed as Answer, replayed);
      }
      if (name === "error") {
        ended = true;
        events.error(key, parsed.error?.code ?? "error", parsed.error?.message ?? "");
      }
    }
  }
  if (!ended) throw new ApiError(0, "network", "the answer ended early");
}
