"""
Property-based tests: random pauses, resumes, stops, cancellations, peer
loss, write failures and backpressure against the producers of this package.

Whatever happens, the consumer receives a prefix of the input (chunk by
chunk, in order, nothing duplicated), and the completion L{Deferred} fires
exactly once: with success if and only if everything was delivered and
nothing stopped the producer first.
"""

from __future__ import annotations

import functools
import io
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_streaming import (
    BasePushProducer,
    Compress,
    Decompress,
    FileSender,
    Frame,
    HashStage,
    LineJoiner,
    LineSplitter,
    ProducerStopped,
    ProxyFactory,
    ProxyStatistics,
    Stage,
    Unframe,
    pipeline,
)
from twisted_streaming._flow import turnLoop
from twisted_streaming.test._extras import Absent, skipHypothesis
from twisted_streaming.test.test_conformance import (
    FakeConnection,
    FakeConnectionEndpoint,
    FakeTLSConnection,
)
from twisted_streaming.testing import BackpressureConsumer, RecordingPushProducer

if skipHypothesis is None:
    from hypothesis import given, settings
    from hypothesis import strategies as st
else:
    given = settings = st = Absent()  # type: ignore[assignment,misc]

#: Trial (and pytest, through trial) skips every test here without hypothesis.
skip = skipHypothesis

# Bounded so the module runs in seconds; derandomized so CI is stable.
_settings = settings(max_examples=150, deadline=None, derandomize=True, database=None)

_OPS = st.lists(
    st.sampled_from(
        [
            *("advance", "advance", "event", "event", "drain", "drainSome"),
            *("pause", "resume", "stop", "cancel", "lose"),
        ]
    ),
    max_size=40,
)
_CHUNKS = st.lists(st.binary(min_size=1, max_size=8), max_size=20)


class Generated(BasePushProducer):
    """
    A generated-data producer of the given chunks.
    """

    def __init__(self, chunks: List[bytes], clock: Clock) -> None:
        super().__init__(reactor=clock)
        self.pending = list(chunks)
        # Many short turns, so that the operations fall between them.
        turnLoop(clock).bytesPerTurn = 16

    def produce(self) -> Optional[bytes]:
        return self.pending.pop(0) if self.pending else None

    def event(self) -> None:
        pass


class EventDriven(BasePushProducer):
    """
    An event-driven producer: each C{event()} delivers the next chunk unless
    the source is paused.
    """

    def __init__(self, chunks: List[bytes], clock: Clock) -> None:
        super().__init__(reactor=clock)
        self.pending = list(chunks)
        self.started = False

    def producingStarted(self) -> None:
        self.started = True

    def event(self) -> None:
        if not (self.started and self.producing) or self.paused:
            return
        if self.pending:
            try:
                self.write(self.pending.pop(0))
            except OSError as e:
                self.failProducing(e)
        else:
            self.finishProducing()


def _isChunkPrefix(received: bytes, chunks: List[bytes]) -> bool:
    """
    Is C{received} the concatenation of the first few of C{chunks}?
    """
    at = 0
    for chunk in chunks:
        if at == len(received):
            return True
        if received[at : at + len(chunk)] != chunk:
            return False
        at += len(chunk)
    return at == len(received)


class BackpressureConsumerPropertyTests(SynchronousTestCase):
    """
    The fake consumer itself behaves like a transport under random writes and
    drains.
    """

    @_settings
    @given(
        st.lists(st.one_of(st.binary(min_size=1, max_size=8), st.integers(0, 9))),
        st.integers(0, 20),
    )
    def test_pausesOverThresholdResumesOnlyWhenEmpty(
        self, steps: List[Any], threshold: int
    ) -> None:
        """
        Writes over the threshold pause, only an empty buffer resumes, and
        everything written is received in order.
        """
        consumer = BackpressureConsumer(threshold)
        producer = RecordingPushProducer()
        consumer.registerProducer(producer, True)
        written = b""
        for step in steps:
            if isinstance(step, bytes):
                before = len(producer.calls)
                consumer.write(step)
                written += step
                self.assertEqual(
                    producer.calls[before:],
                    [("pause",)] if consumer.buffered > threshold else [],
                )
            else:
                before = len(producer.calls)
                consumer.drain(step or None)
                if len(producer.calls) > before:
                    self.assertEqual(producer.calls[-1], ("resume",))
                    self.assertEqual(consumer.buffered, 0)
        self.assertEqual(consumer.received, written)
        for a, b in zip(producer.calls, producer.calls[1:]):
            self.assertFalse(a == b == ("resume",))


