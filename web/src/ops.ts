// The operations console (`/ops`): figures, dead letters with their filters and paging, one
// letter with its payload, replay (dry run first) and discard, and reconcile. It calls only
// the admin API, with the token the operator types, which is kept only in this tab's
// sessionStorage: the page itself holds no secret, and the CLI and the page cannot disagree.

import { ApiError, call } from "./api";
import { byId, fill, h } from "./dom";
import { currentLang, explain, Lang, languageSwitch, words } from "./i18n";

interface Letter {
  id: string;
  turnId: string | null;
  class: string;
  error: string;
  attempts: number;
  firstFailedAt: string;
  lastFailedAt: string;
  status: string;
  replayCount: number;
  payload?: string;
}
interface ReplayAnswer {
  runId: string;
  dryRun: boolean;
  counts: Record<string, number>;
  letters: { id: string; verdict: string; reason: string | null; requeued: boolean }[];
}
interface ReconcileAnswer {
  dryRun: boolean;
  database: string;
  checked: number;
  drifted: { userId: string; storedTotal: number; ledgerTotal: number; storedLevel: number; expectedLevel: number }[];
  fixed: number;
  nextCursor: string | null;
}

const lang = currentLang();
const w = words(lang);
const TOKEN_KEY = "ops.token";
const CLASSES = ["undecodable", "unknown_version", "invalid", "conflict", "transient", "retries_exhausted"];
const STATUSES = ["pending", "replayed", "discarded"];
/** The cursors of the pages seen, so that "First page" and paging start over cleanly. */
let cursor: string | null = null;
let nextCursor: string | null = null;
const selected = new Set<string>();

function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

function admin<T>(path: string, body?: unknown): Promise<T> {
  return call<T>("/admin/" + path, {
    method: body === undefined ? "GET" : "POST",
    headers: { Authorization: `Bearer ${token() ?? ""}` },
    body,
  });
}

function layout(): void {
  document.title = w.opsTitle;
  document.documentElement.lang = lang;
  const langSelect = languageSwitch(lang);
  const option = (v: string, label = v) => h("option", { value: v }, label);
  fill(
    byId("app"),
    h("header", {}, h("h1", {}, w.opsTitle), langSelect),
    h(
      "form",
      { id: "token-form", class: "row" },
      h("label", {}, w.token, " ", h("input", { id: "token", type: "password", autocomplete: "off", required: true })),
      h("button", { type: "submit" }, w.useToken),
      h("button", { id: "forget", type: "button", class: "link" }, w.forgetToken),
      h("p", { class: "help" }, w.tokenHelp),
    ),
    h("p", { id: "ops-error", class: "error", role: "alert", hidden: true }),
    h("p", { id: "ops-notice", class: "notice", role: "status", hidden: true }),
    h(
      "div",
      { id: "console", hidden: true },
      h("section", { id: "figures" }, h("h2", {}, w.stats), h("div", { id: "stats" })),
      h(
        "section",
        { id: "letters-section" },
        h("h2", {}, w.deadLetters),
        h(
          "form",
          { id: "filters", class: "row" },
          h("label", {}, w.status, " ", h("select", { id: "f-status" }, option("", w.any), ...STATUSES.map((s) => option(s, statusName(s))))),
          h("label", {}, w.klass, " ", h("select", { id: "f-class" }, option("", w.any), ...CLASSES.map((c) => option(c)))),
          h("label", {}, w.text, " ", h("input", { id: "f-q", type: "search" })),
          h("label", {}, w.from, " ", h("input", { id: "f-from", type: "datetime-local", step: "1" })),
          h("label", {}, w.to, " ", h("input", { id: "f-to", type: "datetime-local", step: "1" })),
          h("label", {}, w.perPage, " ", h("select", { id: "f-limit" }, option("5"), h("option", { value: "20", selected: true }, "20"), option("50"), option("100"))),
          h("button", { id: "apply", type: "submit" }, w.apply),
        ),
        h(
          "div",
          { class: "row" },
          h("span", { id: "selection" }),
          h("button", { id: "dry-run", type: "button" }, w.dryRunReplay),
          h("button", { id: "replay", type: "button" }, w.replay),
          h("button", { id: "discard", type: "button", class: "danger" }, w.discard),
        ),
        h(
          "table",
          { id: "letters" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", {}, h("input", { id: "select-all", type: "checkbox", "aria-label": w.selected })),
              h("th", {}, w.id),
              h("th", {}, w.klass),
              h("th", {}, w.status),
              h("th", {}, w.attempts),
              h("th", {}, w.lastFailed),
              h("th", {}, w.replays),
              h("th", {}, w.error),
            ),
          ),
          h("tbody", { id: "letter-rows" }),
        ),
        h(
          "div",
          { class: "row" },
          h("button", { id: "first-page", type: "button" }, w.firstPage),
          h("button", { id: "next-page", type: "button" }, w.nextPage),
        ),
        h("section", { id: "verdicts", hidden: true }),
        h("section", { id: "letter", hidden: true }),
      ),
      h(
        "section",
        { id: "reconcile" },
        h("h2", {}, w.reconcile),
        h(
          "div",
          { class: "row" },
          h("button", { id: "reconcile-dry", type: "button" }, w.reconcileDry),
          h("button", { id: "reconcile-real", type: "button", class: "danger" }, w.reconcileReal),
        ),
        h("div", { id: "reconcile-result" }),
      ),
    ),
  );
}

