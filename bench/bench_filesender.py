"""
Benchmark: sending a file over TCP loopback to a plain socket reader in
another process, with Twisted's FileSender, ours, and a plain Python sender.

Run: python -m bench.bench_filesender [--quick] [--size-mib N] [--sweep]
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import resource
import socket
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Generator, List, Optional, Sequence, Tuple

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _receiver(listener: socket.socket, pipe: Connection) -> None:
    """Accept connections one at a time, read each to EOF, report the count."""
    while True:
        conn, _ = listener.accept()
        total = 0
        buf = bytearray(1024 * 1024)
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            total += n
        conn.close()
        pipe.send(total)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _makeFile(size: int) -> str:
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
    fd, path = tempfile.mkstemp(prefix="bench_filesender_", dir=directory)
    block = os.urandom(1024 * 1024)
    with os.fdopen(fd, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
    return path


Result = Tuple[str, float, float]  # name, MB/s, CPU s per GiB


def run(size: int, chunks: Sequence[int], sweepOnly: bool) -> List[Result]:
    from twisted.internet import defer, protocol, reactor, threads
    from twisted.protocols import basic

    from twisted_streaming import FileSender

    path = _makeFile(size)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    parentPipe, childPipe = multiprocessing.Pipe()
    proc = multiprocessing.Process(
        target=_receiver, args=(listener, childPipe), daemon=True
    )
    proc.start()
    results: List[Result] = []

    def record(name: str, start: float, cpu0: float) -> None:
        elapsed = time.perf_counter() - start
        cpu = _cpu() - cpu0
        results.append((name, size / elapsed / 1e6, cpu * (1 << 30) / size))

    def rawSendall() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s, open(path, "rb") as f:
            while True:
                data = f.read(1024 * 1024)
                if not data:
                    break
                s.sendall(data)

    def rawSendfile() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s, open(path, "rb") as f:
            s.sendfile(f)

    def twistedCase(makeSender: Callable[[], Any]) -> defer.Deferred[None]:
        done: defer.Deferred[None] = defer.Deferred()

        class Send(protocol.Protocol):
            def connectionMade(self) -> None:
                f = open(path, "rb")
                d = makeSender().beginFileTransfer(f, self.transport)
                d.addBoth(lambda _: self._done(f))

            def _done(self, f: Any) -> None:
                f.close()
                assert self.transport is not None
                self.transport.loseConnection()

            def connectionLost(self, reason: Any = None) -> None:
                done.callback(None)

        protocol.ClientCreator(reactor, Send).connectTCP("127.0.0.1", port)
        return done

    def sized(factory: Callable[[], Any], chunk: int) -> Callable[[], Any]:
        def make() -> Any:
            sender = factory()
            sender.CHUNK_SIZE = chunk
            return sender

        return make

    def readWrite() -> Any:
        sender = FileSender()
        sender.ZERO_COPY = False
        return sender

    cases: List[Tuple[str, Any]] = []
    if sweepOnly:
        for chunk in chunks:
            cases.append((f"ours {chunk // 1024} KiB", sized(readWrite, chunk)))
    else:
        cases = [
            ("twisted FileSender (16 KiB)", basic.FileSender),
            ("twisted FileSender 64 KiB", sized(basic.FileSender, 65536)),
            (f"ours zero-copy ({FileSender.CHUNK_SIZE // 1024} KiB)", FileSender),
            (f"ours read-write ({FileSender.CHUNK_SIZE // 1024} KiB)", readWrite),
            ("raw socket.sendall 1 MiB", rawSendall),
            ("raw os.sendfile", rawSendfile),
        ]

    @defer.inlineCallbacks
    def runAll() -> Generator[Any, Any, None]:
        try:
            for name, case in cases:
                start, cpu0 = time.perf_counter(), _cpu()
                if name.startswith("raw"):
                    case()
                else:
                    yield twistedCase(case)
                received = yield threads.deferToThread(parentPipe.recv)
                assert received == size, (name, received)
                record(name, start, cpu0)
        finally:
            reactor.stop()

    reactor.callWhenRunning(runAll)
    try:
        reactor.run()
    finally:
        proc.terminate()
        proc.join()
        listener.close()
        os.unlink(path)
    return results


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="64 MiB")
    parser.add_argument("--sweep", action="store_true", help="chunk-size sweep")
    args = parser.parse_args(argv)
    size = (64 if args.quick else args.size_mib) * 1024 * 1024
    chunks = [4096 << i for i in range(9)]  # 4 KiB .. 1 MiB
    results = run(size, chunks, args.sweep)
    base = results[0][1]
    baseCpu = results[0][2]
    print(f"{size >> 20} MiB over TCP loopback, receiver in another process")
    print(f"{'sender':34} {'MB/s':>8} {'x':>6} {'CPU s/GiB':>10} {'x':>6}")
    for name, mbs, cpu in results:
        print(
            f"{name:34} {mbs:8.0f} {mbs / base:6.2f} {cpu:10.2f} {cpu / baseCpu:6.2f}"
        )
    if args.sweep:
        os.makedirs(RESULTS, exist_ok=True)
        out = os.path.join(RESULTS, "filesender_sweep.csv")
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["chunk_bytes", "mb_per_s", "cpu_s_per_gib"])
            for (_, mbs, cpu), chunk in zip(results, chunks):
                writer.writerow([chunk, f"{mbs:.0f}", f"{cpu:.3f}"])
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