class PushProducerPropertyTests(SynchronousTestCase):
    """
    L{BasePushProducer} under random operations.
    """

    def run_ops(
        self,
        cls: Any,
        chunks: List[bytes],
        ops: List[str],
        threshold: int,
        rate: int,
        failAt: Optional[int],
    ) -> None:
        clock = Clock()
        consumer = BackpressureConsumer(
            threshold,
            clock=clock,
            drainRate=rate,
            failOnWrite=None if failAt is None else OSError("write failed"),
            failAfterWrites=failAt or 0,
        )
        producer = cls(chunks, clock)
        d = producer.startProducing(consumer)
        results: List[Any] = []
        d.addBoth(results.append)
        ended = False
        for op in ops:
            if op == "advance":
                clock.advance(rate and 0.001)
            elif op == "event":
                producer.event()
            elif op == "drain":
                consumer.drain()
            elif op == "drainSome":
                consumer.drain(rate)
            elif op == "pause":
                # Recorded as if the consumer had made the call, so that
                # writesAfterPause sees it.
                consumer.calls.append(("pause",))
                producer.pauseProducing()
            elif op == "resume":
                consumer.calls.append(("resume",))
                producer.resumeProducing()
            elif op in ("stop", "cancel", "lose"):
                ended = ended or not results
                if op == "stop":
                    producer.stopProducing()
                elif op == "cancel":
                    d.cancel()
                else:
                    consumer.loseConnection()
        # Let it run to the end: undo any test pause, then drive events and
        # the clock, a bounded number of times: enough for the consumer to
        # drain every byte at its slowest rate, one byte a tick.
        consumer.calls.append(("resume",))
        producer.resumeProducing()
        for _ in range(sum(map(len, chunks)) + len(chunks) * 4 + 20):
            producer.event()
            clock.advance(0.001)
            if results and not clock.getDelayedCalls():
                break
        received = consumer.received
        assert isinstance(received, bytes)
        self.assertTrue(_isChunkPrefix(received, chunks), (received, chunks))
        self.assertEqual(consumer.writesAfterPause(), [])
        self.assertEqual(len(results), 1)
        self.assertIsNone(consumer.producer)
        self.assertEqual(clock.getDelayedCalls(), [])
        result = results[0]
        complete = received == b"".join(chunks)
        if isinstance(result, Failure):
            if result.check(OSError):
                self.assertIsNotNone(failAt)
            else:
                self.assertTrue(ended)
                self.assertIsNotNone(result.check(ProducerStopped, CancelledError))
            self.assertFalse(consumer.finished)
        else:
            self.assertTrue(complete)
            self.assertEqual(result, len(received))
            self.assertTrue(consumer.finished)
            self.assertFalse(ended)

    @_settings
    @given(
        _CHUNKS,
        _OPS,
        st.integers(0, 40),
        st.integers(1, 16),
        st.none() | st.integers(0, 20),
    )
    def test_generatedDeliversPrefixAndCompletesOnce(
        self,
        chunks: List[bytes],
        ops: List[str],
        threshold: int,
        rate: int,
        failAt: Optional[int],
    ) -> None:
        """
        A generated producer delivers a prefix and completes once, correctly.
        """
        self.run_ops(Generated, chunks, ops, threshold, rate, failAt)

    @_settings
    @given(
        _CHUNKS,
        _OPS,
        st.integers(0, 40),
        st.integers(1, 16),
        st.none() | st.integers(0, 20),
    )
    def test_eventDrivenDeliversPrefixAndCompletesOnce(
        self,
        chunks: List[bytes],
        ops: List[str],
        threshold: int,
        rate: int,
        failAt: Optional[int],
    ) -> None:
        """
        An event-driven producer delivers a prefix and completes once,
        correctly.
        """
        self.run_ops(EventDriven, chunks, ops, threshold, rate, failAt)


