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
