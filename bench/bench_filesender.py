"""
Benchmark: sending a file over TCP loopback to a plain socket reader in
another process, with Twisted's FileSender, ours, and a plain Python sender.

Run: python -m bench.bench_filesender [--quick] [--size-mib N] [--repeat N]
     [--sweep | --memory]

The default run compares throughput and CPU over plain TCP and over TLS;
C{--sweep} measures our read-and-write path at chunk sizes from 4 KiB to
1 MiB, over plain TCP and over TLS (where that path is the one used); C{--memory} sends to a reader limited to 256 MB/s and samples the
sender's RSS over time.  Tables and series land in C{bench/results}.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import resource
import socket
import ssl
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, Tuple

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _receiver(
    listener: socket.socket,
    pipe: Connection,
    certFile: Optional[str] = None,
    bytesPerSecond: Optional[int] = None,
) -> None:
    """
    Accept connections one at a time, read each to EOF, report the count:
    over TLS if C{certFile} is given, no faster than C{bytesPerSecond} if
    that is.
    """
    context = None
    if certFile is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certFile)
    buf = bytearray(64 * 1024 if bytesPerSecond else 1024 * 1024)
    while True:
        conn, _ = listener.accept()
        if context is not None:
            conn = context.wrap_socket(conn, server_side=True)
        total = 0
        start = time.perf_counter()
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            total += n
            if bytesPerSecond:
                ahead = total / bytesPerSecond - (time.perf_counter() - start)
                if ahead > 0:
                    time.sleep(ahead)
        conn.close()
        pipe.send(total)


def _startReceiver(
    certFile: Optional[str] = None, bytesPerSecond: Optional[int] = None
) -> Tuple[socket.socket, Connection, multiprocessing.Process]:
    """
    Start a L{_receiver} in another process; return its listening socket,
    the pipe it reports on, and the process.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    parentPipe, childPipe = multiprocessing.Pipe()
    proc = multiprocessing.Process(
        target=_receiver,
        args=(listener, childPipe, certFile, bytesPerSecond),
        daemon=True,
    )
    proc.start()
    return listener, parentPipe, proc


def _writeCertificate() -> str:
    """
    Write a new self-signed certificate and its key to a PEM file; return
    its path.
    """
    from twisted_streaming.test.test_faults import selfSignedPEM

    fd, path = tempfile.mkstemp(prefix="bench_filesender_", suffix=".pem")
    with os.fdopen(fd, "wb") as f:
        f.write(selfSignedPEM("localhost"))
    return path


