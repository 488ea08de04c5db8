"""
Benchmark fan-in and fan-out over TCP loopback: L{Merge} of N inputs into
one connection against one producer writing the same bytes directly, and
L{Broadcast} to N connections against N producers each writing to its own.

    python -m bench.bench_fanout [--quick] [--mib N] [--runs N]
    python -m bench.bench_fanout --in-process [--writes N] [--runs N]

Merge: N = 2, 8 and 64 push producers (64 KiB chunks) each write 1/N of
the bytes into a L{Merge} registered with one connection; "direct" is one
producer writing them all to the connection.  Broadcast: one producer
writes the bytes into a L{Broadcast} (policy C{"pause"}, nothing lost) with
1, 10 and 100 connections as outputs; "direct" is one producer per
connection, each writing the same bytes.  A reader process (plain sockets,
all connections at once) checks each connection's bytes.  Broadcast and its
direct counterpart deliver the same bytes in all: 1/N of them to each of N
connections.  For each case, the median over the runs of the MB/s per
connection (bytes per connection over the time from the first write to the
last connection closed), its ratio to direct, and this process's CPU
seconds per GiB delivered (summed over the connections).  The tables are printed and the series written to
C{bench/results/fanout.csv}.

A last table (alone with C{--in-process}) is the per-write CPU cost of the
merge itself, with no socket: the same producers write C{N} 64 KiB chunks
in all into a fake transport on a L{Clock} that pauses its producer on
every write leaving more than 64 KiB buffered and empties its buffer and
resumes the producer on the next clock step, so the merge is paused and
resumed every two writes, as a loopback connection does.  For each case,
the median over the runs of this process's CPU nanoseconds per write,
directly and through the merge.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IConsumer
from twisted.internet.task import Clock, react
from zope.interface import implementer

from bench.bench_stages import TIMEOUT, Chunks, Connection, Sink, cpuSeconds
from twisted_streaming import Broadcast, Merge
from twisted_streaming._flow import Upstream

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
CHUNK = 64 * 1024
INPUTS = [2, 8, 64]
OUTPUTS = [1, 10, 100]

# Read every connection at once; print "total seconds" as each ends.
MULTISINK = r"""
import selectors, socket, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(1024)
print(server.getsockname()[1], flush=True)
selector = selectors.DefaultSelector()
selector.register(server, selectors.EVENT_READ)
buf = bytearray(1 << 20)
counts = {}
while True:
    for key, _ in selector.select():
        sock = key.fileobj
        if sock is server:
            conn, _ = server.accept()
            counts[conn] = [0, time.perf_counter()]
            selector.register(conn, selectors.EVENT_READ)
            continue
        n = sock.recv_into(buf)
        if n:
            counts[sock][0] += n
            continue
        total, start = counts.pop(sock)
        selector.unregister(sock)
        sock.close()
        print(total, time.perf_counter() - start, flush=True)
"""


class MultiSink(Sink):
    """
    The reader process, reading every connection at once.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", MULTISINK], stdout=subprocess.PIPE, bufsize=0
        )
        self.port = int(self.readline(10.0))

    def check(self, connections: int, size: int) -> None:
        """
        Check that each of C{connections} delivered C{size} bytes.
        """
        lines: List[str] = []
        while len(lines) < connections:
            # One read may hold several lines.
            lines += self.readline(TIMEOUT).splitlines()
        for line in lines:
            total = line.split()[0]
            if int(total) != size:
                raise RuntimeError(f"sent {size} bytes, the sink got {total}")


async def connect(reactor: Any, sink: MultiSink, count: int) -> List[Connection]:
    connections = [Connection() for _ in range(count)]
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", sink.port)
    for connection in connections:
        await connectProtocol(endpoint, connection)
    return connections


async def close(connections: List[Connection]) -> None:
    for connection in connections:
        connection.transport.loseConnection()
    await gatherResults([c.lost for c in connections])


