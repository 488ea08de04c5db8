"""
HTTP bodies for C{twisted.web}'s client: any source as a request body
(L{BodyProducer}, for C{Agent} and C{treq}), and a response body as a
source (L{responseBody}).
"""

from __future__ import annotations

from typing import Any, Optional, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer, IResponse
from zope.interface import implementer

from twisted_streaming._connection import ConnectionSource
from twisted_streaming._flow import Upstream
from twisted_streaming._pipeline import Source, pipeline
from twisted_streaming._pulltopush import PullToPush

__all__ = ["BodyProducer", "ResponseBody", "responseBody"]


@implementer(IConsumer)
class _Body:
    """
    What the source writes to: the request's body consumer, which is not
    registered with (the client registers the L{BodyProducer} with the
    connection itself), so the source is paused and resumed through the
    L{BodyProducer}.
    """

    def __init__(self, owner: BodyProducer, consumer: IConsumer) -> None:
        self.owner = owner
        self.consumer = consumer
        self.up = Upstream(self)

    def __repr__(self) -> str:
        return f"<request body of {self.owner!r}>"

    @property
    def producer(self) -> Optional[Any]:
        return self.up.producer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.up.register(producer, streaming)
        if self.owner.paused:
            self.up.pause()

    def unregisterProducer(self) -> None:
        self.up.unregister()

    def write(self, data: bytes) -> None:
        self.consumer.write(data)


@implementer(IBodyProducer)
class BodyProducer:
    """
    Any source as the body of an HTTP request sent by
    L{twisted.web.client.Agent} or C{treq}, with backpressure: the source is
    paused while the connection's buffer is full.

    The source is anything L{pipeline <twisted_streaming.pipeline>} takes:
    a L{FileSender <twisted_streaming.FileSender>} (as C{lambda c:
    FileSender().beginFileTransfer(f, c)}), a pipeline's first producer,
    L{fromAsyncIterable <twisted_streaming.fromAsyncIterable>} over an async
    generator.  It is started when the request is sent, so a body can be
    sent once.

    @ivar length: The body's length in bytes, if known (sent as
        C{Content-Length}, which the source must then write exactly), else
        L{UNKNOWN_LENGTH} (sent with chunked encoding).
    """

    def __init__(
        self,
        source: Source,
        length: Union[int, str] = UNKNOWN_LENGTH,
        *,
        reactor: Optional[IReactorTime] = None,
    ) -> None:
        """
        @param source: What produces the body.
        @param length: Its length in bytes, if known.
        @param reactor: The reactor whose turn loop drives a pull source;
            the global reactor if L{None}.
        """
        self.source = source
        self.length = length
        self._reactor = reactor
        self.paused = False
        self._body: Optional[_Body] = None
        self._done: Optional[Deferred[int]] = None
        self._stopped = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.source!r}>"

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        """
        Write the body to C{consumer}.

        @return: A L{Deferred} that fires with L{None} once the source has
            finished, or fails with its error (in a L{ContextFailure
            <twisted_streaming.ContextFailure>}); never fires after
            L{stopProducing}.  Cancelling it stops the source.
        """
        body = self._body = _Body(self, consumer)
        done = self._done = pipeline(
            self.source, sink=PullToPush(body, reactor=self._reactor)
        )
        result: Deferred[None] = Deferred(lambda _: done.cancel())

        def ended(outcome: Any) -> None:
            if self._stopped:
                return None
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(None)
            return None

        done.addBoth(ended)
        return result

    def pauseProducing(self) -> None:
        """
        The connection's buffer is full: pause the source.
        """
        self.paused = True
        if self._body is not None:
            self._body.up.pause()

    def resumeProducing(self) -> None:
        """
        The connection has room: resume the source.
        """
        self.paused = False
        if self._body is not None:
            self._body.up.resume()

    def stopProducing(self) -> None:
        """
        The request is abandoned: stop the source; the L{Deferred} of
        L{startProducing} never fires.
        """
        self._stopped = True
        if self._done is not None and not self._done.called:
            self._done.cancel()


class _Deliver(Protocol):
    """
    The protocol C{IResponse.deliverBody} delivers to, passing everything on
    to a L{ResponseBody}.
    """

    def __init__(self, source: ResponseBody) -> None:
        self.source = source

    def makeConnection(self, transport: Any) -> None:
        self.source.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.source.dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.source.connectionLost(reason)


class ResponseBody(ConnectionSource):
    """
    The body of a C{twisted.web} client response, as a source: see
    L{responseBody}.
    """

    # PotentialDataLoss: a body without a length, which ends when the server
    # closes (as treq's collect() takes it).
    cleanEnds = (ResponseDone, PotentialDataLoss)

    def __init__(
        self, response: IResponse, *, reactor: Optional[IReactorTime] = None
    ) -> None:
        super().__init__(reactor=reactor)
        self.response = response

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state} of {self.response!r}>"

    def startProducing(self, consumer: IConsumer) -> Deferred[int]:
        deferred = super().startProducing(consumer)
        self.response.deliverBody(_Deliver(self))
        return deferred


def responseBody(
    response: IResponse, *, reactor: Optional[IReactorTime] = None
) -> ResponseBody:
    """
    The body of C{response} (from L{twisted.web.client.Agent} or C{treq}) as
    a source for L{pipeline <twisted_streaming.pipeline>} or
    L{toAsyncIterator <twisted_streaming.toAsyncIterator>}, delivered with
    C{IResponse.deliverBody} when it is started: the connection stops
    reading while the consumer has paused it.

    Its L{Deferred} fires with the body's size once it has all arrived (a
    body without a length ends when the server closes), and fails with the
    reason if the connection is lost first (C{ResponseFailed}); if the
    consumer stops it, the connection is closed.  A body can be delivered
    once.
    """
    return ResponseBody(response, reactor=reactor)
