"""
The nested conformance suites: a nested consumer (an L{INestedConsumer})
keeps the contract of its interface, and a reader of a hierarchical stream
(a C{TarReader}, a C{MultipartReader}) hands each child to its handler as
the contract says, with backpressure both ways.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twisted_streaming._failure import ContextFailure
from twisted_streaming._push import BasePushProducer
from twisted_streaming.interfaces import (
    ChildStillOpen,
    ConsumerFinished,
    INestedConsumer,
)
from twisted_streaming.testing._consumerconformance import (
    _checkSucceededOnce,
    _consumerChunk,
    _settle,
)
from twisted_streaming.testing._fakes import (
    BackpressureConsumer,
    RecordingPullProducer,
    RecordingPushProducer,
)
from twisted_streaming.testing._producerconformance import (
    _check,
    _ContractViolation,
    _failureException,
    _Outcome,
    _violationsAs,
)

__all__ = [
    "NestedConsumerConformanceMixin",
    "NestedReaderConformanceMixin",
    "checkNestedChildren",
    "checkNestedConsumer",
    "checkNestedFailureTagPath",
    "checkNestedOneChildAtATime",
    "checkNestedReader",
    "checkNestedWritesAfterFinish",
    "checkReaderDeliversChildren",
    "checkReaderFailsOnTruncation",
    "checkReaderPullProducer",
    "checkReaderSkipsChildren",
    "checkReaderStopsOnChildFailure",
]

MakeNested = Callable[[Clock], Any]
LeafMeta = Callable[[str, int], Dict[str, Any]]
NestedMeta = Optional[Callable[[str], Dict[str, Any]]]
Completion = Optional[Callable[[Any], Optional[Deferred[Any]]]]
Received = Optional[Callable[[Any], Dict[str, bytes]]]

#: The size of the children the nested checks write through a producer
#: that a consumer must pause: more than a transport's or a file
#: consumer's buffer.
_BIG = 2 * 1024 * 1024
_CHUNK = 1024


def _data(tag: str, size: int) -> bytes:
    """
    C{size} bytes of numbered lines, different for each tag.
    """
    lines = b"".join(_consumerChunk(i) for i in range(size // _CHUNK + 1))
    prefix = tag.encode("utf-8") + b":"
    return (prefix + lines)[:size]


def _paused(producer: RecordingPushProducer) -> bool:
    states = [c for c in producer.calls if c in (("pause",), ("resume",))]
    return bool(states) and states[-1] == ("pause",)


def _pushChild(clock: Clock, child: Any, data: bytes) -> bool:
    """
    Write C{data} to C{child} from a registered push producer, 1 KiB per
    write, waiting (on C{clock}) whenever the child pauses it; then
    unregister.

    @return: Whether the child ever paused the producer.
    """
    producer = RecordingPushProducer()
    child.registerProducer(producer, True)
    pausedOnce = False
    for start in range(0, len(data), _CHUNK):
        if _paused(producer):
            pausedOnce = True
            _check(
                _settle(clock, lambda: not _paused(producer)),
                f"{child!r} never resumed the producer it paused",
            )
        child.write(data[start : start + _CHUNK])
    child.unregisterProducer()
    _check(
        ("stop",) not in producer.calls,
        f"{child!r} stopped a producer that kept the contract",
    )
    return pausedOnce or _paused(producer)


def _pullChild(clock: Clock, child: Any, data: bytes) -> None:
    """
    Write C{data} to C{child} from a registered pull producer, which
    unregisters when it has written everything.
    """
    chunks = tuple(data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK))
    producer = RecordingPullProducer(child, chunks)
    child.registerProducer(producer, False)
    _check(
        _settle(clock, lambda: producer.consumer is None),
        f"{child!r} stopped asking its pull producer for data after "
        f"{len(chunks) - len(producer.chunks)} of {len(chunks)} chunks",
    )


def checkNestedChildren(
    makeNested: MakeNested,
    leafMeta: LeafMeta,
    nestedMeta: NestedMeta = None,
    completion: Completion = None,
    received: Received = None,
) -> None:
    """
    Children are consumers like any other: a push producer registered with
    one is paused when the consumer underneath is behind and resumed when
    it has caught up; a pull producer is driven to its end; a child for
    which C{nestedMeta} is given provides L{INestedConsumer} and its
    children work the same; every child has a C{tagPath} ending with its
    tag; and once the root is finished, its completion fires once, with
    everything written, and nothing is left scheduled.
    """
    clock = Clock()
    nested = makeNested(clock)
    _check(INestedConsumer.providedBy(nested), f"{nested!r} is not an INestedConsumer")
    d = completion(nested) if completion is not None else None
    outcome = _Outcome(d)
    expected: Dict[str, bytes] = {}

    big = _data("big", _BIG)
    child = nested.startChild("big", **leafMeta("big", len(big)))
    _check(
        child.tagPath.endswith("big"),
        f"the tag path of child 'big' is {child.tagPath!r}",
    )
    _check(
        _pushChild(clock, child, big),
        f"{child!r} never paused a push producer that wrote {len(big)} bytes "
        "without the reactor turning",
    )
    child.finish()
    expected["big"] = big

    pulled = _data("pulled", 50 * _CHUNK)
    child = nested.startChild("pulled", **leafMeta("pulled", len(pulled)))
    _pullChild(clock, child, pulled)
    child.finish()
    expected["pulled"] = pulled

    child = nested.startChild("empty", **leafMeta("empty", 0))
    child.finish()
    expected["empty"] = b""

    if nestedMeta is not None:
        directory = nested.startChild("dir", **nestedMeta("dir"))
        _check(
            INestedConsumer.providedBy(directory),
            f"{directory!r}, a child with children, is not an INestedConsumer",
        )
        inner = _data("dir/inner", 20 * _CHUNK)
        child = directory.startChild("inner", **leafMeta("inner", len(inner)))
        _check(
            child.tagPath.endswith("dir/inner"),
            f"the tag path of child 'dir/inner' is {child.tagPath!r}",
        )
        _pushChild(clock, child, inner)
        child.finish()
        directory.finish()
        expected["dir/inner"] = inner

    nested.finish()
    _settle(clock, lambda: False)
    if d is not None:
        _checkSucceededOnce(nested, outcome)
    if received is not None:
        got = received(nested)
        for tag, data in expected.items():
            _check(
                got.get(tag) == data,
                f"child {tag!r} of {nested!r} passed on "
                f"{len(got.get(tag) or b'')} of its {len(data)} bytes, or others",
            )
    _check(
        not clock.getDelayedCalls(),
        f"{nested!r} left {clock.getDelayedCalls()!r} scheduled at the end",
    )


def checkNestedOneChildAtATime(
    makeNested: MakeNested, leafMeta: LeafMeta, nestedMeta: NestedMeta = None
) -> None:
    """
    Starting a child while another of the same parent is open, or finishing
    the parent then, raises L{ChildStillOpen}; once the open child is
    finished, both work.
    """
    clock = Clock()
    nested = makeNested(clock)
    first = nested.startChild("first", **leafMeta("first", 0))
    for what, call in (
        (
            "starting a second child",
            lambda: nested.startChild("second", **leafMeta("second", 0)),
        ),
        ("finishing the parent", nested.finish),
    ):
        try:
            call()
        except ChildStillOpen:
            pass
        else:
            raise _ContractViolation(
                f"{what} of {nested!r} with a child open did not raise ChildStillOpen"
            )
    first.finish()
    if nestedMeta is not None:
        directory = nested.startChild("dir", **nestedMeta("dir"))
        directory.startChild("inner", **leafMeta("inner", 0)).finish()
        directory.finish()
    nested.startChild("second", **leafMeta("second", 0)).finish()
    nested.finish()
    _settle(clock, lambda: False)


def checkNestedWritesAfterFinish(makeNested: MakeNested, leafMeta: LeafMeta) -> None:
    """
    A write to a finished child, a second C{finish()} of a child or of the
    parent, and a child started on a finished parent raise
    L{ConsumerFinished}.
    """
    clock = Clock()
    nested = makeNested(clock)
    child = nested.startChild("done", **leafMeta("done", 1))
    child.write(b"x")
    child.finish()
    nested.finish()
    for what, call in (
        ("a write to a finished child", lambda: child.write(b"more")),
        ("a second finish of a child", child.finish),
        (
            "a child started on a finished parent",
            lambda: nested.startChild("late", **leafMeta("late", 0)),
        ),
        ("a second finish of the parent", nested.finish),
    ):
        try:
            call()
        except ConsumerFinished:
            pass
        else:
            raise _ContractViolation(
                f"{what} of {nested!r} did not raise ConsumerFinished"
            )
    _settle(clock, lambda: False)


class _FailingProducer(BasePushProducer):
    """
    Writes a few chunks, then fails.
    """

    def __init__(self, chunks: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._chunks = chunks

    def produce(self) -> bytes:
        if self._chunks == 0:
            raise ZeroDivisionError("the producer under the child failed")
        self._chunks -= 1
        return b"x" * 100


def checkNestedFailureTagPath(
    makeNested: MakeNested, leafMeta: LeafMeta, nestedMeta: NestedMeta = None
) -> None:
    """
    A producer that fails while writing to a child (of a child, if
    C{nestedMeta} is given) fails with a
    L{ContextFailure <twisted_streaming.ContextFailure>} whose C{tagPath}
    ends with the child's path below the root.
    """
    clock = Clock()
    nested = makeNested(clock)
    parent, path = nested, "leaf"
    if nestedMeta is not None:
        parent, path = nested.startChild("dir", **nestedMeta("dir")), "dir/leaf"
    child = parent.startChild("leaf", **leafMeta("leaf", 1000))
    outcome = _Outcome(_FailingProducer(3, reactor=clock).startProducing(child))
    _settle(clock, lambda: bool(outcome.results))
    _check(len(outcome.results) == 1, "the failing producer never ended")
    failure = outcome.results[0]
    _check(
        isinstance(failure, ContextFailure) and bool(failure.check(ZeroDivisionError)),
        f"a producer writing to {child!r} failed with {failure!r}, not its error "
        "in a ContextFailure",
    )
    _check(
        (failure.tagPath or "").endswith(path),
        f"a failure inside child {path!r} of {nested!r} has the tag path "
        f"{failure.tagPath!r}",
    )


def checkNestedConsumer(
    makeNested: MakeNested,
    leafMeta: LeafMeta,
    nestedMeta: NestedMeta = None,
    completion: Completion = None,
    received: Received = None,
) -> None:
    """
    Run the whole nested consumer suite; usable from plain pytest.

    @param makeNested: Called with a L{Clock}; returns a new
        L{INestedConsumer} that does its work on that clock (over a
        L{BackpressureConsumer} with that C{clock}, if it writes to a
        consumer).
    @param leafMeta: Given a tag and a size, returns the meta for
        C{startChild} of a child that will be given exactly that many bytes
        (C{{"size": size}} for a tar member; C{{"filename": tag}} for an
        upload).
    @param nestedMeta: Given a tag, returns the meta for a child with
        children of its own (C{{"type": "directory"}}); L{None} if the
        implementation has none.
    @param completion: Given the nested consumer, returns the L{Deferred}
        that fires once it has dealt with everything, or L{None}.
    @param received: Given the finished nested consumer, returns what each
        child passed on, by its path below the root (C{"dir/inner"}).

    @raise AssertionError: Naming the first part of the contract broken.
    """
    checkNestedChildren(makeNested, leafMeta, nestedMeta, completion, received)
    checkNestedOneChildAtATime(makeNested, leafMeta, nestedMeta)
    checkNestedWritesAfterFinish(makeNested, leafMeta)
    checkNestedFailureTagPath(makeNested, leafMeta, nestedMeta)


class NestedConsumerConformanceMixin:
    """
    Mix into a trial test case (C{SynchronousTestCase}) and define
    L{makeNested} and L{leafMeta} (and optionally L{nestedMeta},
    L{completion} and L{received}) to check an L{INestedConsumer} against
    its contract.  Each C{test_} method runs one check of
    L{checkNestedConsumer}.
    """

    def makeNested(self, clock: Clock) -> Any:
        """
        Make the nested consumer under test, doing its work on C{clock}.
        Required.
        """
        raise NotImplementedError(f"{type(self).__name__} must define makeNested")

    def leafMeta(self, tag: str, size: int) -> Dict[str, Any]:
        """
        The meta of a child that will be given C{size} bytes.  Required.
        """
        raise NotImplementedError(f"{type(self).__name__} must define leafMeta")

    #: The meta of a child with children of its own, given its tag; L{None}
    #: if the implementation has none.
    nestedMeta: NestedMeta = None

    def completion(self, nested: Any) -> Optional[Deferred[Any]]:
        """
        The nested consumer's completion, or L{None} not to check one.
        """
        return None

    #: Given the finished nested consumer, what each child passed on, by
    #: its path below the root; L{None} not to check.
    received: Received = None

    def test_childrenAreConsumers(self) -> None:
        """
        Push and pull producers write to children with backpressure, nested
        children work alike, and the stream completes with everything.
        """
        with _violationsAs(_failureException(self)):
            checkNestedChildren(
                self.makeNested,
                self.leafMeta,
                self.nestedMeta,
                self.completion,
                self.received,
            )

    def test_oneChildAtATime(self) -> None:
        """
        A second child, or the parent's end, while a child is open raises
        L{ChildStillOpen}.
        """
        with _violationsAs(_failureException(self)):
            checkNestedOneChildAtATime(self.makeNested, self.leafMeta, self.nestedMeta)

    def test_writesAfterFinish(self) -> None:
        """
        What comes after a finish raises L{ConsumerFinished}.
        """
        with _violationsAs(_failureException(self)):
            checkNestedWritesAfterFinish(self.makeNested, self.leafMeta)

    def test_failureTagPath(self) -> None:
        """
        A failure inside a child carries its tag path.
        """
        with _violationsAs(_failureException(self)):
            checkNestedFailureTagPath(self.makeNested, self.leafMeta, self.nestedMeta)


# Readers

MakeReader = Callable[[Any, Clock], Any]
Encode = Callable[[List[Tuple[str, bytes]]], bytes]

#: The children the reader checks encode: a small one, an empty one, and one
#: large enough that a consumer must pause the reader; their lines end with
#: CRLF, as a format's own delimiters may.
_READER_CHILDREN = [
    (tag, data.replace(b"\n", b"\r\n")[:size])
    for tag, data, size in [
        ("small", _data("small", 3000), 3000),
        ("empty", b"", 0),
        ("large", _data("large", 300 * 1024), 300 * 1024),
        ("last", _data("last", 1500), 1500),
    ]
]


class _RecordingHandler:
    """
    A handler that gives each child a L{BackpressureConsumer} draining on
    the clock, and records what happens, in order, in L{events}.
    """

    def __init__(
        self, clock: Clock, skip: Tuple[str, ...] = (), failing: Optional[str] = None
    ) -> None:
        self.clock = clock
        self.skip = skip
        self.failing = failing
        self.events: List[Tuple[Any, ...]] = []
        self.consumers: Dict[str, BackpressureConsumer] = {}
        self.finished = False
        self.aborted: Optional[Failure] = None

    def startChild(self, tag: str, **meta: Any) -> Any:
        self.events.append(("start", tag))
        if not all(consumer.finished for consumer in self.consumers.values()):
            self.events.append(("overlap", tag))
        if tag in self.skip:
            return None
        failOnWrite = (
            ZeroDivisionError("the child's consumer failed")
            if tag == self.failing
            else None
        )
        consumer = self.consumers[tag] = BackpressureConsumer(
            threshold=16 * 1024,
            clock=self.clock,
            drainRate=8 * 1024,
            failOnWrite=failOnWrite,
        )
        return consumer

    def finish(self) -> None:
        self.events.append(("finish",))
        self.finished = True

    def abort(self, reason: Failure) -> None:
        self.aborted = reason


class _Feeder:
    """
    Writes a stream to a reader in odd-sized chunks from a registered push
    producer, waiting on the clock whenever the reader pauses it.
    """

    def __init__(
        self, clock: Clock, reader: Any, data: bytes, chunk: int = 7777
    ) -> None:
        self.clock = clock
        self.reader = reader
        self.data = data
        self.chunk = chunk
        self.producer = RecordingPushProducer()

    def run(self, finish: bool = True) -> bool:
        """
        @return: Whether the reader ever paused the producer.
        """
        reader, producer = self.reader, self.producer
        reader.registerProducer(producer, True)
        pausedOnce = False
        for start in range(0, len(self.data), self.chunk):
            if ("stop",) in producer.calls:
                break
            if _paused(producer):
                pausedOnce = True
                _check(
                    _settle(
                        self.clock,
                        lambda: not _paused(producer) or ("stop",) in producer.calls,
                    ),
                    f"{reader!r} never resumed the producer it paused",
                )
                if ("stop",) in producer.calls:
                    break
            reader.write(self.data[start : start + self.chunk])
        if ("stop",) not in producer.calls:
            reader.unregisterProducer()
            if finish:
                reader.finish()
        _settle(self.clock, lambda: False)
        return pausedOnce


def _readerOutcome(completion: Completion, reader: Any) -> _Outcome:
    d = completion(reader) if completion is not None else None
    return _Outcome(d)


def checkReaderDeliversChildren(
    makeReader: MakeReader, encode: Encode, completion: Completion = None
) -> None:
    """
    Each child is started in order with its tag and given exactly its bytes,
    and its consumer is finished before the next child starts; a consumer
    that is behind pauses the producer of the stream, which is resumed when
    it has caught up, and is never written to while it has paused the
    reader; at the end the handler is finished and the completion fires
    once, with nothing left scheduled.
    """
    clock = Clock()
    handler = _RecordingHandler(clock)
    reader = makeReader(handler, clock)
    outcome = _readerOutcome(completion, reader)
    paused = _Feeder(clock, reader, encode(_READER_CHILDREN)).run()
    starts = [e[1] for e in handler.events if e[0] == "start"]
    tags = [tag for tag, _ in _READER_CHILDREN]
    _check(starts == tags, f"{reader!r} started {starts!r}, not {tags!r}")
    for tag, data in _READER_CHILDREN:
        consumer = handler.consumers[tag]
        _check(
            consumer.received == data,
            f"{reader!r} gave child {tag!r} {len(consumer.received)} bytes, "
            f"not its {len(data)}, or other bytes",
        )
        _check(consumer.finished, f"{reader!r} did not finish child {tag!r}")
        _check(
            consumer.producer is None,
            f"{reader!r} left its producer registered with {tag!r}",
        )
        bad = consumer.writesAfterPause()
        _check(
            not bad, f"{reader!r} wrote to child {tag!r} after it paused it: {bad!r}"
        )
    _check(
        not any(e[0] == "overlap" for e in handler.events),
        f"{reader!r} started a child before the last one was finished",
    )
    _check(
        paused,
        f"{reader!r} never paused the producer of the stream while a child was behind",
    )
    _check(handler.finished, f"{reader!r} did not finish its handler")
    if completion is not None:
        _checkSucceededOnce(reader, outcome)
    _check(
        not clock.getDelayedCalls(),
        f"{reader!r} left {clock.getDelayedCalls()!r} scheduled",
    )


def checkReaderSkipsChildren(
    makeReader: MakeReader, encode: Encode, completion: Completion = None
) -> None:
    """
    A child the handler returns L{None} for is skipped: the others are
    whole.
    """
    clock = Clock()
    handler = _RecordingHandler(clock, skip=("small", "large"))
    reader = makeReader(handler, clock)
    outcome = _readerOutcome(completion, reader)
    _Feeder(clock, reader, encode(_READER_CHILDREN)).run()
    for tag, data in _READER_CHILDREN:
        if tag in handler.skip:
            continue
        _check(
            handler.consumers[tag].received == data,
            f"{reader!r} gave child {tag!r} other bytes once others were skipped",
        )
    if completion is not None:
        _checkSucceededOnce(reader, outcome)


def checkReaderPullProducer(
    makeReader: MakeReader, encode: Encode, completion: Completion = None
) -> None:
    """
    A pull producer of the stream is asked for data until it has written
    everything.
    """
    clock = Clock()
    handler = _RecordingHandler(clock)
    reader = makeReader(handler, clock)
    outcome = _readerOutcome(completion, reader)
    data = encode(_READER_CHILDREN)
    chunks = tuple(data[i : i + 9999] for i in range(0, len(data), 9999))
    producer = RecordingPullProducer(reader, chunks)
    reader.registerProducer(producer, False)
    _check(
        _settle(clock, lambda: producer.consumer is None),
        f"{reader!r} stopped pulling after {len(chunks) - len(producer.chunks)} "
        f"of {len(chunks)} chunks",
    )
    reader.finish()
    _settle(clock, lambda: False)
    for tag, expected in _READER_CHILDREN:
        _check(
            handler.consumers[tag].received == expected,
            f"{reader!r} gave child {tag!r} other bytes from a pull producer",
        )
    if completion is not None:
        _checkSucceededOnce(reader, outcome)


def checkReaderFailsOnTruncation(
    makeReader: MakeReader, encode: Encode, completion: Completion = None
) -> None:
    """
    A stream that ends inside a child fails the reader with a
    L{ContextFailure <twisted_streaming.ContextFailure>} whose C{tagPath}
    names that child; the handler is aborted, not finished.
    """
    clock = Clock()
    handler = _RecordingHandler(clock)
    reader = makeReader(handler, clock)
    outcome = _readerOutcome(completion, reader)
    data = encode(_READER_CHILDREN)
    cut = data.index(_READER_CHILDREN[-1][1]) + 100
    _Feeder(clock, reader, data[:cut]).run()
    _check(
        not handler.finished, f"{reader!r} finished its handler with a truncated stream"
    )
    _check(handler.aborted is not None, f"{reader!r} did not abort its handler")
    failure = handler.aborted
    if completion is not None:
        _check(
            len(outcome.results) == 1,
            f"{reader!r}'s completion fired {len(outcome.results)} times",
        )
        failure = outcome.results[0]
    _check(
        isinstance(failure, ContextFailure)
        and (failure.tagPath or "").endswith("last"),
        f"{reader!r} failed on a stream cut inside child 'last' with {failure!r}, "
        f"tag path {getattr(failure, 'tagPath', None)!r}",
    )


def checkReaderStopsOnChildFailure(
    makeReader: MakeReader, encode: Encode, completion: Completion = None
) -> None:
    """
    A child's consumer that raises from C{write} fails the reader with a
    L{ContextFailure <twisted_streaming.ContextFailure>} naming that child,
    stops the producer of the stream, and aborts the handler.
    """
    clock = Clock()
    handler = _RecordingHandler(clock, failing="large")
    reader = makeReader(handler, clock)
    outcome = _readerOutcome(completion, reader)
    feeder = _Feeder(clock, reader, encode(_READER_CHILDREN))
    feeder.run()
    _check(
        ("stop",) in feeder.producer.calls,
        f"{reader!r} did not stop the producer of the stream",
    )
    _check(handler.aborted is not None, f"{reader!r} did not abort its handler")
    failure = outcome.results[0] if completion is not None else handler.aborted
    _check(
        isinstance(failure, ContextFailure)
        and bool(failure.check(ZeroDivisionError))
        and (failure.tagPath or "").endswith("large"),
        f"{reader!r} failed with {failure!r} when child 'large' failed",
    )
    _check("last" not in handler.consumers, f"{reader!r} went on after a child failed")


def checkNestedReader(
    makeReader: MakeReader, encode: Encode, completion: Completion = None
) -> None:
    """
    Run the whole reader suite; usable from plain pytest.

    @param makeReader: Called with a handler (with C{startChild}, C{finish}
        and C{abort}) and a L{Clock}; returns a new reader of the stream,
        on that clock.
    @param encode: Given children, as C{(tag, bytes)}, returns a stream of
        them in the reader's format.
    @param completion: Given the reader, returns the L{Deferred} that fires
        once it has read everything, or L{None}.

    @raise AssertionError: Naming the first part of the contract broken.
    """
    for check in (
        checkReaderDeliversChildren,
        checkReaderSkipsChildren,
        checkReaderPullProducer,
        checkReaderFailsOnTruncation,
        checkReaderStopsOnChildFailure,
    ):
        check(makeReader, encode, completion)


class NestedReaderConformanceMixin:
    """
    Mix into a trial test case (C{SynchronousTestCase}) and define
    L{makeReader} and L{encode} (and optionally L{completion}) to check a
    reader of a hierarchical stream; each C{test_} method runs one check of
    L{checkNestedReader}.
    """

    def makeReader(self, handler: Any, clock: Clock) -> Any:
        """
        Make the reader under test, with C{handler}, on C{clock}. Required.
        """
        raise NotImplementedError(f"{type(self).__name__} must define makeReader")

    def encode(self, children: List[Tuple[str, bytes]]) -> bytes:
        """
        A stream of C{children} in the reader's format. Required.
        """
        raise NotImplementedError(f"{type(self).__name__} must define encode")

    def completion(self, reader: Any) -> Optional[Deferred[Any]]:
        """
        The reader's completion, or L{None} not to check one.
        """
        return None

    def test_deliversChildren(self) -> None:
        """
        Children arrive in order, whole, one at a time, with backpressure.
        """
        with _violationsAs(_failureException(self)):
            checkReaderDeliversChildren(self.makeReader, self.encode, self.completion)

    def test_skipsChildren(self) -> None:
        """
        A child the handler declines is skipped.
        """
        with _violationsAs(_failureException(self)):
            checkReaderSkipsChildren(self.makeReader, self.encode, self.completion)

    def test_pullProducer(self) -> None:
        """
        A pull producer of the stream is driven to its end.
        """
        with _violationsAs(_failureException(self)):
            checkReaderPullProducer(self.makeReader, self.encode, self.completion)

    def test_truncation(self) -> None:
        """
        A stream cut inside a child fails naming it.
        """
        with _violationsAs(_failureException(self)):
            checkReaderFailsOnTruncation(self.makeReader, self.encode, self.completion)

    def test_childFailure(self) -> None:
        """
        A child's consumer that fails stops the reader, naming it.
        """
        with _violationsAs(_failureException(self)):
            checkReaderStopsOnChildFailure(
                self.makeReader, self.encode, self.completion
            )
