// Configuration of the auth service, read once from the environment (prefix POLARIS_).
//
// The same names and defaults as the Python settings object (config/settings.py), so one
// environment configures every Polaris process.

export const DEV_AUTH_SECRET = "polaris-dev-auth-secret-change-me-0123456789";

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

  const internalToken = env.POLARIS_AUTH_INTERNAL_TOKEN || secret;
  if (appEnv === "prod" && internalToken === DEV_AUTH_SECRET) {
    throw new ConfigError("POLARIS_AUTH_INTERNAL_TOKEN still has its development value");
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
    internalToken,
    baseUrl,
    trustedOrigins,
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
