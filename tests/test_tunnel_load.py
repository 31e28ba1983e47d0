"""Long load tests of the tunnel (``pytest -m load``; ``make test`` runs their bounded versions in test_tunnel.py).

- Reloads every half second for 20 s while 8 clients keep connecting: not one failed connection.
- 1 GiB pushed at a target that reads nothing for a while: the process's memory stays where it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from conftest import PKI
from test_tunnel import run, server_spec
from tlskit import TLSError, client_context, connect
from tlskit.tools.tunnel import TunnelSpec
from tunnel_util import port_of, target, tunnels

pytestmark = pytest.mark.load


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_reload_every_half_second_under_load_for_20_seconds(pki: PKI, tmp_path: Path) -> None:
    cert, key = tmp_path / "s.pem", tmp_path / "s-key.pem"
    cert.write_bytes(pki.server_pem.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())

    async def main() -> None:
        async with target("echo") as t:
            spec = TunnelSpec(mode="server", listen="127.0.0.1:0", target=f"127.0.0.1:{t.port}", cert=cert, key=key)
            async with tunnels(spec, watch_interval=0.1) as group:
                port = port_of(group)
                stop = asyncio.Event()
                failures: list[str] = []
                done = 0

                async def load() -> None:
                    nonlocal done
                    ctx = client_context(ca=pki.root_pem)
                    while not stop.is_set():
                        try:
                            conn = await connect("127.0.0.1", port, context=ctx, server_name="localhost")
                            await conn.write(b"y" * 4096)
                            assert await conn.readexactly(4096) == b"y" * 4096
                            await conn.close()
                            done += 1
                        except (OSError, TLSError, AssertionError, asyncio.IncompleteReadError) as exc:
                            failures.append(repr(exc))

                clients = [asyncio.create_task(load()) for _ in range(8)]
                for i in range(40):
                    await asyncio.sleep(0.5)
                    if i % 2:
                        group.reload()
                    else:
                        pki.ca.issue(["localhost"]).write(tmp_path / f"n{i}")
                        os.replace(tmp_path / f"n{i}-key.pem", key)
                        os.replace(tmp_path / f"n{i}.pem", cert)
                stop.set()
                await asyncio.gather(*clients)
        assert failures == [] and done > 200, (done, failures[:3])

    run(main())


def test_a_gigabyte_at_a_stalled_target_does_not_grow_memory(pki: PKI) -> None:
    total = 1 << 30
    block = os.urandom(1 << 20)

    async def main() -> None:
        async with target("hold") as t, tunnels(server_spec(pki, t.port)) as group:
            before = rss_kib()
            conn = await connect("127.0.0.1", port_of(group), context=client_context(ca=pki.root_pem),
                                 server_name="localhost")  # fmt: skip
            digest = hashlib.sha256()
            peak = 0

            async def push() -> None:
                for _ in range(total >> 20):
                    digest.update(block)
                    await conn.write(block)
                conn.write_eof()

            pusher = asyncio.create_task(push())
            for _ in range(40):  # the target holds for 2 s: everything else must wait at the high-water marks
                await asyncio.sleep(0.05)
                peak = max(peak, rss_kib() - before)
            t.release()
            answer = b""
            while chunk := await conn.read():
                answer += chunk
                peak = max(peak, rss_kib() - before)
            await pusher
            await conn.close()
            assert answer == f"got {total} bytes sha256 {digest.hexdigest()}".encode()
            assert peak < 64 * 1024, f"memory grew by {peak} KiB"

    run(main())
