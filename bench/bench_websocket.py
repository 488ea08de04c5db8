"""
Benchmark sending over a WebSocket: twisted_streaming.websocket against a
bare Autobahn C{sendMessage} loop (no backpressure) and against the
C{websockets} library (asyncio), sending the same messages.

    python -m bench.bench_websocket [--quick]

Each sender is a server in a process of its own; the reader, in this
process, is a plain socket that does the opening handshake, then reads
frames, skipping their payloads, until the close frame: as fast a reader
as there is, so that the sender is what is measured.

  1. Throughput: messages/s and MB/s of payload for 1 KiB and 64 KiB
     messages, as ratios to the bare Autobahn loop; and the sender's CPU
     seconds per GiB.
  2. A reader that stops for 5 s after the first MiB: the sender's peak RSS
     growth (from just before it starts sending) while it sends 256 MiB in
     64 KiB messages.
  3. One message of 1 GiB (256 MiB with C{--quick}): a L{MessageStream}
     fed 64 KiB chunks as they are made, against Autobahn's
     C{sendMessage} of the whole payload; MB/s and peak RSS growth.

One run of each; the machine's noise is in the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import socket
import struct
import subprocess
import sys
import time
from typing import Any, List, Optional, Sequence, Tuple

KiB = 1024
MiB = 1024 * KiB

SENDERS = {
    "autobahn": "Autobahn sendMessage loop",
    "ours": "twisted_streaming MessageConsumer",
    "websockets": "websockets (asyncio)",
}
ONE_MESSAGE = {
    "autobahn-one": "Autobahn sendMessage(payload)",
    "ours-stream": "twisted_streaming MessageStream",
}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peakRss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# The senders, each a server in a process of its own.


def serveTwisted(kind: str, count: int, size: int) -> None:
    from autobahn.twisted.websocket import (
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )
    from twisted.internet import reactor

    from twisted_streaming import BasePushProducer
    from twisted_streaming.websocket import MessageConsumer, MessageStream

    message = b"m" * size
    state: List[float] = []

    class Repeat(BasePushProducer):
        def produce(self) -> Optional[bytes]:
            if self.chunksWritten == count:
                return None
            return message

    class Sender(WebSocketServerProtocol):
        def onOpen(self) -> None:
            state.extend([rss(), cpu()])
            if kind == "autobahn":
                for _ in range(count):
                    self.sendMessage(message, True)
                self.sendClose(1000)
            elif kind == "autobahn-one":
                self.sendMessage(message * count, True)
                self.sendClose(1000)
            else:
                sink = MessageStream if kind == "ours-stream" else MessageConsumer
                Repeat().startProducing(sink(self, closeCode=1000))

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            say(f"done {cpu() - state[1]:.3f} {peakRss() - state[0]}")
            reactor.stop()

    factory = WebSocketServerFactory()
    factory.protocol = Sender
    factory.setProtocolOptions(closeHandshakeTimeout=0, openHandshakeTimeout=0)
    port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")
    say(f"port {port.getHost().port}")
    reactor.run()


def serveWebsockets(count: int, size: int) -> None:
    from websockets.asyncio.server import serve

    message = b"m" * size

    async def main() -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def handler(ws: Any) -> None:
            before, began = rss(), cpu()
            try:
                for _ in range(count):
                    await ws.send(message)
                await ws.close(1000)
            finally:
                say(f"done {cpu() - began:.3f} {peakRss() - before}")
                done.set_result(None)

        options: Any = {"compression": None, "ping_interval": None, "close_timeout": 1}
        async with serve(handler, "127.0.0.1", 0, **options) as server:
            say(f"port {next(iter(server.sockets)).getsockname()[1]}")
            await done

    asyncio.run(main())


# The reader


def read(port: int, stallAfter: int = 0, stallFor: float = 0) -> Tuple[float, int, int]:
    """
    Connect, shake hands, and read frames until the close frame; stop for
    C{stallFor} seconds once C{stallAfter} payload bytes have arrived.

    @return: Seconds from the request to the close frame, payload bytes
        and data frames read.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    # From the request on: a sender that frames every message before it
    # writes any (Autobahn answers the handshake and runs onOpen in one go)
    # pays for that too.
    started = time.perf_counter()
    sock.sendall(
        (
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    f: Any = sock.makefile("rb", buffering=MiB)
    while f.readline() not in (b"\r\n", b""):
        pass
    scratch = memoryview(bytearray(MiB))
    payload = frames = 0
    stalled = not stallAfter
    while True:
        head = f.read(2)
        if len(head) < 2:
            raise EOFError("the sender closed before its close frame")
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", f.read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", f.read(8))
        if opcode == 8:
            elapsed = time.perf_counter() - started
            sock.close()
            return elapsed, payload, frames
        left = length
        while left:
            left -= f.readinto(scratch[: min(left, MiB)])
        payload += length
        frames += opcode in (0, 1, 2)
        if not stalled and payload >= stallAfter:
            stalled = True
            time.sleep(stallFor)


def run(
    kind: str, count: int, size: int, stall: float = 0
) -> Tuple[float, int, float, int]:
    """
    Run C{kind} sending C{count} messages of C{size} bytes to the reader.

    @return: Seconds, payload bytes, the sender's CPU seconds and its peak
        RSS growth in bytes.
    """
    sender = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.bench_websocket",
            "--serve",
            kind,
            str(count),
            str(size),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sender.stdout is not None
        port = int(sender.stdout.readline().split()[1])
        seconds, payload, _ = read(port, MiB if stall else 0, stall)
        _, cpuSeconds, growth = sender.stdout.readline().split()
        sender.wait(timeout=60)
    finally:
        if sender.poll() is None:
            sender.kill()
    if payload != count * size:
        raise AssertionError(f"{kind} sent {payload} bytes, not {count * size}")
    # The peak can be read a little below the RSS first read (they are
    # counted differently): no growth.
    return seconds, payload, float(cpuSeconds), max(int(growth), 0)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        kind, count, size = args.serve[0], int(args.serve[1]), int(args.serve[2])
        if kind == "websockets":
            serveWebsockets(count, size)
        else:
            serveTwisted(kind, count, size)
        return
    scale = 4 if args.quick else 1
    for size, total in ((KiB, 32 * MiB), (64 * KiB, 512 * MiB)):
        count = total // scale // size
        print(
            f"{count} messages of {size // KiB} KiB ({count * size // MiB} MiB) to a "
            "plain-socket reader on 127.0.0.1, one run"
        )
        print(f"{'sender':34} {'msgs/s':>9} {'MB/s':>7} {'x':>6} {'CPU s/GiB':>10}")
        base = 0.0
        for kind, name in SENDERS.items():
            seconds, payload, cpuSeconds, _ = run(kind, count, size)
            rate = count / seconds
            base = base or rate
            print(
                f"{name:34} {rate:9.0f} {payload / seconds / 1e6:7.0f} "
                f"{rate / base:6.2f} {cpuSeconds / (payload / 2**30):10.2f}"
            )
        print()
    count, size = 256 * MiB // scale // (64 * KiB), 64 * KiB
    print(
        f"{count * size // MiB} MiB in 64 KiB messages; the reader stops for 5 s "
        "after the first MiB"
    )
    print(f"{'sender':34} {'peak RSS growth MiB':>20}")
    for kind, name in SENDERS.items():
        _, _, _, growth = run(kind, count, size, stall=5.0)
        print(f"{name:34} {growth / MiB:20.1f}")
    print()
    total = 1024 * MiB // scale
    print(f"one message of {total // MiB} MiB, sent in 64 KiB frames or whole")
    print(f"{'sender':34} {'MB/s':>7} {'peak RSS growth MiB':>20}")
    for kind, name in ONE_MESSAGE.items():
        seconds, payload, _, growth = run(kind, total // (64 * KiB), 64 * KiB)
        print(f"{name:34} {payload / seconds / 1e6:7.0f} {growth / MiB:20.1f}")


if __name__ == "__main__":
    main()
