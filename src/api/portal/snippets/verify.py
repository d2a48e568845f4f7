"""Receives webhookd deliveries and verifies their Standard Webhooks v1 signatures.

Run: WEBHOOK_SECRET=whsec_... PORT=8000 python3 verify.py   (Python 3.9+, standard library)
"""
import base64
import hashlib
import hmac
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The key is the base64 after "whsec_", decoded; not the secret's text itself.
KEY = base64.b64decode(os.environ["WEBHOOK_SECRET"].removeprefix("whsec_"))
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
    # Sign the raw bytes as received: parsed and re-serialized JSON would differ.
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest())
    # During a secret rotation several entries come, one per secret: any one may match.
    for entry in signatures.split():
        version, _, signature = entry.partition(",")
        # compare_digest takes as long wherever the two differ, so timing leaks nothing.
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return None
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
