// The client address of a request: the socket's peer, unless that peer is a configured proxy.
//
// X-Forwarded-For is written by whoever sends the request. Believing it from any peer let a
// client pick a new address for every password guess (BetterAuth's per-address limit never
// fired), and without the header every client shared one bucket. So the header is read only
// when the peer is in POLARIS_AUTH_TRUSTED_PROXIES, walking it from the right past trusted hops.
//
// The result is put in CLIENT_ADDRESS_HEADER (any value the client sent there is replaced):
// BetterAuth's rate limiter, its session rows and our audit rows all read that one header.

import { BlockList, isIP } from "node:net";

export const CLIENT_ADDRESS_HEADER = "x-polaris-client-address";

/** "::ffff:10.0.0.1" and "10.0.0.1" are the same client. */
function plain(address) {
  const lower = String(address ?? "").trim().toLowerCase();
  const mapped = lower.startsWith("::ffff:") ? lower.slice(7) : lower;
  return isIP(mapped) === 4 ? mapped : lower;
}

/**
 * @param {ReadonlyArray<{address: string, prefix: number, family: "ipv4" | "ipv6"}>} proxies
 */
export function trustedProxyList(proxies) {
  const list = new BlockList();
  for (const proxy of proxies) list.addSubnet(plain(proxy.address), proxy.prefix, proxy.family);
  return {
    size: proxies.length,
    /** @param {string} address */
    has(address) {
      const ip = plain(address);
      const family = isIP(ip);
      return family !== 0 && list.check(ip, family === 6 ? "ipv6" : "ipv4");
    },
  };
}

/**
 * @param {import("node:http").IncomingMessage} req
 * @param {ReturnType<typeof trustedProxyList>} proxies
 * @returns {string}
 */
export function clientAddress(req, proxies) {
  const peer = plain(req.socket.remoteAddress);
  const forwarded = req.headers["x-forwarded-for"];
  if (!proxies.size || !proxies.has(peer) || !forwarded) return peer;
  const hops = (Array.isArray(forwarded) ? forwarded.join(",") : forwarded)
    .split(",")
    .map((hop) => plain(hop))
    .filter(Boolean);
  let client = peer;
  for (let i = hops.length - 1; i >= 0; i -= 1) {
    // A hop that is not an address was written by the client: stop at the last proxy we trust.
    if (!isIP(hops[i])) return client;
    client = hops[i];
    if (!proxies.has(client)) return client;
  }
  return client;
}

/**
 * Stamp the request with its client address for everything downstream (BetterAuth included).
 *
 * @param {import("node:http").IncomingMessage} req
 * @param {ReturnType<typeof trustedProxyList>} proxies
 */
export function stampClientAddress(req, proxies) {
  const address = clientAddress(req, proxies);
  req.headers[CLIENT_ADDRESS_HEADER] = address;
  return address;
}
