#!/usr/bin/env python3
"""Checks a Sealtrail evidence bundle (`sealtrail export --evidence`) without Sealtrail.

    python3 verify_evidence.py BUNDLE.tar [--public-key ORIGIN+KEYID+KEY]

Needs the Python 3 standard library and the `cryptography` package (Ed25519) only. It
implements from scratch what it checks: RFC 9162 inclusion and consistency proofs and C2SP
signed notes. It makes the same checks as `sealtrail verify --evidence` (see the bundle's
README.md): prints `ok: ...` and exits 0, or one `FAILED: ...` line per problem and exits 1.
"""

import argparse
import base64
import hashlib
import json
import sys
import tarfile

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "sealtrail-evidence/1"
SEALED_PREFIX = "sealtrail:enc:v1:"
SHREDDED = "[shredded]"
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space
ED25519 = 0x01


def sha256(data):
    return hashlib.sha256(data).digest()


def leaf_hash(data):
    return sha256(b"\x00" + data)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(size1, size2, root1, root2, proof):
    """RFC 9162 section 2.1.4.2."""
    if size1 == 0 or size1 > size2:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    path = ([root1] if size1 & (size1 - 1) == 0 else []) + list(proof)
    if not path:
        return False
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2


class Vkey:
    """A signed-note verifier key: name+hex(keyid)+base64(0x01 || Ed25519 key)."""

    def __init__(self, text):
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise ValueError("public key: expected name+keyid+key")
        self.name, keyid, key = parts
        raw = base64.b64decode(key, validate=True)
        if len(raw) != 33 or raw[0] != ED25519:
            raise ValueError("public key: not an Ed25519 signed-note key")
        self.key_id = sha256(self.name.encode() + b"\n" + raw)[:4]
        if self.key_id.hex() != keyid:
            raise ValueError("public key: key id does not match the key")
        self.key = Ed25519PublicKey.from_public_bytes(raw[1:])
        self.text = text.strip()

    def verify(self, note):
        """The note's (size, root) if a signature line by this key verifies; else raises."""
        split = note.find("\n\n")
        if split < 0:
            raise ValueError("no blank line before the signatures")
        body, signatures = note[: split + 1], note[split + 2 :]
        lines = body.split("\n")
        if len(lines) < 4 or not lines[0]:
            raise ValueError("malformed checkpoint body")
        if lines[0] != self.name:
            raise ValueError(f"checkpoint is for log {lines[0]!r}, not {self.name!r}")
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
        if len(root) != 32:
            raise ValueError("root hash is not 32 bytes")
        for line in signatures.splitlines():
            if not line.startswith(SIGNATURE_PREFIX):
                raise ValueError(f"not a signature line: {line!r}")
            name, _, blob = line[len(SIGNATURE_PREFIX) :].partition(" ")
            try:
                blob = base64.b64decode(blob, validate=True)
            except ValueError:
                continue
            if name != self.name or len(blob) != 68 or blob[:4] != self.key_id:
                continue
            try:
                self.key.verify(blob[4:], body.encode())
            except InvalidSignature:
                raise ValueError("checkpoint signature does not verify with the log's public key")
            return size, root
        raise ValueError("checkpoint signature does not verify with the log's public key")


def hashes(values, what):
    out = []
    for i, h in enumerate(values):
        try:
            b = bytes.fromhex(h)
        except (TypeError, ValueError):
            b = b""
        if len(b) != 32:
            raise ValueError(f"{what}: hash {i} ({h!r}) is not 32 bytes of hex")
        out.append(b)
    return out


def agree(path, stored, shown, counts, problems):
    """Shown equals stored, except where the record holds a sealed value."""
    if isinstance(stored, str) and stored.startswith(SEALED_PREFIX):
        counts[0] += 1
        if shown == SHREDDED:
            counts[1] += 1
    elif isinstance(stored, dict) and isinstance(shown, dict):
        for name in sorted(set(stored) | set(shown)):
            inner = f"{path}/{name}"
            if name in stored and name in shown:
                agree(inner, stored[name], shown[name], counts, problems)
            else:
                problems.append(f"{inner!r}: shown and stored members differ")
    elif isinstance(stored, list) and isinstance(shown, list) and len(stored) == len(shown):
        for i, (s, v) in enumerate(zip(stored, shown)):
            agree(f"{path}/{i}", s, v, counts, problems)
    elif stored != shown or type(stored) is not type(shown):
        problems.append(f"{path!r} is {json.dumps(shown)} in the event but {json.dumps(stored)} in the record")


