// The pages' words in English and Japanese. The language is the one the player picked last
// (kept in localStorage), else the browser's first preferred language (ja or en).

import { ApiError } from "./api";
import { h } from "./dom";

export type Lang = "en" | "ja";

const en = {
  playTitle: "Chat with a character",
  opsTitle: "Operations console",
  language: "Language",
  signInHeading: "Sign in",
  signInHelp: "Development mode: pick any name. It becomes your player id on this machine.",
  name: "Name",
  signIn: "Sign in",
  signOut: "Sign out",
  signedInAs: "Signed in as",
  noDevSignIn:
    "This deployment does not use development sign-in. The game's own client signs players in (Privy or X) and calls the API below with the player's token.",
  apiHeading: "The API",
  newSession: "New session",
  character: "Character",
  replyLocale: "Reply language",
  start: "Start",
  message: "Message",
  send: "Send",
  sending: "Sending…",
  retry: "Retry",
  retrying: "Retrying with the same Idempotency-Key…",
  you: "You",
  score: "Score",
  emotion: "Emotion",
  gameOver: "Game over. This session has ended.",
  penalty: "game-over penalty",
  yourStats: "Your points",
  total: "Total",
  level: "Intimacy level",
  statsStored: "Up to date: your last turn is stored.",
  statsPending: "Storing your last turn…",
  statsSlow: "Still storing your last turn: the queue is behind. It will catch up.",
  leaderboard: "Leaderboard",
  rank: "#",
  player: "Player",
  points: "Points",
  refresh: "Refresh",
  noLeaders: "No stored points yet.",
  leadersPartial: "Some players are missing: a database is not answering.",
  stop: "Stop",
  olderMessages: "Earlier messages",
  downloadData: "Download my data",
  olderMessagesHint: "Messages older than 30 days come from the archive: they read the same, a moment slower.",
  historyEmpty: "Say hello.",
  loading: "Loading…",
  emotions: {
    joy: "joyful",
    happy: "happy",
    neutral: "neutral",
    sad: "sad",
    angry: "angry",
  } as Record<string, string>,
  // Operations
  token: "Admin token",
  tokenHelp:
    "Kept only in this tab's session storage, and sent only to /admin as a bearer token.",
  useToken: "Use token",
  forgetToken: "Forget token",
  stats: "Figures",
  users: "Players",
  sessions: "Sessions",
  turns: "Turns",
  totalPoints: "Points",
  database: "Database",
  pending: "Pending",
  replayed: "Replayed",
  discarded: "Discarded",
  replayRuns: "Replay runs",
  pendingByClass: "Pending by class",
  deadLetters: "Dead letters",
  missingDatabases: "Not answering, left out of these figures:",
  status: "Status",
  klass: "Class",
  text: "Text",
  from: "From",
  to: "To",
  any: "any",
  perPage: "Per page",
  apply: "Apply",
  firstPage: "First page",
  nextPage: "Next page",
  noLetters: "No dead letters match.",
  id: "Id",
  attempts: "Attempts",
  lastFailed: "Last failed",
  error: "Error",
  replays: "Replays",
  payload: "Payload",
  selected: "selected",
  dryRunReplay: "Dry-run replay",
  replay: "Replay…",
  discard: "Discard…",
  confirmReplay: (n: number) =>
    `Replay ${n} dead letter(s)? Turns already stored are skipped; points never count twice.`,
  confirmDiscard: (n: number) => `Discard ${n} dead letter(s)? Their turns will not be stored.`,
  confirmReconcile: "Repair every player's stats that drifted from the ledger?",
  verdict: "Verdict",
  reason: "Reason",
  requeued: "Re-queued",
  verdicts: {
    would_apply: "would be stored",
    already_applied: "already stored",
    conflict: "conflicts with a stored turn",
    invalid: "invalid payload",
  } as Record<string, string>,
  replayDone: (n: number) => `Re-queued ${n} turn(s).`,
  discardDone: (n: number) => `Discarded ${n} dead letter(s).`,
  dryRunDone: "Dry run: nothing was changed.",
  reconcile: "Reconcile stats",
  reconcileDry: "Reconcile (dry run)",
  reconcileReal: "Reconcile…",
  checked: "Checked",
  drifted: "Drifted",
  fixed: "Fixed",
  yes: "yes",
  no: "no",
  close: "Close",
  selectFirst: "Select at least one letter.",
  errors: {
    network: "Could not reach the server. Check your connection; the send is retried safely.",
    rate_limited: "Too many turns at once. Wait a moment, then retry.",
    session_ended: "This session has ended. Start a new one.",
    turn_in_progress: "Your previous turn is still being answered. Retry in a moment.",
    idempotency_key_reused: "This send's key was already used for another message.",
    idempotency_key_expired: "This send is too old to retry. Send the message again.",
    queue_unavailable: "The server could not queue your turn. Nothing was lost: retry.",
    session_unavailable: "The session is briefly unavailable. Retry.",
    player_data_moving: "Your data is being moved between databases. Retry in a minute.",
    database_unavailable: "Your data is briefly unavailable. Retry in a moment.",
    stopped: "Stopped before the reply was finished. Nothing was scored.",
    sign_in_expired: "Your sign-in ran out. Signing in again…",
    too_many_sockets: "This chat is open in too many tabs. Close one, then retry.",
    too_many_tickets: "This chat is reconnecting too often. Retry in a moment.",
    missing_auth: "You are not signed in.",
    malformed_auth: "Your sign-in was not understood. Sign in again.",
    invalid_token: "Your sign-in has expired. Sign in again.",
    expired_token: "Your sign-in has expired. Sign in again.",
    empty_field: "Type something first.",
    field_too_long: "That is too long.",
    invalid_query: "A filter is not valid: check the dates and the text.",
    method_not_allowed: "This page asked the server something it does not do.",
    auth_unavailable: "Sign-in is not available on this server right now.",
    session_not_found: "That session does not exist for this player. Start a new one.",
    body_too_large: "That message is too long.",
    unauthorized: "The admin token was refused. Check it and try again.",
    letter_not_found: "No dead letter has this id.",
    internal: "Something went wrong on the server. Retry later.",
    bad_response: "The server sent an answer this page does not understand.",
  } as Record<string, string>,
};

