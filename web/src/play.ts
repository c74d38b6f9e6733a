// The play page (`/`): sign in by name (development mode), pick a character and a reply
// language, chat, and watch the total catch up once the consumer has stored each turn.
// Replies appear as they are written, over the session's live socket (`live.ts`), where
// every tab of the session sees every turn; a Stop button ends a reply being written; a
// page whose socket cannot open sends its turns over server-sent events instead.
//
// Kept in localStorage, per browser: the UI language, the development name, and each
// player's current session (so that a reload brings the conversation back from the API).

import { ApiError, call } from "./api";
import { byId, fill, h, sleep } from "./dom";
import { currentLang, explain, Lang, languageSwitch, words } from "./i18n";
import { Answer, LiveSession, sendOverEvents } from "./live";

interface Info {
  signIn: "dev" | "privy" | "x" | "unavailable";
  characters: { id: string; names: Record<Lang, string> }[];
  locales: Lang[];
  /** The server's own figures (`chat_core::info::rules`): the page copies none of them. */
  rules: { gameOverPenalty: number; levelThresholds: number[]; maxMessageChars: number; maxUsernameChars: number };
}
interface Message {
  id: string;
  role: "user" | "agent" | "system";
  content: string;
  scoreAdjusted: number | null;
  emotion: string | null;
}
interface Page {
  messages: Message[];
  nextBefore: string | null;
}
interface Stats {
  userId: string;
  totalPoints: number;
  intimacyLevel: number;
}
interface Session {
  id: string;
  character: string;
  locale: Lang;
}
/** A send not yet answered: its key is kept so that every retry is the same turn. */
interface Pending {
  key: string;
  message: string;
  row: HTMLElement;
  /** Sent over the socket, and waiting for its frames. */
  live: boolean;
  /** Refused because the socket's sign-in ran out: sent again once a new socket opens. */
  resend?: boolean;
}

const lang = currentLang();
const w = words(lang);
let info: Info;
let player: string | null = localStorage.getItem("chat.name");
let session: Session | null = null;
let pending: Pending | null = null;
/** The newest answered turn whose storage the stats panel waits for. */
let awaited: string | null = null;
let olderCursor: string | null = null;
/** This player's id, from /api/me/stats, to mark its row on the leaderboard. */
let myId: string | null = null;
/** The session's live socket. */
let live: LiveSession | null = null;
/** The replies being written, by turn key. */
const writing = new Map<string, HTMLElement>();
/** Other tabs' messages whose turn is not answered yet, by turn key. */
const othersAsking = new Map<string, HTMLElement>();

/** The development identity: the name, percent-encoded (headers carry Latin-1 only). */
const devUser = (name: string) => "x:" + encodeURIComponent(name);
const auth = (): Record<string, string> => (player ? { "X-Dev-User": devUser(player) } : {});
const sessionKey = () => "chat.session:" + (player ?? "");

