// Audit rows from the auth service into Polaris' own audit_log (schema `public`).
//
// Best effort: the row is the operator's record of who signed in and who asked for a link, but a
// missing table (migrations not yet run) or a slow database must never block a sign-in.

import { CLIENT_ADDRESS_HEADER } from "./client_address.mjs";

/**
 * @param {import("pg").Pool} pool
 * @param {{actor: string, action: string, subject?: string | null, source?: string | null,
 *          details?: Record<string, unknown>}} row
 */
export async function writeAudit(pool, row) {
  try {
    await pool.query(
      "INSERT INTO public.audit_log (actor, action, subject, source, details) VALUES ($1, $2, $3, $4, $5)",
      [
        row.actor.slice(0, 255),
        row.action.slice(0, 64),
        row.subject == null ? null : String(row.subject).slice(0, 255),
        row.source == null ? null : String(row.source).slice(0, 255),
        JSON.stringify(row.details ?? {}),
      ],
    );
  } catch (err) {
    console.error(JSON.stringify({ level: "warn", msg: "audit row not written", action: row.action, error: err.message }));
  }
}

/**
 * The client address of a BetterAuth endpoint context: the one server.mjs derived from the
 * socket (and configured proxies) and stamped on the request; none for server-side calls.
 */
export function sourceOf(ctx) {
  const headers = ctx?.request?.headers ?? ctx?.headers;
  return headers?.get?.(CLIENT_ADDRESS_HEADER) ?? null;
}
