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

export async function call<T = any>(path: string, options: CallOptions = {}): Promise<T> {
  const headers: Record<string, string> = { ...options.headers };
  let body: string | undefined;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  let response: Response;
  try {
    response = await fetch(path, { method: options.method ?? "GET", headers, body });
  } catch (e) {
    throw new ApiError(0, "network", String(e));
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
