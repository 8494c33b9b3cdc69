#!/usr/bin/env node
// Polaris Express auth service: BetterAuth on our PostgreSQL, behind node:http.
//
// Public listener (POLARIS_AUTH_HOST:POLARIS_AUTH_PORT):
//   /api/auth/*        BetterAuth (email+password sign-in, magic link, JWT + JWKS, bearer, admin)
//   GET  /healthz      200 {"status":"ok"} when the database answers, 503 otherwise
//   anything else, /internal/* included: 404
// Private listener (POLARIS_AUTH_INTERNAL_HOST:POLARIS_AUTH_INTERNAL_PORT, loopback by default):
//   /internal/*        the internal API (internal_admin.mjs), one token per caller
//
// Configuration: see config.mjs and docs/auth.md. Logs one JSON line per request and never
// logs headers, cookies, bodies or query strings (they carry tokens).

import http from "node:http";

import { toNodeHandler } from "better-auth/node";
import { getMigrations } from "better-auth/db/migration";

import { createAuth } from "./auth.mjs";
import { stampClientAddress, trustedProxyList } from "./client_address.mjs";
import { ConfigError, loadConfig } from "./config.mjs";
import { createPool, databaseAnswers, migrate } from "./db.mjs";
import { impersonationVerdict } from "./impersonation.mjs";
import { HttpError } from "./internal.mjs";
import { INTERNAL_ROUTES } from "./internal_admin.mjs";
import { createInternalServer } from "./internal_server.mjs";
import { TokenBuckets } from "./ratelimit.mjs";

// Magic-link requests per client address: 5 a minute (on top of the per-address throttle in
// auth.mjs). Answered 429 with Retry-After, whatever the e-mail.
const magicLinkPerClient = new TokenBuckets({ capacity: 5, refillPerSecond: 5 / 60 });

function log(fields) {
  console.log(JSON.stringify({ ts: new Date().toISOString(), ...fields }));
}

function sendJson(res, status, body) {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(payload),
    "cache-control": "no-store",
  });
  res.end(payload);
}

/** Listen and answer the port actually bound (0 picks a free one). */
async function listen(server, port, host) {
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const address = server.address();
  return typeof address === "object" && address ? address.port : port;
}

async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`polaris-auth: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }

  const pool = createPool(config.databaseUrl);
  const auth = createAuth(config, pool);

  const { betterAuthChanges } = await migrate(
    pool,
    () => getMigrations(auth.options),
    // Mint the first signing key now (under the lock), so the JWKS is never empty and two
    // processes starting together do not each mint one.
    async () => {
      await auth.api.getJwks();
    },
  );
  log({ level: "info", msg: "migrated", betterAuthChanges });

  const betterAuthHandler = toNodeHandler(auth);
  const proxies = trustedProxyList(config.trustedProxies);

  const internalServer = createInternalServer({
    auth,
    pool,
    tokens: config.internal.tokens,
    routes: INTERNAL_ROUTES,
    log,
    sendJson,
  });

  const server = http.createServer(async (req, res) => {
    const started = performance.now();
    // The path only: query strings can carry tokens (magic-link verify, callbacks).
    const path = (req.url ?? "/").split("?")[0];
    // One spelling per path. BetterAuth's router resolves "." and ".." segments (percent-encoded
    // too), so "/api/auth/x/../admin/impersonate-user" would reach an endpoint that the checks
    // below, which compare paths, refuse by name. A path that is not already canonical is refused.
    const canonical = new URL(path, "http://canonical.invalid").pathname === path;
    res.on("finish", () => {
      log({
        level: "info",
        method: req.method,
        path,
        status: res.statusCode,
        ms: Math.round(performance.now() - started),
      });
    });
    try {
      if (!canonical) {
        sendJson(res, 404, { error: "not_found", message: "no such path" });
        return;
      }
      const source = stampClientAddress(req, proxies);
      if (path === "/healthz" && (req.method === "GET" || req.method === "HEAD")) {
        const ok = await databaseAnswers(pool);
        sendJson(res, ok ? 200 : 503, ok ? { status: "ok" } : { status: "unhealthy", database: "down" });
        return;
      }
      if (path === "/api/auth/sign-in/magic-link" && req.method === "POST") {
        const verdict = magicLinkPerClient.take(source);
        if (!verdict.ok) {
          res.setHeader("retry-after", String(verdict.retryAfterS));
          throw new HttpError(429, "RATE_LIMITED", "too many sign-in link requests; try again later");
        }
      }
      if (path === "/api/auth" || path.startsWith("/api/auth/")) {
        const refused = await impersonationVerdict(auth, pool, req, path, source);
        if (refused) {
          sendJson(res, refused[0], refused[1]);
          return;
        }
        await betterAuthHandler(req, res);
        return;
      }
      throw new HttpError(404, "not_found", "no such endpoint");
    } catch (err) {
      if (err instanceof HttpError) {
        if (!res.headersSent) sendJson(res, err.status, { error: err.error, message: err.message });
        return;
      }
      log({ level: "error", msg: "request failed", path, error: String(err?.message ?? err) });
      if (!res.headersSent) sendJson(res, 500, { error: "internal_error", message: "internal error" });
      else res.destroy();
    }
  });

  // The internal listener first: once the public /healthz answers, both are up.
  const internalPort = await listen(internalServer, config.internal.port, config.internal.host);
  log({
    level: "info",
    msg: "internal listener",
    host: config.internal.host,
    port: internalPort,
    callers: Object.keys(config.internal.tokens),
  });
  const port = await listen(server, config.port, config.host);
  log({
    level: "info",
    msg: "listening",
    host: config.host,
    port,
    baseUrl: config.baseUrl,
    env: config.env,
    trustedProxies: config.trustedProxies.length,
    rateLimit: config.rateLimit,
  });

  let stopping = false;
  const shutdown = async (signal) => {
    if (stopping) return;
    stopping = true;
    log({ level: "info", msg: "shutting down", signal });
    const closed = [server, internalServer].map((s) => new Promise((resolve) => s.close(resolve)));
    for (const s of [server, internalServer]) s.closeIdleConnections?.();
    // Requests in flight get a few seconds; then their sockets are cut.
    const force = setTimeout(() => {
      for (const s of [server, internalServer]) s.closeAllConnections?.();
    }, 5_000);
    force.unref();
    await Promise.all(closed);
    await pool.end();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((err) => {
  console.error(`polaris-auth: failed to start: ${err?.stack ?? err}`);
  process.exit(1);
});