type Dict = typeof en;

const ja: Dict = {
  playTitle: "キャラクターとチャット",
  opsTitle: "運用コンソール",
  language: "言語",
  signInHeading: "サインイン",
  signInHelp: "開発モード：好きな名前を入力してください。このマシンでのプレイヤー ID になります。",
  name: "名前",
  signIn: "サインイン",
  signOut: "サインアウト",
  signedInAs: "サインイン中：",
  noDevSignIn:
    "このデプロイでは開発用サインインは使えません。ゲーム本体のクライアントが（Privy または X で）プレイヤーをサインインさせ、そのトークンで下の API を呼びます。",
  apiHeading: "API",
  newSession: "新しいセッション",
  character: "キャラクター",
  replyLocale: "返答の言語",
  start: "はじめる",
  message: "メッセージ",
  send: "送信",
  sending: "送信中…",
  retry: "再送",
  retrying: "同じ Idempotency-Key で再送しています…",
  you: "あなた",
  score: "スコア",
  emotion: "感情",
  gameOver: "ゲームオーバー。このセッションは終了しました。",
  penalty: "ゲームオーバーのペナルティ",
  yourStats: "あなたのポイント",
  total: "合計",
  level: "親密度レベル",
  statsStored: "最新：直前のターンは保存されました。",
  statsPending: "直前のターンを保存しています…",
  statsSlow: "まだ保存中です（キューが混んでいます）。まもなく反映されます。",
  leaderboard: "ランキング",
  rank: "#",
  player: "プレイヤー",
  points: "ポイント",
  refresh: "更新",
  noLeaders: "まだポイントがありません。",
  leadersPartial: "一部のプレイヤーが表示されていません（データベースが応答していません）。",
  stop: "停止",
  olderMessages: "以前のメッセージ",
  downloadData: "自分のデータをダウンロード",
  olderMessagesHint: "30日より前のメッセージはアーカイブから読み込みます。内容は同じで、少し時間がかかります。",
  historyEmpty: "あいさつしてみましょう。",
  loading: "読み込み中…",
  emotions: {
    joy: "大喜び",
    happy: "うれしい",
    neutral: "ふつう",
    sad: "かなしい",
    angry: "怒り",
  },
  token: "管理トークン",
  tokenHelp: "このタブのセッションストレージにだけ保存され、/admin へ Bearer トークンとしてだけ送られます。",
  useToken: "このトークンを使う",
  forgetToken: "トークンを消す",
  stats: "集計",
  users: "プレイヤー",
  sessions: "セッション",
  turns: "ターン",
  totalPoints: "ポイント",
  database: "データベース",
  pending: "未処理",
  replayed: "再実行済み",
  discarded: "破棄済み",
  replayRuns: "再実行の回数",
  pendingByClass: "分類別の未処理",
  deadLetters: "デッドレター",
  missingDatabases: "応答がなく、集計から外れているデータベース:",
  status: "状態",
  klass: "分類",
  text: "テキスト",
  from: "開始",
  to: "終了",
  any: "すべて",
  perPage: "件数",
  apply: "絞り込む",
  firstPage: "最初のページ",
  nextPage: "次のページ",
  noLetters: "該当するデッドレターはありません。",
  id: "ID",
  attempts: "試行",
  lastFailed: "最終失敗",
  error: "エラー",
  replays: "再実行",
  payload: "ペイロード",
  selected: "件選択",
  dryRunReplay: "再実行を試算",
  replay: "再実行…",
  discard: "破棄…",
  confirmReplay: (n: number) =>
    `${n} 件のデッドレターを再実行しますか？保存済みのターンは飛ばされ、ポイントが二重に数えられることはありません。`,
  confirmDiscard: (n: number) => `${n} 件のデッドレターを破棄しますか？そのターンは保存されません。`,
  confirmReconcile: "台帳とずれたプレイヤーの集計をすべて修復しますか？",
  verdict: "判定",
  reason: "理由",
  requeued: "再投入",
  verdicts: {
    would_apply: "保存される",
    already_applied: "保存済み",
    conflict: "保存済みのターンと矛盾",
    invalid: "不正なペイロード",
  },
  replayDone: (n: number) => `${n} 件のターンを再投入しました。`,
  discardDone: (n: number) => `${n} 件のデッドレターを破棄しました。`,
  dryRunDone: "試算：何も変更していません。",
  reconcile: "集計の照合",
  reconcileDry: "照合（試算）",
  reconcileReal: "照合して修復…",
  checked: "確認",
  drifted: "ずれ",
  fixed: "修復",
  yes: "はい",
  no: "いいえ",
  close: "閉じる",
  selectFirst: "デッドレターを 1 件以上選んでください。",
  errors: {
    network: "サーバーに接続できませんでした。接続を確かめてください。再送しても二重にはなりません。",
    rate_limited: "短い間に送りすぎです。少し待ってから再送してください。",
    session_ended: "このセッションは終了しました。新しいセッションをはじめてください。",
    database_unavailable: "データに一時的にアクセスできません。少し待ってから再送してください。",
    stopped: "返信の途中で停止しました。ポイントは加算されていません。",
    sign_in_expired: "サインインの有効期限が切れました。サインインし直しています…",
    too_many_sockets: "このチャットを開いているタブが多すぎます。1つ閉じてから再送してください。",
    too_many_tickets: "再接続が多すぎます。少し待ってから再送してください。",
    turn_in_progress: "前のターンにまだ返答中です。少し待って再送してください。",
    idempotency_key_reused: "この送信のキーは別のメッセージで使われています。",
    idempotency_key_expired: "この送信は古すぎて再送できません。もう一度送ってください。",
    queue_unavailable: "ターンをキューに入れられませんでした。失われたものはありません。再送してください。",
    session_unavailable: "セッションが一時的に使えません。再送してください。",
    player_data_moving: "データをデータベース間で移動中です。1 分ほどして再送してください。",
    missing_auth: "サインインしていません。",
    malformed_auth: "サインイン情報を読めませんでした。もう一度サインインしてください。",
    invalid_token: "サインインの期限が切れました。もう一度サインインしてください。",
    expired_token: "サインインの期限が切れました。もう一度サインインしてください。",
    empty_field: "何か入力してください。",
    field_too_long: "長すぎます。",
    invalid_query: "絞り込みの条件が正しくありません。日付とテキストを確かめてください。",
    method_not_allowed: "このページがサーバーの対応していない操作を求めました。",
    auth_unavailable: "いまはこのサーバーでサインインできません。",
    session_not_found: "このプレイヤーのセッションが見つかりません。新しくはじめてください。",
    body_too_large: "メッセージが長すぎます。",
    unauthorized: "管理トークンが拒否されました。確認してもう一度お試しください。",
    letter_not_found: "この ID のデッドレターはありません。",
    internal: "サーバーで問題が起きました。しばらくして再試行してください。",
    bad_response: "サーバーの応答をこのページでは読めませんでした。",
  },
};

