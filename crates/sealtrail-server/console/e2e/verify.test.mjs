// Unit tests of the console's in-browser verification (assets/verify.js), run in Node (same
// WebCrypto) against proofs from a real server: what the log serves verifies, and every kind
// of tampering — the record, the proof, the checkpoint, the key, the event shown — fails.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  bytesToBase64,
  bytesToHex,
  compareRecordWithEvent,
  hexToBytes,
  leafHash,
  nodeHash,
  noteKeyId,
  parseCheckpointNote,
  rootFromInclusionProof,
  SEALED_PREFIX,
  verifyEvent,
} from '../assets/verify.js';
import { createSealtrailServer } from './support/sealtrail.mjs';

const LEAVES = 11; // not a power of two: proofs with lone right edges

let server;
let receipts;
let proven; // GET /v1/events/{id}?record=true of the event with changes
let logKey;

/** RFC 9162 MTH, written independently of verify.js from its definition. */
async function referenceRoot(leaves) {
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(await referenceRoot(leaves.slice(0, k)), await referenceRoot(leaves.slice(k)));
}

const copy = (value) => structuredClone(value);

before(async () => {
  server = await createSealtrailServer({ keys: { admin: { scopes: 'ingest,read' } } });
  await server.start();
  const events = [];
  for (let i = 0; i < LEAVES; i++) {
    events.push({
      tenant_id: 'bloom',
      action: i === 3 ? 'guest.dietary_restriction.updated' : 'guest.rsvp.accepted',
      resource_type: 'guest',
      resource_id: `g-${i}`,
      user_id: 'coord:ines.marques',
      severity: i === 3 ? 'warning' : 'info',
      reason: i === 3 ? 'Guest called: vegetarian, and “no cilantro” — ☕' : undefined,
      changes: i === 3 ? [{ field: 'dietary_restriction', before: 'none', after: 'vegetarian' }] : undefined,
      details: i === 3 ? { table: 7, tags: ['a', 'é'], nested: { ok: true, n: 1.5 } } : undefined,
    });
  }
  receipts = await server.ingest('admin', events);
  const answer = await server.request('admin', `/v1/events/${receipts[3].id}?record=true`);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  proven = answer.body;
  logKey = (await server.request('admin', '/v1/public-key')).body;
});

after(async () => {
  await server?.stop();
});

describe('a real proof from the server', () => {
  test('verifies as intact, every check passing', async () => {
    const result = await verifyEvent(proven, logKey, receipts[3].id);
    assert.equal(result.verdict, 'Intact', JSON.stringify(result, null, 2));
    assert.equal(result.state, 'intact');
    assert.deepEqual(result.checks.map((c) => [c.id, c.ok]), [['leaf', true], ['inclusion', true], ['signature', true], ['record', true]]);
    assert.match(result.checks.find((c) => c.id === 'inclusion').label, /^Inclusion proof to tree size \d+$/);
    assert.equal(result.checks.find((c) => c.id === 'signature').label, `Checkpoint signature by ${logKey.origin}`);
  });

  test('the leaf hash computed here is the one the server stored', async () => {
    assert.equal(bytesToHex(await leafHash(proven.record)), receipts[3].leaf_hash);
  });

  test('inclusion proofs of every leaf in every tree size lead to the RFC 9162 root', async () => {
    const leaves = receipts.map((r) => hexToBytes(r.leaf_hash));
    for (let size = 1; size <= LEAVES; size++) {
      const root = await referenceRoot(leaves.slice(0, size));
      for (let index = 0; index < size; index++) {
        const { body } = await server.request('admin', `/v1/events/${receipts[index].id}?tree_size=${size}`);
        assert.equal(body.proof.tree_size, size);
        const got = await rootFromInclusionProof(body.proof.leaf_index, size, leaves[index], body.proof.hashes.map((h) => hexToBytes(h)));
        assert.ok(got, `proof of leaf ${index} in tree ${size} has a wrong shape`);
        assert.equal(bytesToHex(got), bytesToHex(root), `leaf ${index}, tree size ${size}`);
      }
    }
  });

  test('the checkpoint note parses to the fields beside it', () => {
    const note = parseCheckpointNote(proven.checkpoint.note);
    assert.equal(note.origin, proven.checkpoint.origin);
    assert.equal(String(note.treeSize), String(proven.checkpoint.tree_size));
    assert.equal(bytesToHex(note.root), proven.checkpoint.root_hash);
    assert.equal(note.signatures.length, 1);
  });
});

