// The BetterAuth instance: which plugins, which roles, where magic links go.
//
// Kept in one place so later work (magic-link policy, generic OIDC) edits one options object.

import { betterAuth } from "better-auth";
import { admin, bearer, jwt, magicLink } from "better-auth/plugins";
import { adminAc, userAc } from "better-auth/plugins/admin/access";

import { enqueueMail } from "./db.mjs";

export const ROLES = Object.freeze({ customer: userAc, admin: adminAc });
export const DEFAULT_ROLE = "customer";

// PRODUCT.md: a magic link is valid for 15 minutes and works once.
const MAGIC_LINK_TTL_S = 15 * 60;

/**
 * @param {ReturnType<typeof import("./config.mjs").loadConfig>} config
 * @param {import("pg").Pool} pool
 */
export function createAuth(config, pool) {
  return betterAuth({
    appName: "Polaris Express",
    baseURL: config.baseUrl,
    basePath: "/api/auth",
    trustedOrigins: [config.baseUrl, ...config.trustedOrigins],
    secret: config.secret,
    database: pool,
    telemetry: { enabled: false },
    // Public sign-up is off: operators (and the card-link saga) create users through the
    // internal endpoint, which calls the admin plugin's createUser server API.
    emailAndPassword: { enabled: true, disableSignUp: true },
    rateLimit: { enabled: config.env === "prod" },
    plugins: [
      jwt({
        // Explicit, and equal to BetterAuth's own default (the base URL), so the API's
        // verifier and this service agree on what to expect.
        jwt: {
          issuer: config.baseUrl,
          audience: config.baseUrl,
          expirationTime: "15m",
          definePayload: ({ user }) => ({
            email: user.email,
            name: user.name,
            role: user.role ?? DEFAULT_ROLE,
            emailVerified: user.emailVerified,
          }),
        },
      }),
      bearer(),
      admin({ roles: ROLES, defaultRole: DEFAULT_ROLE, adminRoles: ["admin"] }),
      magicLink({
        expiresIn: MAGIC_LINK_TTL_S,
        disableSignUp: true,
        storeToken: "hashed",
        sendMagicLink: async ({ email, url }) => {
          await enqueueMail(pool, {
            to: email,
            subject: "Your Polaris Express sign-in link",
            body:
              `Sign in to Polaris Express with this link:\n\n${url}\n\n` +
              `It works once and expires in ${MAGIC_LINK_TTL_S / 60} minutes. ` +
              "If you did not ask for it, ignore this e-mail.\n",
            url,
          });
          // Only in dev: the link is a credential, so it never reaches logs elsewhere.
          if (config.env === "dev") console.log(`[dev] magic link for ${email}: ${url}`);
        },
      }),
    ],
  });
}