function statusName(s: string): string {
  return ({ pending: w.pending, replayed: w.replayed, discarded: w.discarded } as Record<string, string>)[s] ?? s;
}

function showError(e: unknown): void {
  const el = byId("ops-error");
  el.textContent = explain(e, lang, true);
  el.hidden = false;
  if (e instanceof ApiError && e.status === 401) byId("console").hidden = true;
}

function notice(text: string): void {
  byId("ops-error").hidden = true;
  const el = byId("ops-notice");
  el.textContent = text;
  el.hidden = false;
}

/** Runs an admin action; any failure shows as the page's error. */
async function guarded(action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (e) {
    showError(e);
  }
}

function cells(...values: (string | number | Node)[]): HTMLTableRowElement {
  return h("tr", {}, ...values.map((v) => h("td", {}, typeof v === "object" ? v : String(v))));
}

async function loadStats(): Promise<void> {
  const s = await admin<any>("stats");
  byId("ops-error").hidden = true;
  byId("console").hidden = false;
  const dl = s.deadLetters ?? {};
  const byClass = Object.entries(dl.pendingByClass ?? {}).map(([k, v]) => `${k}: ${v}`).join(", ") || "–";
  const missing: string[] = s.missing ?? [];
  fill(
    byId("stats"),
    ...(missing.length ? [h("p", { class: "error", id: "stats-missing" }, `${w.missingDatabases} ${missing.join(", ")}`)] : []),
    h(
      "table",
      { class: "figures" },
      h("thead", {}, h("tr", {}, ...[w.database, w.users, w.sessions, w.turns, w.totalPoints].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        ...(s.databases ?? []).map((d: any) => cells(d.binding, d.users, d.sessions, d.turns, d.totalPoints)),
        cells(h("strong", {}, "Σ"), s.users, s.sessions, s.turns, s.totalPoints),
      ),
    ),
    h(
      "dl",
      { class: "inline" },
      h("dt", {}, w.pending),
      h("dd", { id: "dl-pending" }, String(dl.pending ?? 0)),
      h("dt", {}, w.replayed),
      h("dd", { id: "dl-replayed" }, String(dl.replayed ?? 0)),
      h("dt", {}, w.discarded),
      h("dd", { id: "dl-discarded" }, String(dl.discarded ?? 0)),
      h("dt", {}, w.pendingByClass),
      h("dd", {}, byClass),
      h("dt", {}, w.replayRuns),
      h("dd", {}, String(s.replayRuns ?? 0)),
    ),
  );
}

/** The filter fields as the admin API takes them (query string and replay `filter`). */
function filters(): Record<string, string> {
  const f: Record<string, string> = {};
  const v = (id: string) => byId<HTMLInputElement>(id).value.trim();
  if (v("f-status")) f.status = v("f-status");
  if (v("f-class")) f.class = v("f-class");
  if (v("f-q")) f.q = v("f-q");
  // datetime-local is the browser's local time; the API takes RFC 3339.
  if (v("f-from")) f.from = new Date(v("f-from")).toISOString();
  if (v("f-to")) f.to = new Date(v("f-to")).toISOString();
  return f;
}

async function loadLetters(): Promise<void> {
  const q = new URLSearchParams({ ...filters(), limit: byId<HTMLSelectElement>("f-limit").value });
  if (cursor) q.set("cursor", cursor);
  const page = await admin<{ letters: Letter[]; nextCursor: string | null }>(`dead-letters?${q}`);
  nextCursor = page.nextCursor;
  byId<HTMLButtonElement>("next-page").disabled = !nextCursor;
  byId<HTMLButtonElement>("first-page").disabled = !cursor;
  selected.clear();
  byId<HTMLInputElement>("select-all").checked = false;
  const rows = page.letters.map((l) => {
    const box = h("input", { type: "checkbox", class: "pick", "data-id": l.id, "aria-label": l.id });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(l.id);
      else selected.delete(l.id);
      showSelection();
    });
    const open = h("button", { type: "button", class: "link open", "data-id": l.id }, l.id.slice(0, 8) + "…");
    open.addEventListener("click", () => void guarded(() => showLetter(l.id)));
    const row = cells(box, open, l.class, statusName(l.status), l.attempts, new Date(l.lastFailedAt).toLocaleString(lang), l.replayCount, l.error.slice(0, 120));
    row.dataset.id = l.id;
    return row;
  });
  fill(byId("letter-rows"), ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: "8" }, w.noLetters))]));
  showSelection();
}

