// Node `tls` echo server for bench/run.py.  Usage: node --expose-gc node_echo.js CERT KEY
//
// Same settings as the tlskit server: TLS 1.3 only, the same groups (X25519, P-256, P-384) and TLS 1.3 suites
// (Node's defaults, which are also OpenSSL's), client's cipher choice.  The number of TLS 1.3 session tickets per
// handshake has no option in Node's API: bench/run.py starts Node with `--openssl-config=FILE`, an OpenSSL config
// whose `NumTickets` (an SSL_CONF command, applied to every SSL_CTX through `system_default`) is tlskit's count,
// and checks the count each server really sends before measuring.
// Prints "READY <port>" once listening on 127.0.0.1 (OS-picked port).  Commands on stdin, one per line:
// "gc" runs a full garbage collection then prints "OK" (so idle memory is measured after collection, as for
// the Python servers); end of stdin exits.
"use strict";
const fs = require("fs");
const tls = require("tls");

const [certPath, keyPath] = process.argv.slice(2);

const server = tls.createServer(
  {
    cert: fs.readFileSync(certPath),
    key: fs.readFileSync(keyPath),
    minVersion: "TLSv1.3",
    maxVersion: "TLSv1.3",
    ecdhCurve: "X25519:P-256:P-384",
    ciphersuites: "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
  },
  (socket) => {
    socket.on("error", () => {}); // peers that vanish (s_time) must not crash the server
    socket.pipe(socket);
  },
);
server.on("tlsClientError", () => {});
server.listen(0, "127.0.0.1", 4096, () => console.log("READY " + server.address().port));

let pending = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  pending += chunk;
  let nl;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const command = pending.slice(0, nl).trim();
    pending = pending.slice(nl + 1);
    if (command === "gc" && typeof global.gc === "function") global.gc();
    console.log("OK");
  }
});
process.stdin.on("end", () => process.exit(0));
