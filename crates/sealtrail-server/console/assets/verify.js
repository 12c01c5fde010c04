// Checks, in the reader's own browser, that one event is in the log exactly as it is shown.
//
// The server's word is taken for one thing only, the log's public key (GET /v1/public-key,
// shown for the reader to compare with a copy kept elsewhere): the leaf hash is computed here
// from the verbatim record, the inclusion proof is walked here to a root, that root is compared with
// the one in the signed checkpoint note (the note's text, which the signature covers — not
// the JSON beside it), and the note's Ed25519 signature is checked here with the log's key.
// Finally the record must describe the event the page shows, field by field.
//
// Pure logic: no DOM, no fetch. The console's event page calls verifyEvent with what the API
// answered; Node's test runner calls it the same way (globalThis.crypto.subtle is WebCrypto
// in both, Ed25519 included).
//
// Formats (crates/sealtrail-core): merkle.rs (RFC 9162: leaf = SHA-256(0x00 || record),
// node = SHA-256(0x01 || left || right), inclusion verification of §2.1.3.2),
// checkpoint.rs (C2SP signed note: body "origin\nsize\nbase64(root)\n", a blank line, then
// "— <name> <base64(4-byte key id || 64-byte signature)>" lines; vkey
// "<name>+<hex key id>+<base64(0x01 || 32-byte key)>"; key id = first 4 bytes of
// SHA-256(name || "\n" || 0x01 || key)).

/** Sealed (field-encrypted) values in a stored record start with this (sealtrail-crypto). */
export const SEALED_PREFIX = 'sealtrail:enc:v1:';

/** Members the API's event view adds to the record's: nothing else may differ. */
const VIEW_ONLY_FIELDS = new Set(['leaf_hash']);

/** Signature lines start with an em dash and a space (U+2014). */
const SIGNATURE_LINE_PREFIX = '\u2014 ';
/** The signature-type byte of Ed25519 keys in signed notes. */
const ED25519_ALGORITHM = 0x01;
const ED25519_PUBLIC_KEY_BYTES = 32;
const ED25519_SIGNATURE_BYTES = 64;
const KEY_ID_BYTES = 4;
const HASH_BYTES = 32;

const subtle = () => {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new Error('this browser offers no WebCrypto (crypto.subtle); a secure context (https or localhost) is needed');
  return s;
};

const utf8 = new TextEncoder();

// ---------------------------------------------------------------------------------------
// Encodings, strict: a proof that does not parse is a failed proof, never a lenient guess.

/** Bytes of a lowercase or uppercase hex string of exactly `bytes` bytes. */
export function hexToBytes(hex, bytes = HASH_BYTES) {
  if (typeof hex !== 'string' || hex.length !== bytes * 2 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new Error(`${JSON.stringify(String(hex).slice(0, 80))} is not ${bytes} bytes of hex`);
  }
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Lowercase hex of bytes. */
export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Bytes of standard, padded base64 (the signed-note encoding). */
export function base64ToBytes(text) {
  if (typeof text !== 'string' || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new Error(`${JSON.stringify(String(text).slice(0, 80))} is not base64`);
  }
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** Standard, padded base64 of bytes. */
export function bytesToBase64(bytes) {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await subtle().digest('SHA-256', bytes));
}

// ---------------------------------------------------------------------------------------
// The Merkle tree (RFC 9162).

/** SHA-256(0x00 || record bytes): the leaf hash of a record given as text (UTF-8). */
export async function leafHash(record) {
  return sha256(concat(Uint8Array.of(0x00), utf8.encode(record)));
}

/** SHA-256(0x01 || left || right). */
export async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(0x01), left, right));
}

/** A non-negative integer as BigInt (tree positions can exceed 2^53 in principle). */
function position(value, name) {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === 'bigint' && value >= 0n) return value;
  throw new Error(`${name} ${JSON.stringify(String(value))} is not a non-negative integer`);
}

