// The client's IP address behind reverse proxies.
//
// X-Forwarded-For and Forwarded are written by whoever sends the request, so they are
// worth nothing unless the peer that handed us the request is a proxy we trust. Then we
// walk the list from the right (each proxy appends the address it received from), skipping
// further trusted proxies; the first address we do not trust is the client. A client that
// sends its own X-Forwarded-For only adds entries to the left of the ones a trusted proxy
// appended, which the walk never reaches.

import { isIP } from 'node:net';

/** Names for the usual proxy ranges, as in Express's `trust proxy`. */
const NAMED_RANGES = {
  loopback: ['127.0.0.0/8', '::1/128'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
  uniquelocal: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
};

/**
 * A set of trusted proxy addresses: IPs, CIDR ranges (v4 and v6) and the names
 * `loopback`, `linklocal` and `uniquelocal`. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`)
 * match the IPv4 entries.
 *
 * Matching is done here on bytes rather than with node:net's BlockList, whose check()
 * builds a SocketAddress object per call: that was most of the middleware's cost per
 * request.
 */
export class TrustedProxies {
  /** @type {{bytes: Uint8Array, prefix: number}[]} */
  #v4 = [];
  /** @type {{bytes: Uint8Array, prefix: number}[]} */
  #v6 = [];

  /** @param {Iterable<string> | string | undefined} entries */
  constructor(entries = []) {
    const list = typeof entries === 'string' ? entries.split(',') : [...entries];
    for (const raw of list) {
      const entry = String(raw).trim();
      if (entry === '') continue;
      for (const range of NAMED_RANGES[entry.toLowerCase()] ?? [entry]) this.#add(range);
    }
  }

  /** Whether no proxy is trusted (then forwarding headers are never read). */
  get empty() {
    return this.#v4.length === 0 && this.#v6.length === 0;
  }

  /**
   * Whether `address` (already normalized, see normalizeIp) is a trusted proxy.
   * @param {string | undefined} address
   */
  has(address) {
    if (address === undefined || this.empty) return false;
    const family = isIP(address);
    if (family === 0) return false;
    const ranges = family === 4 ? this.#v4 : this.#v6;
    if (ranges.length === 0) return false;
    const bytes = addressBytes(address, family);
    return ranges.some((range) => inPrefix(bytes, range));
  }

  #add(range) {
    const slash = range.indexOf('/');
    const address = normalizeIp(slash === -1 ? range : range.slice(0, slash));
    const family = address === undefined ? 0 : isIP(address);
    if (family === 0) {
      throw new TypeError(
        `trustedProxies: ${JSON.stringify(range)} is not an IP address, a CIDR range or one of loopback, linklocal, uniquelocal`,
      );
    }
    const max = family === 4 ? 32 : 128;
    let prefix = slash === -1 ? max : Number(range.slice(slash + 1));
    // A mapped range such as ::ffff:10.0.0.0/104 was normalized to IPv4: shift its prefix.
    if (slash !== -1 && family === 4 && range.includes(':')) prefix -= 96;
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) {
      throw new TypeError(`trustedProxies: bad prefix length in ${JSON.stringify(range)}`);
    }
    (family === 4 ? this.#v4 : this.#v6).push({ bytes: addressBytes(address, family), prefix });
  }
}

function inPrefix(bytes, { bytes: network, prefix }) {
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== network[i]) return false;
  const rest = prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[whole] & mask) === (network[whole] & mask);
}

