import { defineConfig } from "drizzle-kit";

// `drizzle-kit generate` writes the schema's SQL to DRIZZLE_OUT; the test suite applies it
// to a fresh SQLite database and compares that with the real migrations.
export default defineConfig({
  dialect: "sqlite",
  schema: "./src/schema.ts",
  out: process.env.DRIZZLE_OUT ?? "./drizzle",
});
