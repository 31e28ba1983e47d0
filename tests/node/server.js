// A Node `tls` server for tlskit's interop tests.  Usage: node server.js '<json config>'
//
// Config: {key, cert, ca, requestCert, rejectUnauthorized, alpn: [..], minVersion, maxVersion,
//          sni: {name: {key, cert}}, mode: "echo" | "push", count, delimiter, intervalMs}
// Prints "PORT n" once listening, then one "CONN {json}" line per secure connection (what Node sees),
// "RECV {json}" per delimited message received in push mode, and "TLSERR <message>" per failed handshake.
"use strict";
const fs = require("fs");
const tls = require("tls");

const cfg = JSON.parse(process.argv[process.argv.length - 1]);
const read = (p) => (p ? fs.readFileSync(p) : undefined);
const delimiter = cfg.delimiter ?? "\ufffd";

const server = tls.createServer({
  key: read(cfg.key),
  cert: read(cfg.cert),
  ca: read(cfg.ca),
  requestCert: !!cfg.requestCert,
  rejectUnauthorized: !!cfg.rejectUnauthorized,
  ALPNProtocols: cfg.alpn,
  minVersion: cfg.minVersion ?? "TLSv1.2",
  maxVersion: cfg.maxVersion ?? "TLSv1.3",
});
for (const [name, pair] of Object.entries(cfg.sni ?? {})) {
  server.addContext(name, { key: read(pair.key), cert: read(pair.cert) });
}

server.on("tlsClientError", (err) => console.log("TLSERR " + (err.code || "") + " " + err.message));

server.on("secureConnection", (socket) => {
  const peer = socket.getPeerCertificate();
  console.log(
    "CONN " +
      JSON.stringify({
        authorized: socket.authorized,
        authorizationError: socket.authorizationError ? String(socket.authorizationError) : null,
        protocol: socket.getProtocol(),
        cipher: socket.getCipher().standardName,
        alpn: socket.alpnProtocol || null,
        servername: socket.servername || null,
        peerCN: peer && peer.subject ? peer.subject.CN : null,
      }),
  );
  socket.on("error", (err) => console.log("SOCKERR " + err.message));
  if (cfg.mode === "push") {
    // JSON messages each terminated by the delimiter, as Node examples do with U+FFFD.
    let buffered = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk) => {
      buffered += chunk;
      let at;
      while ((at = buffered.indexOf(delimiter)) >= 0) {
        console.log("RECV " + JSON.stringify(JSON.parse(buffered.slice(0, at))));
        buffered = buffered.slice(at + delimiter.length);
      }
    });
    let seq = 0;
    const count = cfg.count ?? 10;
    const timer = setInterval(() => {
      socket.write(JSON.stringify({ seq, from: "node" }) + delimiter);
      seq += 1;
      if (seq >= count) {
        clearInterval(timer);
        // Leave the client time to send its own messages before we close.
        setTimeout(() => socket.end(), cfg.lingerMs ?? 500);
      }
    }, cfg.intervalMs ?? 10);
    socket.on("close", () => clearInterval(timer));
  } else {
    socket.pipe(socket);
  }
});

server.listen(0, cfg.host ?? "127.0.0.1", () => console.log("PORT " + server.address().port));
process.on("SIGTERM", () => process.exit(0));
