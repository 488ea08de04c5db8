"""
L{StreamingRequest}: a C{twisted.web} request whose body goes, as it
arrives, to the consumer its resource chooses; L{streamBody}, which does
the same for any request.
"""

from __future__ import annotations

import io
from typing import IO, Any, List, Optional
from urllib.parse import unquote_to_bytes as unquote

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import parse_qs
from twisted.web.server import Request
from zope.interface import implementer

from twisted_streaming._filesender import FileSender
from twisted_streaming._flow import PauseFlag, ReadingFlag, isFinishable
from twisted_streaming._pipeline import pipeline
from twisted_streaming._transportinternals import isRegistered
from twisted_streaming._twistedweb import renderResource, requestLine
from twisted_streaming.interfaces import IStreamingBodyResource, ProducerStateError

__all__ = ["StreamingRequest", "streamBody"]

_log = Logger()


@implementer(IPushProducer)
class _Body(PauseFlag):
    """
    The producer of a request's body, registered with the consumer it goes
    to: while it is paused, the connection is not read.
    """

    def __init__(self, request: StreamingRequest) -> None:
        super().__init__(lambda paused: request._updateReading())
        self._request = request

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._request!r}>"

    def pauseProducing(self) -> None:
        self.pause()

    def resumeProducing(self) -> None:
        self.resume()

    def stopProducing(self) -> None:
        self._request._dropBody()


