"""
WebSocket streams over Autobahn, with backpressure both ways.

  - L{MessageConsumer}: a consumer over an Autobahn protocol (server or
    client) that sends each C{write} as one message.  Its producer is paused
    while the messages still queued (in the TCP transport and in Autobahn's
    own send queue) reach L{MessageConsumer.highWater}, and stopped when the
    connection closes, whatever closed it.
  - L{MessageStream}: the same, but everything written is one message, sent
    frame by frame as it is produced: a message of any length in constant
    memory.
  - L{MessageSource}: the messages a connection receives, as a push
    producer; while its consumer is paused it stops reading the TCP
    transport, so a slow application pushes back on the peer.

Needs Autobahn (C{pip install 'twisted_streaming[websocket]'}); importing
this module without it raises L{ImportError}.  Nothing here imports the
reactor.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, Union

try:
    from autobahn.websocket.protocol import WebSocketProtocol as _WebSocketProtocol
except ImportError as error:  # pragma: no cover - tested in a subprocess
    raise ImportError(
        "twisted_streaming.websocket needs Autobahn: "
        "pip install 'twisted_streaming[websocket]'"
    ) from error

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime
from twisted.internet.task import Cooperator
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._flow import (
    FAILED,
    FINISHED,
    RUNNING,
    Completion,
    Flow,
    Upstream,
    WaterMarkBuffer,
    getReactor,
    regulateHeld,
)
from twisted_streaming._transportinternals import pendingBytes
from twisted_streaming.interfaces import (
    ConsumerFinished,
    IFinishableConsumer,
    ProducerStateError,
)

__all__ = [
    "AUTOBAHN_CHECKED_VERSIONS",
    "MessageConsumer",
    "MessageSource",
    "MessageStream",
    "WebSocketClosed",
]


class WebSocketClosed(Exception):
    """
    A WebSocket connection ended other than by a normal closing handshake:
    the peer vanished, a protocol violation failed it, or a close frame
    said something other than a normal closure (1000).

    What a L{MessageSource} fails with: the messages it delivered are all
    that arrived, but the stream may be incomplete.

    @ivar wasClean: Whether the closing handshake completed.
    @ivar code: The close code the peer sent, or the one Autobahn used
        (1006 when TCP went away without a close frame); L{None} if none.
    @ivar reason: The close reason, or why the close was not clean.
    """

    def __init__(self, wasClean: bool, code: Optional[int], reason: Optional[str]):
        super().__init__(wasClean, code, reason)
        self.wasClean = wasClean
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        how = "cleanly" if self.wasClean else "uncleanly"
        return (
            f"the WebSocket connection closed {how} (code {self.code}: {self.reason})"
        )


# ---------------------------------------------------------------------------
# Autobahn's internals: everything this module relies on of an Autobahn
# protocol beyond its documented methods (sendMessage, beginMessage,
# sendMessageFrame, endMessage, sendClose), in one place.
#
# Checked against Autobahn 23.1.2 and 26.10.2 (the oldest release setup.cfg
# allows and the newest), where all of these live on
# autobahn.websocket.protocol.WebSocketProtocol.  The tests in
# twisted_streaming/test/test_websocket.py (AutobahnInternalsTests) check
# each of them on real connections and fail, naming this group, if an
# Autobahn release changes them; this group is then the only code to fix.
# ---------------------------------------------------------------------------

#: The Autobahn releases the functions below were checked against.
AUTOBAHN_CHECKED_VERSIONS = ("23.1.2", "26.10.2")

_OPENING = "opening"
_OPEN = "open"
_CLOSED = "closed"

_STATES = {
    _WebSocketProtocol.STATE_CONNECTING: _OPENING,
    _WebSocketProtocol.STATE_PROXY_CONNECTING: _OPENING,
    _WebSocketProtocol.STATE_OPEN: _OPEN,
}


def _connectionState(protocol: Any) -> str:
    """
    Is the connection still opening, open, or closing or closed?  From the
    protocol's C{state}: once it has left C{STATE_OPEN}, C{sendMessage}
    raises and the streaming methods silently do nothing.
    """
    return _STATES.get(protocol.state, _CLOSED)


def _autobahnQueued(protocol: Any) -> int:
    """
    The bytes in Autobahn's own send queue (C{send_queue}, a deque of
    C{(bytes, sync)}), which it writes to the transport one entry per
    reactor call, whatever the transport's backpressure.  Only sends made
    with C{sync=True} or a chop size queue there, and every send after them
    while it is not empty.
    """
    queue = protocol.send_queue
    return sum(len(entry[0]) for entry in queue) if queue else 0


def _whenOpen(protocol: Any) -> Deferred[Any]:
    """
    C{is_open}: fires when the opening handshake has succeeded.
    """
    opened: Deferred[Any] = protocol.is_open
    return opened


def _whenClosed(protocol: Any) -> Deferred[Any]:
    """
    C{is_closed}: fires with the protocol when Autobahn enters
    C{STATE_CLOSED}, however the connection ended: after a closing
    handshake, when Autobahn drops the connection (which unregisters the
    transport's producer without stopping it), or when TCP goes away.
    """
    closed: Deferred[Any] = protocol.is_closed
    return closed


def _closeDetails(
    protocol: Any,
) -> Tuple[bool, bool, Optional[int], Optional[str]]:
    """
    How the connection ended, once closed: C{(normal, wasClean, code,
    reason)}, where C{wasClean} means the closing handshake completed and
    C{normal} that it did, Autobahn did not fail
    the connection itself (C{failedByMe}: a protocol violation), and the
    peer's close code was a normal closure or none.
    """
    if protocol.wasClean:
        code = protocol.remoteCloseCode
        reason = protocol.remoteCloseReason
        if protocol.failedByMe:
            code = protocol.localCloseCode or code
            reason = protocol.wasNotCleanReason or reason
        normal = not protocol.failedByMe and code in (None, 1000)
        return normal, True, code, reason
    # Autobahn fires is_closed before it sets the reason, when TCP went
    # away first.
    reason = protocol.wasNotCleanReason or "the connection was lost"
    return False, False, 1006, reason


def _onMessage(protocol: Any, handler: Callable[..., None]) -> None:
    """
    Call C{handler(payload, is_binary=...)} with each message received:
    Autobahn's C{on("message")} event, fired by its C{onMessageEnd} after
    C{onMessage}.
    """
    protocol.on("message", handler)


def _offMessage(protocol: Any, handler: Callable[..., None]) -> None:
    protocol.off("message", handler)


# ---------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------


def _passThrough(call: Callable[[], None]) -> Callable[[Any], Any]:
    """
    A callback for a Deferred that others also wait on (Autobahn's
    C{is_open}, C{is_closed}): run C{call} and pass the result on.
    """

    def callback(result: Any) -> Any:
        call()
        return result

    return callback


@implementer(IFinishableConsumer, IPushProducer)
class _MessageSink(Flow):
    """
    What L{MessageConsumer} and L{MessageStream} share: a consumer toward the
    producer registered with it, and a streaming producer registered with
    the protocol's transport, which says when its buffer has drained and
    stops it when the connection is lost.
    """

    highWater: int = 256 * 1024
    lowWater: int = 64 * 1024
    #: Seconds to the first check, while the producer is paused only by
    #: what Autobahn's send queue holds, or by what the transport holds
    #: below its own limit (which it does not report); each later check
    #: waits twice as long as the last, up to L{maxPollInterval}, until the
    #: queue shrinks.
    pollInterval: float = 0.001
    maxPollInterval: float = 0.1

    def __init__(
        self,
        protocol: Any,
        *,
        binary: bool = True,
        closeCode: Optional[int] = None,
        closeReason: Optional[str] = None,
        highWater: Optional[int] = None,
        lowWater: Optional[int] = None,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        super().__init__(reactor=reactor, cooperator=cooperator)
        transport = getattr(protocol, "transport", None)
        if transport is None:
            raise ProducerStateError(f"{protocol!r} is not connected")
        self.protocol = protocol
        self.binary = binary
        self.closeCode = closeCode
        self.closeReason = closeReason
        if highWater is not None:
            self.highWater = highWater
        if lowWater is not None:
            self.lowWater = lowWater
        self._up = Upstream(self)
        self._closed = False
        self._poll: Any = None
        self._wait = self.pollInterval
        self._lastQueued = -1
        self._opening = _connectionState(protocol) == _OPENING
        self._counted = pendingBytes(transport) is not None
        self._completion: Completion[int] = Completion()
        self._start(transport, True).addBoth(self._completion.fire)
        if self._state is FAILED:
            # The transport refused: it has another producer, such as
            # another sender that has not finished.
            assert isinstance(self._completion.result, Failure)
            self._completion.result.raiseException()
        if self._opening:
            _whenOpen(protocol).addCallback(_passThrough(self._opened))
        _whenClosed(protocol).addCallback(_passThrough(self.stopProducing))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state} at {id(self):#x}>"

    @property
    def producer(self) -> Optional[Any]:
        """
        The producer registered with this consumer, or L{None}.
        """
        return self._up.producer

    upstream = producer

    @property
    def queued(self) -> int:
        """
        The bytes sent and not yet taken by the socket: in the transport and
        in Autobahn's send queue.
        """
        held = pendingBytes(self.consumer) or 0
        return held + _autobahnQueued(self.protocol)

    # IConsumer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register C{producer}: a streaming producer is paused at once if the
        connection is not open yet or too much is queued; a pull producer is
        asked for data on the turn loop.  One registered once the connection
        has closed is stopped at once, as a transport does.

        @raise ProducerStateError: If a producer is already registered.
        """
        self._up.register(producer, streaming)
        if not self.producing:
            self._up.stop()
            return
        self._regulate()

    def unregisterProducer(self) -> None:
        """
        Forget the registered producer.
        """
        self._up.unregister()

    def write(self, data: Union[bytes, str]) -> None:
        """
        Send C{data}: text is encoded as UTF-8.  If Autobahn has left the
        open state (a close frame came or went, or it failed the
        connection) the data is dropped and the producer stopped.

        @raise ConsumerFinished: If this consumer has been finished, or has
            stopped because the connection closed.
        @raise ProducerStateError: If the connection is still opening.
        """
        if self._closed:
            raise ConsumerFinished(f"{self!r} can send no more")
        state = _connectionState(self.protocol)
        if state is not _OPEN:
            if state is _OPENING:
                raise ProducerStateError(f"{self.protocol!r} is not open yet")
            self.stopProducing()
            return
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        try:
            self._send(payload)
        except Exception as error:
            self._fail(error, item=data, itemIndex=self.chunksWritten)
            return
        self.chunksWritten += 1
        self.bytesWritten += len(payload)
        up = self._up
        if up.paused or not up.streaming or self.queued >= self.highWater:
            self._regulate()

    def finish(self, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        """
        No more data: unregister from the transport (what was sent still
        goes out, in order) and, if a close code is given here or was given
        to the constructor, start the closing handshake with it and the
        reason.  Once the connection has closed, there is nothing to do.

        @raise ConsumerFinished: If called twice.
        """
        if self._state is not RUNNING:
            if self._state is FINISHED:
                raise ConsumerFinished(f"{self!r} is already finished")
            return
        self._closed = True
        code = self.closeCode if code is None else code
        reason = self.closeReason if reason is None else reason
        try:
            if _connectionState(self.protocol) is _OPEN:
                self._end()
                if code is not None:
                    self.protocol.sendClose(code, reason)
        except Exception as error:
            self._fail(error)
            return
        self._finish(self.bytesWritten, finishConsumer=False)

    def whenFinished(self) -> Deferred[int]:
        """
        @return: A L{Deferred} that fires with the payload bytes sent once
            L{finish} has been called; fails with
            L{ProducerStopped <twisted_streaming.ProducerStopped>} if the
            connection closed first, or with the error (in a
            L{ContextFailure <twisted_streaming.ContextFailure>}) if sending
            failed.
        """
        return self._completion.whenDone()

    # What subclasses do

    def _send(self, payload: bytes) -> None:
        raise NotImplementedError()

    def _end(self) -> None:
        """
        The stream is complete and the connection still open.
        """

    # Regulating the producer

    def _opened(self) -> None:
        self._opening = False
        self._regulate()

    def _blocked(self) -> bool:
        """
        Must the producer wait whatever is queued?  While the connection is
        opening; and while the transport has paused this consumer, if what
        the transport holds cannot be counted.  A transport whose buffer is
        counted (TCP, TLS) pauses it at its own limit, 64 KiB, which only
        means that it will say when it has drained: L{highWater} decides.
        """
        return self._opening or (self._pause.paused and not self._counted)

    def _regulate(self) -> None:
        """
        Pause the producer while it is L{_blocked}, or the queued bytes have
        reached the high water mark; resume it (or pull a pull producer)
        once neither holds and they are below the low mark.  While it waits
        on bytes that nobody will report the sending of (the transport has
        not paused this consumer, so will not say when it has drained),
        check again later.
        """
        up = self._up
        if up.producer is None or self._state is not RUNNING:
            return
        queued = self.queued
        blocked = self._blocked()
        if up.streaming:
            regulateHeld(up, queued, queued > 0, self, blocked)
            waiting = up.paused and not blocked
        else:
            waiting = not blocked and queued >= self.lowWater and queued > 0
            if not blocked and not waiting:
                self._turns().wake()
        if not waiting or self._pause.paused:
            self._wait = self.pollInterval
            self._lastQueued = -1
        elif self._poll is None:
            if queued >= self._lastQueued >= 0:
                self._wait = min(self._wait * 2, self.maxPollInterval)
            else:
                self._wait = self.pollInterval
            self._lastQueued = queued
            reactor: Any = getReactor(self._reactor)
            self._poll = reactor.callLater(self._wait, self._polled)

    def _polled(self) -> None:
        self._poll = None
        self._regulate()

    # The flow core's hooks

    def _flowPauseChanged(self, paused: bool) -> None:
        self._regulate()

    def _flowStep(self) -> bool:
        up = self._up
        if (
            self._state is not RUNNING
            or up.producer is None
            or up.streaming
            or self._blocked()
        ):
            return False
        before = self.chunksWritten
        failure = up.pull()
        if failure is not None:
            error = failure.value
            assert isinstance(error, BaseException)
            self._fail(error)
            return False
        if self.chunksWritten == before or self._state is not RUNNING:
            return False
        queued = self.queued
        if queued > 0 and queued >= self.lowWater:
            self._regulate()
            return False
        return True

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        self._closed = True
        if self._poll is not None:
            if self._poll.active():
                self._poll.cancel()
            self._poll = None
        if reason is not None:
            self._up.stop()


class MessageConsumer(_MessageSink):
    """
    A consumer that sends each C{write} over an Autobahn WebSocket
    connection (a server or a client protocol of C{autobahn.twisted}) as
    one message: binary, or text if C{binary} is false.

    Made once the connection is open (in C{onOpen}) or while it is still
    opening (a producer registered then waits for it to open), it registers
    itself as a streaming producer with the connection's transport, so that
    TCP backpressure reaches the producer registered with it, and counts
    the bytes still queued: in the transport (a TCP or TLS one) and in
    Autobahn's own send queue, which does not heed the transport.  The
    producer is paused from L{highWater} queued bytes on, and resumed once
    below L{lowWater}: when the transport says it has drained, or, while
    Autobahn's queue holds bytes, on a check a few milliseconds later
    (sooner while the queue moves).  So what the sender holds for a reader
    that stops reading stays under L{highWater} plus one message.  (A
    transport whose buffer cannot be counted is obeyed instead: the
    producer is paused whenever the transport pauses this consumer.)

    The producer is stopped (its C{stopProducing} called) as soon as the
    connection is found closing or closed, whatever closed it: a close
    frame from either side, a peer that vanished, a protocol violation
    that made Autobahn fail the connection.  It is never written to after
    that.

    One sender at a time: the transport takes one producer, so a second
    L{MessageConsumer} or L{MessageStream} on the same connection before
    the first has finished raises, as the transport does.  Do not call the
    protocol's own C{sendMessage} while a L{MessageStream} is sending.

    @ivar protocol: The Autobahn protocol.
    @ivar binary: Whether messages are sent as binary (else text).
    @ivar closeCode: The close code L{finish} sends, if it is given none.
    @ivar closeReason: The close reason L{finish} sends, if it is given
        none.
    @cvar highWater: Queued bytes from which the producer is paused.
    @cvar lowWater: Queued bytes below which it is resumed.
    """

    def __init__(self, protocol: Any, **kwargs: Any) -> None:
        """
        @param protocol: A connected Autobahn protocol
            (C{autobahn.twisted.websocket.WebSocketServerProtocol} or
            C{WebSocketClientProtocol}).
        @param binary: Send binary messages (the default), or text ones.
        @param closeCode: If given, L{finish} starts the closing handshake
            with this code (1000, or 3000 to 4999) unless told otherwise.
        @param closeReason: The reason sent with C{closeCode}.
        @param highWater: Queued bytes from which the producer is paused.
        @param lowWater: Queued bytes below which it is resumed.
        @param reactor: The reactor whose turn loop drives a pull producer
            and whose clock times the checks of Autobahn's send queue; the
            global reactor if L{None}.
        @param cooperator: Drive a pull producer on this
            L{twisted.internet.task.Cooperator} instead.

        @raise RuntimeError: What the transport raises if it already has a
            producer (another sender that has not finished).
        @raise ProducerStateError: If C{protocol} is not connected.
        """
        super().__init__(protocol, **kwargs)

    @property
    def messagesSent(self) -> int:
        """
        The messages sent so far.
        """
        return self.chunksWritten

    def _send(self, payload: bytes) -> None:
        self.protocol.sendMessage(payload, self.binary)


class MessageStream(_MessageSink):
    """
    A consumer that sends everything written to it as I{one} WebSocket
    message, frame by frame as it is written (Autobahn's C{beginMessage},
    C{sendMessageFrame}, C{endMessage}): a message of unknown or huge length
    goes out with constant memory, with the same backpressure, stop on close
    and one-sender rule as L{MessageConsumer}.  L{finish} ends the message.

    Each non-empty C{write} is one frame.  If the connection closes before
    L{finish}, the message is cut short and the producer stopped.
    """

    def __init__(self, protocol: Any, **kwargs: Any) -> None:
        """
        Takes the arguments of L{MessageConsumer}.
        """
        super().__init__(protocol, **kwargs)
        self._frames = 0

    def _send(self, payload: bytes) -> None:
        if not payload:
            return
        protocol = self.protocol
        if not self._frames:
            protocol.beginMessage(isBinary=self.binary)
        protocol.sendMessageFrame(payload)
        self._frames += 1

    def _end(self) -> None:
        protocol = self.protocol
        if not self._frames:
            # Autobahn's endMessage sends a continuation frame, which must
            # follow a first frame that names the message's type.
            protocol.beginMessage(isBinary=self.binary)
            protocol.beginMessageFrame(0)
            self._frames = 1
        protocol.endMessage()


# ---------------------------------------------------------------------------
# Receiving
# ---------------------------------------------------------------------------


@implementer(IPushProducer)
class MessageSource(Flow):
    """
    The messages an Autobahn WebSocket connection receives, as a push
    producer: each message's payload (bytes; a text message as its UTF-8
    bytes) is one C{write} to the consumer given to L{startProducing}, or to
    a L{pipeline <twisted_streaming.pipeline>}.

    Messages are taken from Autobahn's C{message} event (its C{onMessage}
    still runs, so a protocol may use both) from the moment the source is
    made: make it in C{onOpen}, or before.  While its consumer is paused,
    or it holds L{highWater} bytes or more (received before it was started,
    or arriving in the same read as the pause), the source stops reading
    the TCP transport, so the peer's sending stops in turn; it reads again
    once its consumer has resumed and it holds less than L{lowWater}.  So
    a receiver holds at most about L{highWater}, plus one read of the
    transport (64 KiB), plus the message Autobahn is assembling (bounded by
    its C{maxMessagePayloadSize} option: a message is only delivered
    whole).

    When the connection closes with a normal closing handshake (close code
    1000 or none), the source delivers what it holds, finishes its consumer
    if it is finishable, and its Deferred fires.  If it closes any other
    way (the peer vanished, a protocol violation, another close code), the
    Deferred fails with L{WebSocketClosed}, after what was received has
    been delivered.  Stopping the source (its consumer's
    C{stopProducing}, or cancelling the Deferred) stops taking messages and
    starts the closing handshake, as stopping a transport closes its
    connection.

    @ivar protocol: The Autobahn protocol.
    @ivar messagesReceived: Messages received so far.
    @ivar closeCode: The close code, once the connection has closed.
    @ivar closeReason: The close reason, once the connection has closed.
    @cvar highWater: Held bytes from which the transport is not read.
    @cvar lowWater: Held bytes below which it is read again.
    """

    highWater: int = 1024 * 1024
    lowWater: int = 256 * 1024

    closeCode: Optional[int] = None
    closeReason: Optional[str] = None

    def __init__(
        self,
        protocol: Any,
        *,
        highWater: Optional[int] = None,
        lowWater: Optional[int] = None,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        """
        @param protocol: An Autobahn protocol
            (C{autobahn.twisted.websocket.WebSocketServerProtocol} or
            C{WebSocketClientProtocol}), connected.
        @param highWater: Held bytes from which the transport is not read.
        @param lowWater: Held bytes below which it is read again.
        @param reactor: The reactor whose turn loop delivers held messages;
            the global reactor if L{None}.
        @param cooperator: Deliver on this
            L{twisted.internet.task.Cooperator} instead.

        @raise ProducerStateError: If C{protocol} is not connected.
        """
        super().__init__(reactor=reactor, cooperator=cooperator)
        transport = getattr(protocol, "transport", None)
        if transport is None:
            raise ProducerStateError(f"{protocol!r} is not connected")
        self.protocol = protocol
        if highWater is not None:
            self.highWater = highWater
        if lowWater is not None:
            self.lowWater = lowWater
        self.messagesReceived = 0
        self._buffer: WaterMarkBuffer[bytes] = WaterMarkBuffer(self)
        # The transport, as the producer of what this source reads.
        self._reading = Upstream(self)
        self._reading.register(transport, True)
        # How the connection ended: None while open, else None-or-failure
        # in a one-item list.
        self._closedWith: Optional[List[Optional[Failure]]] = None
        _onMessage(protocol, self._received)
        _whenClosed(protocol).addCallback(_passThrough(self._connectionClosed))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state} at {id(self):#x}>"

    @property
    def buffered(self) -> int:
        """
        The bytes of the messages held for the consumer.
        """
        return self._buffer.size

    def startProducing(self, consumer: IConsumer) -> Deferred[int]:
        """
        Deliver the messages to C{consumer}, registered with it as a
        streaming producer; messages already held are delivered on the turn
        loop.

        @return: A L{Deferred} that fires with the payload bytes delivered
            once the connection has closed normally and C{consumer} has been
            finished (if finishable); fails with L{WebSocketClosed} if it
            closed any other way, with
            L{ProducerStopped <twisted_streaming.ProducerStopped>} if the
            consumer stopped the source, or with the consumer's error.

        @raise ProducerStateError: If this source has already been started.
        """
        started = self._start(consumer, True)
        if self.producing:
            self._turns().wake()
        return started

    def _received(self, payload: bytes, is_binary: bool = True) -> None:
        if self._closedWith is not None:
            return
        self.messagesReceived += 1
        buffer = self._buffer
        if not buffer.items and not self._pause.paused and self._state is RUNNING:
            self._deliver(payload)
            return
        buffer.append(payload)
        buffer.regulate(self._reading, blocked=self._pause.paused)

    def _deliver(self, payload: bytes) -> None:
        self.chunksWritten += 1
        self.bytesWritten += len(payload)
        try:
            self.consumer.write(payload)
        except Exception as error:
            self._fail(error, item=payload, itemIndex=self.chunksWritten - 1)

    def _connectionClosed(self) -> None:
        if self._closedWith is not None:
            return  # Stopped before: nothing is taken any more.
        normal, wasClean, code, reason = _closeDetails(self.protocol)
        self.closeCode, self.closeReason = code, reason
        _offMessage(self.protocol, self._received)
        self._reading.resume()
        self._reading.unregister()
        self._closedWith = [
            None if normal else Failure(WebSocketClosed(wasClean, code, reason))
        ]
        if self.producing:
            self._turns().wake(now=True)

    # The flow core's hooks

    def _flowPauseChanged(self, paused: bool) -> None:
        if paused:
            self._buffer.regulate(self._reading, blocked=True)
        else:
            self._turns().wake(now=True)

    def _flowStep(self) -> bool:
        buffer = self._buffer
        task = self._turns()
        while buffer.items and not self._pause.paused and self._state is RUNNING:
            payload = buffer.popleft()
            self._deliver(payload)
            if task.charge(len(payload)):
                break
        if self._state is not RUNNING:
            return False
        if not buffer.items and self._closedWith is not None:
            self._endWith(self._closedWith[0])
            return False
        buffer.regulate(self._reading, blocked=self._pause.paused)
        return bool(buffer.items) and not self._pause.paused

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        self._buffer.clear()
        if self._closedWith is not None:
            return
        # Stopped by the consumer, or the consumer failed, while the
        # connection is open: take no more messages, and close it, reading
        # again so that the closing handshake can complete.
        self._closedWith = [reason]
        _offMessage(self.protocol, self._received)
        self._reading.resume()
        self._reading.unregister()
        if _connectionState(self.protocol) is _OPEN:
            self.protocol.sendClose(1000, "the receiver stopped")
