"""
A connection as a source and as a sink: L{ConnectionSource} (what a
protocol receives, as a producer for a pipeline), L{ConnectionSink} (its
transport, as a finishable consumer) and L{StreamProtocol}, a protocol made
of both that says when it is closed.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Type

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.components import proxyForInterface
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from twisted_streaming._flow import IDLE, RUNNING, Flow, ReadingFlag, WaterMarkBuffer
from twisted_streaming.interfaces import IFinishableConsumer

__all__ = ["ConnectionSink", "ConnectionSource", "StreamProtocol"]


@implementer(IPushProducer)
class ConnectionSource(Flow):
    """
    The bytes a connection receives, as a source for
    L{pipeline <twisted_streaming.pipeline>} or
    L{toAsyncIterator <twisted_streaming.toAsyncIterator>}.

    The protocol passes on what it is told: L{makeConnection} (the
    transport), L{dataReceived}, L{readConnectionLost} (a half-close) and
    L{connectionLost}; L{StreamProtocol} does it for you.  Started with
    C{startProducing(consumer)}, it writes each chunk received to
    C{consumer} and stops the transport reading (C{pauseProducing}) while
    the consumer has paused it, so TCP flow control slows the peer down.
    Bytes received before it starts are held, with reading paused, and
    written first.

    Its L{Deferred} fires with the bytes received when the peer closes its
    side cleanly (a half-close, or a connection closed with
    L{ConnectionDone}, or one of C{cleanEnds}); it fails with the reason the
    connection was lost otherwise (a reset, a timeout), with the error if
    the consumer's C{write} fails, in a L{ContextFailure
    <twisted_streaming.ContextFailure>}, and with
    L{ProducerStopped <twisted_streaming.ProducerStopped>} or
    L{CancelledError <twisted.internet.defer.CancelledError>} if the
    consumer stops it or it is cancelled.  When it ends badly, the
    connection is closed (C{stopProducing} on the transport): nobody is left
    to read what it would receive.

    @ivar transport: The connection's transport, once made; L{None} once
        lost.
    @cvar cleanEnds: The reasons for a lost connection that end the stream
        well.
    """

    cleanEnds: Tuple[Type[BaseException], ...] = (ConnectionDone,)

    #: Bytes received before starting are held in one buffer; reading is
    #: paused as soon as anything is held.
    highWater = lowWater = 0

    def __init__(
        self,
        transport: Optional[Any] = None,
        *,
        reactor: Optional[IReactorTime] = None,
    ) -> None:
        """
        @param transport: The connection's transport, if it is made already;
            else L{makeConnection} gives it.
        @param reactor: The reactor whose turn loop it is registered on;
            the global reactor if L{None}.
        """
        super().__init__(reactor=reactor)
        self.transport = transport
        self._early: WaterMarkBuffer[bytes] = WaterMarkBuffer(self)
        # Whether this source has paused the transport's reading.
        self._reading = ReadingFlag(lambda: self.transport)
        # How it ended before it started: a Failure, or None for a clean end.
        self._endedEarly: Optional[Tuple[Optional[Failure]]] = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state} from {self.transport!r}>"

    @property
    def upstream(self) -> Optional[Any]:
        """
        Where the bytes come from: the transport, for the chain a failure
        names.
        """
        return self.transport

    def startProducing(self, consumer: IConsumer) -> Deferred[int]:
        """
        Write what the connection receives to C{consumer}, first what
        arrived already.

        @return: A L{Deferred} that fires with the number of bytes written
            once the peer has closed cleanly, after unregistering and
            finishing C{consumer} if it is finishable; see the class for
            how it fails.

        @raise ProducerStateError: If it has already been started.
        """
        deferred: Deferred[int] = self._start(consumer, True)
        while self._early and self._state is RUNNING:
            self._deliver(self._early.popleft())
        if self._state is RUNNING:
            if self._endedEarly is not None:
                self._end(self._endedEarly[0])
            elif not self._pause.paused:
                self._reading.resume()
        return deferred

    # From the protocol

    def makeConnection(self, transport: Any) -> None:
        """
        The connection is made, with C{transport}.
        """
        self.transport = transport
        if self._reading.paused:
            transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        """
        C{data} has arrived.
        """
        state = self._state
        if state is RUNNING:
            self._deliver(data)
        elif state is IDLE:
            self._early.append(data)
            self._reading.pause()

    def readConnectionLost(self) -> None:
        """
        The peer has closed its side (a half-close): the end of the stream.
        """
        self._end(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        The connection is lost: the end of the stream if C{reason} is one
        of L{cleanEnds}, else its failure.
        """
        self.transport = None
        self._end(None if reason.check(*self.cleanEnds) else reason)

    # Internals

    def _deliver(self, data: bytes) -> None:
        index, offset = self.chunksWritten, self.bytesWritten
        self.chunksWritten = index + 1
        self.bytesWritten = offset + len(data)
        try:
            self.consumer.write(data)
        except BaseException as error:
            self._fail(
                error,
                item=data,
                itemIndex=index,
                itemOffset=offset,
                itemOf=f"its output (written to {self.consumer!r})",
            )

    def _end(self, reason: Optional[Failure]) -> None:
        state = self._state
        if state is IDLE:
            if self._endedEarly is None:
                self._endedEarly = (reason,)
        elif state is RUNNING:
            self._endWith(reason)

    # The flow core's hooks

    def _flowPauseChanged(self, paused: bool) -> None:
        if paused:
            self._reading.pause()
        else:
            self._reading.resume()

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        self._early.clear()
        transport = self.transport
        if reason is not None and transport is not None:
            # Nobody is left to read what it would receive.
            transport.stopProducing()


