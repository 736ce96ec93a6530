// Socket fan-out benchmark: N socket.io-client connections (WebSocket), one user each; every
// second one progress message per user is PUBLISHed on the Redis channel; each client measures
// the delay from publish to its `progress_update`. Prints one JSON object with the figures.
// Usage: node bench_sockets.mjs <api-url> <redis-url> <channel> <jwt-secret> <users-file> <seconds>
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { io } from "socket.io-client";
import { createClient } from "redis";

const [url, redisUrl, channel, secret, usersFile, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg);
const users = readFileSync(usersFile, "utf8").split("\n").map((s) => s.trim()).filter(Boolean);

const b64 = (s) => Buffer.from(s).toString("base64url");
const sign = (userId) => {
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64(JSON.stringify({ userId, email: `${userId}@bench.local`, role: "USER", iat: now, exp: now + 3600 }));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
};

const latencies = [];
let connected = 0;
let failed = 0;
const sockets = users.map((userId) => {
  const s = io(url, { auth: { token: sign(userId) }, transports: ["websocket"], reconnection: false, forceNew: true });
  s.on("connect", () => connected++);
  s.on("connect_error", () => failed++);
  s.on("progress_update", (p) => latencies.push(Date.now() - p.data.sentAt));
  return s;
});

const deadline = Date.now() + 60_000;
while (connected + failed < users.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));

const pub = createClient({ url: redisUrl });
await pub.connect();
let expected = 0;
for (let i = 0; i < seconds; i++) {
  const tick = Date.now();
  await Promise.all(users.map((userId) => {
    expected++;
    return pub.publish(channel, JSON.stringify({
      media_id: "bench", user_id: userId, event: "BENCH_TICK", message: `tick ${i}`, data: { sentAt: Date.now() },
    }));
  }));
  const spent = Date.now() - tick;
  if (spent < 1000) await new Promise((r) => setTimeout(r, 1000 - spent));
}
const drainUntil = Date.now() + 5000;
while (latencies.length < expected && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 50));
await pub.quit();
sockets.forEach((s) => s.close());

latencies.sort((a, b) => a - b);
const q = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null);
console.log(JSON.stringify({ connections: connected, connectFailures: failed, expected, delivered: latencies.length,
  p50: q(0.5), p99: q(0.99), max: latencies.at(-1) ?? null }));
process.exit(0);