async def merged(
    reactor: Any, sink: MultiSink, inputs: Optional[int], size: int
) -> Tuple[float, float]:
    """
    Send C{size} bytes into one connection from C{inputs} producers through
    a L{Merge}, or from one producer directly if L{None}.

    @return: MB/s, and CPU seconds per GiB.
    """
    [connection] = await connect(reactor, sink, 1)
    chunk = b"x" * CHUNK
    began, start = cpuSeconds(), time.perf_counter()
    if inputs is None:
        done = Chunks(chunk, size // CHUNK).startProducing(connection.transport)
    else:
        merge = Merge(connection.transport, reactor=reactor)
        for _ in range(inputs):
            Chunks(chunk, size // CHUNK // inputs).startProducing(merge.input())
        merge.close()
        done = merge.done
    done.addTimeout(TIMEOUT, reactor)
    await done
    await close([connection])
    cpu, seconds = cpuSeconds() - began, time.perf_counter() - start
    sink.check(1, size)
    return size / seconds / 1e6, cpu / (size / 2**30)


async def broadcast(
    reactor: Any, sink: MultiSink, outputs: int, direct: bool, size: int
) -> Tuple[float, float]:
    """
    Send C{size} bytes to each of C{outputs} connections, from one producer
    through a L{Broadcast} or from one producer per connection.

    @return: MB/s per connection (all end together), and CPU seconds per
        GiB delivered.
    """
    connections = await connect(reactor, sink, outputs)
    chunk = b"x" * CHUNK
    began, start = cpuSeconds(), time.perf_counter()
    if direct:
        done: Deferred[Any] = gatherResults(
            [
                Chunks(chunk, size // CHUNK).startProducing(c.transport)
                for c in connections
            ]
        )
    else:
        fan = Broadcast(policy="pause", reactor=reactor)
        for c in connections:
            fan.addOutput(c.transport)
        Chunks(chunk, size // CHUNK).startProducing(fan)
        done = fan.done
    done.addTimeout(TIMEOUT, reactor)
    await done
    await close(connections)
    cpu, seconds = cpuSeconds() - began, time.perf_counter() - start
    sink.check(outputs, size)
    return size / seconds / 1e6, cpu / (size * outputs / 2**30)


Results = Dict[Tuple[str, int, str], Tuple[float, float]]


async def measure(reactor: Any, size: int, runs: int) -> Results:
    """
    The median MB/s and CPU s/GiB of every case, each run interleaving
    the case and its direct counterpart so that a noisy moment hits both.
    """
    sink = MultiSink()
    samples: Dict[Tuple[str, int, str], List[Tuple[float, float]]] = {}
    try:
        for _ in range(runs):
            for n in INPUTS:
                for route, inputs in (("direct", None), ("merge", n)):
                    sample = await merged(reactor, sink, inputs, size)
                    samples.setdefault(("merge", n, route), []).append(sample)
            for n in OUTPUTS:
                # The same bytes delivered in all, whatever the fan-out.
                each = max(CHUNK, size // n // CHUNK * CHUNK)
                for route in ("direct", "broadcast"):
                    sample = await broadcast(reactor, sink, n, route == "direct", each)
                    samples.setdefault(("broadcast", n, route), []).append(sample)
    finally:
        sink.stop()
    return {
        key: (
            statistics.median(s[0] for s in values),
            statistics.median(s[1] for s in values),
        )
        for key, values in samples.items()
    }


def report(results: Results, size: int, runs: int) -> None:
    out = sys.stdout.write
    rows = []
    out(
        f"Merge: {size // 2**20} MiB into one TCP loopback connection from N"
        f" inputs (64 KiB writes), median of {runs}\n"
    )
    out(f"{'inputs':>7}  {'route':<10}{'MB/s':>9}{'x direct':>10}{'CPU s/GiB':>11}\n")
    for kind, counts, routes in (
        ("merge", INPUTS, ("direct", "merge")),
        ("broadcast", OUTPUTS, ("direct", "broadcast")),
    ):
        if kind == "broadcast":
            out(
                f"\nBroadcast: one source to N TCP loopback connections"
                f" (policy 'pause'), median of {runs}; MB/s per connection\n"
            )
            out(
                f"{'outputs':>7}  {'route':<10}{'MB/s':>9}{'x direct':>10}"
                f"{'CPU s/GiB':>11}\n"
            )
        for n in counts:
            direct = results[kind, n, "direct"][0]
            for route in routes:
                rate, cpu = results[kind, n, route]
                ratio = rate / direct
                out(f"{n:>7}  {route:<10}{rate:>9.0f}{ratio:>10.2f}{cpu:>11.2f}\n")
                rows.append(
                    [kind, n, route, f"{rate:.0f}", f"{ratio:.3f}", f"{cpu:.3f}"]
                )
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "fanout.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["fan", "n", "route", "mb_per_s", "ratio_to_direct", "cpu_s_per_gib"]
        )
        writer.writerows(rows)


@implementer(IConsumer)
class FakeTransport:
    """
    Buffer counts, not bytes: pause a streaming producer on every write
    that leaves more than C{threshold} buffered, as a transport does, and
    empty the buffer and resume the producer on the next clock step.
    """

    def __init__(self, clock: Clock, threshold: int = CHUNK) -> None:
        self.clock = clock
        self.threshold = threshold
        self.buffered = 0
        self.written = 0
        self._up = Upstream(self)
        self._drain: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._up.register(producer, streaming)

    def unregisterProducer(self) -> None:
        self._up.unregister()

    def write(self, data: bytes) -> None:
        self.buffered += len(data)
        self.written += len(data)
        if self._drain is None:
            self._drain = self.clock.callLater(0.001, self.drain)
        if self.buffered > self.threshold:
            self._up.pause(repeat=True)

    def drain(self) -> None:
        self._drain = None
        self.buffered = 0
        self._up.resume()


def writeOnce(inputs: Optional[int], writes: int) -> float:
    """
    Write C{writes} 64 KiB chunks into a L{FakeTransport}, from C{inputs}
    producers through a L{Merge}, or from one producer directly if
    L{None}.

    @return: CPU nanoseconds per write.
    """
    clock = Clock()
    transport = FakeTransport(clock)
    chunk = b"x" * CHUNK
    began = time.process_time_ns()
    if inputs is None:
        done = Chunks(chunk, writes, reactor=clock).startProducing(transport)
    else:
        merge = Merge(transport, reactor=clock)
        for _ in range(inputs):
            Chunks(chunk, writes // inputs, reactor=clock).startProducing(merge.input())
        merge.close()
        done = merge.done
    results: List[Any] = []
    done.addBoth(results.append)
    # Bounded: each step drains the buffer, so at least one write a step.
    for _ in range(2 * writes + 10):
        if results:
            break
        clock.advance(0.001)
    ns = time.process_time_ns() - began
    expected = writes // (inputs or 1) * (inputs or 1) * CHUNK
    if results != [expected] or transport.written != expected:
        raise RuntimeError(f"wrote {transport.written} of {expected}: {results}")
    return ns / (expected // CHUNK)


def inProcess(writes: int, runs: int) -> None:
    """
    Print the median CPU nanoseconds per write, directly and through a
    L{Merge} of 2, 8 and 64 inputs, interleaving the cases over C{runs}
    runs.
    """
    cases: List[Optional[int]] = [None, *INPUTS]
    samples: Dict[Optional[int], List[float]] = {n: [] for n in cases}
    for _ in range(runs):
        for n in cases:
            samples[n].append(writeOnce(n, writes))
    out = sys.stdout.write
    out(
        f"\nMerge in process: {writes} writes of 64 KiB into a fake transport"
        f" pausing every 2 writes, median of {runs}\n"
    )
    out(f"{'inputs':>7}  {'route':<10}{'ns/write':>10}{'x direct':>10}\n")
    direct = statistics.median(samples[None])
    for n in cases:
        ns = statistics.median(samples[n])
        label, route = ("1", "direct") if n is None else (str(n), "merge")
        out(f"{label:>7}  {route:<10}{ns:>10.0f}{ns / direct:>10.2f}\n")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second run")
    parser.add_argument("--mib", type=int, default=None, help="MiB per transfer")
    parser.add_argument("--runs", type=int, default=None, help="runs per case")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="only the per-write CPU of the merge, with no socket",
    )
    parser.add_argument(
        "--writes", type=int, default=None, help="writes per in-process run"
    )
    args = parser.parse_args(argv)
    writes = args.writes or (8192 if args.quick else 32768)
    if args.in_process:
        inProcess(writes, args.runs or 7)
        return
    size = (args.mib or (64 if args.quick else 512)) * 2**20
    runs = args.runs or (1 if args.quick else 3)

    async def run(reactor: Any) -> None:
        report(await measure(reactor, size, runs), size, runs)
        inProcess(writes, 3 if args.quick else 7)

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
