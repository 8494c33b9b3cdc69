// The BetterAuth instance: which plugins, which roles, where magic links go.
//
// Kept in one place: plugins, magic-link policy, and generic OIDC for operators (optional).

import { AsyncLocalStorage } from "node:async_hooks";

import { betterAuth } from "better-auth";
import { APIError, createAuthMiddleware } from "better-auth/api";
import { admin, bearer, genericOAuth, jwt, magicLink } from "better-auth/plugins";
import { adminAc, userAc } from "better-auth/plugins/admin/access";

import { sourceOf, writeAudit } from "./audit.mjs";
import { CLIENT_ADDRESS_HEADER } from "./client_address.mjs";
import { enqueueMail } from "./db.mjs";
import { clearAttempts, lockoutKey, takeAttempt } from "./lockout.mjs";
import { TokenBuckets } from "./ratelimit.mjs";

// "operator": staff who may send the remote operations their allow-list grants
// (POLARIS_OPERATION_ALLOWLIST); no BetterAuth admin powers.
export const ROLES = Object.freeze({ customer: userAc, operator: userAc, admin: adminAc });
export const DEFAULT_ROLE = "customer";

// PRODUCT.md: a magic link is valid for 15 minutes and works once.
const MAGIC_LINK_TTL_S = 15 * 60;
// At most this many links per e-mail address per link lifetime; more requests are answered the
// same way but send nothing (the answer must never tell whether the address is known).
const MAGIC_LINKS_PER_ADDRESS = 3;

// Set around server-side magic-link calls that must not mail the user as a driver's request:
// `invite` skips the per-address throttle (an operator's card link invites a new driver once).
const linkMode = new AsyncLocalStorage();

// The web console (served by the API) signs drivers in by magic link on its own origin: when
// the sign-in request's callbackURL is `<trusted origin>/console/auth/magic`, the mail links
// there with the token, and the console exchanges it server-side
// (GET /api/auth/magic-link/verify?token=…, no callbackURL: the session in JSON). Any other
// callbackURL, or an origin that is not trusted, keeps BetterAuth's own link.
export const CONSOLE_MAGIC_PATH = "/console/auth/magic";

/**
 * The console's link for a magic-link URL, or null when the URL's callbackURL is not the console
 * on a trusted origin.
 *
 * @param {string} url BetterAuth's link (`…/magic-link/verify?token=…&callbackURL=…`)
 * @param {string} token
 * @param {readonly string[]} trusted origins (no trailing slash)
 */
export function consoleMagicLink(url, token, trusted) {
  let callback;
  try {
    const raw = new URL(url).searchParams.get("callbackURL");
    if (!raw) return null;
    callback = new URL(raw);
  } catch {
    return null;
  }
  if (!trusted.includes(callback.origin) || callback.pathname !== CONSOLE_MAGIC_PATH) return null;
  const link = new URL(CONSOLE_MAGIC_PATH, callback.origin);
  link.searchParams.set("token", token);
  return link.toString();
}

/**
 * Mail an invitation (a magic link) to a user that exists, bypassing the per-address throttle.
 *
 * @param {ReturnType<typeof createAuth>} auth
 * @param {string} email
 */
export async function sendInvite(auth, email) {
  const holder = { invite: true, delivered: false };
  await linkMode.run(holder, () =>
    auth.api.signInMagicLink({ body: { email }, headers: new Headers() }),
  );
  return holder.delivered;
}

/**
 * Generic OIDC (operators' single sign-on), when configured: discovery from the issuer, ID tokens
 * verified against its JWKS (issuer, audience, nonce), PKCE. No sign-up unless allowed: an
 * unknown e-mail is refused, a pre-provisioned user is linked on first sign-in when the
 * provider says the e-mail is verified.
 *
 * @param {NonNullable<ReturnType<typeof import("./config.mjs").loadConfig>["oidc"]>} oidc
 */
