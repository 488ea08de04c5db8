"""
Benchmark the async bridges: C{async for} over a connection against a plain
C{Protocol.dataReceived} counter, and L{fromAsyncIterable} against a
L{BasePushProducer} writing the same chunks.

    python -m bench.bench_async [--quick] [--mib N]

Receiving: a plain socket writer in another process sends C{N} MiB over TCP
to 127.0.0.1 in 64 KiB sends; this process reads it either with a
C{Protocol} whose C{dataReceived} only counts, or with C{async for chunk in
toAsyncIterator(connection.incoming)} in a coroutine on Twisted's driver
that only counts.  MB/s from the connection to the end of the stream, the
ratio to the counter, and this process's CPU seconds per GiB.

Sending: this process writes C{N} MiB to a plain socket reader in another
process (C{bench_proxy}'s), in chunks of 64 KiB and 4 KiB, with a
L{BasePushProducer} whose C{produce} returns the next chunk, or with
L{fromAsyncIterable} over an async generator that yields it.  MB/s as the
reader saw it, and the ratio.

Per item, in process, with no socket: the CPU nanoseconds per item of
100 bytes of C{async for} over L{toAsyncIterator} against a consumer whose
C{write} only counts, and of L{fromAsyncIterable} against
L{BasePushProducer}, each writing into a consumer that only counts; the
difference is the bridge's cost per item.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock, react
from twisted.python.failure import Failure

from bench.bench_stages import Chunks, CountingConsumer, Sink, cpuSeconds, transfer
from twisted_streaming import (
    StreamProtocol,
    fromAsyncIterable,
    toAsyncIterator,
)

# No single transfer may take longer than this.
TIMEOUT = 300.0

WRITER = r"""
import socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
sock = socket.create_connection(("127.0.0.1", port))
chunk = b"x" * 65536
sent = 0
while sent < size:
    sent += sock.send(chunk if size - sent >= len(chunk) else chunk[: size - sent])