def _rss() -> int:
    """This process's resident set size in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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


def run(
    size: int, mode: str, chunks: Sequence[int], repeat: int = 1
) -> Tuple[List[Result], Any]:
    """
    Run every case of C{mode} (C{"compare"}, C{"sweep"} or C{"memory"})
    over a file of C{size} bytes, one after another in this process, in
    C{repeat} rounds so that drift in the machine's speed touches every case
    alike.

    @return: A L{Result} per case, the median of its rounds, and for
        C{"memory"} the RSS samples as
        C{(case, seconds, MiB over the case's starting RSS)} rows.
    """
    from twisted.internet import defer, protocol, reactor, task, threads
    from twisted.internet import ssl as tssl
    from twisted.protocols import basic

    from twisted_streaming import FileSender

    path = _makeFile(size)
    certFile = _writeCertificate() if mode in ("compare", "sweep") else None
    plain = _startReceiver(bytesPerSecond=256_000_000 if mode == "memory" else None)
    tls = _startReceiver(certFile) if certFile else None
    rounds: Dict[str, List[Tuple[float, float]]] = {}
    samples: List[Tuple[str, float, float]] = []

    def rawSendall(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s, open(path, "rb") as f:
            while True:
                data = f.read(1024 * 1024)
                if not data:
                    break
                s.sendall(data)

    def rawSendfile(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s, open(path, "rb") as f:
            s.sendfile(f)

    class WriteEverything:
        """
        No backpressure: read the whole file and write it at once, as code
        that ignores producers does.
        """

        def beginFileTransfer(self, f: Any, consumer: Any) -> defer.Deferred[None]:
            for chunk in iter(lambda: f.read(1024 * 1024), b""):
                consumer.write(chunk)
            return defer.succeed(None)

    def twistedCase(
        makeSender: Callable[[], Any], port: int, useTLS: bool
    ) -> defer.Deferred[None]:
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

        creator = protocol.ClientCreator(reactor, Send)
        if useTLS:
            creator.connectSSL("127.0.0.1", port, tssl.CertificateOptions())
        else:
            creator.connectTCP("127.0.0.1", port)
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

    ours = FileSender.CHUNK_SIZE // 1024
    cases: List[Tuple[str, Any, bool]] = []  # name, sender or raw call, TLS
    if mode == "sweep":
        for chunk in chunks:
            cases.append((f"ours {chunk // 1024} KiB", sized(readWrite, chunk), False))
        for chunk in chunks:
            name = f"TLS: ours {chunk // 1024} KiB"
            cases.append((name, sized(FileSender, chunk), True))
    elif mode == "memory":
        cases = [
            ("twisted FileSender (16 KiB)", basic.FileSender, False),
            (f"ours zero-copy ({ours} KiB)", FileSender, False),
            (f"ours read-write ({ours} KiB)", readWrite, False),
            ("no backpressure (write all)", WriteEverything, False),
        ]
    else:
        cases = [
            ("twisted FileSender (16 KiB)", basic.FileSender, False),
            ("twisted FileSender 64 KiB", sized(basic.FileSender, 65536), False),
            (f"ours zero-copy ({ours} KiB)", FileSender, False),
            (f"ours read-write ({ours} KiB)", readWrite, False),
            ("raw socket.sendall 1 MiB", rawSendall, False),
            ("raw os.sendfile", rawSendfile, False),
            ("TLS: twisted FileSender 64 KiB", sized(basic.FileSender, 65536), True),
            (f"TLS: ours ({ours} KiB)", FileSender, True),
        ]

    @defer.inlineCallbacks
    def runAll() -> Generator[Any, Any, None]:
        try:
            for name, case, useTLS in [c for _ in range(repeat) for c in cases]:
                listener, pipe, _ = tls if useTLS and tls else plain
                port = listener.getsockname()[1]
                base, began = _rss(), time.perf_counter()

                def sample(name: str, base: int, began: float) -> None:
                    grown = (_rss() - base) / 2**20
                    samples.append((name, time.perf_counter() - began, grown))

                sampler = task.LoopingCall(sample, name, base, began)
                if mode == "memory":
                    sampler.start(0.1)
                start, cpu0 = time.perf_counter(), _cpu()
                if name.startswith("raw"):
                    case(port)
                else:
                    yield twistedCase(case, port, useTLS)
                received = yield threads.deferToThread(pipe.recv)
                if sampler.running:
                    sample(name, base, began)
                    sampler.stop()
                assert received == size, (name, received)
                elapsed, cpu = time.perf_counter() - start, _cpu() - cpu0
                rounds.setdefault(name, []).append(
                    (size / elapsed / 1e6, cpu * (1 << 30) / size)
                )
        finally:
            reactor.stop()

    reactor.callWhenRunning(runAll)
    try:
        reactor.run()
    finally:
        for listener, _, proc in filter(None, [plain, tls]):
            # The receiver holds nothing worth cleaning up; SIGKILL ends it
            # even where it was seen to outlive SIGTERM.
            proc.kill()
            proc.join()
            listener.close()
        os.unlink(path)
        if certFile:
            os.unlink(certFile)
    results = [
        (
            name,
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
        )
        for name, runs in rounds.items()
    ]
    return results, samples


def _table(results: Sequence[Result], what: str = "sender") -> None:
    """Print C{results} with ratios to the first row's."""
    base, baseCpu = results[0][1], results[0][2]
    print(f"{what:34} {'MB/s':>8} {'x':>6} {'CPU s/GiB':>10} {'x':>6}")
    for name, mbs, cpu in results:
        print(
            f"{name:34} {mbs:8.0f} {mbs / base:6.2f} {cpu:10.2f} {cpu / baseCpu:6.2f}"
        )


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int)
    parser.add_argument("--quick", action="store_true", help="smaller files")
    parser.add_argument("--repeat", type=int, help="rounds; the median is shown")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--sweep", action="store_true", help="chunk-size sweep")
    group.add_argument("--memory", action="store_true", help="RSS, slow reader")
    args = parser.parse_args(argv)
    mode = "sweep" if args.sweep else "memory" if args.memory else "compare"
    mib = args.size_mib or (
        (256 if args.quick else 1024) if args.memory else 64 if args.quick else 256
    )
    size = mib * 1024 * 1024
    chunks = [4096 << i for i in range(9)]  # 4 KiB .. 1 MiB
    repeat = args.repeat or (1 if mode == "memory" or args.quick else 3)
    results, samples = run(size, mode, chunks, repeat)
    os.makedirs(RESULTS, exist_ok=True)
    if mode == "memory":
        print(f"{mib} MiB to a reader taking 256 MB/s: sender RSS growth (MiB)")
        print(f"{'sender':34} {'peak':>8} {'MB/s':>8}")
        for name, mbs, _ in results:
            peak = max(grown for case, _, grown in samples if case == name)
            print(f"{name:34} {peak:8.1f} {mbs:8.0f}")
        out = os.path.join(RESULTS, "filesender_memory.csv")
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sender", "seconds", "rss_growth_mib"])
            for name, seconds, grown in samples:
                writer.writerow([name, f"{seconds:.2f}", f"{grown:.2f}"])
        print(f"wrote {out}")
        return
    plainRows = [r for r in results if not r[0].startswith("TLS")]
    print(
        f"{mib} MiB over TCP loopback, receiver in another process,"
        f" median of {repeat} rounds"
    )
    _table(plainRows)
    if len(plainRows) < len(results):
        print(f"\n{mib} MiB over TLS on loopback")
        _table([r for r in results if r[0].startswith("TLS")])
    if args.sweep:
        out = os.path.join(RESULTS, "filesender_sweep.csv")
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                [
                    "chunk_bytes",
                    "mb_per_s",
                    "cpu_s_per_gib",
                    "tls_mb_per_s",
                    "tls_cpu_s_per_gib",
                ]
            )
            plainRows, tlsRows = results[: len(chunks)], results[len(chunks) :]
            for (_, mbs, cpu), (_, tlsMbs, tlsCpu), chunk in zip(
                plainRows, tlsRows, chunks
            ):
                writer.writerow(
                    [
                        chunk,
                        f"{mbs:.0f}",
                        f"{cpu:.3f}",
                        f"{tlsMbs:.0f}",
                        f"{tlsCpu:.3f}",
                    ]
                )
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