/**
 * The root an inclusion proof leads to from `leaf` (RFC 9162 §2.1.3.2), or null when the
 * proof has the wrong number of hashes for that leaf and tree size. Compare it with a
 * signed root: a proof only means something against one.
 * @param {number|bigint} leafIndex @param {number|bigint} treeSize
 * @param {Uint8Array} leaf @param {Uint8Array[]} path sibling hashes, deepest first
 */
export async function rootFromInclusionProof(leafIndex, treeSize, leaf, path) {
  const index = position(leafIndex, 'leaf_index');
  const size = position(treeSize, 'tree_size');
  if (index >= size) return null;
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) return null;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n ? r : null;
}

// ---------------------------------------------------------------------------------------
// Signed notes and keys (C2SP signed-note, tlog-checkpoint).

/**
 * A checkpoint note split into its signed body and its parts. Throws on anything that is not
 * a well-formed checkpoint note.
 * @returns {{body: string, origin: string, treeSize: bigint, root: Uint8Array,
 *            signatures: {name: string, keyId: Uint8Array, signature: Uint8Array}[]}}
 */
export function parseCheckpointNote(note) {
  if (typeof note !== 'string') throw new Error('the checkpoint note is missing');
  const split = note.indexOf('\n\n');
  if (split < 0) throw new Error('the checkpoint note has no blank line before its signatures');
  const body = note.slice(0, split + 1);
  const [origin, sizeText, rootText] = body.split('\n');
  if (!origin) throw new Error('the checkpoint note has no origin line');
  if (!/^(0|[1-9][0-9]{0,19})$/.test(sizeText ?? '')) {
    throw new Error(`the checkpoint's tree size ${JSON.stringify(sizeText)} is not a number`);
  }
  const root = base64ToBytes(rootText ?? '');
  if (root.length !== HASH_BYTES) throw new Error('the checkpoint root is not 32 bytes');
  const signatures = [];
  const signatureText = note.slice(split + 2);
  for (const line of signatureText.split('\n')) {
    if (line === '') continue;
    if (!line.startsWith(SIGNATURE_LINE_PREFIX)) throw new Error(`not a signature line: ${JSON.stringify(line.slice(0, 80))}`);
    const rest = line.slice(SIGNATURE_LINE_PREFIX.length);
    const space = rest.indexOf(' ');
    if (space <= 0) throw new Error(`not a signature line: ${JSON.stringify(line.slice(0, 80))}`);
    let blob;
    try {
      blob = base64ToBytes(rest.slice(space + 1));
    } catch {
      continue; // another signer's business, as in the server's parser
    }
    if (blob.length !== KEY_ID_BYTES + ED25519_SIGNATURE_BYTES) continue;
    signatures.push({
      name: rest.slice(0, space),
      keyId: blob.slice(0, KEY_ID_BYTES),
      signature: blob.slice(KEY_ID_BYTES),
    });
  }
  return { body, origin, treeSize: BigInt(sizeText), root, signatures };
}

/** The signed-note key id: the first 4 bytes of SHA-256(name || "\n" || 0x01 || key). */
export async function noteKeyId(name, publicKey) {
  const digest = await sha256(concat(utf8.encode(name), utf8.encode('\n'), Uint8Array.of(ED25519_ALGORITHM), publicKey));
  return digest.slice(0, KEY_ID_BYTES);
}

/**
 * A verifier key `<name>+<hex key id>+<base64(0x01 || key)>`, checked: the key id must be
 * the one the name and key give.
 * @returns {Promise<{name: string, keyId: Uint8Array, publicKey: Uint8Array}>}
 */
export async function parseVkey(vkey) {
  const parts = typeof vkey === 'string' ? vkey.trim().split('+') : [];
  // The base64 part may itself hold '+': split at the first two only.
  if (parts.length < 3) throw new Error('the log key is not name+keyid+key');
  const [name, idHex] = parts;
  const raw = base64ToBytes(parts.slice(2).join('+'));
  if (!name || /\s/.test(name)) throw new Error('the log key has no valid name');
  if (raw.length !== 1 + ED25519_PUBLIC_KEY_BYTES || raw[0] !== ED25519_ALGORITHM) {
    throw new Error('the log key is not an Ed25519 key');
  }
  const publicKey = raw.slice(1);
  const keyId = hexToBytes(idHex, KEY_ID_BYTES);
  if (!equalBytes(keyId, await noteKeyId(name, publicKey))) {
    throw new Error('the log key\'s id does not match its name and key');
  }
  return { name, keyId, publicKey };
}