function showSelection(): void {
  byId("selection").textContent = `${selected.size} ${w.selected}`;
}

async function showLetter(id: string): Promise<void> {
  const l = await admin<Letter>(`dead-letters/${encodeURIComponent(id)}`);
  let payload = l.payload ?? "";
  try {
    payload = JSON.stringify(JSON.parse(payload), null, 2);
  } catch {
    // Not JSON (an undecodable letter): shown as it was received.
  }
  const close = h("button", { type: "button", class: "link" }, w.close);
  close.addEventListener("click", () => (byId("letter").hidden = true));
  const field = (k: string, v: string | number | null) => [h("dt", {}, k), h("dd", {}, v === null ? "–" : String(v))];
  fill(
    byId("letter"),
    h("h3", {}, `${w.deadLetters}: ${l.id} `, close),
    h(
      "dl",
      { class: "inline" },
      ...field(w.klass, l.class),
      ...field(w.status, statusName(l.status)),
      ...field(w.attempts, l.attempts),
      ...field(w.replays, l.replayCount),
      ...field("turnId", l.turnId),
      ...field(w.lastFailed, l.lastFailedAt),
      ...field(w.error, l.error),
    ),
    h("h4", {}, w.payload),
    h("pre", { id: "payload" }, payload),
  );
  byId("letter").hidden = false;
}

async function replay(dryRun: boolean): Promise<void> {
  const ids = [...selected];
  if (ids.length === 0) return notice(w.selectFirst);
  if (!dryRun && !confirm(w.confirmReplay(ids.length))) return;
  const r = await admin<ReplayAnswer>("dead-letters/replay", { ids, dryRun, limit: Math.max(ids.length, 1) });
  fill(
    byId("verdicts"),
    h("h3", {}, dryRun ? w.dryRunReplay : w.replay.replace("…", "")),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, h("th", {}, w.id), h("th", {}, w.verdict), h("th", {}, w.reason), h("th", {}, w.requeued))),
      h(
        "tbody",
        {},
        ...r.letters.map((l) => {
          const row = cells(l.id, w.verdicts[l.verdict] ?? l.verdict, l.reason ?? "", l.requeued ? w.yes : w.no);
          row.dataset.id = l.id;
          row.dataset.verdict = l.verdict;
          return row;
        }),
      ),
    ),
  );
  byId("verdicts").hidden = false;
  notice(dryRun ? w.dryRunDone : w.replayDone(r.letters.filter((l) => l.requeued).length));
  if (!dryRun) await Promise.all([loadLetters(), loadStats()]);
}

