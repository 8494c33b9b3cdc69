// A small in-process token bucket, keyed (per client address, per e-mail address).
//
// Enough for one auth process; several processes each keep their own buckets, which only makes
// the limit N times looser, never stricter.

export class TokenBuckets {
  /** @param {{capacity: number, refillPerSecond: number, maxKeys?: number, now?: () => number}} opts */
  constructor({ capacity, refillPerSecond, maxKeys = 10_000, now = () => Date.now() / 1000 }) {
    this.capacity = capacity;
    this.refill = refillPerSecond;
    this.maxKeys = maxKeys;
    this.now = now;
    /** @type {Map<string, {tokens: number, at: number}>} */
    this.buckets = new Map();
  }

  /**
   * Take one token for `key`.
   * @returns {{ok: true} | {ok: false, retryAfterS: number}}
   */
  take(key) {
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value);
      bucket = { tokens: this.capacity, at: now };
    }
    bucket.tokens = Math.min(this.capacity, bucket.tokens + (now - bucket.at) * this.refill);
    bucket.at = now;
    this.buckets.delete(key); // keep insertion order = recency, for eviction
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterS: Math.max(1, Math.ceil((1 - bucket.tokens) / this.refill)) };
  }
}