/** Whether `signature` is `publicKey`'s Ed25519 signature of `message` (text, UTF-8). */
export async function ed25519Verify(publicKey, signature, message) {
  const key = await subtle().importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
  return subtle().verify({ name: 'Ed25519' }, key, signature, utf8.encode(message));
}

// ---------------------------------------------------------------------------------------
// The record against the shown event.

/** Deep equality of JSON values (object member order does not matter). */
export function sameJson(a, b) {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((item, i) => sameJson(item, b[i]));
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => Object.prototype.hasOwnProperty.call(b, k) && sameJson(a[k], b[k]));
}

const isSealed = (value) => typeof value === 'string' && value.startsWith(SEALED_PREFIX);

function shortJson(value) {
  const text = JSON.stringify(value) ?? 'nothing';
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

/**
 * How the verbatim record and the event the page shows differ, or null when they agree:
 * every member of the record must equal the event's (sealed values, which the event shows
 * opened, excepted), and the event may add only the view's own members.
 * @returns {{problem: string|null, sealed: string[]}}
 */
export function compareRecordWithEvent(record, event) {
  const sealed = [];
  if (record === null || typeof record !== 'object' || Array.isArray(record)) {
    return { problem: 'the record is not a JSON object', sealed };
  }
  if (event === null || typeof event !== 'object') return { problem: 'no event to compare', sealed };
  for (const [field, value] of Object.entries(record)) {
    if (!Object.prototype.hasOwnProperty.call(event, field)) {
      return { problem: `the shown event lacks the field ${field} the record holds`, sealed };
    }
    if (!matchesRecord(value, event[field], field, sealed)) {
      return {
        problem: `${field} differs: the record says ${shortJson(value)}, the page shows ${shortJson(event[field])}`,
        sealed,
      };
    }
  }
  for (const field of Object.keys(event)) {
    if (!Object.prototype.hasOwnProperty.call(record, field) && !VIEW_ONLY_FIELDS.has(field)) {
      return { problem: `the shown event has a field ${field} the record does not hold`, sealed };
    }
  }
  return { problem: null, sealed };
}

/**
 * Whether a value of the record equals the one shown, a sealed value at any depth (a
 * top-level field or one inside `details`) standing for whatever the page shows opened: its
 * place is recorded in `sealed`, as what this browser could not check.
 */
function matchesRecord(recorded, shown, path, sealed) {
  if (isSealed(recorded)) {
    sealed.push(path);
    return shown !== undefined;
  }
  if (recorded === null || shown === null || typeof recorded !== 'object' || typeof shown !== 'object') {
    return recorded === shown;
  }
  if (Array.isArray(recorded) !== Array.isArray(shown)) return false;
  if (Array.isArray(recorded)) {
    return recorded.length === shown.length && recorded.every((item, i) => matchesRecord(item, shown[i], `${path}[${i}]`, sealed));
  }
  const keys = Object.keys(recorded);
  if (keys.length !== Object.keys(shown).length) return false;
  return keys.every(
    (k) => Object.prototype.hasOwnProperty.call(shown, k) && matchesRecord(recorded[k], shown[k], `${path}.${k}`, sealed),
  );
}

/**
 * Checks a signed checkpoint (a CheckpointView: {origin, tree_size, root_hash, note}) with the
 * log's key (GET /v1/public-key): the vkey must be well formed and agree with public_key, the
 * note must be this log's, its Ed25519 signature by that key must verify over its body, and
 * the JSON fields beside the note must say what the signed text says. Throws when the note
 * or key cannot be parsed at all.
 * @returns {Promise<{ok: boolean, detail: string, keyName: string, note: ReturnType<typeof parseCheckpointNote>}>}
 */
export async function checkSignedCheckpoint(checkpoint, logKey) {
  const note = parseCheckpointNote(checkpoint?.note);
  const key = await parseVkey(logKey?.vkey);
  const fail = (detail) => ({ ok: false, detail, keyName: key.name, note });
  if (logKey.public_key !== undefined && !equalBytes(base64ToBytes(logKey.public_key), key.publicKey)) {
    return fail('the log\'s public_key and vkey name different keys');
  }
  if (logKey.origin !== undefined && logKey.origin !== key.name) {
    return fail(`the log's origin ${logKey.origin} is not its key's name ${key.name}`);
  }
  if (note.origin !== key.name) return fail(`the checkpoint is for log ${note.origin}, the key is ${key.name}'s`);
  // The JSON beside the note is a convenience; it must say what the signed text says.
  if (checkpoint.origin !== note.origin) {
    return fail(`the checkpoint's origin field (${checkpoint.origin}) differs from its signed note (${note.origin})`);
  }
  if (String(checkpoint.tree_size) !== String(note.treeSize)) {
    return fail(`the checkpoint's tree_size field (${checkpoint.tree_size}) differs from its signed note (${note.treeSize})`);
  }
  if (String(checkpoint.root_hash).toLowerCase() !== bytesToHex(note.root)) {
    return fail('the checkpoint\'s root_hash field differs from the root in its signed note');
  }
  const byThisKey = note.signatures.filter((sig) => sig.name === key.name && equalBytes(sig.keyId, key.keyId));
  if (byThisKey.length === 0) return fail(`the note carries no signature by the key ${key.name}+${bytesToHex(key.keyId)}`);
  for (const sig of byThisKey) {
    if (await ed25519Verify(key.publicKey, sig.signature, note.body)) {
      return {
        ok: true,
        detail: `Ed25519 signature of tree size ${note.treeSize} verified here with key id ${bytesToHex(key.keyId)}`,
        keyName: key.name,
        note,
      };
    }
  }
  return fail(`the signature by ${key.name}+${bytesToHex(key.keyId)} does not verify: the checkpoint is forged or altered`);
}

// ---------------------------------------------------------------------------------------
// The whole verification.

/**
 * One line of the integrity panel.
 * @typedef {{id: 'leaf'|'inclusion'|'signature'|'record', label: string, ok: boolean,
 *            unchecked: boolean, detail: string}} Check  (unchecked: it could not be carried out)
 * @typedef {{state: 'intact'|'not-intact'|'not-verified', verdict: string, checks: Check[]}} Verification
 */

/** The verdict when verification could not even start (a fetch failed, say). */
export function notVerified(why) {
  return { state: 'not-verified', verdict: `Not verified: ${why}`, checks: [] };
}

const short = (hex) => `${hex.slice(0, 16)}…`;

/**
 * Verifies one event end to end. Never throws: each check that cannot be carried out fails
 * with the reason, so nothing short of every check passing reads "Intact".
 *
 * @param {object} proven the answer of GET /v1/events/{id}?record=true:
 *   {event, proof: {leaf_index, tree_size, hashes}, checkpoint: {origin, tree_size,
 *   root_hash, signed_at, note}, record}
 * @param {object} logKey the answer of GET /v1/public-key: {origin, public_key, vkey, ...}
 * @param {string} [expectedId] the id the page asked for
 * @returns {Promise<Verification>}
 */
export async function verifyEvent(proven, logKey, expectedId) {
  const checks = [];
  const run = async (id, label, body) => {
    const check = { id, label, ok: false, unchecked: false, detail: '' };
    checks.push(check);
    try {
      const outcome = await body(check);
      check.ok = outcome.ok === true;
      check.detail = outcome.detail;
    } catch (error) {
      check.unchecked = true;
      check.detail = `could not be checked: ${error?.message ?? error}`;
    }
  };

  const { event, proof, checkpoint, record } = proven ?? {};
  let computedLeaf = null;
  let note = null;

  await run('leaf', 'Leaf hash', async () => {
    if (typeof record !== 'string') throw new Error('the server sent no record');
    computedLeaf = await leafHash(record);
    const hex = bytesToHex(computedLeaf);
    if (typeof event?.leaf_hash !== 'string' || event.leaf_hash.toLowerCase() !== hex) {
      return {
        ok: false,
        detail: `the record hashes to ${short(hex)}, not to the leaf hash ${short(String(event?.leaf_hash))} the log stored: the record was changed after it was written`,
      };
    }
    return { ok: true, detail: `SHA-256(0x00 ‖ record) = ${short(hex)}, computed here` };
  });

  await run('signature', 'Checkpoint signature', async (check) => {
    const outcome = await checkSignedCheckpoint(checkpoint, logKey);
    note = outcome.note;
    check.label = `Checkpoint signature by ${outcome.keyName}`;
    return outcome;
  });

  await run('inclusion', 'Inclusion proof', async (check) => {
    if (!note) throw new Error('there is no signed checkpoint to prove against');
    check.label = `Inclusion proof to tree size ${note.treeSize}`;
    if (!computedLeaf) throw new Error('there is no leaf hash to start from');
    if (!proof || !Array.isArray(proof.hashes)) throw new Error('the server sent no proof');
    if (String(proof.tree_size) !== String(note.treeSize)) {
      return { ok: false, detail: `the proof is for tree size ${proof.tree_size}, the signed checkpoint for ${note.treeSize}` };
    }
    const path = proof.hashes.map((h) => hexToBytes(h));
    const root = await rootFromInclusionProof(proof.leaf_index, proof.tree_size, computedLeaf, path);
    if (root === null) {
      return { ok: false, detail: `the proof does not fit leaf ${proof.leaf_index} of a tree of ${proof.tree_size}` };
    }
    if (!equalBytes(root, note.root)) {
      return {
        ok: false,
        detail: `the record's leaf leads to root ${short(bytesToHex(root))}, not to the signed root ${short(bytesToHex(note.root))}`,
      };
    }
    return {
      ok: true,
      detail: `leaf ${proof.leaf_index} → root ${short(bytesToHex(root))} through ${path.length} hash${path.length === 1 ? '' : 'es'}, equal to the signed root`,
    };
  });

  await run('record', 'Record matches the shown event', async () => {
    if (typeof record !== 'string') throw new Error('the server sent no record');
    const parsed = JSON.parse(record);
    if (expectedId !== undefined && parsed?.id !== expectedId) {
      return { ok: false, detail: `the record is of event ${parsed?.id}, not of ${expectedId}` };
    }
    if (proof && parsed?.seq !== Number(proof.leaf_index) + 1) {
      return { ok: false, detail: `the record has seq ${parsed?.seq}, the proof is for leaf ${proof.leaf_index} (seq ${Number(proof.leaf_index) + 1})` };
    }
    const { problem, sealed } = compareRecordWithEvent(parsed, event);
    if (problem) return { ok: false, detail: problem };
    const fields = Object.keys(parsed).length;
    const sealedNote = sealed.length
      ? `; ${sealed.join(', ')} encrypted at rest: their ciphertext is what is hashed and proven, and the opened values shown cannot be checked in the browser`
      : '';
    return { ok: true, detail: `all ${fields} fields of the record equal the event shown${sealedNote}` };
  });

  // Display order: what is hashed, where it sits, who signed, what is shown.
  const order = ['leaf', 'inclusion', 'signature', 'record'];
  checks.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  // A check that found a mismatch outweighs one that could not be carried out; either way
  // nothing short of four passes reads "Intact".
  const mismatch = checks.find((c) => !c.ok && !c.unchecked);
  if (mismatch) return { state: 'not-intact', verdict: `NOT intact: ${mismatch.detail}`, checks };
  const unchecked = checks.find((c) => !c.ok);
  if (unchecked) return { state: 'not-verified', verdict: `Not verified: ${unchecked.label.toLowerCase()} ${unchecked.detail}`, checks };
  return { state: 'intact', verdict: 'Intact', checks };
}
