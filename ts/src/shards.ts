// Which D1 database holds a player's rows, for TypeScript readers: the same bucket function
// and map as the Rust Workers (core/src/shards.rs). The suite checks that both agree on
// 10,000 user ids and on the map syntax (tests/tests/shards_ts.rs).

/** Buckets players are spread over. */
export const BUCKETS = 256;

/** The binding of the control database (dead letters, replay runs, the map's overrides). */
export const CONTROL = "DB_0";

/** A player's bucket: the first byte of the user id (a UUIDv5), from its first two hex digits. */
export function bucketOf(userId: string): number {
  if (!/^[0-9a-f]{2}/.test(userId)) {
    throw new Error(`${JSON.stringify(userId)} is not a lowercase UUID`);
  }
  return parseInt(userId.slice(0, 2), 16);
}

function isBinding(name: string): boolean {
  return /^DB_[0-9]{1,4}$/.test(name);
}

/**
 * Parses SHARD_MAP: `DB_0` (every bucket in one database) or `FIRST-LAST=DB_k` ranges that
 * name every bucket exactly once. Returns the binding of each bucket.
 */
export function parseShardMap(spec: string): string[] {
  const text = spec.trim();
  const map: (string | undefined)[] = new Array(BUCKETS).fill(undefined);
  if (isBinding(text)) return map.map(() => text);
  for (const raw of text.split(",")) {
    const part = raw.trim();
    const eq = part.indexOf("=");
    if (eq < 0) throw new Error(`${JSON.stringify(part)} is not FIRST-LAST=DB_k`);
    const name = part.slice(eq + 1).trim();
    if (!isBinding(name)) throw new Error(`${JSON.stringify(name)} is not a database binding`);
    const range = part.slice(0, eq).trim();
    const dash = range.indexOf("-");
    const [a, b] = dash < 0 ? [range, range] : [range.slice(0, dash).trim(), range.slice(dash + 1).trim()];
    const number = (s: string) => {
      if (!/^[0-9]+$/.test(s) || Number(s) >= BUCKETS) throw new Error(`${JSON.stringify(s)} is not a bucket from 0 to 255`);
      return Number(s);
    };
    const [first, last] = [number(a), number(b)];
    if (first > last) throw new Error(`range ${first}-${last} is backwards`);
    for (let i = first; i <= last; i++) {
      if (map[i] !== undefined) throw new Error(`bucket ${i} is named twice`);
      map[i] = name;
    }
  }
  const missing = map.findIndex((b) => b === undefined);
  if (missing >= 0) throw new Error(`bucket ${missing} has no database`);
  return map as string[];
}

/** A row of the control database's `shard_buckets`: a moved or moving bucket. */
export interface BucketOverride {
  bucket: number;
  binding: string;
  moving: number;
}

/** The live map: SHARD_MAP with the control database's overrides applied. */
export async function liveShardMap(env: Record<string, unknown>, spec: string): Promise<string[]> {
  const map = parseShardMap(spec);
  const control = env[CONTROL] as D1Database;
  const { results } = await control.prepare("SELECT bucket, binding, moving FROM shard_buckets").all<BucketOverride>();
  for (const o of results) map[o.bucket] = o.binding;
  return map;
}

/**
 * The buckets the map gives `binding`, as the two hex digits user ids of the bucket start
 * with: what a query over one database filters on, so that a copy in progress or one not
 * purged yet is never counted.
 */
export function bucketPrefixesOf(map: string[], binding: string): string[] {
  const prefixes: string[] = [];
  map.forEach((b, bucket) => {
    if (b === binding) prefixes.push(bucket.toString(16).padStart(2, "0"));
  });
  return prefixes;
}

/** The D1 database holding this player's rows. */
export function databaseFor(env: Record<string, unknown>, map: string[], userId: string): D1Database {
  const binding = map[bucketOf(userId)];
  const db = env[binding] as D1Database | undefined;
  if (!db) throw new Error(`no D1 binding ${binding} (bucket ${bucketOf(userId)})`);
  return db;
}