function layout(): void {
  document.title = w.playTitle;
  document.documentElement.lang = lang;
  const langSelect = languageSwitch(lang);
  fill(
    byId("app"),
    h(
      "header",
      {},
      h("h1", {}, w.playTitle),
      h("span", { id: "who", hidden: true }),
      h("button", { id: "signout", type: "button", hidden: true }, w.signOut),
      langSelect,
    ),
    h("p", { id: "page-error", class: "error", role: "alert", hidden: true }),
    h("section", { id: "no-dev", hidden: true }),
    h(
      "form",
      { id: "signin", hidden: true },
      h("h2", {}, w.signInHeading),
      h("p", { class: "help" }, w.signInHelp),
      h("label", {}, w.name, " ", h("input", { id: "name", required: true, autocomplete: "nickname" })),
      h("button", { type: "submit" }, w.signIn),
    ),
    h(
      "div",
      { id: "game", class: "columns", hidden: true },
      h(
        "div",
        { class: "main" },
        h(
          "form",
          { id: "start-form", class: "row" },
          h("label", {}, w.character, " ", h("select", { id: "character" })),
          h("label", {}, w.replyLocale, " ", h("select", { id: "locale" })),
          h("button", { id: "start", type: "submit" }, w.newSession),
        ),
        h(
          "section",
          { id: "chat", hidden: true },
          h("button", { id: "older", type: "button", class: "link", hidden: true, title: w.olderMessagesHint }, w.olderMessages),
          h("ol", { id: "log", "aria-live": "polite" }),
          h(
            "div",
            { id: "game-over", class: "banner", hidden: true },
            h("strong", {}, w.gameOver),
            " ",
            h("button", { id: "new-session", type: "button" }, w.newSession),
          ),
          h(
            "div",
            { id: "send-error", class: "error", role: "alert", hidden: true },
            h("span", { id: "send-error-text" }),
            " ",
            h("button", { id: "retry", type: "button" }, w.retry),
          ),
          h(
            "form",
            { id: "chat-form", class: "row" },
            h("input", { id: "message", "aria-label": w.message, autocomplete: "off", required: true }),
            h("button", { id: "send", type: "submit" }, w.send),
            h("button", { id: "stop", type: "button", hidden: true }, w.stop),
          ),
        ),
      ),
      h(
        "aside",
        {},
        h(
          "section",
          { id: "stats" },
          h("h2", {}, w.yourStats),
          h("dl", {}, h("dt", {}, w.total), h("dd", { id: "total" }, "–"), h("dt", {}, w.level), h("dd", { id: "level" }, "–")),
          h("p", { id: "stats-status", class: "help", "data-state": "idle" }),
          h("p", {}, h("button", { id: "export-data", type: "button", class: "link" }, w.downloadData)),
        ),
        h(
          "section",
          { id: "leaders" },
          h("h2", {}, w.leaderboard, " ", h("button", { id: "leaders-refresh", type: "button", class: "link" }, w.refresh)),
          h(
            "table",
            {},
            h("thead", {}, h("tr", {}, h("th", {}, w.rank), h("th", {}, w.player), h("th", {}, w.points), h("th", {}, w.level))),
            h("tbody", { id: "leaderboard" }),
          ),
        ),
      ),
    ),
  );
}

function showError(e: unknown): void {
  const el = byId("page-error");
  el.textContent = explain(e, lang);
  el.hidden = false;
}

/** A line under the message box, with no Retry: what happened to a turn of another tab. */
function notice(text: string): void {
  byId("send-error-text").textContent = text;
  byId("retry").hidden = true;
  byId("send-error").hidden = false;
}

function clearError(): void {
  byId("page-error").hidden = true;
}

function noDevSignIn(): void {
  const routes = [
    "POST /api/sessions  {characterType, username, locale}",
    "POST /api/chat  {sessionId, message}  + Idempotency-Key",
    "GET  /api/me/stats",
    "GET  /api/sessions/{id}/messages?limit&before",
    "GET  /api/leaderboard?limit",
  ];
  fill(
    byId("no-dev"),
    h("p", {}, w.noDevSignIn),
    h("h2", {}, w.apiHeading),
    h("pre", {}, routes.join("\n") + "\n\nAuthorization: Bearer <access token>"),
  );
  byId("no-dev").hidden = false;
}

function signedIn(): void {
  byId("signin").hidden = true;
  byId("game").hidden = false;
  byId("who").textContent = `${w.signedInAs} ${player}`;
  byId("who").hidden = false;
  byId("signout").hidden = false;
  const saved = localStorage.getItem(sessionKey());
  session = saved ? (JSON.parse(saved) as Session) : null;
  void refreshStats();
  void refreshLeaders();
  if (session) void openSession(session);
}

function characterName(id: string): string {
  return info.characters.find((c) => c.id === id)?.names[session?.locale ?? lang] ?? id;
}

function pointsText(score: number): string {
  return (score > 0 ? "+" : "") + score;
}

/** One line of the conversation. */
function messageRow(role: string, text: string, score?: number | null, emotion?: string | null, gameOver = false): HTMLElement {
  const who = role === "user" ? w.you : characterName(session?.character ?? "");
  const hasScore = score !== undefined && score !== null;
  const meta =
    role === "agent" && (hasScore || emotion)
      ? h(
          "span",
          { class: "meta" },
          emotion ? h("span", { class: "emotion", "data-emotion": emotion }, `${w.emotion}: ${w.emotions[emotion] ?? emotion}`) : null,
          " ",
          hasScore ? h("span", { class: "score", "data-score": String(score) }, `${w.score}: ${pointsText(score)}`) : null,
          gameOver ? h("span", { class: "penalty" }, ` ${pointsText(info.rules.gameOverPenalty)} ${w.penalty}`) : null,
        )
      : null;
  return h("li", { class: `msg ${role}` }, h("span", { class: "who" }, who), h("span", { class: "text" }, text), meta);
}