@implementer(IFinishableConsumer)
class ConnectionSink(proxyForInterface(IConsumer, "transport")):  # type: ignore[misc]
    """
    A connection's transport as a finishable sink: writes and producers go
    to the transport (a L{FileSender <twisted_streaming.FileSender>} still
    sends around it with C{os.sendfile}), and C{finish()}, at the end of
    a pipeline, closes the connection once everything written has been sent,
    or only its write side (a half-close) if C{halfClose}.
    """

    def __init__(self, transport: Any, *, halfClose: bool = False) -> None:
        super().__init__(transport)
        self.halfClose = halfClose

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.transport!r}>"

    @property
    def passThroughTo(self) -> Any:
        # Writes reach the transport unchanged and at once.
        return self.transport

    @property
    def producer(self) -> Any:
        return getattr(self.transport, "producer", None)

    def passedAround(self, size: int) -> None:
        """
        C{size} bytes went to the transport around this sink.
        """

    def finish(self) -> None:
        """
        Close the connection, or its write side if C{halfClose} and the
        transport can, once everything written has been sent.
        """
        transport: Any = self.transport
        loseWriteConnection = getattr(transport, "loseWriteConnection", None)
        if self.halfClose and loseWriteConnection is not None:
            loseWriteConnection()
        else:
            transport.loseConnection()


class StreamProtocol(Protocol):
    """
    A protocol whose incoming bytes are a source (L{incoming}) and whose
    transport is a sink (L{outgoing}), and that says when it is closed
    (L{lost}).  Use it as it is with C{connectProtocol}, or subclass it (a
    server's protocol starts its pipeline in C{connectionMade})::

        connection = StreamProtocol()
        await connectProtocol(endpoint, connection)
        await pipeline(connection.incoming, Decompress(), sink=FileConsumer(path))

    A subclass that overrides C{dataReceived} takes the bytes for itself
    (L{incoming} then gets none); one that overrides C{connectionLost} calls
    this one.

    @ivar incoming: The L{ConnectionSource} of what the connection
        receives.
    @ivar lost: Fires with L{None} once the connection is closed.
    @ivar reason: Why it was closed, once it is.
    """

    transport: Any

    def __init__(
        self, *, halfClose: bool = False, reactor: Optional[IReactorTime] = None
    ) -> None:
        """
        @param halfClose: The peer may close its side and go on reading
            (a half-close): that ends L{incoming} without closing the
            connection, and L{outgoing} closes only the write side when
            finished.
        @param reactor: The reactor L{incoming} runs on; the global reactor
            if L{None}.
        """
        self.halfClose = halfClose
        if halfClose:
            alsoProvides(self, IHalfCloseableProtocol)
        self.incoming = ConnectionSource(reactor=reactor)
        self.lost: Deferred[None] = Deferred()
        self.reason: Optional[Failure] = None

    @property
    def outgoing(self) -> ConnectionSink:
        """
        The transport as a finishable sink (see L{ConnectionSink}).
        """
        return ConnectionSink(self.transport, halfClose=self.halfClose)

    def makeConnection(self, transport: ITransport) -> None:
        self.incoming.makeConnection(transport)
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.incoming.dataReceived(data)

    def readConnectionLost(self) -> None:
        self.incoming.readConnectionLost()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.incoming.connectionLost(reason)
        self.lost.callback(None)

    def close(self) -> Deferred[None]:
        """
        Close the connection once everything written has been sent.

        @return: A L{Deferred} that fires with L{None} once it is closed.
        """
        self.transport.loseConnection()
        closed: Deferred[None] = Deferred()

        def fire(result: None) -> None:
            closed.callback(None)
            return result

        self.lost.addCallback(fire)
        return closed
