// Per-account lockout of password sign-in, with exponential backoff, in PostgreSQL.
//
// Per-address rate limits stop one client; they do not stop a botnet guessing one account's
// password from thousands of addresses. So every password attempt for an e-mail address is
// counted here, whatever the client address, and shared by all auth processes.
//
// An attempt is counted *before* the password is checked (a burst of parallel guesses cannot
// all slip through before the first failure is recorded), and a successful sign-in clears the
// count. The attempt that reaches the threshold locks the address for base seconds; each
// further attempt (one per lock) doubles the lock, up to max. Unknown addresses are counted
// the same way, so the answer never tells whether an account exists. Failures older than a
// day are forgotten.

import { SCHEMA } from "./db.mjs";

const FORGET_AFTER_S = 24 * 3600;
const MAX_EMAIL_LENGTH = 320;
// Rows of addresses nobody tried for a day are pruned now and then, not on every attempt.
const PRUNE_EVERY_N_ATTEMPTS = 200;

/** @param {unknown} email */
export function lockoutKey(email) {
  if (typeof email !== "string") return null;
  const key = email.trim().toLowerCase();
  return key && key.length <= MAX_EMAIL_LENGTH ? key : null;
}

/**
 * Count one password attempt for `key`.
 *
 * @param {import("pg").Pool} pool
 * @param {string} key
 * @param {{threshold: number, baseS: number, maxS: number}} policy
 * @returns {Promise<{allowed: true, failures: number, lockedForS: number | null}
 *                  | {allowed: false, retryAfterS: number}>}
 */
export async function takeAttempt(pool, key, policy) {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query(
      `INSERT INTO ${SCHEMA}.sign_in_lockout (email) VALUES ($1) ON CONFLICT (email) DO NOTHING`,
      [key],
    );
    const { rows } = await client.query(
      `SELECT failures,
              GREATEST(0, EXTRACT(EPOCH FROM locked_until - now()))::float8 AS locked_for_s,
              updated_at < now() - make_interval(secs => $2) AS stale
         FROM ${SCHEMA}.sign_in_lockout WHERE email = $1 FOR UPDATE`,
      [key, FORGET_AFTER_S],
    );
    const row = rows[0];
    if (row.locked_for_s > 0) {
      await client.query("COMMIT");
      return { allowed: false, retryAfterS: Math.max(1, Math.ceil(row.locked_for_s)) };
    }
    const failures = row.stale ? 1 : row.failures + 1;
    const lockedForS = failures >= policy.threshold
      ? Math.min(policy.maxS, policy.baseS * 2 ** Math.min(30, failures - policy.threshold))
      : null;
    await client.query(
      `UPDATE ${SCHEMA}.sign_in_lockout
          SET failures = $2,
              locked_until = CASE WHEN $3::float8 IS NULL THEN NULL
                                  ELSE now() + make_interval(secs => $3::float8) END,
              updated_at = now()
        WHERE email = $1`,
      [key, failures, lockedForS],
    );
    await client.query("COMMIT");
    if (Math.floor(Math.random() * PRUNE_EVERY_N_ATTEMPTS) === 0) void prune(pool);
    return { allowed: true, failures, lockedForS };
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/**
 * A successful sign-in: the address starts afresh.
 *
 * @param {import("pg").Pool} pool
 * @param {string} key
 */
export async function clearAttempts(pool, key) {
  await pool.query(`DELETE FROM ${SCHEMA}.sign_in_lockout WHERE email = $1`, [key]);
}

/** @param {import("pg").Pool} pool */
async function prune(pool) {
  try {
    await pool.query(
      `DELETE FROM ${SCHEMA}.sign_in_lockout
        WHERE updated_at < now() - make_interval(secs => $1)
          AND (locked_until IS NULL OR locked_until < now())`,
      [FORGET_AFTER_S],
    );
  } catch (err) {
    console.error(JSON.stringify({ level: "warn", msg: "lockout rows not pruned", error: err.message }));
  }
}
