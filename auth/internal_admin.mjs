// Internal endpoints the Polaris API and worker use to manage users and sessions.
//
// Served only on the private internal listener (internal_server.mjs), never on the public port.
// The API holds the one authorization layer (roles, read-only impersonation, audit); these
// endpoints trust the caller's own token (Bearer POLARIS_AUTH_INTERNAL_TOKEN_<CALLER>).
// Paths (all JSON):
//
//   POST   /internal/users  {email, name?, password?, role?}  {id, email, role, created}
//   GET    /internal/users?search=&limit=&offset=   {users: [...], total}
//   GET    /internal/users/:id                      user | 404
//   DELETE /internal/users/:id                      {deleted: true|false}   (card-link compensation)
//   POST   /internal/users/:id/role     {role}      user
//   POST   /internal/users/:id/ban      {reason?, expiresInSeconds?}  user (its sessions revoked)
//   POST   /internal/users/:id/unban                user
//   POST   /internal/sessions/check     {sessionId} {active, userId?, role?, banned?, impersonatedBy?}
//   POST   /internal/sessions/revoke    {sessionId} {revoked: true|false}
//   POST   /internal/impersonations     {adminUserId, userId, expiresInSeconds?} {jwt, sessionId, userId, expiresAt}
//   POST   /internal/scan-sign-ins      {userId, expiresInSeconds?} {jwt, sessionId, userId, expiresAt}  (scan_sign_in.mjs)
//   POST   /internal/magic-links        {email}     {delivered}                 (card-link invite)

import { ROLES, sendInvite } from "./auth.mjs";
import { writeAudit } from "./audit.mjs";
import { HttpError, ensureUser } from "./internal.mjs";
import { scanSignIn } from "./scan_sign_in.mjs";

const MAX_PAGE = 200;
const IMPERSONATION_TTL_S = 3600;

/** @param {unknown} body */
function object(body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new HttpError(422, "validation_error", "body must be a JSON object");
  }
  return /** @type {Record<string, unknown>} */ (body);
}

/** @param {Record<string, unknown>} body @param {string} field */
function requiredString(body, field) {
  const value = body[field];
  if (typeof value !== "string" || !value.trim()) {
    throw new HttpError(422, "validation_error", `${field} must be a non-empty string`);
  }
  return value.trim();
}

/** @param {any} user */
export function userView(user) {
  return {
    id: user.id,
    email: user.email,
    name: user.name ?? null,
    role: user.role ?? null,
    banned: Boolean(user.banned),
    banReason: user.banReason ?? null,
    banExpires: user.banExpires ? new Date(user.banExpires).toISOString() : null,
    emailVerified: Boolean(user.emailVerified),
    createdAt: user.createdAt ? new Date(user.createdAt).toISOString() : null,
  };
}

function isBanned(user) {
  if (!user?.banned) return false;
  return !(user.banExpires && new Date(user.banExpires).getTime() < Date.now());
}

async function findUser(ctx, id) {
  const user = await ctx.internalAdapter.findUserById(id);
  if (!user) throw new HttpError(404, "not_found", "no such user");
  return user;
}

async function findSessionById(ctx, sessionId) {
  return await ctx.adapter.findOne({ model: "session", where: [{ field: "id", value: sessionId }] });
}

// Every handler takes one request object and answers [status, body]:
//   {auth, ctx (BetterAuth's context), pool, caller, params (from :names in the path),
//    query (URLSearchParams), body() (the parsed JSON body, read on demand)}

async function listUsers({ ctx, query }) {
  const limit = Math.min(MAX_PAGE, Math.max(1, Number.parseInt(query.get("limit") || "50", 10) || 50));
  const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  const search = (query.get("search") || "").trim().toLowerCase();
  const where = search ? [{ field: "email", operator: "contains", value: search }] : undefined;
  const users = await ctx.internalAdapter.listUsers(limit, offset, { field: "createdAt", direction: "asc" }, where);
  const total = await ctx.internalAdapter.countTotalUsers(where);
  return [200, { users: users.map(userView), total }];
}

async function getUser({ ctx, params }) {
  return [200, userView(await findUser(ctx, params.id))];
}

async function deleteUser({ ctx, params }) {
  const user = await ctx.internalAdapter.findUserById(params.id);
  if (!user) return [200, { deleted: false }];
  await ctx.internalAdapter.deleteUser(params.id);
  return [200, { deleted: true }];
}

async function setRole({ ctx, params, body }) {
  await findUser(ctx, params.id);
  const role = requiredString(object(await body()), "role");
  if (!Object.hasOwn(ROLES, role)) {
    throw new HttpError(422, "validation_error", `role must be one of ${Object.keys(ROLES).join(", ")}`);
  }
  return [200, userView(await ctx.internalAdapter.updateUser(params.id, { role }))];
}

async function banUser({ ctx, params, body }) {
  await findUser(ctx, params.id);
  const input = object((await body()) ?? {});
  const seconds = input.expiresInSeconds;
  if (seconds != null && (typeof seconds !== "number" || seconds <= 0)) {
    throw new HttpError(422, "validation_error", "expiresInSeconds must be a positive number");
  }
  const user = await ctx.internalAdapter.updateUser(params.id, {
    banned: true,
    banReason: typeof input.reason === "string" && input.reason ? input.reason.slice(0, 500) : "No reason",
    banExpires: typeof seconds === "number" ? new Date(Date.now() + seconds * 1000) : null,
    updatedAt: new Date(),
  });
  // As BetterAuth's own ban: every session goes at once.
  await ctx.internalAdapter.deleteUserSessions(params.id);
  return [200, userView(user)];
}

