/**
 * Trusted proxy addresses: IPs, CIDR ranges (v4 and v6) and the names `loopback`,
 * `linklocal` and `uniquelocal`. IPv4-mapped IPv6 addresses match the IPv4 entries.
 */
export declare class TrustedProxies {
  constructor(entries?: Iterable<string> | string);
  readonly empty: boolean;
  /** Whether a normalized address (see normalizeIp) is trusted. */
  has(address: string | undefined): boolean;
}

/** An address without brackets, port, zone or quotes, IPv4-mapped IPv6 as IPv4; undefined when not an IP. */
export declare function normalizeIp(value: unknown): string | undefined;

/** The entries of X-Forwarded-For headers, left to right. */
export declare function parseXForwardedFor(header: string | string[] | null | undefined): string[];

/** The `for=` values of RFC 7239 Forwarded headers, left to right (`unknown` where an element has none). */
export declare function parseForwardedFor(header: string | string[] | null | undefined): string[];

/**
 * The client's address: the peer, unless it is a trusted proxy; then the rightmost hop that
 * is not one (the leftmost when all are); undefined when that hop is not an address.
 */
export declare function resolveClientIp(parts: {
  peer: string | undefined;
  hops: string[];
  trusted: TrustedProxies;
}): string | undefined;
