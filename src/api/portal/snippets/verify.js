// Receives webhookd deliveries and verifies their Standard Webhooks v1 signatures.
// Run: WEBHOOK_SECRET=whsec_... PORT=8000 node verify.js   (Node 18+, no packages)
"use strict";
const crypto = require("crypto");
const http = require("http");

// The key is the base64 after "whsec_", decoded; not the secret's text itself.
const key = Buffer.from(process.env.WEBHOOK_SECRET.replace(/^whsec_/, ""), "base64");
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
  // Sign the raw bytes as received: parsed and re-serialized JSON would differ.
  const expected = Buffer.from(
    crypto.createHmac("sha256", key).update(`${id}.${timestamp}.`).update(body).digest("base64"),
  );
  // During a secret rotation several entries come, one per secret: any one may match.
  for (const entry of signatures.split(" ")) {
    if (!entry.startsWith("v1,")) continue;
    const given = Buffer.from(entry.slice(3));
    // timingSafeEqual takes as long wherever the two differ (and throws on unequal lengths).
    if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) return null;
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
