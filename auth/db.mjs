// PostgreSQL for the auth service: its own schema, started-up migrations under a lock.
//
// BetterAuth's tables ("user", "session", "account", "verification", "jwks") live in the
// schema `auth`, so they never collide with Polaris' own tables in `public`. Every pooled
// connection sets search_path=auth, which is also what BetterAuth's migrator introspects.

import pg from "pg";

export const SCHEMA = "auth";

// pg_advisory_lock key shared by every auth process: "polaris-auth-migrate" folded to int8.
const MIGRATION_LOCK_KEY = 7_043_521_880_114_211n;

/**
 * @param {string} databaseUrl
 */
export function createPool(databaseUrl) {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    options: `-c search_path=${SCHEMA}`,
    max: 10,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 5_000,
    application_name: "polaris-auth",
  });
  // An idle client losing its server must not crash the process; the next query reconnects.
  pool.on("error", (err) => {
    console.error(JSON.stringify({ level: "error", msg: "idle database client failed", error: err.message }));
  });
  return pool;
}

const OUTBOX_DDL = `
CREATE TABLE IF NOT EXISTS ${SCHEMA}.mail_outbox (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  to_email   text        NOT NULL,
  subject    text        NOT NULL,
  body       text        NOT NULL,
  url        text,
  created_at timestamptz NOT NULL DEFAULT now(),
  sent_at    timestamptz
);
CREATE INDEX IF NOT EXISTS mail_outbox_unsent_idx
  ON ${SCHEMA}.mail_outbox (created_at) WHERE sent_at IS NULL;
-- Written by the mail relay (activities/mail.py): how the row was handled (smtp, local, refused)
-- and, for a refusal, the SMTP server's answer.
ALTER TABLE ${SCHEMA}.mail_outbox ADD COLUMN IF NOT EXISTS delivery text;
ALTER TABLE ${SCHEMA}.mail_outbox ADD COLUMN IF NOT EXISTS last_error text;
-- Password sign-in lockout per e-mail address (lockout.mjs). Shared by every auth process.
CREATE TABLE IF NOT EXISTS ${SCHEMA}.sign_in_lockout (
  email        text        PRIMARY KEY,
  failures     integer     NOT NULL DEFAULT 0,
  locked_until timestamptz,
  updated_at   timestamptz NOT NULL DEFAULT now()
);
`;

/**
 * Bring the schema up to date. Safe when several processes start at once: the first one to
 * take the advisory lock migrates, the others wait and then find nothing left to do.
 *
 * @param {pg.Pool} pool
 * @param {() => Promise<{runMigrations: () => Promise<void>, toBeCreated: unknown[], toBeAdded: unknown[]}>} planBetterAuth
 *   computes BetterAuth's migration plan (must run after the schema exists, under the lock)
 * @param {() => Promise<void>} [afterMigrate] runs under the same lock (e.g. mint the first JWKS key)
 */
export async function migrate(pool, planBetterAuth, afterMigrate) {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY.toString()]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
      const plan = await planBetterAuth();
      const changes = plan.toBeCreated.length + plan.toBeAdded.length;
      if (changes > 0) await plan.runMigrations();
      await client.query(OUTBOX_DDL);
      if (afterMigrate) await afterMigrate();
      return { betterAuthChanges: changes };
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY.toString()]);
    }
  } finally {
    client.release();
  }
}

/**
 * @param {pg.Pool} pool
 * @returns {Promise<boolean>}
 */
export async function databaseAnswers(pool) {
  try {
    await pool.query("SELECT 1");
    return true;
  } catch {
    return false;
  }
}

/**
 * Queue one e-mail for the mail relay (a Polaris worker sends and stamps sent_at).
 *
 * @param {pg.Pool} pool
 * @param {{to: string, subject: string, body: string, url?: string | null}} mail
 */
export async function enqueueMail(pool, mail) {
  const { rows } = await pool.query(
    `INSERT INTO ${SCHEMA}.mail_outbox (to_email, subject, body, url) VALUES ($1, $2, $3, $4) RETURNING id`,
    [mail.to, mail.subject, mail.body, mail.url ?? null],
  );
  return rows[0].id;
}
