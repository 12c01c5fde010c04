// UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.
//
// Every event gets one when it is recorded; the server uses it as the idempotency key, so a
// retry or a replay from the spool can never store an event twice. This runs once per
// event on the hot path, hence the byte pool (one getRandomValues call per ~400 ids) and
// the per-millisecond cache of the timestamp's hex digits.

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

// 10 random bytes per id: 12 bits of rand_a, 62 bits of rand_b (74 random bits; the rest
// are the version and variant bits).
const RANDOM_BYTES_PER_ID = 10;
const pool = new Uint8Array(4096 - (4096 % RANDOM_BYTES_PER_ID));
let poolOffset = pool.length;

let cachedMillis = -1;
let cachedPrefix = '';

/** Returns the first 14 characters (`xxxxxxxx-xxxx-`) for a millisecond timestamp. */
function timestampPrefix(millis) {
  // 48 bits do not fit in a 32-bit integer, so split into the high 16 and low 32 bits.
  const high = Math.floor(millis / 0x1_0000_0000);
  const low = millis >>> 0;
  return (
    HEX[(high >>> 8) & 0xff] +
    HEX[high & 0xff] +
    HEX[low >>> 24] +
    HEX[(low >>> 16) & 0xff] +
    '-' +
    HEX[(low >>> 8) & 0xff] +
    HEX[low & 0xff] +
    '-'
  );
}

/**
 * A new UUIDv7 as a lowercase string, e.g. `0192f4c1-7a3e-7c41-9d2b-5e8f0a1b2c3d`.
 *
 * Ids from the same millisecond are unique (74 random bits) but not ordered among
 * themselves; the server orders events by its own `seq`, and the client's order is in
 * `source_seq`.
 * @returns {string}
 */
export function uuidv7() {
  const now = Date.now();
  if (now !== cachedMillis) {
    cachedMillis = now;
    cachedPrefix = timestampPrefix(now);
  }
  if (poolOffset === pool.length) {
    crypto.getRandomValues(pool);
    poolOffset = 0;
  }
  const r = pool;
  const i = poolOffset;
  poolOffset = i + RANDOM_BYTES_PER_ID;
  return (
    cachedPrefix +
    HEX[0x70 | (r[i] & 0x0f)] + // version 7 and 4 bits of rand_a
    HEX[r[i + 1]] +
    '-' +
    HEX[0x80 | (r[i + 2] & 0x3f)] + // variant 10 and 6 bits of rand_b
    HEX[r[i + 3]] +
    '-' +
    HEX[r[i + 4]] +
    HEX[r[i + 5]] +
    HEX[r[i + 6]] +
    HEX[r[i + 7]] +
    HEX[r[i + 8]] +
    HEX[r[i + 9]]
  );
}

/**
 * A random lowercase hex string of `length` characters, straight from
 * `crypto.getRandomValues`; for ids made rarely, such as the client's instance id.
 * @param {number} length
 * @returns {string}
 */
export function randomHex(length) {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(length / 2)));
  let out = '';
  for (const byte of bytes) out += HEX[byte];
  return out.slice(0, length);
}