function oidcPlugin(oidc) {
  return genericOAuth({
    config: [
      {
        providerId: oidc.providerId,
        discoveryUrl: oidc.discoveryUrl,
        requireIdTokenVerification: true,
        clientId: oidc.clientId,
        clientSecret: oidc.clientSecret,
        scopes: ["openid", "email", "profile"],
        pkce: true,
        disableSignUp: !oidc.allowSignup,
        disableImplicitSignUp: !oidc.allowSignup,
      },
    ],
  });
}

const PASSWORD_SIGN_IN = "/sign-in/email";

/**
 * Hooks around password sign-in: the per-account lockout (lockout.mjs). The attempt is counted
 * before BetterAuth checks the password; a new session clears the count; a failure that
 * started a lock is audited.
 *
 * @param {ReturnType<typeof import("./config.mjs").loadConfig>} config
 * @param {import("pg").Pool} pool
 */
function lockoutHooks(config, pool) {
  /** @type {WeakMap<object, {key: string, failures: number, lockedForS: number | null}>} */
  const attempts = new WeakMap();
  return {
    before: createAuthMiddleware(async (ctx) => {
      if (ctx.path !== PASSWORD_SIGN_IN) return;
      const key = lockoutKey(ctx.body?.email);
      if (!key) return; // BetterAuth answers the malformed body itself
      const verdict = await takeAttempt(pool, key, config.lockout);
      if (!verdict.allowed) {
        throw new APIError(
          "TOO_MANY_REQUESTS",
          {
            code: "ACCOUNT_LOCKED",
            message: "Too many failed sign-ins for this account. Try again later or ask for a sign-in link.",
          },
          { "retry-after": String(verdict.retryAfterS) },
        );
      }
      if (ctx.request) attempts.set(ctx.request, { key, ...verdict });
    }),
    after: createAuthMiddleware(async (ctx) => {
      if (ctx.path !== PASSWORD_SIGN_IN) return;
      const attempt = ctx.request ? attempts.get(ctx.request) : undefined;
      const key = attempt?.key ?? lockoutKey(ctx.body?.email);
      if (!key) return;
      if (ctx.context.newSession) {
        await clearAttempts(pool, key);
        return;
      }
      if (attempt?.lockedForS) {
        await writeAudit(pool, {
          actor: "anonymous",
          action: "auth.sign_in.locked",
          subject: null,
          source: sourceOf(ctx),
          details: { email: key, failures: attempt.failures, locked_for_s: attempt.lockedForS },
        });
      }
    }),
  };
}

/**
 * @param {ReturnType<typeof import("./config.mjs").loadConfig>} config
 * @param {import("pg").Pool} pool
 */
