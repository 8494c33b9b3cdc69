// Shared pieces of the internal API (internal_server.mjs, internal_admin.mjs), and user
// provisioning:
//
// POST /internal/users  {email, name?, password?, role?}
//   -> 200 {id, email, role, created}
// Idempotent: an existing user is returned (and its role set when one is given), so the
// card-link saga and `polaris seed demo` can retry freely.

import { ROLES } from "./auth.mjs";

const MAX_BODY_BYTES = 64 * 1024;
const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export class HttpError extends Error {
  /** @param {number} status @param {string} error @param {string} message */
  constructor(status, error, message) {
    super(message);
    this.status = status;
    this.error = error;
  }
}

/** @param {import("node:http").IncomingMessage} req */
export async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, "payload_too_large", "body too large");
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8") || "null");
  } catch {
    throw new HttpError(400, "invalid_json", "body is not JSON");
  }
}

/** @param {unknown} body */
function parseEnsureUser(body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new HttpError(422, "validation_error", "body must be a JSON object");
  }
  const { email, name, password, role } = /** @type {Record<string, unknown>} */ (body);
  if (typeof email !== "string" || !EMAIL_RE.test(email.trim())) {
    throw new HttpError(422, "validation_error", "email must be an e-mail address");
  }
  for (const [field, value] of [["name", name], ["password", password], ["role", role]]) {
    if (value !== undefined && value !== null && typeof value !== "string") {
      throw new HttpError(422, "validation_error", `${field} must be a string`);
    }
  }
  if (role != null && !Object.hasOwn(ROLES, role)) {
    throw new HttpError(422, "validation_error", `role must be one of ${Object.keys(ROLES).join(", ")}`);
  }
  const normalized = email.trim().toLowerCase();
  return {
    email: normalized,
    name: typeof name === "string" && name.trim() ? name.trim() : normalized.split("@")[0],
    password: typeof password === "string" && password ? password : undefined,
    role: typeof role === "string" ? role : undefined,
  };
}

/** @param {{id: string, email: string, role?: string | null}} user @param {boolean} created */
function userView(user, created) {
  return { id: user.id, email: user.email, role: user.role ?? null, created };
}

/**
 * @param {ReturnType<typeof import("./auth.mjs").createAuth>} auth
 * @param {unknown} body
 */
export async function ensureUser(auth, body) {
  const input = parseEnsureUser(body);
  const ctx = await auth.$context;

  const existing = await ctx.internalAdapter.findUserByEmail(input.email);
  if (existing) return userView(await applyRole(ctx, existing.user, input.role), false);

  try {
    // No headers and no request: the admin plugin treats this as a trusted server call.
    const { user } = await auth.api.createUser({
      body: {
        email: input.email,
        name: input.name,
        ...(input.password ? { password: input.password } : {}),
        ...(input.role ? { role: input.role } : {}),
      },
    });
    return userView(user, true);
  } catch (err) {
    // Two callers raced to create the same user: the loser answers with the winner's row.
    const raced = await ctx.internalAdapter.findUserByEmail(input.email);
    if (raced) return userView(await applyRole(ctx, raced.user, input.role), false);
    const status = /** @type {{statusCode?: number}} */ (err).statusCode;
    if (status && status >= 400 && status < 500) {
      throw new HttpError(422, "validation_error", /** @type {Error} */ (err).message);
    }
    throw err;
  }
}

/** @param {any} ctx @param {any} user @param {string | undefined} role */
async function applyRole(ctx, user, role) {
  if (!role || user.role === role) return user;
  return await ctx.internalAdapter.updateUser(user.id, { role });
}
