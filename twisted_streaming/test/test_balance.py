"""
Tests for L{twisted_streaming.Balance}: one source's writes spread over
several consumers.
"""

from __future__ import annotations

import io
from typing import Any, List, Tuple

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    Balance,
    ConsumerFinished,
    FileSender,
    IFinishableConsumer,
    ProducerStateError,
    ProducerStopped,
    pipeline,
)
from twisted_streaming.test._fan import (
    Framed,
    Frames,
    closeWhenDone,
    connect,
    frame,
    runFor,
)
from twisted_streaming.test.test_broadcast import pieces
from twisted_streaming.test.test_flow import RefusingConsumer
from twisted_streaming.test.test_merge import Boom
from twisted_streaming.test.test_stages import Items
from twisted_streaming.testing import (
    FILE_DATA,
    BackpressureConsumer,
    ConsumerConformanceMixin,
    FedPushProducer,
    PushProducerConformanceMixin,
    RecordingPushProducer,
)


class BalanceTests(SynchronousTestCase):
    """
    L{Balance} over fakes, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_interface(self) -> None:
        """
        A balance is a finishable consumer.
        """
        self.assertTrue(verifyObject(IFinishableConsumer, Balance()))

    def test_roundRobinOverOutputsNotPaused(self) -> None:
        """
        Each write goes to one output, the next in turn that is not paused.
        """
        balance = Balance(reactor=self.clock)
        sinks = [BackpressureConsumer(2**62) for _ in range(3)]
        for sink in sinks:
            balance.addOutput(sink)
        for i in range(6):
            balance.write(b"%d" % (i,))
        self.assertEqual([s.received for s in sinks], [b"03", b"14", b"25"])
        balance.outputs[1].pauseProducing()
        for i in range(4):
            balance.write(b"%d" % (6 + i,))
        self.assertEqual([s.received for s in sinks], [b"0368", b"14", b"2579"])

    def test_sourcePausedOnlyWhileEveryOutputIs(self) -> None:
        """
        The source is paused while every output is paused (or there is
        none), and resumed once one resumes.
        """
        balance = Balance(reactor=self.clock)
        source = RecordingPushProducer()
        balance.registerProducer(source, True)
        self.assertEqual(source.calls, [("pause",)])
        for _ in range(2):
            balance.addOutput(BackpressureConsumer())
        self.assertEqual(source.calls, [("pause",), ("resume",)])
        first, second = balance.outputs
        first.pauseProducing()
        self.assertEqual(len(source.calls), 2)
        second.pauseProducing()
        self.assertEqual(source.calls[-1], ("pause",))
        second.resumeProducing()
        self.assertEqual(source.calls[-1], ("resume",))

    def test_heldUntilAnOutputCanTakeIt(self) -> None:
        """
        A write that arrives while every output is paused is held, keeps the
        source paused, and goes to the first output that resumes.
        """
        balance = Balance(reactor=self.clock)
        sinks = [BackpressureConsumer(2**62) for _ in range(2)]
        for sink in sinks:
            balance.addOutput(sink)
        source = RecordingPushProducer()
        balance.registerProducer(source, True)
        for output in balance.outputs:
            output.pauseProducing()
        balance.write(b"late")
        balance.write(b"later")
        self.assertEqual(balance.held, 9)
        balance.outputs[1].resumeProducing()
        self.assertEqual(sinks[1].received, b"latelater")
        self.assertEqual(balance.held, 0)
        self.assertEqual(source.calls, [("pause",), ("resume",)])

    def test_heldWithoutOutputs(self) -> None:
        """
        Writes made with no output at all are held for the first one added,
        and the finish waits for them to go out.
        """
        balance = Balance(reactor=self.clock)
        balance.write(b"abc")
        balance.finish()
        self.assertNoResult(balance.done)
        sink = BackpressureConsumer()
        done = balance.addOutput(sink)
        self.assertEqual(sink.received, b"abc")
        self.assertTrue(sink.finished)
        self.assertEqual(self.successResultOf(done), 3)
        self.assertEqual(self.successResultOf(balance.done), 3)

    def test_spreadsUnderBackpressure(self) -> None:
        """
        Outputs of different speeds each get a part of the stream, the
        faster ones more, and together everything, each write whole.
        """
        balance = Balance(reactor=self.clock)
        sinks = [
            BackpressureConsumer(3000, clock=self.clock, drainRate=rate)
            for rate in (1000, 1000, 10_000)
        ]
        outputs = [balance.addOutput(sink) for sink in sinks]
        Framed(0, 994, 300, reactor=self.clock).startProducing(balance)
        runFor(self.clock, lambda: balance.done.called)
        self.assertEqual(self.successResultOf(balance.done), 300_000)
        got = [len(sink.received) for sink in sinks]
        self.assertEqual(sum(got), 300_000)
        self.assertEqual([self.successResultOf(d) for d in outputs], got)
        self.assertGreater(got[2], 2 * max(got[:2]))
        self.assertTrue(all(g > 0 for g in got))
        for sink in sinks:
            self.assertEqual(
                sink.received, frame(0, 994) * (len(sink.received) // 1000)
            )
            self.assertTrue(sink.finished)

    def test_cancelAndFail(self) -> None:
        """
        Cancelling L{done} stops the source and the outputs; a write after
        the finish raises.
        """
        balance = Balance(reactor=self.clock)
        output = balance.addOutput(BackpressureConsumer())
        source = RecordingPushProducer()
        balance.registerProducer(source, True)
        balance.done.cancel()
        self.failureResultOf(balance.done, CancelledError)
        self.failureResultOf(output, CancelledError)
        self.assertEqual(source.calls, [("stop",)])
        balance.write(b"late")
        other = Balance(reactor=self.clock)
        other.finish()
        self.assertRaises(ConsumerFinished, other.write, b"x")
        failed = Balance(reactor=self.clock)
        failedOutput = failed.addOutput(BackpressureConsumer())
        failed.fail(Boom("broken"))
        self.failureResultOf(failedOutput, Boom)
        self.failureResultOf(failed.done, Boom)

    def test_outputGoesAway(self) -> None:
        """
        An output whose consumer goes away is removed; the others take the
        rest.
        """
        balance = Balance(reactor=self.clock)
        gone = BackpressureConsumer()
        stays = BackpressureConsumer()
        goneDone = balance.addOutput(gone)
        balance.addOutput(stays)
        gone.loseConnection()
        self.failureResultOf(goneDone, ProducerStopped)
        for _ in range(3):
            balance.write(b"x")
        self.assertEqual(stays.received, b"xxx")

    def test_outputRefuses(self) -> None:
        """
        A consumer that already has a producer refuses its output: that
        Deferred fails, nothing is written to it, and the writes go to the
        other outputs.
        """
        balance = Balance(reactor=self.clock)
        refusing = RefusingConsumer()
        self.failureResultOf(balance.addOutput(refusing), ProducerStateError)
        stays = BackpressureConsumer()
        balance.addOutput(stays)
        for _ in range(2):
            balance.write(b"x")
        self.assertEqual((refusing.received, stays.received), (b"", b"xx"))
        self.assertIs(refusing.producer, refusing.first)

    def test_pullSource(self) -> None:
        """
        A pull source is asked for data while an output can take it.
        """
        balance = Balance(reactor=self.clock)
        sinks = [BackpressureConsumer(2000, clock=self.clock) for _ in range(2)]
        for sink in sinks:
            balance.addOutput(sink)
        sender = FileSender()
        sender.CHUNK_SIZE = 1000
        pipeline(
            lambda c: sender.beginFileTransfer(io.BytesIO(FILE_DATA), c), sink=balance
        )
        runFor(self.clock, lambda: balance.done.called)
        self.assertEqual(
            len(sinks[0].received) + len(sinks[1].received), len(FILE_DATA)
        )
        self.assertEqual(sinks[0].received[:1000], FILE_DATA[:1000])
        self.assertEqual(sinks[1].received[:1000], FILE_DATA[1000:2000])


def _lines(data: bytes) -> List[bytes]:
    return data.splitlines(keepends=True)


class BalanceConformanceTests(ConsumerConformanceMixin, SynchronousTestCase):
    """
    A balance over two outputs of different speeds conforms as a consumer;
    between them they get every line written, once.
    """

    def makeConsumer(self, clock: Clock) -> Any:
        balance = Balance(reactor=clock)
        self.sinks = [
            BackpressureConsumer(1024, clock=clock, drainRate=rate)
            for rate in (1024, 4096)
        ]
        for sink in self.sinks:
            balance.addOutput(sink)
        return balance

    def completion(self, consumer: Any) -> Any:
        return consumer.done

    def received(self, consumer: Any) -> Any:
        # The lines are numbered: in order, they are the stream written.
        lines = [line for sink in self.sinks for line in _lines(bytes(sink.received))]
        assert all(sink.finished for sink in self.sinks)
        return b"".join(sorted(lines))


class BalanceOutputConformanceTests(PushProducerConformanceMixin, SynchronousTestCase):
    """
    The one output of a balance conforms as a push producer.
    """

    def makeProducer(self, clock: Clock) -> Any:
        def connect(consumer: Any) -> Tuple[Any, Any]:
            balance = Balance(reactor=clock)
            done = balance.addOutput(consumer)
            pipeline(Items(pieces(FILE_DATA, 1000), reactor=clock), sink=balance)
            return balance.outputs[0], done

        return FedPushProducer(connect)

    def expectedData(self, producer: Any) -> Any:
        return FILE_DATA


class BalanceOverTCPTests(TestCase):
    """
    L{Balance} over real TCP connections on 127.0.0.1.
    """

    async def test_slowWorkerGetsLess(self) -> None:
        """
        Spread over three connections, one of which stops reading for a
        while, every frame arrives whole exactly once, and the stalled one
        gets less.
        """
        balance = Balance()
        clients = [Frames(paused=(i == 0)) for i in range(3)]
        for client in clients:
            server = await connect(self, client, smallBuffers=client is clients[0])
            transport = server.transport
            balance.addOutput(transport).addCallback(closeWhenDone(transport))
        count = 2000
        Framed(0, 10_000, count).startProducing(balance)
        await clients[1].lost
        await clients[2].lost
        clients[0].transport.resumeProducing()
        await clients[0].lost
        logs = [len(client.log) for client in clients]
        self.assertEqual(sum(logs), count)
        self.assertLess(logs[0], min(logs[1:]))
        for client in clients:
            self.assertEqual(client.errors, [])