class PullPropertyTests(SynchronousTestCase):
    """
    The package's FileSender, alone and through PullToPush, under random
    drains, pauses, stops, cancellations and peer loss.
    """

    def run_pull(
        self, data: bytes, chunk: int, ops: List[str], threshold: int, adapt: bool
    ) -> None:
        from twisted_streaming import FileSender, PullToPush

        clock = Clock()
        consumer = BackpressureConsumer(threshold, clock=clock, drainRate=chunk)
        sender = FileSender()
        sender.CHUNK_SIZE = chunk
        target: Any = PullToPush(consumer, reactor=clock) if adapt else consumer
        d = sender.beginFileTransfer(io.BytesIO(data), target)
        results: List[Any] = []
        d.addBoth(results.append)
        ended = False
        for op in ops:
            if op == "advance":
                clock.advance(0.001)
            elif op == "drain":
                consumer.drain()
            elif op == "drainSome":
                consumer.drain(chunk)
            elif op == "pause" and adapt:
                consumer.calls.append(("pause",))
                target.pauseProducing()
            elif op == "resume" and adapt:
                consumer.calls.append(("resume",))
                target.resumeProducing()
            elif op in ("stop", "cancel", "lose"):
                ended = ended or not results
                if op == "stop":
                    (target if adapt else sender).stopProducing()
                elif op == "cancel":
                    d.cancel()
                else:
                    consumer.loseConnection()
        if adapt:
            consumer.calls.append(("resume",))
            target.resumeProducing()
        for _ in range(len(data) + 20):
            clock.advance(0.001)
            consumer.drain()
            if results and not clock.getDelayedCalls():
                break
        received = consumer.received
        self.assertEqual(received, data[: len(received)])
        self.assertEqual(consumer.writesAfterPause(), [])
        self.assertEqual(len(results), 1)
        self.assertIsNone(consumer.producer)
        self.assertEqual(clock.getDelayedCalls(), [])
        if isinstance(results[0], Failure):
            self.assertTrue(ended)
            self.assertIsNotNone(results[0].check(ProducerStopped, CancelledError))
        else:
            self.assertEqual(received, data)
            self.assertFalse(ended)

    @_settings
    @given(
        st.binary(max_size=200),
        st.integers(1, 50),
        _OPS,
        st.integers(0, 60),
        st.booleans(),
    )
    def test_fileSenderDeliversPrefixAndCompletesOnce(
        self, data: bytes, chunk: int, ops: List[str], threshold: int, adapt: bool
    ) -> None:
        """
        FileSender (directly, or through PullToPush) delivers a prefix and
        completes once, correctly.
        """
        self.run_pull(data, chunk, ops, threshold, adapt)


def _lines(data: bytes) -> bytes:
    """
    What L{LineSplitter} then L{LineJoiner} make of C{data}.
    """
    lines = data.split(b"\n")
    last = lines.pop()
    return b"".join(line + b"\n" for line in lines) + (last + b"\n" if last else b"")


# Chains of stages: what to build, and what they make of the input.
_CHAINS: Dict[str, Tuple[Callable[..., List[Stage]], Callable[[bytes], bytes]]] = {
    "function": (lambda **kw: [Stage(lambda b: [b], **kw)], bytes),
    "hash": (lambda **kw: [HashStage(**kw)], bytes),
    "lines": (lambda **kw: [LineSplitter(**kw), LineJoiner(**kw)], _lines),
    "zlib": (lambda **kw: [Compress(**kw), Decompress(**kw)], bytes),
    "frames": (lambda **kw: [Frame(**kw), Unframe(**kw)], bytes),
}

_STAGE_OPS = st.lists(
    st.sampled_from(
        [
            *("advance", "advance", "advance", "drain", "drainSome"),
            *("pause", "resume", "stop", "cancel", "lose", "stopSource"),
        ]
    ),
    max_size=40,
)

_fewer = settings(_settings, max_examples=75)


