/** A new UUIDv7 (RFC 9562), lowercase. */
export declare function uuidv7(): string;

/** @internal A random lowercase hex string of `length` characters. */
export declare function randomHex(length: number): string;
