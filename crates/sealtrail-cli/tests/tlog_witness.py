#!/usr/bin/env python3
"""A C2SP tlog-witness (https://c2sp.org/tlog-witness) for the witness tests, written
without Sealtrail code: it checks each checkpoint's signature with the log's public key and
the RFC 9162 consistency proof from the size it holds (both from tools/verify_evidence.py),
keeps its state in a file (fsync'd, renamed), and answers with a cosignature/v1 line
(https://c2sp.org/tlog-cosignature).

    python3 tlog_witness.py --log-key VKEY --state FILE [--name NAME]

Prints `listening on http://127.0.0.1:PORT` once it serves. Endpoints:

    POST /add-checkpoint   the protocol: 200 + cosignature, 409 + text/x.tlog.size,
                           400 malformed, 403 bad signature, 422 inconsistent proof
    GET  /checkpoint       the newest checkpoint it accepted (404 before any)
    GET  /_state           JSON: size, accepted, conflicts, refused, faults left
    POST /_fail            JSON {"status": 503, "count": 2}: answer the next pushes so
"""

import argparse
import base64
import hashlib
import json
import os
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tools")
sys.path.insert(0, TOOLS)

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402
from verify_evidence import Vkey, verify_consistency  # noqa: E402

MAX_BODY = 64 * 1024
MAX_PROOF_LINES = 63


class Witness:
    def __init__(self, log_key, state_path, name):
        self.log = Vkey(log_key)
        self.state_path = state_path
        self.name = name
        self.key = Ed25519PrivateKey.generate()
        self.lock = threading.Lock()
        self.counts = {"accepted": 0, "conflicts": 0, "refused": 0}
        self.faults = []
        try:
            with open(state_path) as f:
                self.state = json.load(f)
        except FileNotFoundError:
            self.state = {"size": 0, "root": "", "note": ""}

    def persist(self):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def cosign(self, note):
        body = note[: note.find("\n\n") + 1]
        now = int(time.time())
        message = f"cosignature/v1\ntime {now}\n{body}".encode()
        public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        key_id = hashlib.sha256(self.name.encode() + b"\n\x04" + public).digest()[:4]
        blob = key_id + struct.pack(">Q", now) + self.key.sign(message)
        return f"\u2014 {self.name} {base64.b64encode(blob).decode()}\n"

    def add_checkpoint(self, text):
        """(status, content type, body) for one add-checkpoint request."""
        with self.lock:
            if self.faults:
                status = self.faults.pop(0)
                return status, "text/plain", f"injected {status}\n"
        head, sep, note = text.partition("\n\n")
        lines = head.split("\n")
        if not sep or not lines[0].startswith("old "):
            return 400, "text/plain", "expected 'old N', proof lines, a blank line, a note\n"
        try:
            old = int(lines[0][4:])
            proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
        except ValueError as e:
            return 400, "text/plain", f"malformed request: {e}\n"
        if len(proof) > MAX_PROOF_LINES or any(len(p) != 32 for p in proof):
            return 400, "text/plain", "malformed consistency proof\n"
        try:
            size, root = self.log.verify(note)
        except ValueError as e:
            self.counts["refused"] += 1
            return 403, "text/plain", f"{e}\n"
        with self.lock:
            held = self.state["size"]
            if old != held:
                self.counts["conflicts"] += 1
                return 409, "text/x.tlog.size", f"{held}\n"
            if size < old:
                return 400, "text/plain", "the checkpoint is smaller than the old size\n"
            if old == 0:
                consistent = not proof
            else:
                held_root = base64.b64decode(self.state["root"])
                consistent = verify_consistency(old, size, held_root, root, proof)
            if not consistent:
                self.counts["refused"] += 1
                return 422, "text/plain", "the consistency proof does not verify\n"
            self.state = {"size": size, "root": base64.b64encode(root).decode(), "note": note}
            self.persist()
            self.counts["accepted"] += 1
            return 200, "text/plain", self.cosign(note)


def handler(witness):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, content_type, body):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            length = int(self.headers.get("Content-Length", "0"))
            if length > MAX_BODY:
                return None
            return self.rfile.read(length).decode()

        def do_POST(self):
            text = self.body()
            if text is None:
                return self.answer(400, "text/plain", "body too large\n")
            if self.path == "/add-checkpoint":
                return self.answer(*witness.add_checkpoint(text))
            if self.path == "/_fail":
                fault = json.loads(text)
                with witness.lock:
                    witness.faults.extend([int(fault["status"])] * int(fault["count"]))
                return self.answer(200, "text/plain", "ok\n")
            return self.answer(404, "text/plain", "not found\n")

        def do_GET(self):
            if self.path == "/checkpoint":
                if not witness.state["note"]:
                    return self.answer(404, "text/plain", "no checkpoint yet\n")
                return self.answer(200, "text/plain", witness.state["note"])
            if self.path == "/_state":
                with witness.lock:
                    state = dict(witness.counts, size=witness.state["size"])
                    state["faults_left"] = len(witness.faults)
                return self.answer(200, "application/json", json.dumps(state))
            return self.answer(404, "text/plain", "not found\n")

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-key", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--name", default="witness.test/w1")
    args = parser.parse_args()
    witness = Witness(args.log_key, args.state, args.name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(witness))
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
