// The private listener for the internal API (internal_admin.mjs): its own host and port,
// loopback by default, never the public port.
//
// Each caller (api, worker, gateway) has its own token (POLARIS_AUTH_INTERNAL_TOKEN_<CALLER>),
// so one process's token can be rotated or withdrawn alone, each route names the callers it
// serves, and every request is logged with the caller it came from. A request without a known
// token is answered 401 before any routing, so the listener tells nothing to a stranger.

import http from "node:http";
import { timingSafeEqual } from "node:crypto";

import { HttpError, readJson } from "./internal.mjs";

/**
 * The caller whose token the Authorization header carries, or null.
 *
 * @param {string | undefined} header
 * @param {Readonly<Record<string, string>>} tokens caller -> token
 */
export function callerOf(header, tokens) {
  if (!header || !header.startsWith("Bearer ")) return null;
  const given = Buffer.from(header.slice("Bearer ".length).trim());
  let found = null;
  // Compare against every token (no early exit), each in constant time.
  for (const [caller, token] of Object.entries(tokens)) {
    const want = Buffer.from(token);
    if (given.length === want.length && timingSafeEqual(given, want)) found = caller;
  }
  return found;
}

/**
 * @param {ReadonlyArray<readonly [string, string, Function, ReadonlyArray<string>]>} routes
 */
export function compileRoutes(routes) {
  return routes.map(([method, pattern, handler, callers]) => {
    const names = [];
    const source = pattern
      .split("/")
      .map((segment) => {
        if (!segment.startsWith(":")) return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        names.push(segment.slice(1));
        return "([^/]+)";
      })
      .join("/");
    return { method, regex: new RegExp(`^${source}$`), names, handler, callers: new Set(callers) };
  });
}

/**
 * @param {ReturnType<typeof compileRoutes>} compiled
 * @param {string} method
 * @param {string} path
 */
function match(compiled, method, path) {
  for (const route of compiled) {
    if (route.method !== method) continue;
    const found = route.regex.exec(path);
    if (!found) continue;
    const params = Object.fromEntries(route.names.map((name, i) => [name, decodeURIComponent(found[i + 1])]));
    return { handler: route.handler, callers: route.callers, params };
  }
  return null;
}

/**
 * @param {{auth: any, pool: import("pg").Pool, tokens: Readonly<Record<string, string>>,
 *          routes: ReadonlyArray<readonly [string, string, Function, ReadonlyArray<string>]>,
 *          log: (fields: Record<string, unknown>) => void,
 *          sendJson: (res: import("node:http").ServerResponse, status: number, body: unknown) => void}} opts
 */
export function createInternalServer({ auth, pool, tokens, routes, log, sendJson }) {
  const compiled = compileRoutes(routes);
  return http.createServer(async (req, res) => {
    const started = performance.now();
    const path = (req.url ?? "/").split("?")[0];
    let caller = null;
    res.on("finish", () => {
      log({
        level: "info",
        listener: "internal",
        caller,
        method: req.method,
        path,
        status: res.statusCode,
        ms: Math.round(performance.now() - started),
      });
    });
    try {
      caller = callerOf(req.headers.authorization, tokens);
      if (!caller) throw new HttpError(401, "unauthorized", "a valid internal token is required");
      const found = match(compiled, req.method ?? "GET", path);
      if (!found) throw new HttpError(404, "not_found", "no such endpoint");
      if (!found.callers.has(caller)) {
        throw new HttpError(403, "forbidden", `the ${caller} caller may not use this endpoint`);
      }
      const [status, body] = await found.handler({
        auth,
        ctx: await auth.$context,
        pool,
        caller,
        params: found.params,
        query: new URL(req.url ?? "/", "http://internal").searchParams,
        body: () => readJson(req),
      });
      sendJson(res, status, body);
    } catch (err) {
      if (err instanceof HttpError) {
        if (!res.headersSent) sendJson(res, err.status, { error: err.error, message: err.message });
        return;
      }
      if (err instanceof URIError) {
        if (!res.headersSent) sendJson(res, 400, { error: "bad_request", message: "malformed path" });
        return;
      }
      log({ level: "error", listener: "internal", msg: "request failed", path, error: String(err?.message ?? err) });
      if (!res.headersSent) sendJson(res, 500, { error: "internal_error", message: "internal error" });
      else res.destroy();
    }
  });
}
