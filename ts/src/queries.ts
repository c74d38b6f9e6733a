// How a TypeScript Worker reads a player's stats and chat history from the chat backend's D1
// databases. Players are sharded: each player's rows live in the database of their bucket
// (see shards.ts), so every read first picks the binding for the user.
// `tsc --noEmit` compiles this file in the test suite, so the example in docs/api.md stays true.
import { and, asc, desc, eq, gt, inArray, isNull, lt, or, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import * as schema from "./schema";
import { bucketPrefixesOf, databaseFor, liveShardMap } from "./shards";

export interface Env {
  /** The same value as the Rust Workers' SHARD_MAP, e.g. "0-127=DB_0,128-255=DB_1". */
  SHARD_MAP: string;
  /** DB_0 (also the control database), DB_1, …: every binding SHARD_MAP names. */
  [binding: string]: unknown;
}

/** The Drizzle client of the database holding `userId`'s rows. */
export async function databaseOf(env: Env, userId: string) {
  const map = await liveShardMap(env, env.SHARD_MAP);
  return drizzle(databaseFor(env, map, userId), { schema });
}

/** A player's points and intimacy level (undefined before their first stored turn). */
export async function playerStats(env: Env, userId: string): Promise<schema.UserStats | undefined> {
  const db = await databaseOf(env, userId);
  return db.select().from(schema.userStats).where(eq(schema.userStats.userId, userId)).get();
}

/**
 * A session's messages still in D1, oldest first, as the chat Worker's own history route
 * orders them. Turns older than HOT_DAYS (30 by default) are in the archive instead: see
 * `archivedSummary`. The chat Worker's `GET /api/sessions/{id}/messages` reads both.
 */
export async function sessionHistory(env: Env, userId: string, sessionId: string): Promise<schema.ChatMessage[]> {
  const db = await databaseOf(env, userId);
  return db
    .select()
    .from(schema.chatMessages)
    .where(and(eq(schema.chatMessages.userId, userId), eq(schema.chatMessages.sessionId, sessionId)))
    .orderBy(asc(schema.chatMessages.createdAt), asc(schema.chatMessages.id))
    .all();
}

/**
 * What the archive holds of a player: their archived points (their balance is these plus
 * their point events still in D1), turns and the time range. The turns themselves are R2
 * objects (bucket `chat-archive`) under `<userId>/<sessionId>/`: list that prefix, and read
 * one with `new Response(object.body.pipeThrough(new DecompressionStream("gzip"))).text()`,
 * JSON lines with D1's column names. Take each row once by its id.
 */
export async function archivedSummary(env: Env, userId: string): Promise<schema.ArchivePlayer | undefined> {
  const db = await databaseOf(env, userId);
  return db.select().from(schema.archivePlayers).where(eq(schema.archivePlayers.userId, userId)).get();
}

/**
 * The top players by points across every database, ties broken by user id (as the API does).
 * Each database's top comes from its `leaders` table (members ranked above its floor), and
 * counts only the buckets the live map gives it: during a bucket move, or until its old copy
 * is purged, a player's rows exist in two databases, and must be counted once.
 */
export async function leaderboard(env: Env, limit = 10) {
  const map = await liveShardMap(env, env.SHARD_MAP);
  const bindings = [...new Set(map)];
  const { leaders, leadersFloor: lf } = schema;
  const aboveFloor = or(
    isNull(lf.floorPoints),
    gt(leaders.totalPoints, lf.floorPoints),
    and(eq(leaders.totalPoints, lf.floorPoints), lt(leaders.userId, lf.floorUser)),
  );
  const pages = await Promise.all(
    bindings.map((binding) =>
      drizzle(env[binding] as D1Database, { schema })
        .select({ userId: schema.users.id, name: schema.users.displayName, points: leaders.totalPoints })
        .from(leaders)
        .innerJoin(lf, eq(lf.id, 1))
        .innerJoin(schema.users, eq(schema.users.id, leaders.userId))
        .where(and(aboveFloor, inArray(sql`substr(${leaders.userId}, 1, 2)`, bucketPrefixesOf(map, binding))))
        .orderBy(desc(leaders.totalPoints), asc(leaders.userId))
        .limit(limit)
        .all(),
    ),
  );
  return pages
    .flat()
    .sort((a, b) => b.points - a.points || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0))
    .slice(0, limit);
}