def check_event(event, checkpoint, tenant):
    problems, counts = [], [0, 0]
    record_text = event["record"]
    leaf = leaf_hash(record_text.encode("utf-8"))
    if leaf.hex() != event["leaf_hash"]:
        problems.append(f"the record hashes to leaf {leaf.hex()}, not the stated {event['leaf_hash']}")
    if event["leaf_index"] + 1 != event["seq"]:
        problems.append(f"leaf_index {event['leaf_index']} is not seq - 1 (seq {event['seq']})")
    if checkpoint is not None:
        size, root = checkpoint
        try:
            proof = hashes(event["inclusion_proof"], "inclusion_proof")
            if not verify_inclusion(event["leaf_index"], size, leaf, proof, root):
                problems.append(
                    "the inclusion proof does not lead from the record's leaf to the root of "
                    f"the checkpoint's tree of {size} leaves"
                )
        except ValueError as e:
            problems.append(str(e))
    try:
        record = json.loads(record_text)
    except ValueError as e:
        problems.append(f"the record is not JSON: {e}")
        return problems, counts
    if not isinstance(record, dict):
        problems.append("the record is not a JSON object")
        return problems, counts
    if record.get("seq") != event["seq"]:
        problems.append(f"the record's seq is not {event['seq']}")
    if tenant is not None and record.get("tenant_id") != tenant:
        problems.append(f"the record's tenant_id is {json.dumps(record.get('tenant_id'))}, not the filter's {tenant!r}")
    shown = event["event"]
    if shown.get("leaf_hash") != leaf.hex():
        problems.append("the event's leaf_hash is not the record's")
    for name in shown:
        if name != "leaf_hash" and name not in record:
            problems.append(f"the event shows {name!r}, which the record lacks")
    for name, stored in record.items():
        if name not in shown:
            problems.append(f"the event lacks the record's {name!r}")
        else:
            agree(name, stored, shown[name], counts, problems)
    return problems, counts


def read_bundle(path):
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            member = archive.extractfile("evidence.json")
            if member is None:
                raise ValueError(f"{path} holds no evidence.json")
            data = member.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    evidence = json.loads(data)
    if evidence.get("format") != FORMAT:
        raise ValueError(f"evidence.json: format {evidence.get('format')!r} is not {FORMAT!r}")
    return evidence


def check(evidence, key):
    problems = []
    if key.text != evidence["log"]["vkey"].strip():
        problems.append(f"log.vkey: the bundle names key {evidence['log']['vkey']!r}, not the pinned {key.text!r}")
    notes = {}
    for what in ("checkpoint", "newest_checkpoint"):
        try:
            size, root = key.verify(evidence[what]["note"])
            if size != evidence[what]["tree_size"]:
                problems.append(f"{what}: tree_size says {evidence[what]['tree_size']} but the signed note says {size}")
            else:
                notes[what] = (size, root)
        except ValueError as e:
            problems.append(f"{what}: {e}")
    if len(notes) == 2:
        (s1, r1), (s2, r2) = notes["checkpoint"], notes["newest_checkpoint"]
        try:
            proof = hashes(evidence["consistency_proof"], "consistency_proof")
            if not verify_consistency(s1, s2, r1, r2, proof):
                problems.append(
                    f"consistency_proof: the tree of {s1} leaves is not a prefix of the newest "
                    f"checkpoint's tree of {s2} leaves"
                )
        except ValueError as e:
            problems.append(str(e))
    tenant = evidence["filter"].get("tenant_id")
    if tenant is None:
        problems.append("filter: no tenant_id (a bundle holds one tenant's events)")
    seen, ok, sealed, shredded = set(), 0, 0, 0
    for event in evidence["events"]:
        name = f"event {event['event'].get('id', '(no id)')} (seq {event['seq']})"
        found, counts = check_event(event, notes.get("checkpoint"), tenant)
        if event["seq"] in seen:
            found.insert(0, f"seq {event['seq']} appears twice")
        seen.add(event["seq"])
        if not found:
            ok, sealed, shredded = ok + 1, sealed + counts[0], shredded + counts[1]
        problems.extend(f"{name}: {p}" for p in found)
    return problems, ok, sealed, shredded, notes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="the bundle (tar) or its evidence.json")
    parser.add_argument("--public-key", help="the log's vkey, or a file holding it (pin it)")
    args = parser.parse_args()
    try:
        evidence = read_bundle(args.bundle)
        pinned = args.public_key
        if pinned is not None and "+" not in pinned:
            with open(pinned, encoding="utf-8") as f:
                text = f.read()
            try:
                answer = json.loads(text)
                pinned = answer["vkey"] if isinstance(answer, dict) else text
            except ValueError:
                pinned = text
        key = Vkey(pinned if pinned is not None else evidence["log"]["vkey"])
        problems, ok, sealed, shredded, notes = check(evidence, key)
    except (OSError, ValueError, KeyError, TypeError, tarfile.TarError) as e:
        print(f"FAILED: {e!r}" if isinstance(e, KeyError) else f"FAILED: {e}")
        return 1
    for problem in problems:
        print(f"FAILED: {problem}")
    size = lambda what: notes[what][0] if what in notes else "?"
    print(
        f"{'ok' if not problems else 'FAILED'}: {ok} of {len(evidence['events'])} events verified "
        f"({sealed} sealed values, {shredded} shredded) against the checkpoint of tree size "
        f"{size('checkpoint')}, consistent with tree size {size('newest_checkpoint')}"
    )
    if args.public_key is None:
        print("note: checked against the key written in the bundle only; pass --public-key to prove the events are the log's")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