export function createAuth(config, pool) {
  const perAddress = new TokenBuckets({
    capacity: MAGIC_LINKS_PER_ADDRESS,
    refillPerSecond: MAGIC_LINKS_PER_ADDRESS / MAGIC_LINK_TTL_S,
  });
  return betterAuth({
    appName: "Polaris Express",
    baseURL: config.baseUrl,
    basePath: "/api/auth",
    // Impersonation starts only through the Polaris API (read-only, a JWT, never the driver's
    // session token). Disabled here as well as refused by name in impersonation.mjs: BetterAuth
    // matches these against the path after its own normalisation.
    disabledPaths: ["/admin/impersonate-user", "/admin/stop-impersonating"],
    trustedOrigins: [config.baseUrl, ...config.trustedOrigins],
    secret: config.secret,
    database: pool,
    telemetry: { enabled: false },
    // Public sign-up is off: operators (and the card-link saga) create users through the
    // internal endpoint, which calls the admin plugin's createUser server API.
    emailAndPassword: { enabled: true, disableSignUp: true },
    // Per client address, shared by every auth process (a table in the auth schema). The
    // address is the one server.mjs derived from the socket (client_address.mjs), never a
    // header the client chose.
    rateLimit: { enabled: config.rateLimit, storage: "database" },
    advanced: {
      ipAddress: { ipAddressHeaders: [CLIENT_ADDRESS_HEADER] },
    },
    hooks: lockoutHooks(config, pool),
    // Users are provisioned before they sign in (an operator, the card-link saga), so their
    // e-mail is not verified locally yet: link an OIDC account to them when the provider
    // asserts the e-mail as verified (the provider is the deployment's own IdP).
    account: config.oidc
      ? { accountLinking: { enabled: true, requireLocalEmailVerified: false } }
      : undefined,
    databaseHooks: {
      session: {
        create: {
          // Every sign-in creates a session: audit it. An impersonation is audited here too
          // (actor: the operator), whoever started it; the API audits it on its side.
          after: async (session, ctx) => {
            if (session.impersonatedBy) {
              await writeAudit(pool, {
                actor: `user:${session.impersonatedBy}`,
                action: "auth.impersonation.started",
                subject: session.userId,
                source: sourceOf(ctx),
                details: { session_id: session.id, expires_at: new Date(session.expiresAt).toISOString() },
              });
              return;
            }
            await writeAudit(pool, {
              actor: `user:${session.userId}`,
              action: "auth.sign_in",
              subject: session.userId,
              source: session.ipAddress || sourceOf(ctx),
              details: { via: ctx?.path ?? "server", user_agent: session.userAgent || null },
            });
          },
        },
      },
    },
    plugins: [
      jwt({
        // Explicit, and equal to BetterAuth's own default (the base URL), so the API's
        // verifier and this service agree on what to expect.
        jwt: {
          issuer: config.baseUrl,
          audience: config.baseUrl,
          expirationTime: "15m",
          definePayload: ({ user, session }) => ({
            // The session id lets the API re-check the live session (bans, revocation);
            // impersonatedBy marks an operator's read-only impersonation.
            sid: session.id,
            impersonatedBy: session.impersonatedBy ?? undefined,
            email: user.email,
            name: user.name,
            role: user.role ?? DEFAULT_ROLE,
            emailVerified: user.emailVerified,
          }),
        },
      }),
      bearer(),
      ...(config.oidc ? [oidcPlugin(config.oidc)] : []),
      admin({ roles: ROLES, defaultRole: DEFAULT_ROLE, adminRoles: ["admin"] }),
      magicLink({
        expiresIn: MAGIC_LINK_TTL_S,
        disableSignUp: true,
        storeToken: "hashed",
        sendMagicLink: async ({ email, url: authUrl, token }, ctx) => {
          const url =
            consoleMagicLink(authUrl, token, [config.baseUrl, ...config.trustedOrigins]) ??
            authUrl;
          const mode = linkMode.getStore();
          const address = email.trim().toLowerCase();
          const found = await ctx?.context.internalAdapter.findUserByEmail(address);
          const user = found?.user;
          const source = sourceOf(ctx);
          // No account enumeration: unknown, banned and throttled addresses get the same
          // answer as everyone else ({status: true}); they just get no mail.
          let refused = null;
          if (!user) refused = "unknown_address";
          else if (user.banned) refused = "banned";
          else if (!mode?.invite && !perAddress.take(address).ok) refused = "throttled";
          if (refused) {
            await writeAudit(pool, {
              actor: user ? `user:${user.id}` : "anonymous",
              action: "auth.magic_link.requested",
              subject: user?.id ?? null,
              source,
              details: { delivered: false, reason: refused },
            });
            return;
          }
          await enqueueMail(pool, {
            to: address,
            subject: "Your Polaris Express sign-in link",
            body:
              `Sign in to Polaris Express with this link:\n\n${url}\n\n` +
              `It works once and expires in ${MAGIC_LINK_TTL_S / 60} minutes. ` +
              "If you did not ask for it, ignore this e-mail.\n",
            url,
          });
          if (mode) mode.delivered = true;
          await writeAudit(pool, {
            actor: mode?.invite ? "system:card-link" : `user:${user.id}`,
            action: mode?.invite ? "auth.magic_link.invited" : "auth.magic_link.requested",
            subject: user.id,
            source,
            details: { delivered: true },
          });
          // Only in dev: the link is a credential, so it never reaches logs elsewhere.
          if (config.env === "dev") console.log(`[dev] magic link for ${address}: ${url}`);
        },
      }),
    ],
  });
}