class StagePropertyTests(SynchronousTestCase):
    """
    Pipelines of the shipped stages, fed by a push or a pull source, under
    random backpressure, pauses, resumes, stops, cancellations, peer loss
    at either end, write failures and stage failures.
    """

    @_fewer
    @given(
        _CHUNKS,
        st.sampled_from(sorted(_CHAINS)),
        st.booleans(),
        _STAGE_OPS,
        st.integers(0, 40),
        st.integers(1, 16),
        st.integers(1, 64),
        st.none() | st.integers(0, 20),
        st.none() | st.integers(0, 20),
    )
    def test_pipelineDeliversPrefixAndCompletesOnce(
        self,
        chunks: List[bytes],
        chain: str,
        pull: bool,
        ops: List[str],
        threshold: int,
        rate: int,
        highWater: int,
        failAt: Optional[int],
        stageFailAt: Optional[int],
    ) -> None:
        """
        The sink receives a prefix of what the chain makes of the input, in
        order and without duplicates, and the pipeline's L{Deferred} fires
        exactly once: with success if and only if everything arrived and
        nothing stopped it; every producer is stopped and nothing is left
        scheduled.
        """
        clock = Clock()
        sink = BackpressureConsumer(
            threshold,
            clock=clock,
            drainRate=rate,
            failOnWrite=None if failAt is None else OSError("write failed"),
            failAfterWrites=failAt or 0,
        )
        build, transform = _CHAINS[chain]
        water: Dict[str, Any] = {"highWater": highWater, "lowWater": highWater // 2}
        stages = build(reactor=clock, **water)
        data = b"".join(chunks)
        expected = transform(data)
        if stageFailAt is not None:

            def failing(item: bytes) -> List[bytes]:
                if head.itemsIn > stageFailAt:
                    raise ValueError("stage failed")
                return [item]

            head = Stage(failing, reactor=clock, **water)
            stages.insert(0, head)
        source: Any
        sender: Any
        if pull:
            sender = FileSender()
            sender.CHUNK_SIZE = 5
            source = functools.partial(sender.beginFileTransfer, io.BytesIO(data))
        else:
            source = sender = Generated(chunks, clock)
        d = pipeline(source, *stages, sink=sink)
        results: List[Any] = []
        d.addBoth(results.append)
        last = stages[-1]
        ended = False
        for op in ops:
            if op == "advance":
                clock.advance(0.001)
            elif op == "drain":
                sink.drain()
            elif op == "drainSome":
                sink.drain(rate)
            elif op == "pause":
                sink.calls.append(("pause",))
                last.pauseProducing()
            elif op == "resume":
                sink.calls.append(("resume",))
                last.resumeProducing()
            else:
                ended = ended or not results
                if op == "stop":
                    last.stopProducing()
                elif op == "cancel":
                    d.cancel()
                elif op == "lose":
                    sink.loseConnection()
                else:
                    sender.stopProducing()
        sink.calls.append(("resume",))
        last.resumeProducing()
        for _ in range(len(data) * 4 + 50):
            clock.advance(0.001)
            sink.drain()
            if results and not clock.getDelayedCalls():
                break
        received = sink.received
        assert isinstance(received, bytes)
        self.assertEqual(received, expected[: len(received)])
        self.assertEqual(sink.writesAfterPause(), [])
        self.assertEqual(len(results), 1)
        self.assertIsNone(sink.producer)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual([s for s in stages if s.upstream is not None], [])
        self.assertTrue(sender.file is None if pull else not sender.producing)
        result = results[0]
        if isinstance(result, Failure):
            self.assertFalse(sink.finished)
            if result.check(OSError):
                self.assertIsNotNone(failAt)
            elif result.check(ValueError):
                self.assertIsNotNone(stageFailAt)
            else:
                self.assertTrue(ended)
                self.assertIsNotNone(result.check(ProducerStopped, CancelledError))
        else:
            self.assertEqual(received, expected)
            self.assertTrue(sink.finished)
            self.assertFalse(ended)
            self.assertEqual(result, len(received))


# Each step: what happens, and to which side (ignored by advance and connect).
_PROXY_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                *("advance", "advance", "advance", "connect"),
                *("drain", "drain", "pause", "resume", "lose"),
            ]
        ),
        st.sampled_from(["Client", "Upstream"]),
    ),
    max_size=40,
)


_TIMEOUTS = ("idle timeout", "connect timeout")


