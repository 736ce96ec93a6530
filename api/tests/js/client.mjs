// A socket.io-client session for the integration tests. Prints one JSON line per happening:
//   {"kind":"connect","transport":"websocket"} | {"kind":"connect_error","message":"…"} |
//   {"kind":"event","event":"progress_update","payload":{…},"at":<ms since epoch>}
// Usage: node client.mjs <url> [--token T] [--transports polling|websocket|both] [--seconds N] [--busy-ms N]
//   [--emit-bytes N]
// --busy-ms keeps the event loop busy for N ms after each event, like a page re-rendering on
// every event: a slow reader. --emit-bytes emits one `noise` event carrying N bytes once connected.
import { io } from "socket.io-client";

const args = process.argv.slice(2);
const url = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const token = opt("token", undefined);
const transports = { polling: ["polling"], websocket: ["websocket"], both: ["polling", "websocket"] }[opt("transports", "both")];
const seconds = Number(opt("seconds", "60"));
const origin = opt("origin", undefined);
const emitBytes = Number(opt("emit-bytes", "0"));
const busyMs = Number(opt("busy-ms", "0"));

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const socket = io(url, {
  auth: token === undefined ? {} : { token },
  transports,
  reconnection: false,
  extraHeaders: origin ? { origin } : undefined,
});
socket.on("connect", () => {
  out({ kind: "connect", transport: socket.io.engine.transport.name });
  socket.io.engine.on("upgrade", (t) => out({ kind: "upgrade", transport: t.name }));
  if (emitBytes > 0) socket.emit("noise", "x".repeat(emitBytes));
});
socket.on("connect_error", (err) => {
  out({ kind: "connect_error", message: err.message });
  process.exit(0);
});
socket.onAny((event, payload) => {
  out({ kind: "event", event, payload, at: Date.now() });
  if (busyMs > 0) {
    const until = Date.now() + busyMs;
    while (Date.now() < until) {}
  }
});
socket.on("disconnect", (reason) => out({ kind: "disconnect", reason }));
// Stop on stdin close (the test ended) or after the time limit.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
setTimeout(() => process.exit(0), seconds * 1000);
