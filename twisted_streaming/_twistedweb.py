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
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.web.http import HTTPChannel

from twisted_streaming._transportinternals import zeroCopySocket

__all__ = ["RawBody", "takeTransport"]


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
