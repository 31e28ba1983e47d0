"""A plaintext TCP echo server: the target behind both tunnels in bench/run.py's tunnel phase.

Usage: ``plain_echo.py`` — prints ``READY <port>`` once listening on 127.0.0.1; exits at end of stdin.  An
asyncio protocol on uvloop with flow control both ways (reading pauses while the socket's send buffer is full),
so the target never limits what a tunnel can relay and holds no per-connection buffers of its own.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close once the peer finished sending (its data was echoed already)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=4096)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        print("OK", flush=True)
    server.close()


if __name__ == "__main__":
    uvloop.run(main())
