// One fetch wrapper for both pages: JSON in and out, and every failure as an ApiError with
// the server's error code (or `network` / `bad_response` when there was no usable answer).

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds, from Retry-After, when the server gave one. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }

  /** Whether sending the same request again (with the same Idempotency-Key) can succeed. */
  get retryable(): boolean {
    return (
      this.status === 0 ||
      this.status === 429 ||
      this.status >= 500 ||
      this.code === "turn_in_progress"
    );
  }
}

export interface CallOptions {
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: unknown;
}

/** How long a GET may go unanswered before it is asked again, and how many times in all. */
const READ_TIMEOUT_MS = 8_000;
const READ_ATTEMPTS = 3;

export async function call<T = any>(path: string, options: CallOptions = {}): Promise<T> {
  const headers: Record<string, string> = { ...options.headers };
  let body: string | undefined;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  const method = options.method ?? "GET";
  let response: Response;
  // A read is safe to ask again, so one that gets no answer in READ_TIMEOUT_MS (a dropped
  // connection, a stalled proxy) is asked again, up to READ_ATTEMPTS times, instead of
  // leaving the page waiting for good. A POST is never repeated here: a turn goes again only
  // with its Idempotency-Key, by the caller.
  for (let attempt = 1; ; attempt++) {
    const read = method === "GET";
    try {
      response = await fetch(path, {
        method,
        headers,
        body,
        signal: read ? AbortSignal.timeout(READ_TIMEOUT_MS) : undefined,
      });
      break;
    } catch (e) {
      if (!read || attempt >= READ_ATTEMPTS) throw new ApiError(0, "network", String(e));
      await new Promise((r) => setTimeout(r, 250 * attempt));
    }
  }
  let json: any;
  try {
    json = await response.json();
  } catch {
    throw new ApiError(response.status, "bad_response", `HTTP ${response.status}`);
  }
  if (!response.ok) {
    const err = json?.error ?? {};
    const after = Number(response.headers.get("Retry-After"));
    throw new ApiError(
      response.status,
      typeof err.code === "string" ? err.code : "http_" + response.status,
      typeof err.message === "string" ? err.message : `HTTP ${response.status}`,
      Number.isFinite(after) && after > 0 ? after : undefined,
    );
  }
  return json as T;
}