async function unbanUser({ ctx, params }) {
  await findUser(ctx, params.id);
  const user = await ctx.internalAdapter.updateUser(params.id, {
    banned: false,
    banReason: null,
    banExpires: null,
    updatedAt: new Date(),
  });
  return [200, userView(user)];
}

async function checkSession({ ctx, body }) {
  const session = await findSessionById(ctx, requiredString(object(await body()), "sessionId"));
  if (!session || new Date(session.expiresAt).getTime() <= Date.now()) return [200, { active: false }];
  const user = await ctx.internalAdapter.findUserById(session.userId);
  if (!user || isBanned(user)) return [200, { active: false, userId: session.userId, banned: Boolean(user) }];
  return [200, {
    active: true,
    userId: user.id,
    email: user.email,
    role: user.role ?? null,
    banned: false,
    impersonatedBy: session.impersonatedBy ?? null,
    expiresAt: new Date(session.expiresAt).toISOString(),
  }];
}

async function revokeSession({ ctx, body }) {
  const session = await findSessionById(ctx, requiredString(object(await body()), "sessionId"));
  if (!session) return [200, { revoked: false }];
  await ctx.internalAdapter.deleteSession(session.token);
  return [200, { revoked: true }];
}

/**
 * A read-only impersonation: the session row carries impersonatedBy (so the auth service
 * refuses its writes, impersonation.mjs), and the answer is a short-lived JWT for the Polaris
 * API. The session token never leaves this process: with it the operator could act on the
 * auth service as the driver.
 */
async function startImpersonation({ auth, ctx, pool, caller, body }) {
  const input = object(await body());
  const adminUserId = requiredString(input, "adminUserId");
  const userId = requiredString(input, "userId");
  const admin = await findUser(ctx, adminUserId);
  if (admin.role !== "admin" || isBanned(admin)) throw new HttpError(403, "forbidden", "not an active admin");
  const target = await findUser(ctx, userId);
  if (target.role === "admin" || target.role === "operator") {
    throw new HttpError(403, "forbidden", "staff accounts cannot be impersonated");
  }
  const ttl = typeof input.expiresInSeconds === "number" && input.expiresInSeconds > 0
    ? Math.min(input.expiresInSeconds, IMPERSONATION_TTL_S) : IMPERSONATION_TTL_S;
  const session = await ctx.internalAdapter.createSession(target.id, true, {
    impersonatedBy: admin.id,
    expiresAt: new Date(Date.now() + ttl * 1000),
  }, true);
  if (!session) throw new HttpError(500, "internal_error", "no session was created");
  let jwt;
  try {
    ({ token: jwt } = await auth.api.getToken({
      headers: new Headers({ authorization: `Bearer ${session.token}` }),
    }));
  } catch (err) {
    await ctx.internalAdapter.deleteSession(session.token);
    throw err;
  }
  await writeAudit(pool, {
    actor: `user:${admin.id}`,
    action: "auth.impersonation.token_issued",
    subject: target.id,
    source: `internal:${caller}`,
    details: { session_id: session.id },
  });
  return [200, {
    jwt,
    sessionId: session.id,
    userId: target.id,
    expiresAt: new Date(session.expiresAt).toISOString(),
  }];
}

async function scanSignInRoute({ auth, body }) {
  return [200, await scanSignIn(auth, await body())];
}

async function inviteByMagicLink({ auth, body }) {
  const email = requiredString(object(await body()), "email").toLowerCase();
  return [200, { delivered: await sendInvite(auth, email) }];
}

async function provisionUser({ auth, body }) {
  return [200, await ensureUser(auth, await body())];
}

/**
 * The internal API: one line per route,
 *   [method, path pattern (":name" captures a segment), handler, callers allowed].
 * internal_server.mjs authenticates the caller (401), matches the route (404), checks the
 * caller is listed (403) and calls the handler. Each caller gets only what it uses.
 */
export const INTERNAL_ROUTES = Object.freeze([
  ["POST", "/internal/users", provisionUser, ["api", "worker"]],
  ["GET", "/internal/users", listUsers, ["api"]],
  ["GET", "/internal/users/:id", getUser, ["api", "worker"]],
  ["DELETE", "/internal/users/:id", deleteUser, ["worker"]],
  ["POST", "/internal/users/:id/role", setRole, ["api"]],
  ["POST", "/internal/users/:id/ban", banUser, ["api"]],
  ["POST", "/internal/users/:id/unban", unbanUser, ["api"]],
  ["POST", "/internal/sessions/check", checkSession, ["api"]],
  ["POST", "/internal/sessions/revoke", revokeSession, ["api"]],
  ["POST", "/internal/impersonations", startImpersonation, ["api"]],
  ["POST", "/internal/scan-sign-ins", scanSignInRoute, ["api"]],
  ["POST", "/internal/magic-links", inviteByMagicLink, ["worker"]],
]);