sock.close()
"""


class Counter(Protocol):
    """
    The raw limit: count what arrives in C{dataReceived}.
    """

    def __init__(self, done: Deferred[Tuple[int, float]]) -> None:
        self.done = done
        self.total = 0

    def connectionMade(self) -> None:
        self.began = time.perf_counter()

    def dataReceived(self, data: bytes) -> None:
        self.total += len(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback((self.total, time.perf_counter() - self.began))


class AsyncCounter(StreamProtocol):
    """
    Count what arrives with C{async for} over the connection's incoming
    bytes.
    """

    def __init__(self, done: Deferred[Tuple[int, float]]) -> None:
        super().__init__()
        self.done = done

    def connectionMade(self) -> None:
        began = time.perf_counter()

        async def count() -> Tuple[int, float]:
            total = 0
            async for chunk in toAsyncIterator(self.incoming):
                total += len(chunk)
            return total, time.perf_counter() - began

        Deferred.fromCoroutine(count()).chainDeferred(self.done)


async def receive(reactor: Any, route: str, size: int) -> Tuple[float, float]:
    """
    Receive C{size} bytes from a writer process with C{route}.

    @return: MB/s and this process's CPU seconds per GiB.
    """
    done: Deferred[Tuple[int, float]] = Deferred()
    make: Callable[[], Protocol] = (
        (lambda: Counter(done)) if route == "counter" else (lambda: AsyncCounter(done))
    )
    port = reactor.listenTCP(0, Factory.forProtocol(make), interface="127.0.0.1")
    began = cpuSeconds()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(port.getHost().port), str(size)]
    )
    try:
        done.addTimeout(TIMEOUT, reactor)
        total, seconds = await done
    finally:
        writer.wait(timeout=TIMEOUT)
        await port.stopListening()
    cpu = cpuSeconds() - began
    if total != size:
        raise RuntimeError(f"sent {size} bytes, {route} got {total}")
    return size / seconds / 1e6, cpu / (size / 2**30)


async def chunks(chunk: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield chunk


async def send(
    reactor: Any, sink: Sink, route: str, chunkSize: int, size: int
) -> Tuple[float, float]:
    """
    Send C{size} bytes in chunks of C{chunkSize} to the reader with a
    L{BasePushProducer} or L{fromAsyncIterable}.

    @return: MB/s as the reader saw it, and this process's CPU s/GiB.
    """
    count = size // chunkSize
    chunk = b"x" * chunkSize
    source: Any = (
        Chunks(chunk, count)
        if route == "BasePushProducer"
        else fromAsyncIterable(chunks(chunk, count))
    )
    return await transfer(reactor, sink, None, chunkSize, size, source=source)


def perItem(count: int) -> Dict[str, float]:
    """
    CPU nanoseconds per 100-byte item, in process, for each route.
    """
    item = b"x" * 100
    results: Dict[str, float] = {}

    # A plain write() that counts, and async for taking each item as it is
    # written (the loop resumes inside write()).
    consumer = CountingConsumer()
    began = time.process_time_ns()
    write = consumer.write
    for _ in range(count):
        write(item)
    results["consumer.write"] = (time.process_time_ns() - began) / count

    feed: List[Any] = []
    ended: Deferred[int] = Deferred()

    def source(c: Any) -> Deferred[int]:
        feed.append(c)
        return ended

    iterator = toAsyncIterator(source, highWater=2**40, reactor=Clock())
    taken = [0]

    async def loop() -> None:
        async for _ in iterator:
            taken[0] += 1

    looped = Deferred.fromCoroutine(loop())
    write = feed[0].write
    began = time.process_time_ns()
    for _ in range(count):
        write(item)
    results["async for"] = (time.process_time_ns() - began) / count
    feed[0].finish()
    ended.callback(count)
    if not looped.called or taken[0] != count:
        raise RuntimeError(f"wrote {count} items, the loop took {taken[0]}")

    # Producers into a consumer that never pauses, on a Clock: every turn
    # runs at once.
    for name, make in [
        ("BasePushProducer", lambda: Chunks(item, count)),
        ("fromAsyncIterable", lambda: fromAsyncIterable(chunks(item, count))),
    ]:
        clock = Clock()
        producer: Any = make()
        # On the clock, whose turns run back to back in advance(0).
        producer._reactor = clock
        consumer = CountingConsumer()
        began = time.process_time_ns()
        producer.startProducing(consumer)
        clock.advance(0)
        results[name] = (time.process_time_ns() - began) / count
        if consumer.items != count:
            raise RuntimeError(f"{name} wrote {consumer.items} of {count}")
    return results


def median(samples: List[Tuple[float, float]]) -> Tuple[float, float]:
    return (
        statistics.median(s[0] for s in samples),
        statistics.median(s[1] for s in samples),
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second run")
    parser.add_argument("--mib", type=int, default=None, help="MiB per transfer")
    args = parser.parse_args(argv)
    size = (args.mib or (128 if args.quick else 512)) * 2**20
    items = 100_000 if args.quick else 300_000
    runs = 1 if args.quick else 3
    out = sys.stdout.write

    async def run(reactor: Any) -> None:
        out(
            f"Receiving {size // 2**20} MiB over TCP loopback (64 KiB sends),"
            f" median of {runs}\n"
        )
        out(f"{'route':<28}{'MB/s':>8}{'x counter':>11}{'CPU s/GiB':>11}\n")
        samples: Dict[str, List[Tuple[float, float]]] = {}
        for _ in range(runs):
            # Interleaved, so that a noisy moment hits both.
            for route in ["counter", "async for"]:
                sample = await receive(reactor, route, size)
                samples.setdefault(route, []).append(sample)
        received = {route: median(s) for route, s in samples.items()}
        for route, (rate, cpu) in received.items():
            ratio = rate / received["counter"][0]
            name = "dataReceived counter" if route == "counter" else route
            out(f"{name:<28}{rate:>8.0f}{ratio:>11.2f}{cpu:>11.2f}\n")

        out(f"\nSending {size // 2**20} MiB over TCP loopback, median of {runs}\n")
        out(
            f"{'chunk':>7}  {'producer':<20}{'MB/s':>8}{'x base':>8}{'CPU s/GiB':>11}\n"
        )
        sink = Sink()
        try:
            for chunkSize in [64 * 1024, 4 * 1024]:
                sendSamples: Dict[str, List[Tuple[float, float]]] = {}
                for _ in range(runs):
                    for route in ["BasePushProducer", "fromAsyncIterable"]:
                        sample = await send(reactor, sink, route, chunkSize, size)
                        sendSamples.setdefault(route, []).append(sample)
                sent = {route: median(s) for route, s in sendSamples.items()}
                for route, (rate, cpu) in sent.items():
                    ratio = rate / sent["BasePushProducer"][0]
                    out(
                        f"{chunkSize // 1024:>5}Ki  {route:<20}{rate:>8.0f}"
                        f"{ratio:>8.2f}{cpu:>11.2f}\n"
                    )
        finally:
            sink.stop()

        measured = [perItem(items) for _ in range(runs)]
        costs = {
            name: statistics.median(m[name] for m in measured) for name in measured[0]
        }
        out(f"\nPer item of 100 bytes, in process, {items} items, median of {runs}\n")
        out(f"{'route':<28}{'ns/item':>9}{'overhead':>10}\n")
        for name, base in [
            ("consumer.write", "consumer.write"),
            ("async for", "consumer.write"),
            ("BasePushProducer", "BasePushProducer"),
            ("fromAsyncIterable", "BasePushProducer"),
        ]:
            extra = costs[name] - costs[base]
            shown = f"{extra:>+10.0f}" if name != base else f"{'':>10}"
            out(f"{name:<28}{costs[name]:>9.0f}{shown}\n")

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