class StreamingRequest(Request):
    """
    A C{twisted.web.server.Request} that hands its body, as it arrives, to
    the resource that will answer it, when that resource provides
    L{IStreamingBodyResource <twisted_streaming.IStreamingBodyResource>}:
    C{Site(root, requestFactory=StreamingRequest)}.

    Once a request's headers have arrived over HTTP/1.x and it has a body,
    its resource is found (once: the same is rendered at the end).  One
    that provides L{IStreamingBodyResource} is rendered at once, before the
    body; it calls L{streamBodyTo} with the consumer of the body, which
    gets the body as it arrives, with this request's connection registered
    as its streaming producer (pausing it stops the socket being read, so
    the client slows down), and is finished at the end of the body.  Any
    other resource is rendered when the whole body has arrived, with
    C{request.content} and C{request.args} as usual.

    The response may be written at any time, also before the body has
    ended (a C{413}): the rest of the body is then read and discarded, up
    to L{maxDiscard} bytes (more, and the connection is closed), and the
    connection closed after it.  A body a resource never streams is
    discarded the same way once it has answered; until it answers or
    streams, the body is not read.  If the connection is lost before the
    body has ended, the body's consumer is finished: a format with an end
    of its own (a C{multipart} body, a tar archive) knows then that it was
    cut short.

    Over HTTP/2, and for a request without a body, everything is as with a
    plain C{Request}: the resource is rendered once the body has arrived
    (in C{request.content}), and L{streamBodyTo} streams it from there.

    @cvar maxDiscard: The most body bytes read and discarded after a
        response has ended before its body.
    @ivar bodyBytes: The bytes of the body received so far.
    @ivar discardedBytes: How many of them were discarded.
    """

    maxDiscard: int = 16 * 1024 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The resource found at the end of the headers, rendered with no
        # second traversal of the tree.
        self._resource: Any = None
        # Rendered at the end of the headers: the body streams.
        self._streaming = False
        self._bodyEnded = False
        self._consumer: Optional[IConsumer] = None
        self._body: Optional[_Body] = None
        # What arrived before the resource said where the body goes.
        self._held: List[bytes] = []
        self._discarding = False
        self._cleanupWaiting = False
        self._reading = ReadingFlag(lambda: getattr(self.channel, "transport", None))
        self.bodyBytes = 0
        self.discardedBytes = 0

    @property
    def bodyEnded(self) -> bool:
        """
        Has the whole body arrived (or was it not streamed)?
        """
        return self._bodyEnded or not self._streaming

    # The end of the headers

    def gotLength(self, length: Optional[int]) -> None:
        """
        The headers have arrived: find the resource and, if it streams
        bodies, render it now.
        """
        line = requestLine(self.channel)
        if line is None or length == 0 or line[1] == b"*":
            super().gotLength(length)
            return
        self._setRequestLine(*line)
        self.site = self.channel.site  # type: ignore[attr-defined]
        self.prepath = []
        self.postpath = list(map(unquote, self.path[1:].split(b"/")))
        try:
            resource = self.site.getResourceFor(self)
        except Exception:
            # Traversed again at the end, where the error is reported.
            super().gotLength(length)
            return
        self._resource = resource
        if not IStreamingBodyResource.providedBy(resource):
            super().gotLength(length)
            return
        self.content = io.BytesIO()
        self._streaming = True
        renderResource(self, resource)
        if self.startedWriting:
            # Answered already: no "100 Continue" after the answer.
            self.requestHeaders.removeHeader(b"expect")

    def _setRequestLine(self, method: bytes, uri: bytes, version: bytes) -> None:
        # As requestReceived sets them, without reading the body.
        self.method, self.uri, self.clientproto = method, uri, version
        self.args = {}
        path, question, query = uri.partition(b"?")
        self.path = path
        if question:
            self.args = parse_qs(query, 1)

    def process(self) -> None:
        """
        Render the resource, found at the end of the headers if it was.
        """
        if self._resource is None:
            super().process()
        else:
            renderResource(self, self._resource)

    # The body

    def streamBodyTo(self, consumer: IConsumer) -> None:
        """
        Write the body to C{consumer} as it arrives, with this request's
        connection registered as its streaming producer, and finish it (if
        it is finishable) at the end of the body.  For a body that has
        already arrived (over HTTP/2, or when the resource was not rendered
        early), stream it from C{request.content} instead.

        @raise ProducerStateError: If the body is already being streamed.
        """
        if not self._streaming:
            assert self.content is not None
            _streamContent(self.content, consumer)
            return
        if self._consumer is not None or self._discarding:
            raise ProducerStateError(f"The body of {self!r} is already streamed")
        self._consumer = consumer
        body = self._body = _Body(self)
        consumer.registerProducer(body, True)
        held, self._held = self._held, []
        for data in held:
            if self._consumer is None:
                break
            self._deliver(data)
        if self._bodyEnded:
            self._endBody()
        self._updateReading()

    def handleContentChunk(self, data: bytes) -> None:
        """
        Hand C{data} to the body's consumer; hold it (and stop reading) if
        the resource has not said where the body goes; or discard it.
        """
        if not self._streaming:
            super().handleContentChunk(data)
            return
        self.bodyBytes += len(data)
        if self._consumer is not None:
            self._deliver(data)
        elif not self._discarding:
            self._held.append(data)
            self._updateReading()
        else:
            self._discard(len(data))

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """
        The body has ended: finish its consumer, or, if the response has
        already ended, let the channel go on.
        """
        if not self._streaming:
            super().requestReceived(command, path, version)
            return
        self._bodyEnded = True
        if self._consumer is not None:
            self._endBody()
        self._held = []
        self._updateReading()
        if self._cleanupWaiting:
            self._cleanupWaiting = False
            super()._cleanup()

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if self._streaming and not self._bodyEnded:
            # Cut short: the consumer is finished all the same.
            self._endBody()

    def _cleanup(self) -> None:
        if self._streaming and not self._bodyEnded and not self._disconnected:
            # Answered before the end of the body: read and discard the rest,
            # and only then let the channel go on (and close).
            self._cleanupWaiting = True
            self.channel.persistent = False
            if self._consumer is None:
                self._startDiscarding()
            return
        super()._cleanup()

    def _deliver(self, data: bytes) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            consumer.write(data)
        except Exception:
            _log.failure("Writing the body of {request!r} failed", request=self)
            self._dropBody()

    def _endBody(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        if isRegistered(consumer, self._body):
            try:
                consumer.unregisterProducer()
            except Exception:
                _log.failure(
                    "Unregistering from {consumer!r} failed", consumer=consumer
                )
        if isFinishable(consumer):
            try:
                consumer.finish()  # type: ignore[attr-defined]
            except Exception:
                _log.failure("Finishing {consumer!r} failed", consumer=consumer)

    def _dropBody(self) -> None:
        """
        The body's consumer stopped it (or failed): discard the rest.
        """
        self._consumer = None
        self._startDiscarding()

    def _startDiscarding(self) -> None:
        self._discarding = True
        held, self._held = self._held, []
        self._discard(sum(map(len, held)))
        self._updateReading()

    def _discard(self, size: int) -> None:
        self.discardedBytes += size
        if self.finished and self.discardedBytes > self.maxDiscard:
            transport = getattr(self.channel, "transport", None)
            if transport is not None:
                transport.loseConnection()

    def _updateReading(self) -> None:
        """
        Read the connection unless the resource has not said where the
        body goes yet, or the body's consumer has paused it.
        """
        waiting = not (
            self._consumer is not None or self._discarding or self._bodyEnded
        )
        body = self._body
        paused = self._consumer is not None and body is not None and body.paused
        if waiting or paused:
            self._reading.pause()
        else:
            self._reading.resume()


def _streamContent(content: IO[bytes], consumer: IConsumer) -> Deferred[int]:
    """
    Stream a body already stored in C{content} to C{consumer}, and finish
    it.
    """
    content.seek(0)
    done = pipeline(
        lambda sink: FileSender().beginFileTransfer(content, sink), sink=consumer
    )
    done.addErrback(
        lambda failure: _log.failure(
            "Streaming a stored body to {consumer!r} failed", failure, consumer=consumer
        )
    )
    return done


def streamBody(request: Any, consumer: IConsumer) -> None:
    """
    Write C{request}'s body to C{consumer}, and finish it at the end: as it
    arrives, through a L{StreamingRequest}; from C{request.content}, where
    Twisted has stored it, through any other request.
    """
    streamBodyTo = getattr(request, "streamBodyTo", None)
    if streamBodyTo is not None:
        streamBodyTo(consumer)
    else:
        _streamContent(request.content, consumer)
