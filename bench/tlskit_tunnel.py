"""``tlskit tunnel server`` for bench/run.py: the library the command runs, with the command's logging.

Usage: ``tlskit_tunnel.py CERT KEY TARGET_PORT`` — prints ``READY <port>`` once listening on 127.0.0.1; ``gc``
on stdin runs ``gc.collect()`` and answers ``OK``; end of stdin drains and exits.  Each connection is logged
as one line on stderr, as ``tlskit tunnel server`` does (stunnel, at its default level, logs each one too).
"""

from __future__ import annotations

import asyncio
import sys

from tlskit_echo import control

from tlskit.cli.common import to_flags
from tlskit.cli.tunnel_cmds import FLAGS, _setup_logging
from tlskit.net.server import run
from tlskit.tools.tunnel import TunnelGroup, TunnelSpec


async def main(cert: str, key: str, target: int) -> None:
    spec = TunnelSpec(mode="server", listen="127.0.0.1:0", target=f"127.0.0.1:{target}", cert=cert, key=key)
    group = TunnelGroup([spec])
    await group.start()
    print(f"READY {group.tunnels[0].address[1]}", flush=True)
    await control(asyncio.Event())
    await group.close(deadline=1.0)


if __name__ == "__main__":
    _setup_logging("text", lambda text: to_flags(text, FLAGS))
    run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
