// Internal endpoints the Polaris API and worker use to manage users and sessions.
//
// The API holds the one authorization layer (roles, read-only impersonation, audit); these
// endpoints only trust the internal token. Paths (all JSON, Bearer POLARIS_AUTH_INTERNAL_TOKEN):
//
//   GET    /internal/users?search=&limit=&offset=   {users: [...], total}
//   GET    /internal/users/:id                      user | 404
//   DELETE /internal/users/:id                      {deleted: true|false}   (card-link compensation)
//   POST   /internal/users/:id/role     {role}      user
//   POST   /internal/users/:id/ban      {reason?, expiresInSeconds?}  user (its sessions revoked)
//   POST   /internal/users/:id/unban                user
//   POST   /internal/sessions/check     {sessionId} {active, userId?, role?, banned?, impersonatedBy?}
//   POST   /internal/sessions/revoke    {sessionId} {revoked: true|false}
//   POST   /internal/impersonations     {adminUserId, userId, expiresInSeconds?} {sessionToken, sessionId, expiresAt}
//   POST   /internal/scan-sign-ins      {userId, expiresInSeconds?} {jwt, sessionId, userId, expiresAt}  (scan_sign_in.mjs)
//   POST   /internal/magic-links        {email}     {delivered}                 (card-link invite)

import { ROLES, sendInvite } from "./auth.mjs";
import { HttpError } from "./internal.mjs";
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

/**
 * Route one internal request. Returns [status, body] or null when the path is not ours.
 *
 * @param {ReturnType<typeof import("./auth.mjs").createAuth>} auth
 * @param {string} method
 * @param {string} path
 * @param {URLSearchParams} query
 * @param {() => Promise<unknown>} readBody
 */
export async function handleInternal(auth, method, path, query, readBody) {
  const ctx = await auth.$context;
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent); // ["internal", ...]

  if (parts[1] === "users" && parts.length === 2 && method === "GET") {
    const limit = Math.min(MAX_PAGE, Math.max(1, Number.parseInt(query.get("limit") || "50", 10) || 50));
    const offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
    const search = (query.get("search") || "").trim().toLowerCase();
    const where = search ? [{ field: "email", operator: "contains", value: search }] : undefined;
    const users = await ctx.internalAdapter.listUsers(limit, offset, { field: "createdAt", direction: "asc" }, where);
    const total = await ctx.internalAdapter.countTotalUsers(where);
    return [200, { users: users.map(userView), total }];
  }

  if (parts[1] === "users" && parts.length >= 3) {
    const id = parts[2];
    if (parts.length === 3 && method === "GET") return [200, userView(await findUser(ctx, id))];
    if (parts.length === 3 && method === "DELETE") {
      const user = await ctx.internalAdapter.findUserById(id);
      if (!user) return [200, { deleted: false }];
      await ctx.internalAdapter.deleteUser(id);
      return [200, { deleted: true }];
    }
    if (parts.length === 4 && method === "POST") {
      await findUser(ctx, id);
      const action = parts[3];
      if (action === "role") {
        const role = requiredString(object(await readBody()), "role");
        if (!Object.hasOwn(ROLES, role)) {
          throw new HttpError(422, "validation_error", `role must be one of ${Object.keys(ROLES).join(", ")}`);
        }
        return [200, userView(await ctx.internalAdapter.updateUser(id, { role }))];
      }
      if (action === "ban") {
        const body = object((await readBody()) ?? {});
        const seconds = body.expiresInSeconds;
        if (seconds != null && (typeof seconds !== "number" || seconds <= 0)) {
          throw new HttpError(422, "validation_error", "expiresInSeconds must be a positive number");
        }
        const user = await ctx.internalAdapter.updateUser(id, {
          banned: true,
          banReason: typeof body.reason === "string" && body.reason ? body.reason.slice(0, 500) : "No reason",
          banExpires: typeof seconds === "number" ? new Date(Date.now() + seconds * 1000) : null,
          updatedAt: new Date(),
        });
        // As BetterAuth's own ban: every session goes at once.
        await ctx.internalAdapter.deleteUserSessions(id);
        return [200, userView(user)];
      }
      if (action === "unban") {
        const user = await ctx.internalAdapter.updateUser(id, {
          banned: false,
          banReason: null,
          banExpires: null,
          updatedAt: new Date(),
        });
        return [200, userView(user)];
      }
    }
  }

  if (parts[1] === "sessions" && parts.length === 3 && method === "POST") {
    const sessionId = requiredString(object(await readBody()), "sessionId");
    const session = await findSessionById(ctx, sessionId);
    if (parts[2] === "check") {
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
    if (parts[2] === "revoke") {
      if (!session) return [200, { revoked: false }];
      await ctx.internalAdapter.deleteSession(session.token);
      return [200, { revoked: true }];
    }
  }

  if (path === "/internal/impersonations" && method === "POST") {
    const body = object(await readBody());
    const adminUserId = requiredString(body, "adminUserId");
    const userId = requiredString(body, "userId");
    const admin = await findUser(ctx, adminUserId);
    if (admin.role !== "admin" || isBanned(admin)) throw new HttpError(403, "forbidden", "not an active admin");
    const target = await findUser(ctx, userId);
    if (target.role === "admin") throw new HttpError(403, "forbidden", "admins cannot be impersonated");
    const ttl = typeof body.expiresInSeconds === "number" && body.expiresInSeconds > 0
      ? Math.min(body.expiresInSeconds, IMPERSONATION_TTL_S) : IMPERSONATION_TTL_S;
    const session = await ctx.internalAdapter.createSession(target.id, true, {
      impersonatedBy: admin.id,
      expiresAt: new Date(Date.now() + ttl * 1000),
    }, true);
    if (!session) throw new HttpError(500, "internal_error", "no session was created");
    return [200, {
      sessionToken: session.token,
      sessionId: session.id,
      userId: target.id,
      expiresAt: new Date(session.expiresAt).toISOString(),
    }];
  }

  if (path === "/internal/scan-sign-ins" && method === "POST") {
    return [200, await scanSignIn(auth, await readBody())];
  }

  if (path === "/internal/magic-links" && method === "POST") {
    const email = requiredString(object(await readBody()), "email").toLowerCase();
    return [200, { delivered: await sendInvite(auth, email) }];
  }

  return null;
}
