"""
A WebSocket peer written with the independent C{websockets} library
(asyncio), run in a subprocess by the interoperability tests:

    python -m twisted_streaming.test._wspeer client ws://127.0.0.1:PORT [--send COUNT SIZE SEED] [--tls PEM]
    python -m twisted_streaming.test._wspeer server [--send COUNT SIZE SEED] [--tls PEM]

A server listens on 127.0.0.1, prints C{port N}, and serves one
connection.  With C{--tls PEM} (a certificate for C{localhost} and its
key) the server serves C{wss://} with them and the client trusts only that
certificate (a C{wss://127.0.0.1} URL, checked as C{localhost}).  The peer receives messages frame by frame (a message of any
size in constant memory), counting them and hashing their payloads in
order, or with C{--send} sends C{COUNT} messages of C{SIZE} bytes from
C{random.Random(SEED)}, waiting for the connection to take each, then
closes (1000).

It prints C{open} once the connection is open, and C{ended MESSAGES BYTES
SHA256 CODE} when it has closed (C{MESSAGES} and C{BYTES} received, or
sent with C{--send}), then exits.  Commands on standard input, one a line:
C{reach N} (print C{reached N} once N messages have been received or
sent), C{pause} (stop reading), C{resume}, C{close} (the closing
handshake, code 1000), C{vanish} (abort the TCP connection), C{violate}
(write bytes that are not a WebSocket frame), C{status} (print C{status
MESSAGES BYTES}).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import ssl
import sys
from typing import Any, Dict, List, Optional

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

__all__ = ["main"]

#: Reserved bits set and an unknown opcode: not a WebSocket frame.
GARBAGE = b"\xff\xff" + b"\x00" * 16

_OPTIONS: Dict[str, Any] = {
    "max_size": None,
    "compression": None,
    "ping_interval": None,
    "close_timeout": 5,
}


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Peer:
    def __init__(self, send: Optional[List[int]]) -> None:
        self.send = send
        self.messages = 0
        self.bytes = 0
        self.hash = hashlib.sha256()
        self.reading = asyncio.Event()
        self.reading.set()
        self.waiting: Dict[int, bool] = {}
        self.ws: Any = None

    def counted(self, size: int) -> None:
        self.messages += 1
        self.bytes += size
        if self.waiting.pop(self.messages, False):
            say(f"reached {self.messages}")

    async def run(self, ws: Any) -> None:
        self.ws = ws
        say("open")
        commands = asyncio.ensure_future(self.commands())
        try:
            if self.send is None:
                await self.receive(ws)
            else:
                await self.sendAll(ws)
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        commands.cancel()
        say(
            f"ended {self.messages} {self.bytes} {self.hash.hexdigest()} {ws.close_code}"
        )

    async def receive(self, ws: Any) -> None:
        while True:
            await self.reading.wait()
            size = 0
            async for fragment in ws.recv_streaming(decode=False):
                self.hash.update(fragment)
                size += len(fragment)
                await self.reading.wait()
            self.counted(size)

    async def sendAll(self, ws: Any) -> None:
        assert self.send is not None
        count, size, seed = self.send
        rng = random.Random(seed)
        for _ in range(count):
            message = rng.randbytes(size)
            self.hash.update(message)
            await ws.send(message)
            self.counted(size)
        await ws.close(1000)

    async def commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
        while True:
            line = (await reader.readline()).decode().split()
            if not line:
                if reader.at_eof():
                    return
                continue
            await self.command(line[0], line[1:])

    async def command(self, name: str, args: List[str]) -> None:
        ws = self.ws
        if name == "reach":
            n = int(args[0])
            if self.messages >= n:
                say(f"reached {n}")
            else:
                self.waiting[n] = True
        elif name == "pause":
            self.reading.clear()
        elif name == "resume":
            self.reading.set()
        elif name == "close":
            self.reading.set()
            self.closing = asyncio.ensure_future(ws.close(1000))
        elif name == "vanish":
            ws.transport.abort()
        elif name == "violate":
            ws.transport.write(GARBAGE)
        elif name == "status":
            say(f"status {self.messages} {self.bytes}")


async def main(argv: List[str]) -> None:
    role = argv[0]
    send: Optional[List[int]] = None
    if "--send" in argv:
        at = argv.index("--send")
        send = [int(a) for a in argv[at + 1 : at + 4]]
    options = dict(_OPTIONS)
    if "--tls" in argv:
        pem = argv[argv.index("--tls") + 1]
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH if role == "client" else ssl.Purpose.CLIENT_AUTH
        )
        if role == "client":
            context.load_verify_locations(pem)
            options["server_hostname"] = "localhost"
        else:
            context.load_cert_chain(pem)
        options["ssl"] = context
    peer = Peer(send)
    if role == "client":
        async with connect(argv[1], proxy=None, **options) as ws:
            await peer.run(ws)
        return
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler(ws: Any) -> None:
        try:
            await peer.run(ws)
        finally:
            if not finished.done():
                finished.set_result(None)

    async with serve(handler, "127.0.0.1", 0, **options) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        say(f"port {port}")
        await finished


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
