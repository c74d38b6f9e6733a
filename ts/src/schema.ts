// The D1 tables of the chat backend, for TypeScript readers (the Rust Workers own the
// writes). Mirrors migrations/*.sql; the test suite fails when the two drift apart
// (tests/tests/drizzle.rs). Times are integer milliseconds since the Unix epoch.
// At schema 2 (migration 0009) chat_messages, point_events and user_stats are tables
// WITHOUT ROWID, which Drizzle cannot declare; a reader sees the same columns and keys.
import { sql } from "drizzle-orm";
import { check, index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

export const authProviders = ["x", "privy"] as const;
export const messageRoles = ["user", "agent", "system"] as const;
export const locales = ["ja", "en"] as const;
export const failureClasses = [
  "undecodable",
  "unknown_version",
  "invalid",
  "conflict",
  "transient",
  "retries_exhausted",
] as const;
export const letterStatuses = ["pending", "replayed", "discarded"] as const;

export const users = sqliteTable(
  "users",
  {
    id: text("id").primaryKey().notNull(),
    authProvider: text("auth_provider", { enum: authProviders }).notNull(),
    authProviderUserId: text("auth_provider_user_id").notNull(),
    displayName: text("display_name"),
    walletAddress: text("wallet_address"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    xUserId: text("x_user_id"),
    xUsername: text("x_username"),
    profileSignedAt: integer("profile_signed_at").notNull().default(0),
  },
  (t) => [
    uniqueIndex("users_identity").on(t.authProvider, t.authProviderUserId),
    check("users_auth_provider", sql`${t.authProvider} IN ('x', 'privy')`),
  ],
);

export const chatMessages = sqliteTable(
  "chat_messages",
  {
    id: text("id").primaryKey().notNull(),
    userId: text("user_id").notNull().references(() => users.id),
    sessionId: text("session_id").notNull(),
    role: text("role", { enum: messageRoles }).notNull(),
    content: text("content").notNull(),
    scoreRaw: integer("score_raw"),
    scoreAdjusted: integer("score_adjusted"),
    emotion: text("emotion"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [
    index("chat_messages_user_session_created").on(t.userId, t.sessionId, t.createdAt),
    check("chat_messages_role", sql`${t.role} IN ('user', 'agent', 'system')`),
  ],
);

export const pointEvents = sqliteTable(
  "point_events",
  {
    id: text("id").primaryKey().notNull(),
    userId: text("user_id").notNull().references(() => users.id),
    sessionId: text("session_id").notNull(),
    // The turn it came from; not a foreign key at schema 2 (migration 0009).
    messageId: text("message_id"),
    delta: integer("delta").notNull(),
    reason: text("reason").notNull(),
    metadataJson: text("metadata_json").notNull().default("{}"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("point_events_user_created").on(t.userId, t.createdAt)],
);

export const userStats = sqliteTable(
  "user_stats",
  {
    userId: text("user_id").primaryKey().notNull().references(() => users.id),
    totalPoints: integer("total_points").notNull().default(0),
    intimacyLevel: integer("intimacy_level").notNull().default(0),
    lastMessageAt: integer("last_message_at"),
    updatedAt: integer("updated_at").notNull(),
  },
);

/**
 * Each database's top players (migration 0008), kept by the consumer's batch: the members
 * ranked above `leadersFloor` are exactly the database's top players. Read the leaderboard
 * from here; `user_stats` has no index on points (D1 bills every index row a write moves).
 */
export const leaders = sqliteTable("leaders", {
  userId: text("user_id").primaryKey().notNull(),
  totalPoints: integer("total_points").notNull(),
});

/** No player missing from `leaders` ranks above (floorPoints, floorUser); null: none is missing. */
export const leadersFloor = sqliteTable(
  "leaders_floor",
  {
    id: integer("id").primaryKey().notNull(),
    floorPoints: integer("floor_points"),
    floorUser: text("floor_user"),
    refill: integer("refill").notNull().default(0),
  },
  (t) => [
    check("leaders_floor_one_row", sql`${t.id} = 1`),
    check("leaders_floor_refill", sql`${t.refill} IN (0, 1)`),
  ],
);

export const chatSessions = sqliteTable(
  "chat_sessions",
  {
    id: text("id").primaryKey().notNull(),
    userId: text("user_id").notNull().references(() => users.id),
    characterType: text("character_type").notNull(),
    username: text("username").notNull(),
    locale: text("locale", { enum: locales }).notNull(),
    createdAt: integer("created_at").notNull(),
    endedAt: integer("ended_at"),
  },
  (t) => [index("chat_sessions_user_created").on(t.userId, t.createdAt)],
);

// What the archive holds of each player (migration 0010). Turns older than HOT_DAYS live in
// R2 (bucket `chat-archive`), keyed `<user_id>/<session_id>/<first_at>-<last_at>-<hash>.jsonl.gz`:
// gzip JSON lines, a header, then `chat_messages`, `point_events` (and, with a session's last
// turns, its `chat_sessions` row) with these tables' columns. A player's balance is `points`
// here plus SUM(delta) of their point events in D1.
export const archivePlayers = sqliteTable("archive_players", {
  userId: text("user_id").primaryKey().notNull(),
  objects: integer("objects").notNull(),
  sessions: integer("sessions").notNull(),
  turns: integer("turns").notNull(),
  messages: integer("messages").notNull(),
  pointEvents: integer("point_events").notNull(),
  points: integer("points").notNull(),
  bytes: integer("bytes").notNull(),
  firstAt: integer("first_at").notNull(),
  lastAt: integer("last_at").notNull(),
  archivedAt: integer("archived_at").notNull(),
});

// Erased players (migration 0011): a keyed hash of the id (never the id), the bucket, and
// when; the Workers refuse an erased player's turns made before it.
export const erasures = sqliteTable(
  "erasures",
  {
    userHash: text("user_hash").primaryKey().notNull(),
    bucket: text("bucket").notNull(),
    erasedAt: integer("erased_at").notNull(),
  },
  (t) => [index("erasures_bucket").on(t.bucket, t.userHash)],
);

// Scratch of an archive commit's batch: always empty between batches.
export const archiveCommits = sqliteTable("archive_commits", {
  key: text("key").primaryKey().notNull(),
});

export const deadLetters = sqliteTable(
  "dead_letters",
  {
    id: text("id").primaryKey().notNull(),
    turnId: text("turn_id"),
    payload: text("payload").notNull(),
    errorClass: text("error_class", { enum: failureClasses }).notNull(),
    errorText: text("error_text").notNull(),
    attempts: integer("attempts").notNull(),
    firstFailedAt: integer("first_failed_at").notNull(),
    lastFailedAt: integer("last_failed_at").notNull(),
    status: text("status", { enum: letterStatuses }).notNull().default("pending"),
    replayCount: integer("replay_count").notNull().default(0),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    index("dead_letters_status_failed").on(t.status, t.lastFailedAt, t.id),
    index("dead_letters_class_failed").on(t.errorClass, t.lastFailedAt),
    index("dead_letters_turn").on(t.turnId),
  ],
);

export const replayRuns = sqliteTable("replay_runs", {
  id: text("id").primaryKey().notNull(),
  startedAt: integer("started_at").notNull(),
  finishedAt: integer("finished_at").notNull(),
  dryRun: integer("dry_run").notNull(),
  filterJson: text("filter_json").notNull(),
  letters: integer("letters").notNull().default(0),
  requeued: integer("requeued").notNull().default(0),
  wouldApply: integer("would_apply").notNull().default(0),
  alreadyApplied: integer("already_applied").notNull().default(0),
  conflicts: integer("conflicts").notNull().default(0),
  invalid: integer("invalid").notNull().default(0),
});

// The live part of the bucket map (control database only; see shards.ts), with the state of
// each bucket's move.
export const shardBuckets = sqliteTable("shard_buckets", {
  bucket: integer("bucket").primaryKey().notNull(),
  binding: text("binding").notNull(),
  moving: integer("moving").notNull().default(0),
  movedFrom: text("moved_from"),
  updatedAt: integer("updated_at").notNull(),
  heldAt: integer("held_at"),
  copyTo: text("copy_to"),
  flippedAt: integer("flipped_at"),
});

// The buckets a database refuses to write (being moved away, or moved away): every database.
export const fenceReasons = ["moving", "moved"] as const;
export const bucketFences = sqliteTable("bucket_fences", {
  bucket: text("bucket").primaryKey().notNull(),
  reason: text("reason", { enum: fenceReasons }).notNull(),
  fencedAt: integer("fenced_at").notNull(),
});

// What the consumer Worker reported it can reach (control database only).
export const consumerDatabases = sqliteTable("consumer_databases", {
  binding: text("binding").primaryKey().notNull(),
  migration: text("migration"),
  reportedAt: integer("reported_at").notNull(),
});

export type User = typeof users.$inferSelect;
export type ChatMessage = typeof chatMessages.$inferSelect;
export type PointEvent = typeof pointEvents.$inferSelect;
export type UserStats = typeof userStats.$inferSelect;
export type ChatSession = typeof chatSessions.$inferSelect;
export type DeadLetter = typeof deadLetters.$inferSelect;
export type ReplayRun = typeof replayRuns.$inferSelect;
export type ArchivePlayer = typeof archivePlayers.$inferSelect;
