"""
Benchmark the overhead of pipeline stages: MB/s through 0, 1 and 3 identity
stages, as ratios to the same producer registered straight on the transport.

    python -m bench.bench_stages [--quick] [--mib N] [--runs N]
    python -m bench.bench_stages --in-process [--chunks N] [--runs N]

A push producer in this process writes the same chunk over and over into a
TCP connection to 127.0.0.1, either directly (C{startProducing(transport)})
or through C{pipeline(source, *[identity Stage] * k, sink=transport)}; a
plain socket reader in another process counts the bytes and times them from
accept to end of stream.  Chunks of 64 KiB and 4 KiB (per-chunk costs show at
the small size).  For each route: the median MB/s, its ratio to direct, and
this process's CPU seconds per GiB.  The table is printed and the series
written to C{bench/results/stages.csv}.

With C{--in-process}, no socket and no reactor: a bounded loop writes C{N}
4 KiB chunks into the first of 0, 1 and 3 identity stages whose last stage
delivers to a consumer that only counts, and the median CPU nanoseconds per
chunk over the runs is printed for each (and per stage, over 0 stages); this
is the per-item cost of the stages alone, and nothing is written to
C{bench/results}.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import select
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import react
from twisted.python.failure import Failure

from bench.bench_proxy import SINK
from twisted_streaming import BasePushProducer, Stage, pipeline

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


ROUTES: List[Tuple[str, Optional[int]]] = [
    ("direct", None),
    ("0 stages", 0),
    ("1 stage", 1),
    ("3 stages", 3),
]
CHUNKS = [64 * 1024, 4 * 1024]
# No single transfer may take longer than this.
TIMEOUT = 300.0


class Chunks(BasePushProducer):
    """
    Write C{chunk} C{count} times.
    """

    def __init__(self, chunk: bytes, count: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chunk = chunk
        self.left = count

    def produce(self) -> Optional[bytes]:
        if self.left == 0:
            return None
        self.left -= 1
        return self.chunk


class Identity(Stage):
    """
    Pass every item through unchanged.
    """

    def process(self, item: Any) -> Iterable[Any]:
        return (item,)


class Connection(Protocol):
    transport: Any

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class Sink:
    """
    The reader process: it prints its port, then C{total seconds} for each
    connection it has read to the end.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SINK, "read"], stdout=subprocess.PIPE, bufsize=0
        )
        self.port = int(self.readline(10.0))

    def readline(self, timeout: float) -> str:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError(f"the sink said nothing in {timeout:.0f} s")
            data = os.read(fd, 4096)
            if not data:
                raise RuntimeError("the sink exited")
            line += data
        return line.decode()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


def cpuSeconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def transfer(
    reactor: Any,
    sink: Sink,
    stages: Optional[int],
    chunkSize: int,
    size: int,
    source: Any = None,
) -> Tuple[float, float]:
    """
    Send C{size} bytes in chunks of C{chunkSize}, directly if C{stages} is
    L{None}, else through that many identity stages, from C{source} (by
    default L{Chunks}).

    @return: MB/s as the sink saw it, and this process's CPU seconds per GiB.
    """
    connection = Connection()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", sink.port)
    await connectProtocol(endpoint, connection)
    if source is None:
        source = Chunks(b"x" * chunkSize, size // chunkSize)
    began = cpuSeconds()
    if stages is None:
        done = source.startProducing(connection.transport)
    else:
        chain = [Identity(name=f"identity {i}") for i in range(stages)]
        done = pipeline(source, *chain, sink=connection.transport)
    done.addTimeout(TIMEOUT, reactor)
    await done
    connection.transport.loseConnection()
    await connection.lost
    cpu = cpuSeconds() - began
    total, seconds = sink.readline(TIMEOUT).split()
    if int(total) != size:
        raise RuntimeError(f"sent {size} bytes, the sink got {total}")
    return size / float(seconds) / 1e6, cpu / (size / 2**30)


async def measure(
    reactor: Any, size: int, runs: int
) -> Dict[Tuple[str, int], Tuple[float, float]]:
    """
    The median MB/s and CPU s/GiB of every route at every chunk size.
    """
    sink = Sink()
    results = {}
    try:
        for chunkSize in CHUNKS:
            # Interleave the routes, so that a noisy moment hits them all.
            samples: Dict[str, List[Tuple[float, float]]] = {n: [] for n, _ in ROUTES}
            for _ in range(runs):
                for name, stages in ROUTES:
                    sample = await transfer(reactor, sink, stages, chunkSize, size)
                    samples[name].append(sample)
            for name, _ in ROUTES:
                results[name, chunkSize] = (
                    statistics.median(s[0] for s in samples[name]),
                    statistics.median(s[1] for s in samples[name]),
                )
    finally:
        sink.stop()
    return results


def report(
    results: Dict[Tuple[str, int], Tuple[float, float]], size: int, runs: int
) -> None:
    out = sys.stdout.write
    out(
        f"{size // 2**20} MiB one way over TCP loopback through identity stages,"
        f" median of {runs}\n"
    )
    out(f"{'chunk':>7}  {'route':<10}{'MB/s':>9}{'x direct':>10}{'CPU s/GiB':>11}\n")
    rows = []
    for chunkSize in CHUNKS:
        direct = results["direct", chunkSize][0]
        for name, stages in ROUTES:
            rate, cpu = results[name, chunkSize]
            ratio = rate / direct
            out(
                f"{chunkSize // 1024:>5}Ki  {name:<10}{rate:>9.0f}{ratio:>10.2f}"
                f"{cpu:>11.2f}\n"
            )
            rows.append(
                [
                    chunkSize,
                    name,
                    "" if stages is None else stages,
                    f"{rate:.0f}",
                    f"{ratio:.3f}",
                    f"{cpu:.3f}",
                ]
            )
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "stages.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "chunk_bytes",
                "route",
                "stages",
                "mb_per_s",
                "ratio_to_direct",
                "cpu_s_per_gib",
            ]
        )
        writer.writerows(rows)