async function openSession(s: Session): Promise<void> {
  session = s;
  // The pickers show the open session's choices (they start the next one).
  byId<HTMLSelectElement>("character").value = s.character;
  byId<HTMLSelectElement>("locale").value = s.locale;
  byId("chat").hidden = false;
  byId("game-over").hidden = true;
  byId("chat-form").hidden = false;
  fill(byId("log"));
  writing.clear();
  olderCursor = null;
  try {
    await loadPage(undefined);
  } catch (e) {
    if (e instanceof ApiError && e.code === "session_not_found") {
      localStorage.removeItem(sessionKey());
      session = null;
      byId("chat").hidden = true;
    }
    showError(e);
  }
  live?.close();
  live = session ? new LiveSession(s.id, auth, liveEvents) : null;
  (window as any).chatLive = live;
  void live?.connect();
  byId<HTMLInputElement>("message").focus();
}

/** The reply being written for `key`, shown as its pieces arrive. */
function writingRow(key: string): HTMLElement {
  let row = writing.get(key);
  if (!row) {
    row = messageRow("agent", "");
    row.classList.add("writing");
    byId("log").querySelector(".empty")?.remove();
    byId("log").append(row);
    writing.set(key, row);
  }
  return row;
}

/** What the session's turns do to the page, whichever tab or transport sent them. */
const liveEvents = {
  player(key: string | null, message: string): void {
    if (key && pending?.key === key) return;
    // Another tab's turn: its message shows here too.
    byId("log").querySelector(".empty")?.remove();
    const row = messageRow("user", message);
    byId("log").append(row);
    if (key) othersAsking.set(key, row);
  },
  delta(key: string | null, text: string): void {
    const row = writingRow(key ?? "");
    row.querySelector(".text")!.textContent += text;
    row.scrollIntoView({ block: "end" });
  },
  done(key: string | null, answer: Answer): void {
    othersAsking.delete(key ?? "");
    const row = writing.get(key ?? "");
    writing.delete(key ?? "");
    // The answer's reply is what was written; it replaces the pieces shown.
    const final = messageRow("agent", answer.reply, answer.score, answer.emotion, answer.isGameOver);
    if (row) row.replaceWith(final);
    else byId("log").append(final);
    final.scrollIntoView({ block: "end" });
    if (key && pending?.key === key) {
      answered(pending);
    }
    awaited = answer.messageId;
    void waitForStored(answer.messageId);
    if (answer.isGameOver) gameOver();
  },
  error(key: string | null, code: string, message: string): void {
    writing.get(key ?? "")?.remove();
    writing.delete(key ?? "");
    const mine = key !== null && pending?.key === key;
    if (code === "stopped" && !mine) {
      // Another tab stopped its turn: nothing of it was kept, so it goes here too, with
      // the same words the tab that stopped it shows (and a reload shows neither).
      othersAsking.get(key ?? "")?.remove();
      othersAsking.delete(key ?? "");
      if (!pending) notice(explain(new ApiError(409, code, message), lang));
      return;
    }
    if (!mine) return;
    if (code === "sign_in_expired") {
      // The socket closes; the page signs in for a new one, and sends the turn again.
      pending!.resend = true;
      notice(explain(new ApiError(401, code, message), lang));
      return;
    }
    failed(pending!, new ApiError(code === "stopped" ? 409 : 503, code, message));
  },
  live(open: boolean): void {
    // A socket that will not open: a turn sent over it goes again over SSE, same key.
    if (!open && pending?.live) {
      pending.live = false;
      void sendPending();
    }
    // A new socket after the old one's sign-in ran out: the turn goes again, same key.
    if (open && pending?.resend) {
      pending.resend = false;
      void sendPending();
    }
  },
};

