// The client's options, checked once at construction so that a typo fails at startup
// rather than as lost audit events at 3 a.m.

import { checkName, MAX_SOURCE_CHARS } from './event.js';

/** Room left in `source` for `/` and the 12-character instance id. */
const INSTANCE_SUFFIX_CHARS = 13;

/** The server's most events per request. */
export const MAX_BATCH_SIZE = 1000;

export const DEFAULTS = Object.freeze({
  batchSize: 100,
  flushIntervalMs: 100,
  maxQueue: 10_000,
  requestTimeoutMs: 10_000,
  maxRetryDelayMs: 10_000,
  spoolAfterMs: 3_000,
  maxSpoolBytes: 1024 ** 3,
  flushOnExit: true,
});

/**
 * Validates and completes the options of `new Sealtrail(options)`.
 * @param {import('./client.d.ts').SealtrailOptions} options
 */
export function resolveOptions(options) {
  if (options === null || typeof options !== 'object') {
    throw new TypeError('new Sealtrail(options): options must be an object with at least url, apiKey and source');
  }
  const {
    url,
    apiKey,
    source,
    tenantId,
    spoolDir,
    overflow = spoolDir ? 'spool' : 'block',
    onRefused,
    fetch: fetchImpl = globalThis.fetch,
  } = options;
  const resolved = { ...DEFAULTS };
  for (const name of Object.keys(DEFAULTS)) {
    if (options[name] !== undefined) resolved[name] = options[name];
  }

  const base = url instanceof URL ? url.href : url;
  if (typeof base !== 'string' || !/^https?:\/\//i.test(base)) {
    throw new TypeError(
      `Sealtrail url must be an http(s) URL such as http://127.0.0.1:7700, not ${JSON.stringify(url)}`,
    );
  }
  if (typeof apiKey !== 'string' || apiKey === '') {
    throw new TypeError('Sealtrail apiKey must be the key `sealtrail keys create` printed');
  }
  const sourceProblem = checkName(source, MAX_SOURCE_CHARS - INSTANCE_SUFFIX_CHARS);
  if (sourceProblem) {
    throw new TypeError(`Sealtrail source (the name of this producer, e.g. "wedding-web") ${sourceProblem}`);
  }
  if (tenantId !== undefined && (typeof tenantId !== 'string' || tenantId === '')) {
    throw new TypeError('Sealtrail tenantId must be a non-empty string when given');
  }
  if (!['block', 'drop', 'spool'].includes(overflow)) {
    throw new TypeError(`Sealtrail overflow must be 'block', 'drop' or 'spool', not ${JSON.stringify(overflow)}`);
  }
  if (overflow === 'spool' && !spoolDir) {
    throw new TypeError("Sealtrail overflow 'spool' needs a spoolDir");
  }
  if (spoolDir !== undefined && (typeof spoolDir !== 'string' || spoolDir === '')) {
    throw new TypeError('Sealtrail spoolDir must be a directory path');
  }
  if (typeof fetchImpl !== 'function') {
    throw new TypeError('Sealtrail needs a fetch implementation (Node 20 has one built in)');
  }
  if (onRefused !== undefined && typeof onRefused !== 'function') {
    throw new TypeError('Sealtrail onRefused must be a function (events, error) => void');
  }
  requireInteger('batchSize', resolved.batchSize, 1, MAX_BATCH_SIZE);
  requireInteger('maxQueue', resolved.maxQueue, 1, 2 ** 31);
  requireInteger('flushIntervalMs', resolved.flushIntervalMs, 0);
  requireInteger('requestTimeoutMs', resolved.requestTimeoutMs, 1);
  requireInteger('maxRetryDelayMs', resolved.maxRetryDelayMs, 1);
  requireInteger('spoolAfterMs', resolved.spoolAfterMs, 0);
  requireInteger('maxSpoolBytes', resolved.maxSpoolBytes, 0);

  return {
    ...resolved,
    url: base,
    apiKey,
    source,
    tenantId,
    spoolDir,
    overflow,
    onRefused,
    fetch: fetchImpl,
    flushOnExit: Boolean(resolved.flushOnExit),
  };
}

function requireInteger(name, value, min, max = Number.MAX_SAFE_INTEGER) {
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `from ${min} to ${max}`;
    throw new RangeError(`Sealtrail ${name} must be an integer ${range}, not ${value}`);
  }
}
