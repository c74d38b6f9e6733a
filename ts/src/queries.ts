// How a TypeScript Worker reads a player's stats and chat history from the same D1 database.
// `tsc --noEmit` compiles this file in the test suite, so the README's example stays true.
import { and, asc, eq } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import * as schema from "./schema";

export interface Env {
  DB: D1Database;
}

export function database(env: Env) {
  return drizzle(env.DB, { schema });
}

/** A player's points and intimacy level (undefined before their first stored turn). */
export async function playerStats(env: Env, userId: string): Promise<schema.UserStats | undefined> {
  const db = database(env);
  return db.select().from(schema.userStats).where(eq(schema.userStats.userId, userId)).get();
}

/** A session's messages, oldest first, as the chat Worker's own history route orders them. */
export async function sessionHistory(env: Env, userId: string, sessionId: string): Promise<schema.ChatMessage[]> {
  const db = database(env);
  return db
    .select()
    .from(schema.chatMessages)
    .where(and(eq(schema.chatMessages.userId, userId), eq(schema.chatMessages.sessionId, sessionId)))
    .orderBy(asc(schema.chatMessages.createdAt), asc(schema.chatMessages.id))
    .all();
}

/** The top players by points. */
export async function leaderboard(env: Env, limit = 10) {
  const db = database(env);
  return db
    .select({ userId: schema.users.id, name: schema.users.displayName, points: schema.userStats.totalPoints })
    .from(schema.userStats)
    .innerJoin(schema.users, eq(schema.users.id, schema.userStats.userId))
    .orderBy(schema.userStats.totalPoints)
    .limit(limit)
    .all();
}
