// Scan-to-login at the auth service: a short session and a JWT for it — never the session token.
//
// POST /internal/scan-sign-ins  {userId, expiresInSeconds?}
//   -> 200 {jwt, sessionId, userId, expiresAt}
//   -> 403 admin_refused (an operator account never signs in by a tap), 403 banned, 404 not_found
//
// The session exists so the API's live-session checks (`sid`) work and a ban still ends it at
// once; it expires with the JWT (at most 15 minutes). Its token stays in this service: with
// only the JWT, the holder can neither renew it (`/api/auth/token` wants the session token)
// nor call any BetterAuth endpoint (change the e-mail, list or revoke sessions).

import { DEFAULT_ROLE } from "./auth.mjs";
import { HttpError } from "./internal.mjs";

export const SCAN_SIGN_IN_MAX_TTL_S = 15 * 60;
const SCAN_SIGN_IN_MIN_TTL_S = 60;
const ADMIN_ROLES = new Set(["admin", "operator"]);

/** @param {unknown} body */
function parse(body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new HttpError(422, "validation_error", "body must be a JSON object");
  }
  const { userId, expiresInSeconds } = /** @type {Record<string, unknown>} */ (body);
  if (typeof userId !== "string" || !userId.trim()) {
    throw new HttpError(422, "validation_error", "userId must be a non-empty string");
  }
  const ttl = expiresInSeconds ?? SCAN_SIGN_IN_MAX_TTL_S;
  if (
    typeof ttl !== "number" ||
    !Number.isInteger(ttl) ||
    ttl < SCAN_SIGN_IN_MIN_TTL_S ||
    ttl > SCAN_SIGN_IN_MAX_TTL_S
  ) {
    throw new HttpError(
      422,
      "validation_error",
      `expiresInSeconds must be an integer from ${SCAN_SIGN_IN_MIN_TTL_S} to ${SCAN_SIGN_IN_MAX_TTL_S}`,
    );
  }
  return { userId: userId.trim(), ttl };
}

/** @param {any} user */
function banned(user) {
  if (!user?.banned) return false;
  return !(user.banExpires && new Date(user.banExpires).getTime() < Date.now());
}

/**
 * @param {ReturnType<typeof import("./auth.mjs").createAuth>} auth
 * @param {unknown} body
 */
export async function scanSignIn(auth, body) {
  const { userId, ttl } = parse(body);
  const ctx = await auth.$context;
  const user = await ctx.internalAdapter.findUserById(userId);
  if (!user) throw new HttpError(404, "not_found", "no such user");
  const roles = String(user.role ?? DEFAULT_ROLE).split(",").map((role) => role.trim());
  if (roles.some((role) => ADMIN_ROLES.has(role))) {
    throw new HttpError(403, "admin_refused", "an operator account cannot sign in by scanning");
  }
  if (banned(user)) throw new HttpError(403, "banned", "this user is banned");

  const nowS = Math.floor(Date.now() / 1000);
  const expiresAt = new Date((nowS + ttl) * 1000);
  const session = await ctx.internalAdapter.createSession(
    user.id,
    true,
    { expiresAt, userAgent: "polaris scan-to-login" },
    true,
  );
  if (!session) throw new HttpError(500, "internal_error", "no session was created");
  // The same claims as the JWT plugin's definePayload (auth.mjs), plus `amr` saying how the
  // user proved who they are; iss and aud come from the plugin's configuration.
  const { token } = await auth.api.signJWT({
    body: {
      payload: {
        sub: user.id,
        sid: session.id,
        email: user.email,
        name: user.name,
        role: user.role ?? DEFAULT_ROLE,
        emailVerified: user.emailVerified,
        amr: ["scan"],
        iat: nowS,
        exp: nowS + ttl,
      },
    },
  });
  return { jwt: token, sessionId: session.id, userId: user.id, expiresAt: expiresAt.toISOString() };
}
