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
from test_tunnel import server_spec
from tlskit import client_context, connect
from tunnel_util import port_of, reload_under_load, run, target, tunnels

pytestmark = pytest.mark.load


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_reload_every_half_second_under_load_for_20_seconds(pki: PKI, tmp_path: Path) -> None:
    result = run(reload_under_load(pki, tmp_path, clients=8, reloads=40, interval=0.5, size=4096, watch_interval=0.1))
    assert result.failures == [], result.failures[:3]
    assert len(result.after_reload) == 40 and all(result.after_reload), result.after_reload


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