async function discard(): Promise<void> {
  const ids = [...selected];
  if (ids.length === 0) return notice(w.selectFirst);
  if (!confirm(w.confirmDiscard(ids.length))) return;
  const r = await admin<{ discarded: number }>("dead-letters/discard", { ids, dryRun: false, limit: Math.max(ids.length, 1) });
  notice(w.discardDone(r.discarded));
  await Promise.all([loadLetters(), loadStats()]);
}

/** Every page of reconcile, over every database, summed. */
async function reconcile(dryRun: boolean): Promise<void> {
  if (!dryRun && !confirm(w.confirmReconcile)) return;
  let next: string | null = null;
  let checked = 0;
  let fixed = 0;
  const drifted: ReconcileAnswer["drifted"] = [];
  for (let pages = 0; pages < 1000; pages++) {
    const r: ReconcileAnswer = await admin<ReconcileAnswer>("reconcile", { dryRun, limit: 500, ...(next ? { cursor: next } : {}) });
    checked += r.checked;
    fixed += r.fixed;
    drifted.push(...r.drifted);
    next = r.nextCursor;
    if (!next) break;
  }
  fill(
    byId("reconcile-result"),
    h(
      "dl",
      { class: "inline" },
      h("dt", {}, w.checked),
      h("dd", { id: "rec-checked" }, String(checked)),
      h("dt", {}, w.drifted),
      h("dd", { id: "rec-drifted" }, String(drifted.length)),
      h("dt", {}, w.fixed),
      h("dd", { id: "rec-fixed" }, String(fixed)),
    ),
    drifted.length
      ? h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ...["userId", w.total, "ledger", w.level].map((t) => h("th", {}, t)))),
          h("tbody", {}, ...drifted.map((d) => cells(d.userId, d.storedTotal, d.ledgerTotal, `${d.storedLevel} → ${d.expectedLevel}`))),
        )
      : null,
  );
  notice(dryRun ? w.dryRunDone : `${w.fixed}: ${fixed}`);
  if (!dryRun) await loadStats();
}

async function connect(): Promise<void> {
  await loadStats();
  cursor = null;
  await loadLetters();
}

function wire(): void {
  byId("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, byId<HTMLInputElement>("token").value.trim());
    byId<HTMLInputElement>("token").value = "";
    void guarded(connect);
  });
  byId("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    byId("console").hidden = true;
  });
  byId("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    cursor = null;
    void guarded(loadLetters);
  });
  byId("first-page").addEventListener("click", () => {
    cursor = null;
    void guarded(loadLetters);
  });
  byId("next-page").addEventListener("click", () => {
    cursor = nextCursor;
    void guarded(loadLetters);
  });
  byId<HTMLInputElement>("select-all").addEventListener("change", (ev) => {
    const on = (ev.target as HTMLInputElement).checked;
    for (const box of document.querySelectorAll<HTMLInputElement>("input.pick")) {
      box.checked = on;
      if (on) selected.add(box.dataset.id!);
      else selected.delete(box.dataset.id!);
    }
    showSelection();
  });
  byId("dry-run").addEventListener("click", () => void guarded(() => replay(true)));
  byId("replay").addEventListener("click", () => void guarded(() => replay(false)));
  byId("discard").addEventListener("click", () => void guarded(discard));
  byId("reconcile-dry").addEventListener("click", () => void guarded(() => reconcile(true)));
  byId("reconcile-real").addEventListener("click", () => void guarded(() => reconcile(false)));
}

layout();
wire();
if (token()) void guarded(connect);
