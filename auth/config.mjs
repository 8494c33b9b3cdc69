// Configuration of the auth service, read once from the environment (prefix POLARIS_).
//
// The same names and defaults as the Python settings object (config/settings.py), so one
// environment configures every Polaris process.

import { createHmac } from "node:crypto";
import { isIP } from "node:net";

export const DEV_AUTH_SECRET = "polaris-dev-auth-secret-change-me-0123456789";

const MIN_TOKEN_LENGTH = 32;

const ENVS = new Set(["dev", "test", "prod"]);

export class ConfigError extends Error {}

/**
 * @param {Record<string, string | undefined>} env
 */
export function loadConfig(env = process.env) {
  const appEnv = env.POLARIS_ENV || "dev";
  if (!ENVS.has(appEnv)) {
    throw new ConfigError(`POLARIS_ENV must be one of dev, test, prod (got ${JSON.stringify(appEnv)})`);
  }

  const databaseUrl = env.POLARIS_DATABASE_URL;
  if (!databaseUrl) throw new ConfigError("POLARIS_DATABASE_URL is required");
  if (!/^postgres(ql)?(\+[a-z0-9]+)?:\/\//.test(databaseUrl)) {
    throw new ConfigError("POLARIS_DATABASE_URL must be a postgresql:// URL");
  }

  const port = Number.parseInt(env.POLARIS_AUTH_PORT || "3000", 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError("POLARIS_AUTH_PORT must be a TCP port number");
  }
  const host = env.POLARIS_AUTH_HOST || "127.0.0.1";

  const secret = env.POLARIS_AUTH_SECRET;
  if (!secret) throw new ConfigError("POLARIS_AUTH_SECRET is required");
  if (appEnv === "prod" && secret === DEV_AUTH_SECRET) {
    throw new ConfigError("POLARIS_AUTH_SECRET still has its development value; set a real secret");
  }
  if (secret.length < 32 && appEnv === "prod") {
    throw new ConfigError("POLARIS_AUTH_SECRET must be at least 32 characters");
  }

  const internal = loadInternal(env, appEnv, secret);
  if (port !== 0 && internal.port === port && internal.host === host) {
    throw new ConfigError("POLARIS_AUTH_INTERNAL_PORT must differ from POLARIS_AUTH_PORT");
  }

  const baseUrl = (env.POLARIS_AUTH_BASE_URL || `http://127.0.0.1:${port}`).replace(/\/+$/, "");

  // Browser origins allowed to call the auth endpoints with cookies (the driver/operator UIs).
  const trustedOrigins = (env.POLARIS_AUTH_TRUSTED_ORIGINS || "")
    .split(",")
    .map((origin) => origin.trim().replace(/\/+$/, ""))
    .filter(Boolean);

  return Object.freeze({
    env: appEnv,
    oidc: loadOidc(env),
    // SQLAlchemy-style driver suffixes (postgresql+psycopg://) mean nothing to node-postgres.
    databaseUrl: databaseUrl.replace(/^postgres(ql)?\+[a-z0-9]+:/, "postgresql:"),
    port,
    host,
    secret,
    internal,
    baseUrl,
    trustedOrigins,
    trustedProxies: loadTrustedProxies(env),
    // BetterAuth's own per-address limits (sign-in: 3 per 10 s). Off by default outside prod,
    // where one test machine signs in hundreds of times from one address.
    rateLimit: loadBoolean("POLARIS_AUTH_RATE_LIMIT", env.POLARIS_AUTH_RATE_LIMIT, appEnv === "prod"),
    lockout: loadLockout(env),
  });
}

/**
 * @param {string} name
 * @param {string | undefined} raw
 * @param {boolean} fallback
 */
function loadBoolean(name, raw, fallback) {
  const value = (raw ?? "").trim().toLowerCase();
  if (!value) return fallback;
  if (!["true", "false"].includes(value)) throw new ConfigError(`${name} must be true or false`);
  return value === "true";
}

/**
 * @param {string | undefined} raw
 * @param {string} name
 * @param {number} fallback
 * @param {number} min
 */
function positiveInt(raw, name, fallback, min = 1) {
  if (raw == null || raw.trim() === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new ConfigError(`${name} must be an integer >= ${min}`);
  }
  return value;
}

/**
 * The one token per caller the internal listener accepts. Outside dev and test each token is
 * set explicitly (a caller without one is simply not accepted); in dev and test an unset token
 * is derived from the auth secret, so `polaris dev` and the tests need no extra variable.
 * Adding a caller is one line in CALLER_TOKENS (and the same name on the Python side).
 *
 * @param {Record<string, string | undefined>} env
 * @param {string} appEnv
 * @param {string} secret
 */
