// Read-only impersonation, enforced by the auth service itself (not only by the Polaris API).
//
// An operator's impersonation session (a session row with `impersonatedBy`) may read: GET and
// HEAD pass. Its only write is signing itself out. Everything else (renaming the driver,
// changing their e-mail or password, revoking their other sessions) is refused with 403 and
// audited. Impersonation itself starts only through the Polaris API, which hands the operator
// a short-lived JWT and never the session token; BetterAuth's own admin impersonation
// endpoints, which answer with the driver's session token, are refused on the public port.

import { fromNodeHeaders } from "better-auth/node";

import { writeAudit } from "./audit.mjs";

const READS = new Set(["GET", "HEAD", "OPTIONS"]);
const OWN_SIGN_OUT = "/api/auth/sign-out";
const ADMIN_IMPERSONATION = new Set(["/api/auth/admin/impersonate-user", "/api/auth/admin/stop-impersonating"]);

/**
 * Decide whether a public /api/auth request may go on. Answers null, or [status, body].
 *
 * @param {ReturnType<typeof import("./auth.mjs").createAuth>} auth
 * @param {import("pg").Pool} pool
 * @param {import("node:http").IncomingMessage} req
 * @param {string} path
 * @param {string} source the client address
 * @returns {Promise<null | [number, {error: string, message: string}]>}
 */
export async function impersonationVerdict(auth, pool, req, path, source) {
  const method = (req.method ?? "GET").toUpperCase();
  if (READS.has(method)) return null;
  if (ADMIN_IMPERSONATION.has(path)) {
    return [403, { error: "forbidden", message: "impersonation starts through the Polaris API" }];
  }
  if (path === OWN_SIGN_OUT) return null;
  if (!req.headers.authorization && !req.headers.cookie) return null;
  const found = await auth.api.getSession({
    headers: fromNodeHeaders(req.headers),
    query: { disableRefresh: true },
  });
  const session = found?.session;
  if (!session?.impersonatedBy) return null;
  await writeAudit(pool, {
    actor: `user:${session.impersonatedBy}`,
    action: "auth.impersonation.write_refused",
    subject: session.userId,
    source,
    details: { method, path, session_id: session.id },
  });
  return [403, { error: "IMPERSONATION_READ_ONLY", message: "an impersonation session cannot change anything" }];
}
