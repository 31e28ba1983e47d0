// A Node `tls` client for tlskit's interop tests.  Usage: node client.js '<json config>'
//
// Config: {host, port, ca, key, cert, servername, alpn: [..], minVersion, maxVersion,
//          mode: "echo" | "json", count, delimiter, text}
// Prints "CONN {json}" (what Node sees after the handshake), then in echo mode "ECHO <text>" once the text
// came back; in json mode it sends `count` messages {seq, from: "node"} each followed by the delimiter and
// prints "MSG {json}" per message received, ending after `count` of them.  Exit 0 on a clean end.
"use strict";
const fs = require("fs");
const tls = require("tls");

const cfg = JSON.parse(process.argv[process.argv.length - 1]);
const read = (p) => (p ? fs.readFileSync(p) : undefined);
const delimiter = cfg.delimiter ?? "\ufffd";

const socket = tls.connect({
  host: cfg.host ?? "127.0.0.1",
  port: cfg.port,
  ca: read(cfg.ca),
  key: read(cfg.key),
  cert: read(cfg.cert),
  servername: cfg.servername,
  ALPNProtocols: cfg.alpn,
  minVersion: cfg.minVersion ?? "TLSv1.2",
  maxVersion: cfg.maxVersion ?? "TLSv1.3",
});
const timeout = setTimeout(() => {
  console.log("TIMEOUT");
  process.exit(3);
}, cfg.timeoutMs ?? 15000);

socket.on("error", (err) => {
  console.log("ERROR " + (err.code || "") + " " + err.message);
  process.exit(2);
});

socket.on("secureConnect", () => {
  const peer = socket.getPeerCertificate();
  console.log(
    "CONN " +
      JSON.stringify({
        authorized: socket.authorized,
        authorizationError: socket.authorizationError ? String(socket.authorizationError) : null,
        protocol: socket.getProtocol(),
        cipher: socket.getCipher().standardName,
        alpn: socket.alpnProtocol || null,
        peerCN: peer && peer.subject ? peer.subject.CN : null,
      }),
  );
  socket.setEncoding("utf8");
  let buffered = "";
  if (cfg.mode === "json") {
    const count = cfg.count ?? 10;
    let received = 0;
    for (let seq = 0; seq < count; seq++) socket.write(JSON.stringify({ seq, from: "node" }) + delimiter);
    socket.on("data", (chunk) => {
      buffered += chunk;
      let at;
      while ((at = buffered.indexOf(delimiter)) >= 0) {
        console.log("MSG " + JSON.stringify(JSON.parse(buffered.slice(0, at))));
        buffered = buffered.slice(at + delimiter.length);
        received += 1;
        if (received === count) finish();
      }
    });
  } else {
    const text = cfg.text ?? "hello from node";
    socket.write(text);
    socket.on("data", (chunk) => {
      buffered += chunk;
      if (buffered.includes(text)) {
        console.log("ECHO " + text);
        finish();
      }
    });
  }
});

function finish() {
  clearTimeout(timeout);
  socket.end();
  socket.on("close", () => process.exit(0));
}