export function loadInternal(env, appEnv, secret) {
  const CALLER_TOKENS = {
    api: env.POLARIS_AUTH_INTERNAL_TOKEN_API,
    worker: env.POLARIS_AUTH_INTERNAL_TOKEN_WORKER,
    gateway: env.POLARIS_AUTH_INTERNAL_TOKEN_GATEWAY,
  };
  /** @type {Record<string, string>} */
  const tokens = {};
  for (const [caller, given] of Object.entries(CALLER_TOKENS)) {
    const name = `POLARIS_AUTH_INTERNAL_TOKEN_${caller.toUpperCase()}`;
    const token = given || (appEnv === "prod" ? "" : devInternalToken(secret, caller));
    if (!token) continue;
    if (appEnv === "prod") {
      if (token === secret || token === DEV_AUTH_SECRET) {
        throw new ConfigError(`${name} must not be the auth secret (or its development value)`);
      }
      if (token.length < MIN_TOKEN_LENGTH) {
        throw new ConfigError(`${name} must be at least ${MIN_TOKEN_LENGTH} characters`);
      }
    }
    const twin = Object.entries(tokens).find(([, other]) => other === token);
    if (twin) throw new ConfigError(`${name} equals the ${twin[0]} token; each caller needs its own`);
    tokens[caller] = token;
  }
  if (appEnv === "prod" && Object.keys(tokens).length === 0) {
    throw new ConfigError(
      "no internal caller token is set: set POLARIS_AUTH_INTERNAL_TOKEN_API and _WORKER (see docs/auth.md)",
    );
  }
  const port = Number.parseInt(env.POLARIS_AUTH_INTERNAL_PORT || "3001", 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError("POLARIS_AUTH_INTERNAL_PORT must be a TCP port number");
  }
  // Private by default: loopback, whatever the public listener binds to.
  const host = env.POLARIS_AUTH_INTERNAL_HOST || "127.0.0.1";
  return Object.freeze({ host, port, tokens: Object.freeze(tokens) });
}

/**
 * The dev/test token of a caller: HMAC-SHA256 of its name under the auth secret (hex). The
 * Python side derives the same value (config/settings.py, dev_internal_token).
 *
 * @param {string} secret
 * @param {string} caller
 */
export function devInternalToken(secret, caller) {
  return createHmac("sha256", secret).update(`polaris-internal-token:${caller}`).digest("hex");
}

/**
 * Proxies whose X-Forwarded-For is believed: comma-separated addresses or CIDR ranges. Empty
 * (the default): no proxy is trusted and every client is its socket's peer address.
 *
 * @param {Record<string, string | undefined>} env
 */
export function loadTrustedProxies(env) {
  const entries = (env.POLARIS_AUTH_TRUSTED_PROXIES || "")
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
  return Object.freeze(
    entries.map((entry) => {
      const [address, bits, ...rest] = entry.split("/");
      const family = isIP(address);
      const prefix = bits === undefined ? (family === 6 ? 128 : 32) : Number(bits);
      const max = family === 6 ? 128 : 32;
      if (!family || rest.length || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
        throw new ConfigError(`POLARIS_AUTH_TRUSTED_PROXIES: ${JSON.stringify(entry)} is not an address or CIDR range`);
      }
      return Object.freeze({ address, prefix, family: family === 6 ? "ipv6" : "ipv4" });
    }),
  );
}

/**
 * Per-account lockout of password sign-in: after `threshold` consecutive failures for one
 * e-mail address, each further attempt waits base * 2^(n) seconds (capped), whatever the
 * client address.
 *
 * @param {Record<string, string | undefined>} env
 */
export function loadLockout(env) {
  const baseS = positiveInt(env.POLARIS_AUTH_LOCKOUT_BASE_S, "POLARIS_AUTH_LOCKOUT_BASE_S", 60);
  const maxS = positiveInt(env.POLARIS_AUTH_LOCKOUT_MAX_S, "POLARIS_AUTH_LOCKOUT_MAX_S", 3600);
  if (maxS < baseS) throw new ConfigError("POLARIS_AUTH_LOCKOUT_MAX_S must be >= POLARIS_AUTH_LOCKOUT_BASE_S");
  return Object.freeze({
    threshold: positiveInt(env.POLARIS_AUTH_LOCKOUT_THRESHOLD, "POLARIS_AUTH_LOCKOUT_THRESHOLD", 5),
    baseS,
    maxS,
  });
}

const PROVIDER_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/**
 * Generic OIDC for operators: on when POLARIS_OIDC_ISSUER is set (then the client id and secret
 * are required). Answers null when it is off.
 *
 * @param {Record<string, string | undefined>} env
 */
export function loadOidc(env) {
  const issuer = (env.POLARIS_OIDC_ISSUER || "").trim().replace(/\/+$/, "");
  const clientId = (env.POLARIS_OIDC_CLIENT_ID || "").trim();
  const clientSecret = env.POLARIS_OIDC_CLIENT_SECRET || "";
  if (!issuer) {
    if (clientId || clientSecret) {
      throw new ConfigError("POLARIS_OIDC_CLIENT_ID/_SECRET are set but POLARIS_OIDC_ISSUER is not");
    }
    return null;
  }
  if (!/^https?:\/\//.test(issuer)) throw new ConfigError("POLARIS_OIDC_ISSUER must be an http(s) URL");
  if (!clientId) throw new ConfigError("POLARIS_OIDC_CLIENT_ID is required with POLARIS_OIDC_ISSUER");
  if (!clientSecret) {
    throw new ConfigError("POLARIS_OIDC_CLIENT_SECRET is required with POLARIS_OIDC_ISSUER");
  }
  const providerId = (env.POLARIS_OIDC_PROVIDER_ID || "oidc").trim();
  if (!PROVIDER_ID.test(providerId)) {
    throw new ConfigError("POLARIS_OIDC_PROVIDER_ID must be lower-case letters, digits, - or _");
  }
  const allowSignup = (env.POLARIS_OIDC_ALLOW_SIGNUP || "false").trim().toLowerCase();
  if (!["true", "false"].includes(allowSignup)) {
    throw new ConfigError("POLARIS_OIDC_ALLOW_SIGNUP must be true or false");
  }
  return Object.freeze({
    issuer,
    discoveryUrl: `${issuer}/.well-known/openid-configuration`,
    clientId,
    clientSecret,
    providerId,
    allowSignup: allowSignup === "true",
  });
}
