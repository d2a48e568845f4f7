// Receives webhookd deliveries and verifies their Standard Webhooks v1a (Ed25519) signatures.
// Run: WEBHOOK_SECRET=whpk_... PORT=8000 node verify_ed25519.js   (Node 18+, no packages)
"use strict";
const crypto = require("crypto");
const http = require("http");

// The key is the base64 after "whpk_", decoded: the endpoint's 32-byte public key. It only
// verifies; the private key that signs never leaves webhookd.
const raw = Buffer.from(process.env.WEBHOOK_SECRET.replace(/^whpk_/, ""), "base64");
if (raw.length !== 32) throw new Error("WEBHOOK_SECRET is not a whpk_ public key");
// Node takes a raw Ed25519 key wrapped in the fixed DER header of its SubjectPublicKeyInfo.
const key = crypto.createPublicKey({
  key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]),
  format: "der",
  type: "spki",
});
// A captured delivery replayed later is refused: its signed timestamp has gone stale.
const TOLERANCE_SECONDS = 5 * 60;

// null when the delivery is authentic, else why it is not.
function check(headers, body) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !timestamp || !signatures) return "missing webhook headers";
  if (!/^\d+$/.test(timestamp)) return "malformed timestamp";
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) return "timestamp too old or too new";
  // Verify the raw bytes as received: parsed and re-serialized JSON would differ.
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body]);
  // During a key rotation several entries come, one per key: any one may verify.
  for (const entry of signatures.split(" ")) {
    if (!entry.startsWith("v1a,")) continue;
    try {
      // Ed25519 hashes inside the algorithm, so no digest is named (null).
      if (crypto.verify(null, signed, key, Buffer.from(entry.slice(4), "base64"))) return null;
    } catch (_) {
      // A malformed signature is just one that does not verify.
    }
  }
  return "no matching signature";
}

http
  .createServer((req, res) => {
    if (req.method !== "POST") return res.writeHead(405).end();
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const reason = check(req.headers, Buffer.concat(chunks));
      if (reason === null) {
        process.stdout.write(`verified ${req.headers["webhook-id"]}\n`);
        res.writeHead(204).end();
      } else {
        process.stdout.write(`rejected ${reason}\n`);
        res.writeHead(400).end();
      }
    });
  })
  .listen(Number(process.env.PORT), "127.0.0.1");
