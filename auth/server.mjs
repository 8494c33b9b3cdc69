#!/usr/bin/env node
// Polaris Express auth service: BetterAuth on our PostgreSQL, behind node:http.
//
//   /api/auth/*        BetterAuth (email+password sign-in, magic link, JWT + JWKS, bearer, admin)
//   GET  /healthz      200 {"status":"ok"} when the database answers, 503 otherwise
//   POST /internal/users   idempotent user provisioning (Bearer POLARIS_AUTH_INTERNAL_TOKEN)
//
// Configuration: see config.mjs and docs/auth.md. Logs one JSON line per request and never
// logs headers, cookies, bodies or query strings (they carry tokens).

import http from "node:http";

import { toNodeHandler } from "better-auth/node";
import { getMigrations } from "better-auth/db/migration";

import { createAuth } from "./auth.mjs";
import { ConfigError, loadConfig } from "./config.mjs";
import { createPool, databaseAnswers, migrate } from "./db.mjs";
import { HttpError, bearerMatches, ensureUser, readJson } from "./internal.mjs";
import { handleInternal } from "./internal_admin.mjs";
import { TokenBuckets } from "./ratelimit.mjs";

// Magic-link requests per client address: 5 a minute (on top of the per-address throttle in
// auth.mjs). Answered 429 with Retry-After, whatever the e-mail.
const magicLinkPerClient = new TokenBuckets({ capacity: 5, refillPerSecond: 5 / 60 });
const PRIVATE_PEER = /^(127\.|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|::1$|::ffff:127\.|::ffff:10\.|::ffff:192\.168\.|fc|fd)/;

/** The client address; X-Forwarded-For is trusted only from a loopback/private peer (a proxy). */
function clientAddress(req) {
  const peer = req.socket.remoteAddress ?? "";
  const forwarded = req.headers["x-forwarded-for"];
  if (typeof forwarded === "string" && forwarded && PRIVATE_PEER.test(peer)) {
    return forwarded.split(",")[0].trim();
  }
  return peer;
}

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

  const server = http.createServer(async (req, res) => {
    const started = performance.now();
    // The path only: query strings can carry tokens (magic-link verify, callbacks).
    const path = (req.url ?? "/").split("?")[0];
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
      if (path === "/healthz" && (req.method === "GET" || req.method === "HEAD")) {
        const ok = await databaseAnswers(pool);
        sendJson(res, ok ? 200 : 503, ok ? { status: "ok" } : { status: "unhealthy", database: "down" });
        return;
      }
      if (path === "/internal/users" && req.method === "POST") {
        if (!bearerMatches(req.headers.authorization, config.internalToken)) {
          throw new HttpError(401, "unauthorized", "a valid internal token is required");
        }
        sendJson(res, 200, await ensureUser(auth, await readJson(req)));
        return;
      }
      if (path === "/internal" || path.startsWith("/internal/")) {
        if (!bearerMatches(req.headers.authorization, config.internalToken)) {
          throw new HttpError(401, "unauthorized", "a valid internal token is required");
        }
        const query = new URL(req.url ?? "/", "http://internal").searchParams;
        const answer = await handleInternal(auth, req.method ?? "GET", path, query, () => readJson(req));
        if (!answer) throw new HttpError(404, "not_found", "no such endpoint");
        sendJson(res, answer[0], answer[1]);
        return;
      }
      if (path === "/api/auth/sign-in/magic-link" && req.method === "POST") {
        const verdict = magicLinkPerClient.take(clientAddress(req));
        if (!verdict.ok) {
          res.setHeader("retry-after", String(verdict.retryAfterS));
          throw new HttpError(429, "RATE_LIMITED", "too many sign-in link requests; try again later");
        }
      }
      if (path === "/api/auth" || path.startsWith("/api/auth/")) {
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

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, resolve);
  });
  const address = server.address();
  log({
    level: "info",
    msg: "listening",
    host: config.host,
    port: typeof address === "object" && address ? address.port : config.port,
    baseUrl: config.baseUrl,
    env: config.env,
  });

  let stopping = false;
  const shutdown = async (signal) => {
    if (stopping) return;
    stopping = true;
    log({ level: "info", msg: "shutting down", signal });
    const closed = new Promise((resolve) => server.close(resolve));
    server.closeIdleConnections?.();
    // Requests in flight get a few seconds; then their sockets are cut.
    const force = setTimeout(() => server.closeAllConnections?.(), 5_000);
    force.unref();
    await closed;
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
