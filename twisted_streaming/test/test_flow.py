"""
Tests for the flow core, L{twisted_streaming._flow}: the turn loop, the
pause flag, a consumer's view of its producer, the water-mark buffer and the
producer lifecycle every class of the package is built on.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock, Cooperator
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_streaming import ContextFailure, ProducerStateError, ProducerStopped
from twisted_streaming._failure import failureWithContext, tagPathOf
from twisted_streaming._flow import (
    BufferedConsumer,
    Completion,
    Flow,
    PassThrough,
    PauseFlag,
    ReadingFlag,
    Task,
    TurnLoop,
    Upstream,
    WaterMarkBuffer,
    regulateHeld,
    turnLoop,
)
from twisted_streaming.test.test_push import runTurn
from twisted_streaming.testing import (
    BackpressureConsumer,
    RecordingPullProducer,
    RecordingPushProducer,
)


class TurnLoopTests(SynchronousTestCase):
    """
    L{TurnLoop} and L{Task}: one budget per turn for every task on a reactor.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_onePerReactor(self) -> None:
        """
        Every flow on a reactor shares its one loop; another reactor has
        another.
        """
        self.assertIs(turnLoop(self.clock), turnLoop(self.clock))
        self.assertIsNot(turnLoop(self.clock), turnLoop(Clock()))
        self.assertIsInstance(turnLoop(self.clock), Cooperator)

    def test_tasksTakeTurnsWithinOneBudget(self) -> None:
        """
        Awake tasks run one step each in turn until the turn's bytes are
        spent; the rest of the work waits for the next turn.
        """
        loop = turnLoop(self.clock)
        loop.bytesPerTurn = 30
        steps: List[str] = []

        def stepper(name: str, task: List[Task]) -> Any:
            def step() -> bool:
                steps.append(name)
                task[0].charge(10)
                return True

            return step

        tasks: List[Task] = []
        for name in "abc":
            holder: List[Task] = []
            holder.append(Task(loop, stepper(name, holder)))
            tasks.append(holder[0])
        for task in tasks:
            task.wake()
        self.assertEqual(steps, [])
        runTurn(self.clock)
        self.assertEqual(steps, ["a", "b", "c"])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        runTurn(self.clock)
        self.assertEqual(steps, ["a", "b", "c"] * 2)
        for task in tasks:
            task.cancel()
        self.clock.advance(0)
        self.assertEqual(steps, ["a", "b", "c"] * 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeBudgetIsTheReactorsClock(self) -> None:
        """
        A turn ends once the reactor's own clock says its time is spent:
        with a L{Clock}, the time it is advanced by inside a step.
        """
        loop = turnLoop(self.clock)
        loop.secondsPerTurn = 1.0
        steps: List[int] = []

        def step() -> bool:
            steps.append(1)
            self.clock.rightNow += 0.4
            return True

        task = Task(loop, step)
        task.wake()
        runTurn(self.clock)
        self.assertEqual(len(steps), 3)
        task.cancel()

    def test_sleepsWhenDone(self) -> None:
        """
        A step that says it has nothing more to do sleeps until woken, and
        leaves nothing scheduled.
        """
        calls: List[int] = []

        def step() -> bool:
            calls.append(1)
            return False

        task = Task(turnLoop(self.clock), step)
        task.wake()
        self.clock.advance(0)
        self.assertEqual((len(calls), task.awake), (1, False))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        task.wake()
        self.clock.advance(0)
        self.assertEqual(len(calls), 2)

    def test_wokenDuringItsStepRunsAgain(self) -> None:
        """
        A task woken while its step runs (by an event the step set off) runs
        again, though the step said it was done.
        """
        calls: List[int] = []
        holder: List[Task] = []

        def step() -> bool:
            calls.append(1)
            if len(calls) == 1:
                holder[0].wake()
            return False

        holder.append(Task(turnLoop(self.clock), step))
        holder[0].wake()
        self.clock.advance(0)
        self.assertEqual(len(calls), 2)
        self.assertFalse(holder[0].awake)

    def test_anyCooperator(self) -> None:
        """
        A task runs on any L{Cooperator}, which keeps no byte budget.
        """
        ran: List[int] = []
        cooperator = Cooperator(
            terminationPredicateFactory=lambda: lambda: True,
            scheduler=lambda f: self.clock.callLater(0, f),
        )

        def step() -> bool:
            ran.append(1)
            return len(ran) < 3

        task = Task(cooperator, step)
        self.assertFalse(task.charge(10**9))
        task.wake()
        for expected in (1, 2, 3, 3):
            runTurn(self.clock)
            self.assertEqual(len(ran), expected)


class PauseFlagTests(SynchronousTestCase):
    """
    L{PauseFlag} is a flag, never a count.
    """

    def test_changesOnly(self) -> None:
        """
        The callback hears each change once, and nothing that changes
        nothing.
        """
        changes: List[bool] = []
        flag = PauseFlag(changes.append)
        flag.resume()
        flag.pause()
        flag.pause()
        flag.resume()
        flag.resume()
        self.assertEqual(changes, [True, False])


class UpstreamTests(SynchronousTestCase):
    """
    L{Upstream}: a consumer's view of the producer registered with it.
    """

    def test_oneAtATime(self) -> None:
        """
        A second producer cannot register until the first has unregistered;
        the error is a L{RuntimeError}, as a transport raises.
        """
        up = Upstream("consumer")
        first, second = RecordingPushProducer(), RecordingPushProducer()
        up.register(first, True)
        with self.assertRaises(RuntimeError) as e:
            up.register(second, True)
        self.assertIsInstance(e.exception, ProducerStateError)
        self.assertIs(up.producer, first)
        up.unregister()
        up.register(second, True)
        self.assertIs(up.producer, second)

    def test_pauseAndResumeOnce(self) -> None:
        """
        A streaming producer hears one pause and one resume per change; a
        pull producer is never paused.
        """
        up = Upstream("consumer")
        producer = RecordingPushProducer()
        up.register(producer, True)
        up.pause()
        up.pause()
        up.resume()
        up.resume()
        self.assertEqual(producer.calls, [("pause",), ("resume",)])
        up.pause(repeat=True)
        up.pause(repeat=True)
        self.assertEqual(producer.calls[2:], [("pause",), ("pause",)])
        pull = RecordingPushProducer()
        up.unregister()
        up.register(pull, False)
        up.pause()
        self.assertEqual(pull.calls, [])

    def test_pullContainsErrors(self) -> None:
        """
        An error from a pull producer's C{resumeProducing} is returned, not
        raised.
        """

        class Broken(RecordingPushProducer):
            def resumeProducing(self) -> None:
                raise ValueError("broken")

        up = Upstream("consumer")
        up.register(Broken(), False)
        failure = up.pull()
        assert failure is not None
        self.assertTrue(failure.check(ValueError))

    def test_stopForgetsFirst(self) -> None:
        """
        C{stop} forgets the producer before stopping it, so that it finds
        itself unregistered if it looks.
        """
        up = Upstream("consumer")
        seen: List[Any] = []

        class Looking(RecordingPushProducer):
            def stopProducing(self) -> None:
                seen.append(up.producer)

        up.register(Looking(), True)
        up.stop()
        self.assertEqual(seen, [None])


class WaterMarkBufferTests(SynchronousTestCase):
    """
    L{WaterMarkBuffer}: sizes, marks, and the producer they regulate.
    """

    highWater = 10
    lowWater = 4

    def test_sizes(self) -> None:
        """
        Bytes count as their length, anything else as 1.
        """
        buffer: WaterMarkBuffer[Any] = WaterMarkBuffer(self)
        buffer.extend([b"abc", bytearray(b"de"), memoryview(b"f"), {"x": 1}])
        self.assertEqual((len(buffer), buffer.size), (4, 7))
        self.assertEqual(buffer.popleft(), b"abc")
        buffer.appendleft(b"c")
        self.assertEqual(buffer.size, 5)
        buffer.clear()
        self.assertEqual((len(buffer), buffer.size, bool(buffer)), (0, 0, False))

    def test_regulates(self) -> None:
        """
        The producer is paused from the high mark on, and resumed below the
        low mark or when empty; the marks are read from the owner each time.
        """
        buffer: WaterMarkBuffer[bytes] = WaterMarkBuffer(self)
        up = Upstream(self)
        producer = RecordingPushProducer()
        up.register(producer, True)
        buffer.append(b"x" * 9)
        buffer.regulate(up)
        self.assertEqual(producer.calls, [])
        buffer.append(b"x")
        buffer.regulate(up)
        self.assertEqual(producer.calls, [("pause",)])
        buffer.popleft()
        buffer.regulate(up)
        self.assertEqual(producer.calls, [("pause",), ("resume",)])
        self.highWater = 100
        buffer.extend([b"x" * 50])
        buffer.regulate(up)
        self.assertEqual(len(producer.calls), 2)
        buffer.regulate(up, blocked=True)
        self.assertEqual(producer.calls[-1], ("pause",))
        self.lowWater = 0
        buffer.regulate(up)
        self.assertEqual(producer.calls[-1], ("pause",))
        buffer.clear()
        buffer.regulate(up)
        self.assertEqual(producer.calls[-1], ("resume",))

    def test_regulatesWhatIsHeldElsewhere(self) -> None:
        """
        L{regulateHeld} pauses at the high mark only while something is
        held, keeps the producer as it is between the marks, and resumes
        below the low mark, when nothing is held, or never while blocked.
        """
        up = Upstream(self)
        producer = RecordingPushProducer()
        up.register(producer, True)
        regulateHeld(up, 10, False, self)
        self.assertEqual(producer.calls, [])
        regulateHeld(up, 10, True, self)
        self.assertEqual(producer.calls, [("pause",)])
        regulateHeld(up, 5, True, self)
        self.assertEqual(producer.calls, [("pause",)])
        regulateHeld(up, 3, True, self, blocked=True)
        self.assertEqual(producer.calls, [("pause",)])
        regulateHeld(up, 3, True, self)
        self.assertEqual(producer.calls, [("pause",), ("resume",)])
        regulateHeld(up, 0, False, self, blocked=True)
        regulateHeld(up, 7, False, self)
        self.assertEqual(producer.calls[2:], [("pause",), ("resume",)])


class CompletionTests(SynchronousTestCase):
    """
    L{Completion}: one result, for any number of waiters.
    """

    def test_everyWaiterGetsTheResult(self) -> None:
        """
        Waiters before and after the end each get the result, and one's
        callbacks do not change what another gets.
        """
        completion: Completion[int] = Completion()
        before = completion.whenDone()
        before.addCallback(lambda n: n + 1)
        self.assertNoResult(before)
        self.assertTrue(completion.fire(5))
        self.assertTrue(completion.fire(8))
        self.assertEqual(self.successResultOf(before), 6)
        self.assertEqual(self.successResultOf(completion.whenDone()), 5)
        ofNone: Completion[None] = Completion()
        ofNone.fire(None)
        self.assertTrue(ofNone.done)
        self.assertIsNone(self.successResultOf(ofNone.whenDone()))

    def test_failureIsGivenToEach(self) -> None:
        """
        A failure fails every waiter, and is not left unhandled when nobody
        waits.
        """
        completion: Completion[int] = Completion()
        self.assertFalse(completion.fire(Failure(ValueError("no"))))
        self.failureResultOf(completion.whenDone(), ValueError)
        self.failureResultOf(completion.whenDone(), ValueError)


class Recorded(Flow):
    """
    A flow that records its cleanups and steps.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ended: List[Optional[Failure]] = []
        self.order: List[str] = []

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        self.order.append("cleanup")
        self.ended.append(reason)


class RefusingConsumer(BackpressureConsumer):
    """
    A consumer that already has a producer, as a transport that two
    producers are started on.
    """

    def __init__(self) -> None:
        super().__init__()
        self.first = RecordingPushProducer()
        self.registerProducer(self.first, True)


class FlowLifecycleTests(SynchronousTestCase):
    """
    L{Flow}: registration last and rolled back, one end path that fires
    last.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_refusedRegistrationFailsAndTouchesNothing(self) -> None:
        """
        If the consumer refuses the flow, its Deferred fails with the
        consumer's own error, the cleanup hook runs, and the consumer's own
        producer is neither unregistered nor told anything.
        """
        consumer = RefusingConsumer()
        flow = Recorded(reactor=self.clock)
        d = flow._start(consumer, True)
        failure = self.failureResultOf(d, RuntimeError)
        self.assertIsInstance(failure, ContextFailure)
        self.assertIn("never unregistered", failure.getErrorMessage())
        self.assertEqual(flow.ended, [failure])
        self.assertIs(consumer.producer, consumer.first)
        self.assertEqual(consumer.first.calls, [])
        self.assertNotIn(("unregisterProducer",), consumer.calls)
        self.assertFalse(flow.producing)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_endsOnceAndFiresLast(self) -> None:
        """
        The end path unregisters, cleans up, and only then fires; a second
        ending does nothing.
        """
        consumer = BackpressureConsumer()
        flow = Recorded(reactor=self.clock)
        d = flow._start(consumer, True)

        def fired(result: object) -> None:
            flow.order.append(f"fired {result}")
            self.assertIsNone(consumer.producer)

        d.addCallback(fired)
        flow._finish(7)
        flow._finish(8)
        flow.stopProducing()
        self.assertEqual(flow.order, ["cleanup", "fired 7"])
        self.assertEqual(flow.ended, [None])
        self.assertTrue(consumer.finished)

    def test_endWith(self) -> None:
        """
        C{_endWith(None)} finishes with the bytes written; with a failure,
        it fails with its error, in context.
        """
        flow = Recorded(reactor=self.clock)
        d = flow._start(BackpressureConsumer(), True)
        flow.bytesWritten = 5
        flow._endWith(None)
        self.assertEqual(self.successResultOf(d), 5)
        failing = Recorded(reactor=self.clock)
        d = failing._start(BackpressureConsumer(), True)
        failing._endWith(Failure(ValueError("cut")))
        self.assertIsInstance(self.failureResultOf(d, ValueError), ContextFailure)

    def test_unregistersOnlyItself(self) -> None:
        """
        A flow whose consumer has forgotten it and taken another producer
        does not unregister that one when it ends.
        """
        consumer = BackpressureConsumer()
        flow = Recorded(reactor=self.clock)
        d = flow._start(consumer, True)
        consumer.unregisterProducer()
        other = RecordingPushProducer()
        consumer.registerProducer(other, True)
        flow.stopProducing()
        self.failureResultOf(d, ProducerStopped)
        self.assertIs(consumer.producer, other)

    def test_cancelStops(self) -> None:
        """
        Cancelling stops the flow (unregistering it and cleaning up) and
        fails the Deferred with L{CancelledError}.
        """
        consumer = BackpressureConsumer()
        flow = Recorded(reactor=self.clock)
        d = flow._start(consumer, True)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertIsNone(consumer.producer)
        self.assertEqual(len(flow.ended), 1)

    def test_startedOnce(self) -> None:
        """
        A flow starts once, unless it is reusable and has ended.
        """
        flow = Recorded(reactor=self.clock)
        flow._start(BackpressureConsumer(), True)
        self.assertRaises(ProducerStateError, flow._start, BackpressureConsumer(), True)
        flow._finish(0)
        self.assertRaises(ProducerStateError, flow._start, BackpressureConsumer(), True)
        flow.reusable = True
        d = flow._start(BackpressureConsumer(), True)
        flow._finish(1)
        self.assertEqual(self.successResultOf(d), 1)

    def test_turnLoopOfItsReactor(self) -> None:
        """
        A flow's task runs on its reactor's loop, or on the cooperator it
        was given.
        """
        flow = Recorded(reactor=self.clock)
        self.assertIs(flow._turns()._cooperator, turnLoop(self.clock))
        cooperator = TurnLoop(self.clock)
        flow = Recorded(cooperator=cooperator)
        self.assertIs(flow._turns()._cooperator, cooperator)


class FlowTaskForTests(SynchronousTestCase):
    """
    L{Flow._taskFor}: tasks for parts of a flow, on the flow's loop.
    """

    def test_onTheFlowsLoopAndNotItsOwn(self) -> None:
        """
        A task made for another step runs on the flow's loop (or its
        cooperator), apart from the flow's own task, and survives the
        flow's end until its owner cancels it.
        """
        clock = Clock()
        flow = Recorded(reactor=clock)
        steps: List[str] = []

        def step() -> bool:
            steps.append("part")
            return False

        task = flow._taskFor(step)
        self.assertIs(task._cooperator, turnLoop(clock))
        self.assertIsNot(task, flow._turns())
        flow._start(BackpressureConsumer(), True)
        flow._finish(0)
        task.wake()
        clock.advance(0)
        self.assertEqual(steps, ["part"])
        task.cancel()
        cooperator = TurnLoop(clock)
        self.assertIs(
            Recorded(cooperator=cooperator)._taskFor(lambda: False)._cooperator,
            cooperator,
        )


class TaskErrorTests(SynchronousTestCase):
    """
    A step that raises is reported, not lost.
    """

    def test_escapingErrorIsLogged(self) -> None:
        """
        An exception that escapes a step is logged, and the task sleeps
        instead of dying silently inside the L{Cooperator}; woken, it runs
        again.
        """
        clock = Clock()
        calls: List[int] = []

        def step() -> bool:
            calls.append(1)
            raise ZeroDivisionError("a bug")

        task = Task(turnLoop(clock), step)
        task.wake()
        clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertFalse(task.awake)
        task.wake()
        clock.advance(0)
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class PassThroughTests(SynchronousTestCase):
    """
    L{PassThrough}: writes reach the sink unchanged and counted, the sink
    paces the producer, and a C{FileSender} can send around it.
    """

    def test_passesAndCounts(self) -> None:
        """
        Writes go to the sink and are counted with what was sent around;
        registration goes to the sink, whose producer it reports; the sink
        is the next link of a chain.
        """
        sink = BackpressureConsumer(threshold=4)
        tap = PassThrough(sink)
        producer = RecordingPushProducer()
        tap.registerProducer(producer, True)
        self.assertIs(sink.producer, producer)
        self.assertIs(tap.producer, producer)
        tap.write(b"hello")
        self.assertEqual(producer.calls, [("pause",)])
        tap.passedAround(10)
        self.assertEqual(tap.delivered, 15)
        self.assertEqual(sink.received, b"hello")
        self.assertIs(tap.passThroughTo, sink)
        self.assertIs(tap.consumer, sink)
        tap.unregisterProducer()
        self.assertIsNone(sink.producer)


class TagPathTests(SynchronousTestCase):
    """
    A failure in a nested stream says where in it: its C{tagPath}.
    """

    def test_foundDownstream(self) -> None:
        """
        The tag path is the failing object's own, else the first one
        downstream of it; it is in the failure's message.
        """

        class Link:
            def __init__(self, consumer: Any = None, tagPath: Any = None) -> None:
                self.consumer = consumer
                if tagPath is not None:
                    self.tagPath = tagPath

        child = Link(Link(), "a.tar/dir/file")
        source = Link(child)
        self.assertEqual(tagPathOf(source), "a.tar/dir/file")
        self.assertIsNone(tagPathOf(Link(Link())))
        # An empty tag path (an unnamed root) says nothing.
        self.assertIsNone(tagPathOf(Link(tagPath="")))
        try:
            raise ValueError("boom")
        except ValueError as error:
            failure = failureWithContext(error, source, 3, 1)
        self.assertEqual(failure.tagPath, "a.tar/dir/file")
        self.assertIn("at tag path a.tar/dir/file", failure.getErrorMessage())
        self.assertIsInstance(failure, ContextFailure)

    def test_given(self) -> None:
        """
        A tag path given to L{failureWithContext} is used as it is.
        """
        try:
            raise ValueError("boom")
        except ValueError as error:
            failure = failureWithContext(error, object(), 0, 0, tagPath="x/y")
        self.assertEqual(failure.tagPath, "x/y")


class _Drain(BufferedConsumer):
    """
    A buffered consumer that drains C{perStep} items per step and ends
    with their count once finished.
    """

    highWater = 3
    lowWater = 1

    def __init__(self, clock: Clock, perStep: int = 1) -> None:
        super().__init__(reactor=clock)
        self.perStep = perStep
        self.dealt: List[Any] = []
        self.released: List[Any] = []
        self.finished = False

    def write(self, item: Any) -> None:
        self._buffer.append(item)
        self._turns().wake()
        self._buffer.regulate(self._up)

    def finish(self) -> None:
        self.finished = True
        self._turns().wake()

    def _step(self) -> bool:
        for _ in range(self.perStep):
            if self._buffer:
                self.dealt.append(self._buffer.popleft())
        if self.finished and not self._buffer:
            self._complete(len(self.dealt))
            return False
        return self._regulate() and bool(self._buffer)

    def _released(self, outcome: Any) -> None:
        self.released.append(outcome)


class BufferedConsumerTests(SynchronousTestCase):
    """
    L{BufferedConsumer}: the producer, the task and the end that consumers
    holding what they are written share.
    """

    def test_regulatesAStreamingProducer(self) -> None:
        """
        A streaming producer is paused while the buffer is full and resumed
        by L{BufferedConsumer._regulate} once it is below the low mark.
        """
        clock = Clock()
        consumer = _Drain(clock)
        producer = RecordingPushProducer()
        consumer.registerProducer(producer, True)
        self.assertIs(consumer.producer, producer)
        for item in "abc":
            consumer.write(item)
        self.assertEqual(producer.calls, [("pause",)])
        self.assertTrue(consumer._step())
        self.assertTrue(consumer._step())
        self.assertEqual(producer.calls, [("pause",)])
        self.assertFalse(consumer._step())
        self.assertEqual(producer.calls, [("pause",), ("resume",)])
        clock.advance(0)
        consumer.unregisterProducer()
        self.assertIsNone(consumer.producer)

    def test_pullsAPullProducerWhenEmpty(self) -> None:
        """
        A pull producer is asked for more each time the buffer is empty,
        until it unregisters.
        """
        clock = Clock()
        consumer = _Drain(clock)
        chunks = (b"1", b"2", b"3")
        producer = RecordingPullProducer(consumer, chunks)  # type: ignore[arg-type]
        consumer.registerProducer(producer, False)
        clock.advance(0)
        self.assertEqual(consumer.dealt, list(chunks))
        self.assertIsNone(consumer.producer)
        d = consumer.whenFinished()
        consumer.finish()
        clock.advance(0)
        self.assertEqual(self.successResultOf(d), 3)
        self.assertEqual(self.successResultOf(consumer.whenFinished()), 3)
        self.assertEqual(consumer.released, [3])

    def test_failureStopsTheProducerOnce(self) -> None:
        """
        Ending with a failure drops what is held, stops the producer, runs
        the cleanup hook and fails L{BufferedConsumer.whenFinished}, once;
        a producer registered afterwards is stopped at once; a failure
        nobody waits for is logged.
        """
        clock = Clock()
        consumer = _Drain(clock)
        producer = RecordingPushProducer()
        consumer.registerProducer(producer, True)
        consumer.write("a")
        d = consumer.whenFinished()
        failure = Failure(ZeroDivisionError("boom"))
        consumer._complete(failure)
        consumer._complete(0)
        self.assertIs(self.failureResultOf(d), failure)
        self.assertEqual(producer.calls, [("stop",)])
        self.assertEqual(consumer.released, [failure])
        self.assertEqual(len(consumer._buffer), 0)
        late = RecordingPushProducer()
        consumer.registerProducer(late, True)
        self.assertEqual(late.calls, [("stop",)])
        self.failureResultOf(consumer.whenFinished(), ZeroDivisionError)
        unwatched = _Drain(clock)
        unwatched._complete(Failure(ValueError("nobody waits")))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class ReadingFlagTests(SynchronousTestCase):
    """
    L{ReadingFlag}: a connection's reading, paused and resumed once per
    change.
    """

    def test_pausesTheTransport(self) -> None:
        """
        Pauses and resumes reach the transport once per change; with no
        transport, nothing happens.
        """
        transport: List[Any] = [RecordingPushProducer()]
        flag = ReadingFlag(lambda: transport[0])
        flag.pause()
        flag.pause()
        flag.resume()
        self.assertEqual(transport[0].calls, [("pause",), ("resume",)])
        transport[0] = None
        flag.pause()
        self.assertTrue(flag.paused)