describe('tampering is caught', () => {
  async function expectNotIntact(changed, failing, key = logKey) {
    const result = await verifyEvent(changed, key, receipts[3].id);
    assert.equal(result.state, 'not-intact', JSON.stringify(result, null, 2));
    assert.match(result.verdict, /^NOT intact: /);
    for (const id of failing) assert.equal(result.checks.find((c) => c.id === id).ok, false, `${id} should fail: ${JSON.stringify(result.checks)}`);
    return result;
  }

  test('an edited record (and the event shown from it) fails the leaf hash and the proof', async () => {
    const changed = copy(proven);
    changed.record = changed.record.replace('vegetarian', 'vegan');
    changed.event.changes[0].after = 'vegan';
    changed.event.reason = changed.event.reason.replace('vegetarian', 'vegan');
    const result = await expectNotIntact(changed, ['leaf', 'inclusion']);
    assert.match(result.verdict, /changed after it was written/);
  });

  test('an edited record with a matching stored leaf hash still fails the proof', async () => {
    const changed = copy(proven);
    changed.record = changed.record.replace('vegetarian', 'vegan');
    changed.event = JSON.parse(changed.record);
    changed.event.leaf_hash = bytesToHex(await leafHash(changed.record));
    await expectNotIntact(changed, ['inclusion']);
  });

  test('an event shown differently from its record fails the record check', async () => {
    const changed = copy(proven);
    changed.event.reason = 'Guest called: no restriction';
    const result = await expectNotIntact(changed, ['record']);
    assert.match(result.verdict, /reason differs/);
    const extra = copy(proven);
    extra.event.approved_by = 'someone';
    await expectNotIntact(extra, ['record']);
  });

  test('a record of another event fails even when it is intact', async () => {
    const result = await verifyEvent(proven, logKey, receipts[4].id);
    assert.equal(result.state, 'not-intact');
    assert.equal(result.checks.find((c) => c.id === 'record').ok, false);
  });

  test('a proof hash changed, one missing, or the wrong leaf index fails the proof', async () => {
    const flipped = copy(proven);
    const first = flipped.proof.hashes[0];
    flipped.proof.hashes[0] = `${first[0] === '0' ? '1' : '0'}${first.slice(1)}`;
    await expectNotIntact(flipped, ['inclusion']);

    const short = copy(proven);
    short.proof.hashes.pop();
    await expectNotIntact(short, ['inclusion']);

    const moved = copy(proven);
    moved.proof.leaf_index += 1;
    await expectNotIntact(moved, ['inclusion', 'record']);
  });

  test('a checkpoint whose JSON disagrees with its signed note fails', async () => {
    const root = copy(proven);
    root.checkpoint.root_hash = '00'.repeat(32);
    await expectNotIntact(root, ['signature']);
    const size = copy(proven);
    size.checkpoint.tree_size += 1;
    await expectNotIntact(size, ['signature']);
  });

  test('an altered note fails its signature', async () => {
    const changed = copy(proven);
    const note = parseCheckpointNote(changed.checkpoint.note);
    const forgedRoot = new Uint8Array(note.root);
    forgedRoot[0] ^= 1;
    changed.checkpoint.note = changed.checkpoint.note.replace(bytesToBase64(note.root), bytesToBase64(forgedRoot));
    changed.checkpoint.root_hash = bytesToHex(forgedRoot);
    const result = await expectNotIntact(changed, ['signature', 'inclusion']);
    assert.ok(result.checks.find((c) => c.id === 'signature').detail.includes('does not verify'));
  });

  test('another key (well formed, properly named) fails the signature', async () => {
    const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
    const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
    const id = await noteKeyId(logKey.origin, raw);
    const otherKey = {
      ...logKey,
      public_key: bytesToBase64(raw),
      vkey: `${logKey.origin}+${bytesToHex(id)}+${bytesToBase64(Uint8Array.of(1, ...raw))}`,
    };
    await expectNotIntact(proven, ['signature'], otherKey);
  });

  test('a note signed with another key under the log key id fails the signature', async () => {
    const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
    const changed = copy(proven);
    const note = parseCheckpointNote(changed.checkpoint.note);
    const signature = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, pair.privateKey, new TextEncoder().encode(note.body)));
    const keyId = note.signatures[0].keyId;
    changed.checkpoint.note = `${note.body}\n\u2014 ${note.origin} ${bytesToBase64(Uint8Array.of(...keyId, ...signature))}\n`;
    await expectNotIntact(changed, ['signature']);
  });
});

