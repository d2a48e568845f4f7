"""Receives webhookd deliveries and verifies their Standard Webhooks v1a (Ed25519) signatures.

Run: WEBHOOK_SECRET=whpk_... PORT=8000 python3 verify_ed25519.py
     (Python 3.9+ and the cryptography package: pip install cryptography, or Debian's
     python3-cryptography; the standard library has no Ed25519)
"""
import base64
import binascii
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# The key is the base64 after "whpk_", decoded: the endpoint's 32-byte public key. It only
# verifies; the private key that signs never leaves webhookd.
KEY = Ed25519PublicKey.from_public_bytes(
    base64.b64decode(os.environ["WEBHOOK_SECRET"].removeprefix("whpk_"), validate=True)
)
# A captured delivery replayed later is refused: its signed timestamp has gone stale.
TOLERANCE_SECONDS = 5 * 60


def check(headers, body):
    """None when the delivery is authentic, else why it is not."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        return "missing webhook headers"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "malformed timestamp"
    if abs(time.time() - sent_at) > TOLERANCE_SECONDS:
        return "timestamp too old or too new"
    # Verify the raw bytes as received: parsed and re-serialized JSON would differ.
    signed = f"{msg_id}.{timestamp}.".encode() + body
    # During a key rotation several entries come, one per key: any one may verify.
    for entry in signatures.split():
        version, _, signature = entry.partition(",")
        if version != "v1a":
            continue
        try:
            KEY.verify(base64.b64decode(signature, validate=True), signed)
            return None
        except (InvalidSignature, binascii.Error, ValueError):
            continue
    return "no matching signature"


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        reason = check(self.headers, body)
        if reason is None:
            print(f"verified {self.headers['webhook-id']}", flush=True)
            self.send_response(204)
        else:
            print(f"rejected {reason}", flush=True)
            self.send_response(400)
        self.end_headers()


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Receiver).serve_forever()
