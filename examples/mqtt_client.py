"""MQTT over TLS with paho-mqtt and a tlskit context: mutual TLS through a real broker, or one started here.

With --broker HOST:PORT the client talks to a broker such as mosquitto configured by examples/mosquitto.conf:
client certificates required (``require_certificate true``) and each certificate's common name used as the
MQTT user name (``use_identity_as_username true``).  Without --broker, the program starts a broker in this
process first: amqtt, a pure-Python MQTT broker, behind tlskit's own TLS server with the same rules, so the
example runs on a machine with nothing else installed.

The client connects with ``tlskit.client_context(ca=..., cert=..., key=...)`` (paho's ``tls_set_context``),
subscribes to --topic, publishes --message on it, prints the message when the broker delivers it back, and
disconnects.  A broker that refuses the client certificate is explained in tlskit's words; exit status 1.

    python examples/make_pki.py
    python examples/mqtt_client.py                                   # embedded broker
    python examples/mqtt_client.py --cert pki/mallory.pem --key pki/mallory-key.pem   # refused
    (cd pki && mosquitto -c ../examples/mosquitto.conf) &
    python examples/mqtt_client.py --broker localhost:8883
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
import threading
from typing import Any

import paho.mqtt.client as mqtt
from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

import tlskit

# -- the embedded broker: amqtt, with tlskit's TLS server in front -----------------------------------------------


class IdentityAsUsername(BaseAuthPlugin):
    """mosquitto's ``use_identity_as_username``: the client certificate's common name is the MQTT user name."""

    async def authenticate(self, *, session: Session) -> bool:
        peer = tlskit.peer_info(session.ssl_object)  # the TLSConnection handed over by TLSWriter below
        session.username = peer.peer_cn
        return peer.authorized and session.username is not None


class TLSReader(ReaderAdapter):
    """amqtt reads from a tlskit connection."""

    def __init__(self, conn: tlskit.TLSConnection) -> None:
        self.conn = conn

    async def read(self, n: int = -1) -> bytes:
        return await (self.conn.read() if n < 0 else self.conn.readexactly(n))

    def feed_eof(self) -> None:
        pass


class TLSWriter(WriterAdapter):
    """amqtt writes to a tlskit connection."""

    def __init__(self, conn: tlskit.TLSConnection) -> None:
        self.conn = conn

    def write(self, data: bytes) -> None:
        if not self.conn.closed:
            self.conn.write_nowait(data)

    async def drain(self) -> None:
        await self.conn.drain()

    def get_peer_info(self) -> tuple[str, int] | None:
        address = self.conn.remote_address
        return (address[0], address[1]) if address else None

    def get_ssl_info(self) -> Any:
        return self.conn  # what IdentityAsUsername gets as session.ssl_object

    async def close(self) -> None:
        await self.conn.close()


async def start_embedded_broker(args: argparse.Namespace) -> tuple[Broker, tlskit.Server]:
    """amqtt with an external listener fed by ``tlskit.start_server`` (client certificates required)."""
    broker = Broker(
        {
            "listeners": {"default": {"type": "external"}},
            "plugins": {f"{__name__}.IdentityAsUsername": {}},
        }
    )
    await broker.start()
    context = tlskit.server_context(
        cert=args.server_cert, key=args.server_key, ca=args.ca, client_auth=tlskit.ClientAuth.REQUIRED
    )

    async def handler(conn: tlskit.TLSConnection) -> None:
        await broker.external_connected(TLSReader(conn), TLSWriter(conn), "default")

    # A refused client is logged by tlskit (logger "tlskit.server") with the reason.
    server = await tlskit.start_server(handler, "127.0.0.1", 0, context=context)
    print(f"broker: amqtt behind tlskit on 127.0.0.1:{server.port} (client certificates required)", flush=True)
    return broker, server


# -- the client: paho-mqtt with a tlskit context ------------------------------------------------------------------


class KeepErrors(logging.Handler):
    """paho logs why a connection broke, then reports only "connection lost": keep the exception it logged."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.errors.extend(a for a in args if isinstance(a, BaseException))


def run_client(args: argparse.Namespace, host: str, port: int) -> int:
    context = tlskit.client_context(ca=args.ca, cert=args.cert, key=args.key)
    kept = KeepErrors()
    log = logging.getLogger("mqtt_client.paho")
    log.addHandler(kept)
    log.propagate = False
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id)
    client.enable_logger(log)
    client.tls_set_context(context)
    done = threading.Event()
    outcome: dict[str, str] = {}

    def on_connect(client: mqtt.Client, _: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            outcome["refused"] = str(reason)
            done.set()
            return
        server = tlskit.peer_info(client.socket())
        print(f"connected to {host}:{port} ({server.peer_cn}, {server.protocol})", flush=True)
        client.subscribe(args.topic, qos=1)

    def on_subscribe(client: mqtt.Client, _: Any, mid: int, reasons: Any, properties: Any) -> None:
        client.publish(args.topic, args.message, qos=1)

    def on_message(client: mqtt.Client, _: Any, message: mqtt.MQTTMessage) -> None:
        print(f"received on {message.topic}: {message.payload.decode(errors='replace')}", flush=True)
        outcome["received"] = "yes"
        done.set()

    def on_disconnect(client: mqtt.Client, _: Any, flags: Any, reason: Any, properties: Any) -> None:
        done.set()

    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    client.on_message, client.on_disconnect = on_message, on_disconnect
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        kept.errors.append(exc)
    else:
        client.loop_start()
        done.wait(args.timeout)
        client.disconnect()
        client.loop_stop()
    if "received" in outcome:
        return 0
    if "refused" in outcome:
        print(f"mqtt_client: the broker refused the session: {outcome['refused']}", file=sys.stderr)
        return 1
    # The stream ended with nothing said: to tlskit that is an EOF after the handshake.
    failure = kept.errors[-1] if kept.errors else EOFError("the broker closed the connection")
    error = tlskit.tls_error(failure, host=host, sent_cert=True)
    print(f"mqtt_client: {error.message}\n  code: {error.code}\n  fix: {error.fix}", file=sys.stderr)
    return 1


async def main(args: argparse.Namespace) -> int:
    if args.broker:
        host, _, port = args.broker.rpartition(":")
        return await asyncio.to_thread(run_client, args, host.strip("[]"), int(port))
    broker, server = await start_embedded_broker(args)
    try:
        return await asyncio.to_thread(run_client, args, "localhost", server.port)
    finally:
        await server.close()
        await broker.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", metavar="HOST:PORT", help="an MQTT broker over TLS (default: start amqtt here)")
    parser.add_argument("--ca", default="pki/ca/ca.pem", help="CA of the broker and the clients (pki/ca/ca.pem)")
    parser.add_argument("--cert", default="pki/alice.pem", help="client certificate (default pki/alice.pem)")
    parser.add_argument("--key", default="pki/alice-key.pem", help="its key (default pki/alice-key.pem)")
    parser.add_argument("--server-cert", default="pki/server.pem", help="embedded broker's certificate")
    parser.add_argument("--server-key", default="pki/server-key.pem", help="embedded broker's key")
    parser.add_argument("--topic", default="tlskit/example", help="topic (default tlskit/example)")
    parser.add_argument("--message", default="hello over mutual TLS", help="what to publish")
    parser.add_argument("--client-id", default="", help="MQTT client id (default: the broker picks one)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the message (default 10)")
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    sys.exit(asyncio.run(main(parser.parse_args())))