const dicts: Record<Lang, Dict> = { en, ja };
const KEY = "chat.uiLang";

export function currentLang(): Lang {
  const saved = localStorage.getItem(KEY);
  if (saved === "en" || saved === "ja") return saved;
  const wanted = navigator.languages?.[0] ?? navigator.language ?? "en";
  return wanted.toLowerCase().startsWith("ja") ? "ja" : "en";
}

export function setLang(lang: Lang): void {
  localStorage.setItem(KEY, lang);
}

export function words(lang: Lang = currentLang()): Dict {
  return dicts[lang];
}

/**
 * A readable sentence for a failed call: ours for known codes, else the server's message.
 * Players read words only; an operator's console also gets the code (`withCode`), to look
 * it up.
 */
export function explain(e: unknown, lang: Lang = currentLang(), withCode = false): string {
  const w = dicts[lang];
  if (e instanceof ApiError) {
    const known = w.errors[e.code];
    const base = known ?? e.message;
    const after = e.retryAfter ? ` (${e.retryAfter} s)` : "";
    return withCode ? `${base}${after} [${e.code}]` : `${base}${after}`;
  }
  return String(e);
}

/** The page's language picker: the choice is kept, and the page reloads in it. */
export function languageSwitch(lang: Lang): HTMLSelectElement {
  const select = h(
    "select",
    { id: "lang", "aria-label": dicts[lang].language },
    h("option", { value: "ja", selected: lang === "ja" }, "日本語"),
    h("option", { value: "en", selected: lang === "en" }, "English"),
  );
  select.addEventListener("change", () => {
    setLang(select.value as Lang);
    location.reload();
  });
  return select;
}