class CountingConsumer:
    """
    The cheapest consumer: it counts what is written to it.
    """

    def __init__(self) -> None:
        self.items = 0
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.items += 1


def loopOnce(stages: int, chunk: bytes, count: int) -> float:
    """
    Write C{chunk} C{count} times through C{stages} identity stages into a
    L{CountingConsumer}, in a plain loop.

    @return: CPU nanoseconds per chunk.
    """
    sink = CountingConsumer()
    chain = [Identity(name=f"identity {i}") for i in range(stages)]
    for stage, after in zip(chain, [*chain[1:], sink]):
        stage.attach(after)  # type: ignore[arg-type]
    write = chain[0].write if chain else sink.write
    began = time.process_time_ns()
    for _ in range(count):
        write(chunk)
    ns = time.process_time_ns() - began
    if chain:
        chain[0].finish()
        if not chain[-1].done.called:
            raise RuntimeError("the last stage did not finish")
    if sink.items != count:
        raise RuntimeError(f"wrote {count} chunks, the consumer got {sink.items}")
    return ns / count


def inProcess(count: int, runs: int) -> None:
    """
    Print the median CPU nanoseconds per 4 KiB chunk through 0, 1 and 3
    identity stages, interleaving the routes over C{runs} runs.
    """
    chunk = b"x" * 4096
    routes = [0, 1, 3]
    samples: Dict[int, List[float]] = {k: [] for k in routes}
    for _ in range(runs):
        for k in routes:
            samples[k].append(loopOnce(k, chunk, count))
    out = sys.stdout.write
    out(f"{count} chunks of 4 KiB in process, median of {runs}\n")
    out(f"{'stages':>6}{'ns/chunk':>10}{'ns/stage':>10}\n")
    base = statistics.median(samples[0])
    for k in routes:
        ns = statistics.median(samples[k])
        perStage = f"{(ns - base) / k:>10.0f}" if k else f"{'':>10}"
        out(f"{k:>6}{ns:>10.0f}{perStage}\n")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second run")
    parser.add_argument("--mib", type=int, default=None, help="MiB per transfer")
    parser.add_argument("--runs", type=int, default=None, help="runs per route")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="time a plain loop through the stages, with no socket",
    )
    parser.add_argument(
        "--chunks", type=int, default=200_000, help="chunks per in-process run"
    )
    args = parser.parse_args(argv)
    if args.in_process:
        inProcess(args.chunks, args.runs or 7)
        return
    size = (args.mib or (128 if args.quick else 1024)) * 2**20
    runs = args.runs or (1 if args.quick else 3)

    async def run(reactor: Any) -> None:
        report(await measure(reactor, size, runs), size, runs)

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