describe('what cannot be checked is never intact', () => {
  test('a missing record, proof or key reads "Not verified"', async () => {
    const noRecord = copy(proven);
    delete noRecord.record;
    for (const [answer, key] of [
      [noRecord, logKey],
      [{ ...copy(proven), proof: undefined }, logKey],
      [proven, { ...logKey, vkey: 'nonsense' }],
      [proven, undefined],
      [undefined, logKey],
    ]) {
      const result = await verifyEvent(answer, key, receipts[3].id);
      assert.notEqual(result.state, 'intact', JSON.stringify(result));
      assert.doesNotMatch(result.verdict, /^Intact/);
    }
  });

  test('a key whose id does not match its name and key is refused', async () => {
    const bad = { ...logKey, vkey: logKey.vkey.replace(/\+([0-9a-f]{8})\+/, (_, id) => `+${id === '00000000' ? '00000001' : '00000000'}+`) };
    const result = await verifyEvent(proven, bad, receipts[3].id);
    assert.equal(result.state, 'not-verified');
    assert.match(result.checks.find((c) => c.id === 'signature').detail, /id does not match/);
  });
});

describe('the record against the event shown', () => {
  test('sealed values are skipped, everything else compared', () => {
    const record = { id: 'x', reason: `${SEALED_PREFIX}t.1:reason:AAAA`, seq: 3, severity: 'info' };
    const event = { id: 'x', reason: 'opened text', seq: 3, severity: 'info', leaf_hash: 'ab' };
    assert.deepEqual(compareRecordWithEvent(record, event), { problem: null, sealed: ['reason'] });
    assert.match(compareRecordWithEvent(record, { ...event, severity: 'critical' }).problem, /severity differs/);
    assert.match(compareRecordWithEvent(record, { id: 'x', seq: 3, severity: 'info' }).problem, /lacks the field reason/);
  });

  test('sealed values inside details are skipped too, and named by their place', () => {
    const record = { id: 'x', details: { wedding_id: `${SEALED_PREFIX}t.1:/details/wedding_id:AAAA`, table: 7 } };
    const event = { id: 'x', details: { wedding_id: 'w-42', table: 7 } };
    assert.deepEqual(compareRecordWithEvent(record, event), { problem: null, sealed: ['details.wedding_id'] });
    assert.match(compareRecordWithEvent(record, { id: 'x', details: { wedding_id: 'w-42', table: 8 } }).problem, /details differs/);
    assert.match(compareRecordWithEvent(record, { id: 'x', details: { table: 7 } }).problem, /details differs/);
  });

  test('objects compare by members, not by order', () => {
    const record = { id: 'x', details: { a: 1, b: [1, { c: null }] } };
    assert.equal(compareRecordWithEvent(record, { details: { b: [1, { c: null }], a: 1 }, id: 'x' }).problem, null);
    assert.match(compareRecordWithEvent(record, { id: 'x', details: { a: 1, b: [1, { c: 0 }] } }).problem, /details differs/);
  });
});