/** Everything the service holds on the player (GET /api/me/export), saved as a file. */
async function downloadData(): Promise<void> {
  if (!player) return;
  const response = await fetch("/api/me/export", { headers: auth() });
  if (!response.ok) throw new Error(`${w.downloadData}: ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  const a = h("a", { href: url, download: "chat-export.jsonl" });
  document.body.append(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(url);
}

/**
 * The newest page of history (or the one before `before`), put above what is shown. The
 * server reads D1 and, for turns older than HOT_DAYS, the archive in R2 with the same cursor:
 * the page cannot tell, but an archived page takes a moment longer.
 */
async function loadPage(before: string | undefined): Promise<void> {
  if (!session) return;
  const q = new URLSearchParams({ limit: "50" });
  if (before) q.set("before", before);
  const page = await call<Page>(`/api/sessions/${session.id}/messages?${q}`, { headers: auth() });
  const log = byId("log");
  // D1 keeps a turn's score on the player's message and the emotion on the character's:
  // each reply shows the score of the message it answers.
  let score: number | null = null;
  const rows = page.messages.map((m) => {
    if (m.role === "user") score = m.scoreAdjusted;
    const row = messageRow(m.role, m.content, m.role === "agent" ? score : null, m.emotion);
    if (m.role === "agent") score = null;
    return row;
  });
  if (rows.length === 0 && !before) log.append(h("li", { class: "msg system empty" }, w.historyEmpty));
  log.prepend(...rows);
  olderCursor = page.nextBefore;
  byId("older").hidden = !olderCursor;
}

async function startSession(): Promise<void> {
  clearError();
  const character = byId<HTMLSelectElement>("character").value;
  const locale = byId<HTMLSelectElement>("locale").value as Lang;
  try {
    const { sessionId } = await call<{ sessionId: string }>("/api/sessions", {
      method: "POST",
      headers: auth(),
      body: { characterType: character, username: player, locale },
    });
    const s = { id: sessionId, character, locale };
    localStorage.setItem(sessionKey(), JSON.stringify(s));
    pending = null;
    byId("send-error").hidden = true;
    await openSession(s);
  } catch (e) {
    showError(e);
  }
}

function gameOver(): void {
  byId("game-over").hidden = false;
  byId("chat-form").hidden = true;
  byId("send-error").hidden = true;
  pending = null;
}

function busy(on: boolean, stoppable = false): void {
  const button = byId<HTMLButtonElement>("send");
  button.disabled = on;
  button.textContent = on ? w.sending : w.send;
  byId<HTMLButtonElement>("retry").disabled = on;
  byId("stop").hidden = !(on && stoppable);
}

/**
 * Sends the pending turn: over the live socket when it is open (its frames finish it), or
 * else over server-sent events, retrying network failures and 5xx answers with the same key.
 */
async function sendPending(): Promise<void> {
  if (!pending || !session) return;
  const p = pending;
  byId("send-error").hidden = true;
  // A stopped turn's message left the log; sent again, it is back.
  if (!p.row.isConnected) byId("log").append(p.row);
  if (live?.open && live.send(p.key, p.message)) {
    p.live = true;
    busy(true, true);
    return;
  }
  busy(true);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await sendOverEvents(session.id, p.key, p.message, auth(), liveEvents);
        return;
      } catch (e) {
        writing.get(p.key)?.remove();
        writing.delete(p.key);
        const automatic = e instanceof ApiError && e.retryable && e.status !== 429 && attempt < 2;
        if (!automatic) throw e;
        byId("send-error-text").textContent = `${explain(e, lang)} ${w.retrying}`;
        byId("retry").hidden = true;
        byId("send-error").hidden = false;
        await sleep(500 * 2 ** attempt);
      }
    }
  } catch (e) {
    if (pending === p) failed(p, e);
  } finally {
    if (pending !== p || !p.live) busy(false);
  }
}

function answered(p: Pending): void {
  pending = null;
  busy(false);
  byId("send-error").hidden = true;
  p.row.classList.remove("pending");
}

function failed(p: Pending, e: unknown): void {
  busy(false);
  p.live = false;
  if (e instanceof ApiError && e.code === "session_ended") {
    p.row.remove();
    gameOver();
    return;
  }
  if (e instanceof ApiError && e.code === "stopped") {
    // Nothing of a stopped turn is kept: its message leaves the log, as in every other
    // tab and after a reload. It stays pending: Retry sends it again, same key.
    p.row.remove();
  }
  if (e instanceof ApiError && (e.retryable || e.code === "stopped")) {
    // Kept pending: Retry sends the same turn with the same Idempotency-Key.
    byId("send-error-text").textContent = explain(e, lang);
    byId("retry").hidden = false;
    byId("send-error").hidden = false;
    return;
  }
  // Refused for good (bad input, a reused key): give the text back to edit.
  pending = null;
  p.row.remove();
  byId<HTMLInputElement>("message").value = p.message;
  byId("send-error-text").textContent = explain(e, lang);
  byId("retry").hidden = true;
  byId("send-error").hidden = false;
}

function send(): void {
  const input = byId<HTMLInputElement>("message");
  const message = input.value.trim();
  if (!message || pending || !session) return;
  input.value = "";
  const row = messageRow("user", message);
  row.classList.add("pending");
  byId("log").querySelector(".empty")?.remove();
  byId("log").append(row);
  pending = { key: crypto.randomUUID(), message, row, live: false };
  void sendPending();
}

function setStatsState(state: "stored" | "pending" | "slow", text: string): void {
  const el = byId("stats-status");
  el.dataset.state = state;
  el.textContent = text;
}

async function refreshStats(): Promise<void> {
  try {
    const s = await call<Stats>("/api/me/stats", { headers: auth() });
    myId = s.userId;
    byId("total").textContent = String(s.totalPoints);
    byId("level").textContent = String(s.intimacyLevel);
  } catch (e) {
    showError(e);
  }
}

/**
 * Polls until the turn `messageId` is stored, then shows the stats. The consumer writes a
 * turn's messages, point event and stats in one transaction, so once the message is in the
 * session's history, /api/me/stats includes it.
 */
async function waitForStored(messageId: string): Promise<void> {
  setStatsState("pending", w.statsPending);
  const started = Date.now();
  const s = session;
  while (awaited === messageId && s === session) {
    try {
      const page = await call<Page>(`/api/sessions/${s!.id}/messages?limit=4`, { headers: auth() });
      if (page.messages.some((m) => m.id === messageId)) {
        await refreshStats();
        if (awaited === messageId) setStatsState("stored", w.statsStored);
        void refreshLeaders();
        return;
      }
    } catch {
      // A failed poll is tried again; the turn is queued either way.
    }
    const waited = Date.now() - started;
    if (waited > 20_000) setStatsState("slow", w.statsSlow);
    await sleep(waited < 10_000 ? 400 : 2_000);
  }
}

async function refreshLeaders(): Promise<void> {
  try {
    const { leaders, partial } = await call<{
      leaders: { rank: number; displayName: string | null; userId: string; totalPoints: number; intimacyLevel: number }[];
      partial?: boolean;
    }>(
      "/api/leaderboard?limit=10",
      { headers: auth() },
    );
    const rows = leaders.map((l) => {
      const me = l.userId === myId;
      // Development identities have no display name: show the player's own name for itself.
      const shown = l.displayName ?? (me && player ? player : l.userId.slice(0, 8));
      const name = shown + (me ? ` (${w.you})` : "");
      return h(
        "tr",
        { class: me ? "me" : undefined, "data-user": l.userId },
        h("td", {}, String(l.rank)),
        h("td", {}, name),
        h("td", {}, String(l.totalPoints)),
        h("td", {}, String(l.intimacyLevel)),
      );
    });
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: "4" }, w.noLeaders)));
    if (partial) rows.push(h("tr", { class: "partial" }, h("td", { colspan: "4" }, w.leadersPartial)));
    fill(byId("leaderboard"), ...rows);
  } catch {
    // The leaderboard is a nicety: its failure never blocks play.
  }
}

function wire(): void {
  byId("signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = byId<HTMLInputElement>("name").value.trim();
    if (!name) return;
    player = name;
    localStorage.setItem("chat.name", name);
    signedIn();
  });
  byId("signout").addEventListener("click", () => {
    localStorage.removeItem("chat.name");
    location.reload();
  });
  byId("start-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void startSession();
  });
  byId("new-session").addEventListener("click", () => void startSession());
  byId("chat-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    send();
  });
  byId("retry").addEventListener("click", () => void sendPending());
  byId("stop").addEventListener("click", () => pending && live?.stop(pending.key));
  byId("older").addEventListener("click", () => olderCursor && void loadPage(olderCursor).catch(showError));
  byId("leaders-refresh").addEventListener("click", () => void refreshLeaders());
  byId("export-data").addEventListener("click", () => void downloadData().catch(showError));
  const character = byId<HTMLSelectElement>("character");
  for (const c of info.characters) character.append(h("option", { value: c.id }, c.names[lang]));
  const locale = byId<HTMLSelectElement>("locale");
  for (const l of info.locales) locale.append(h("option", { value: l, selected: l === lang }, l === "ja" ? "日本語" : "English"));
}

async function main(): Promise<void> {
  layout();
  try {
    info = await call<Info>("/api/info");
  } catch (e) {
    showError(e);
    return;
  }
  // The limits the API applies, so the browser stops the typing where the server would refuse.
  byId<HTMLInputElement>("name").maxLength = info.rules.maxUsernameChars;
  byId<HTMLInputElement>("message").maxLength = info.rules.maxMessageChars;
  wire();
  if (info.signIn !== "dev") {
    noDevSignIn();
    return;
  }
  if (player) signedIn();
  else byId("signin").hidden = false;
}

void main();