class ProxyPropertyTests(SynchronousTestCase):
    """
    A connection through L{ProxyFactory}, over fake connections on a clock,
    with data both ways, under random backpressure on either side, pauses
    and resumes of either direction, a slow or never-completed upstream
    connection (cancelled when the client leaves first, or by the connect
    timeout), an idle timeout, and either peer resetting its connection.
    """

    @_fewer
    @given(
        _CHUNKS,
        _CHUNKS,
        _PROXY_OPS,
        st.integers(0, 40),
        st.integers(0, 40),
        st.integers(1, 16),
        st.booleans(),
        st.sampled_from([30, 0.0035]),
        st.sampled_from([None, 0.0055]),
        st.tuples(*[st.sampled_from([FakeConnection, FakeTLSConnection])] * 2),
    )
    def test_eachDirectionDeliversPrefixAndCompletesOnce(
        self,
        fromClient: List[bytes],
        fromUpstream: List[bytes],
        ops: List[Tuple[str, str]],
        clientThreshold: int,
        upstreamThreshold: int,
        rate: int,
        immediate: bool,
        connectTimeout: float,
        idleTimeout: Optional[float],
        kinds: Tuple[Type[FakeConnection], Type[FakeConnection]],
    ) -> None:
        """
        Each remote end receives a prefix of what the other sent, in order
        and without duplicates, and nothing is written to a side that paused
        its producer; the connection's L{Deferred} fires exactly once, with
        C{"closed"} and everything delivered both ways (and each end of
        stream passed on as a half-close) unless a peer was lost or a timeout
        fired; both connections are closed and nothing is left scheduled.
        """
        clock = Clock()
        remotes = {
            "Client": BackpressureConsumer(
                clientThreshold, clock=clock, drainRate=rate
            ),
            "Upstream": BackpressureConsumer(
                upstreamThreshold, clock=clock, drainRate=rate
            ),
        }
        connections = {
            "Client": kinds[0](clock, remotes["Client"], fromClient),
            "Upstream": kinds[1](clock, remotes["Upstream"], fromUpstream),
        }
        endpoint = FakeConnectionEndpoint(connections["Upstream"], immediate)
        factory = ProxyFactory.forEndpoint(
            endpoint,
            reactor=clock,
            connectTimeout=connectTimeout,
            idleTimeout=idleTimeout,
        )
        protocol: Any = factory.buildProtocol(None)
        connections["Client"].connect(protocol)
        results: List[Any] = []
        protocol.connection.done.addBoth(results.append)
        readers: Dict[str, Any] = {}
        lost = False
        for op, side in ops:
            remote, connection = remotes[side], connections[side]
            if readers.get(side) is None:
                # The reader of the other side, once the proxy registers it.
                readers[side] = remote.producer
            reader = readers[side]
            if op == "advance":
                clock.advance(0.001)
            elif op == "connect":
                endpoint.complete()
            elif op == "drain":
                remote.drain(rate)
            elif op == "pause" and reader is not None:
                remote.calls.append(("pause",))
                reader.pauseProducing()
            elif op == "resume" and reader is not None:
                remote.calls.append(("resume",))
                reader.resumeProducing()
            elif op == "lose" and connection.protocol is not None:
                lost = lost or not (results or connection.lost)
                connection.lose()
        endpoint.complete()
        for side, reader in readers.items():
            if reader is not None:
                remotes[side].calls.append(("resume",))
                reader.resumeProducing()
        for _ in range(4 * (len(fromClient) + len(fromUpstream)) + 50):
            clock.advance(0.001)
            if results and not clock.getDelayedCalls():
                break
        sent = {"Client": b"".join(fromUpstream), "Upstream": b"".join(fromClient)}
        for side, remote in remotes.items():
            received = remote.received
            assert isinstance(received, bytes)
            self.assertEqual(received, sent[side][: len(received)], side)
            self.assertEqual(remote.writesAfterPause(), [], side)
            self.assertIsNone(remote.producer, side)
        self.assertEqual(len(results), 1)
        stats = results[0]
        self.assertIsInstance(stats, ProxyStatistics)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(factory.connections, 0)
        self.assertTrue(connections["Client"].lost)
        upstream = connections["Upstream"]
        self.assertEqual(upstream.lost, upstream.protocol is not None)
        self.assertGreaterEqual(
            stats.bytesToUpstream, len(remotes["Upstream"].received)
        )
        self.assertGreaterEqual(stats.bytesToClient, len(remotes["Client"].received))
        timedOut = stats.reason in _TIMEOUTS
        if stats.reason == "connect timeout":
            self.assertIsNone(upstream.protocol)
        for side, remote in remotes.items():
            if remote.finished:
                # Its end of stream came as a half-close, after everything.
                self.assertEqual(remote.received, sent[side], side)
        if not (lost or timedOut):
            self.assertEqual(stats.reason, "closed")
            # The first end of stream always arrives after all its data; if
            # it had to close a TLS connection, the other way is cut short.
            complete = [remotes[s].received == sent[s] for s in remotes]
            self.assertTrue(any(complete))
            if FakeTLSConnection not in kinds:
                self.assertEqual(complete, [True, True])
                self.assertTrue(all(r.finished for r in remotes.values()))
                self.assertEqual(
                    (stats.bytesToUpstream, stats.bytesToClient),
                    (len(sent["Upstream"]), len(sent["Client"])),
                )
        else:
            self.assertIn(
                stats.reason, ("client lost", "upstream lost", "closed", *_TIMEOUTS)
            )
