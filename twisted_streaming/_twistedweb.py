"""
What L{FileResource <twisted_streaming.FileResource>} relies on in
C{twisted.web} beyond its documented interfaces, in one place (what it needs
of the transport's private attributes is read through
L{twisted_streaming._transportinternals}, with everything else of that kind).

Checked against Twisted 24.7.0 and 26.10.0.  C{test_web.TwistedInternalsTests}
checks every assumption below on a real connection, so that a Twisted
release that changes one fails that test by name instead of corrupting a
response.  (Before 24.7.0, C{HTTPChannel} answered pipelined requests
concurrently, CVE-2024-41671: the body of one response could start while
the previous one was still being sent.  Then the transport is still taken
when the next response starts, L{takeTransport} returns L{None}, and that
body goes through the request as Twisted's own resources would send it.)

What is relied on:

  - an HTTP/1.x response goes through a L{twisted.web.http.HTTPChannel}
    (C{request.channel}) whose C{transport} is the connection itself: a
    L{twisted.internet.tcp.Connection} (TCP, or a UNIX socket, which
    subclasses it), with C{TLS} false unless C{startTLS} was called.  Over
    HTTPS the transport is a C{TLSMemoryBIOProtocol} instead; over HTTP/2
    C{request.channel} is an C{H2Stream}: both are left alone;
  - the channel registers itself with that transport as a streaming
    producer when the connection is made (C{transport.producer}), to pass
    the transport's backpressure on to the request's producer;
  - a L{twisted.web.server.Request} whose body is being content-encoded
    (an C{EncodingResourceWrapper}, for gzip) has a private C{_encoder};
  - C{request.chunked} is true once the headers are written if the body is
    sent with chunked transfer encoding.

What L{StreamingRequest <twisted_streaming.StreamingRequest>} relies on, to
hand a request's body to its resource as it arrives:

  - an C{HTTPChannel} calls C{request.gotLength(length)} once a request's
    headers have arrived and before its body, with the request line still
    in the channel's C{_command}, C{_path} and C{_version} (read by
    L{requestLine}); it checks the request's C{Expect} header for
    C{100-continue} only after C{gotLength} returns;
  - the body then goes to C{request.handleContentChunk(data)} as it
    arrives, and its end to C{request.requestReceived(...)};
  - C{Request.finish} ends with C{self._cleanup()}, which tells the channel
    that the request is done (C{channel.requestDone}): a request answered
    before its body has ended delays it until then, so that the channel
    does not read the rest of the body as the next request;
  - C{twisted.web.server.Request.process} does what L{renderResource} does
    once it has found the resource (the C{Server} and C{Date} headers, an
    encoder from a C{twisted.web.resource._IEncodingResource}, render,
    C{processingFailed}).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from twisted.python.failure import Failure
from twisted.web import resource as _resource
from twisted.web.http import HTTPChannel, datetimeToString
from twisted.web.server import version as _serverVersion

from twisted_streaming._transportinternals import zeroCopySocket

__all__ = ["RawBody", "renderResource", "requestLine", "takeTransport"]


class RawBody:
    """
    A response body being written straight to the TCP transport under an
    HTTP/1.x channel, bypassing the request, which wrote the headers.

    While a L{RawBody} holds the transport, the channel is not its producer:
    whoever writes the body registers with the transport instead, and the
    transport's writability drives it.  L{giveBack} makes the channel the
    transport's producer again, as it was.

    @ivar transport: The L{twisted.internet.tcp.Connection} to write to.
    @ivar channel: The L{twisted.web.http.HTTPChannel} it was taken from.
    """

    def __init__(self, transport: Any, channel: HTTPChannel) -> None:
        self.transport = transport
        self.channel = channel

    def giveBack(self) -> None:
        """
        Make the channel the transport's producer again, if the connection
        is still there; call this once the body's producer has unregistered
        from the transport, and before finishing the request (finishing may
        start the next pipelined response at once).
        """
        transport, channel = self.transport, self.channel
        if transport.disconnected or transport.producer is not None:
            # Lost (nothing to give back), or the channel has already
            # unregistered and closed it (its idle timeout, say).
            return
        transport.registerProducer(channel, True)
        # While it was taken, the transport resumed the body's producer, not
        # the channel, when its buffer emptied: the buffer is empty now, so
        # the channel is not waiting for it.  (Resuming does not resume
        # reading while the channel is still handling the request.)
        channel.resumeProducing()


def takeTransport(request: Any) -> Optional[RawBody]:
    """
    Take the TCP transport under C{request}'s channel for a response body
    that is written to it directly, if its bytes go on the wire unchanged:
    HTTP/1.x over plain TCP (or a UNIX socket), no TLS, no chunked transfer
    encoding, no content encoding.

    Call this after the headers are written (C{request.write(b"")}): they
    are in the transport's buffer, and go before anything written to it.

    @return: A L{RawBody} whose transport the channel has unregistered
        from, or L{None}, with nothing changed, if the body must go through
        C{request.write} (or if the connection is closing).
    """
    channel = getattr(request, "channel", None)
    if not isinstance(channel, HTTPChannel):
        # HTTP/2 (an H2Stream), or a request with no connection left.
        return None
    if request.chunked or getattr(request, "_encoder", None) is not None:
        return None
    transport: Any = channel.transport
    # A connected plain TCP or UNIX transport, not TLS.
    if zeroCopySocket(transport) is None or transport.disconnecting:
        return None
    if transport.producer is not channel:
        return None
    transport.unregisterProducer()
    return RawBody(transport, channel)


def requestLine(channel: Any) -> Optional[Tuple[bytes, bytes, bytes]]:
    """
    The method, path and version of the request whose headers C{channel}
    has just received, called from the request's C{gotLength}; L{None} if
    the channel is not an HTTP/1.x C{HTTPChannel} (an C{H2Stream}), which
    calls C{gotLength} with no request line.
    """
    if not isinstance(channel, HTTPChannel):
        return None
    try:
        return channel._command, channel._path, channel._version
    except AttributeError:
        return None


def renderResource(request: Any, resource: Any) -> None:
    """
    Render C{resource}, already found for C{request}, as
    C{twisted.web.server.Request.process} does once it has found it.
    """
    request.site = request.channel.site
    request.setHeader(b"Server", _serverVersion)
    request.setHeader(b"Date", datetimeToString())
    try:
        if _resource._IEncodingResource.providedBy(resource):
            encoder = resource.getEncoder(request)
            if encoder is not None:
                request._encoder = encoder
        request.render(resource)
    except BaseException:
        request.processingFailed(Failure())