// The 4 or 16 bytes of a valid (isIP-checked) address.
function addressBytes(address, family) {
  if (family === 4) return Uint8Array.from(address.split('.'), Number);
  let text = address;
  const groups = [];
  const tail = text.slice(text.lastIndexOf(':') + 1);
  const embedded = [];
  if (tail.includes('.')) {
    // An IPv4 tail (::ffff:1.2.3.4 that was not unmapped, ::1.2.3.4) is the last two groups.
    const [a, b, c, d] = tail.split('.').map(Number);
    embedded.push((a << 8) | b, (c << 8) | d);
    text = text.slice(0, text.length - tail.length);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const gap = text.indexOf('::');
  const parse = (part) => (part === '' ? [] : part.split(':').map((hex) => parseInt(hex, 16)));
  if (gap === -1) {
    groups.push(...parse(text));
  } else {
    const left = parse(text.slice(0, gap));
    const right = parse(text.slice(gap + 2));
    groups.push(...left, ...new Array(8 - embedded.length - left.length - right.length).fill(0), ...right);
  }
  groups.push(...embedded);
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}

/**
 * An address as it appears in a socket or a forwarding header, in its plain form:
 * brackets, ports, zone ids and quotes removed, IPv4-mapped IPv6 turned into IPv4,
 * lowercase. Undefined when it is not an IP address (`unknown`, an obfuscated `_node`).
 * @param {unknown} value
 * @returns {string | undefined}
 */
export function normalizeIp(value) {
  if (typeof value !== 'string') return undefined;
  let text = value.trim();
  if (text.startsWith('"') && text.endsWith('"') && text.length >= 2) text = text.slice(1, -1).trim();
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end === -1) return undefined;
    text = text.slice(1, end); // drops a ":port" after the bracket
  } else if (text.indexOf(':') !== -1 && text.indexOf(':') === text.lastIndexOf(':') && text.includes('.')) {
    text = text.slice(0, text.indexOf(':')); // IPv4 with a port
  }
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  text = text.toLowerCase();
  const family = isIP(text);
  if (family === 0) return undefined;
  if (family === 6) return unmapIpv4(text);
  return text;
}

// ::ffff:a.b.c.d (also spelled 0:0:0:0:0:ffff:a.b.c.d or ::ffff:xxxx:yyyy) is an IPv4
// client on a dual-stack socket; record it as the IPv4 address it is.
function unmapIpv4(address) {
  const mapped = /^(?:::|(?:0{1,4}:){5})ffff:(.+)$/.exec(address);
  if (mapped === null) return address;
  const rest = mapped[1];
  if (isIP(rest) === 4) return rest;
  const hex = /^([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(rest);
  if (hex === null) return address;
  const high = parseInt(hex[1], 16);
  const low = parseInt(hex[2], 16);
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
}

/**
 * The entries of X-Forwarded-For headers, left to right.
 * @param {string | string[] | null | undefined} header
 * @returns {string[]}
 */
export function parseXForwardedFor(header) {
  if (header == null) return [];
  const text = Array.isArray(header) ? header.join(',') : String(header);
  return text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
}

/**
 * The `for=` values of RFC 7239 Forwarded headers, left to right; an element without one
 * is kept as `unknown` so that the walk stops there rather than skipping a hop.
 * @param {string | string[] | null | undefined} header
 * @returns {string[]}
 */
export function parseForwardedFor(header) {
  if (header == null) return [];
  const text = Array.isArray(header) ? header.join(',') : String(header);
  const hops = [];
  for (const element of splitOutsideQuotes(text, ',')) {
    if (element.trim() === '') continue;
    let forValue = 'unknown';
    for (const pair of splitOutsideQuotes(element, ';')) {
      const equals = pair.indexOf('=');
      if (equals !== -1 && pair.slice(0, equals).trim().toLowerCase() === 'for') {
        forValue = pair.slice(equals + 1).trim();
      }
    }
    hops.push(forValue);
  }
  return hops;
}

function splitOutsideQuotes(text, separator) {
  const parts = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === '"') quoted = !quoted;
    else if (char === '\\' && quoted) i++;
    else if (char === separator && !quoted) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/**
 * The client's address: the socket peer, unless the peer is a trusted proxy; then the
 * rightmost address in the forwarding header that is not a trusted proxy (the leftmost when
 * all are). Undefined when that hop is not an address (`unknown`): a proxy's address would
 * be a wrong answer, so none is given.
 * @param {{peer: string | undefined, hops: string[], trusted: TrustedProxies}} parts
 * @returns {string | undefined}
 */
export function resolveClientIp({ peer, hops, trusted }) {
  const peerIp = normalizeIp(peer);
  if (peerIp === undefined || !trusted.has(peerIp)) return peerIp;
  let client = peerIp;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normalizeIp(hops[i]);
    if (hop === undefined) return undefined;
    client = hop;
    if (!trusted.has(hop)) return hop;
  }
  return client;
}
