"""
L{ProxyFactory}: a TCP (or any stream) forwarder with backpressure both ways
and half-close, a drop-in for L{twisted.protocols.portforward.ProxyFactory}.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable, Dict, Optional, Tuple, Type, TypeVar, cast

from attrs import define, field
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.error import (
    ConnectionDone,
    ConnectionRefusedError,
    NotConnectingError,
)
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.interfaces import (
    IConnector,
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IPushProducer,
    IReactorTCP,
    IReactorTime,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import (
    ClientFactory,
    Protocol,
    ServerFactory,
    connectionDone,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._flow import PauseFlag, getReactor
from twisted_streaming._limits import ConnectionLimits, IdleTimer
from twisted_streaming._proxyheader import VERSIONS, proxyHeader, sendFirst
from twisted_streaming._resetwatch import ResetWatch, socketOf
from twisted_streaming._splice import PipePool, Splice
from twisted_streaming._transportinternals import abortNow, connectTCPArguments

__all__ = ["ProxyFactory", "ProxyStatistics"]

_log = Logger()
_Factory = TypeVar("_Factory", bound="ProxyFactory")


@define
class ProxyStatistics:
    """
    What one proxied connection did.

    @ivar bytesToUpstream: Bytes read from the client and written upstream.
    @ivar bytesToClient: Bytes read from upstream and written to the client.
    @ivar started: When the client connected, by C{clock}.
    @ivar ended: When both connections had closed, or L{None} until then.
    @ivar reason: How it ended: C{"closed"} (both sides finished),
        C{"client lost"} or C{"upstream lost"} (one side disconnected first),
        C{"refused"}, C{"connect timeout"} or C{"connect failed"} (upstream
        was never reached), C{"idle timeout"}, C{"shutdown"} (closed by the
        server stopping), or C{""} while in progress.
    @ivar path: How its bytes were forwarded: C{"spliced"} (with
        L{os.splice}), C{"copied"} (through Python), or C{""} if upstream
        was never reached.
    @ivar clock: What C{started}, C{ended} and L{duration} are measured
        with: the proxy's reactor's C{seconds} (C{time.time} for statistics
        made by hand), so that they agree with its timeouts.
    """

    bytesToUpstream: int = 0
    bytesToClient: int = 0
    clock: Callable[[], float] = field(default=time.time, repr=False, eq=False)
    started: float = field()
    ended: Optional[float] = None
    reason: str = ""
    path: str = ""

    @started.default
    def _now(self) -> float:
        return self.clock()

    @property
    def duration(self) -> float:
        """
        Seconds from the client's connection to the end (or to now).
        """
        return (self.ended if self.ended is not None else self.clock()) - self.started


@implementer(IPushProducer)
class _Reader:
    """
    One side's transport, as the streaming producer of the other side's
    transport: the other side pauses this side's reading when its write
    buffer is full.  Once this side's read direction has ended, resuming
    never restarts reading (the transport would read again, and report the
    end of stream twice).
    """

    def __init__(self, side: _ProxySide) -> None:
        self.side = side
        self._pause = PauseFlag(self._pauseChanged)

    def pauseProducing(self) -> None:
        self._pause.pause()

    def resumeProducing(self) -> None:
        self._pause.resume()

    def stopProducing(self) -> None:
        # The other side's connection is gone; connectionLost tears down.
        pass

    def _pauseChanged(self, paused: bool) -> None:
        side = self.side
        if side.readDone or side.transport is None:
            return
        if paused:
            side.transport.pauseProducing()
            # Nothing reads it now: only a check notices a reset.
            side.watchForReset()
        else:
            side.transport.resumeProducing()
            side.connection.factory._resetWatch.unwatch(side)


def _canHalfClose(transport: object) -> bool:
    return bool(
        IHalfCloseableDescriptor.providedBy(transport)
        and not ISSLTransport.providedBy(transport)
    )


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class _ProxySide(Protocol):
    """
    One of the two connections of a proxied connection.
    """

    transport: Any
    peer: Optional[_ProxySide] = None
    connection: _Connection
    readDone = False
    writeDone = False
    lost = False
    #: Closed by the proxy after the other side's end of stream, because
    #: this one cannot half-close (TLS).
    closing = False
    #: Over TLS: the handshake has finished.
    handshakeDone = False
    #: Over TLS: L{close} was called before the handshake had finished.
    _closeAfterHandshake = False

    def handshakeCompleted(self) -> None:
        self.handshakeDone = True
        if self._closeAfterHandshake:
            self._closeAfterHandshake = False
            self.transport.loseConnection()

    def close(self) -> None:
        """
        Close cleanly once everything written has been sent.  Over TLS, not
        before the handshake has finished: Twisted's TLS transport aborts a
        connection closed mid-handshake, and what the peer would have sent
        (its answer to a client that sent nothing and half-closed) is lost.
        """
        if not self.handshakeDone and ISSLTransport.providedBy(self.transport):
            self._closeAfterHandshake = True
        else:
            self.transport.loseConnection()

    def watchForReset(self) -> None:
        """
        This side's socket is not being read: check it for a reset, which
        then aborts its connection (and so the other's).
        """
        sock = socketOf(self.transport)
        if sock is not None:
            self.connection.factory._resetWatch.watch(self, sock, self._reset)

    def _reset(self, reason: Failure) -> None:
        if not self.lost:
            abortNow(self.transport)

    def link(self, peer: _ProxySide) -> None:
        """
        Forward to C{peer}, each transport the other's streaming producer.
        """
        self.peer = peer
        peer.transport.registerProducer(_Reader(self), True)

    def dataReceived(self, data: bytes) -> None:
        if self.readDone:
            return  # Read only to finish closing: see _Connection.sideLost.
        self.connection.received(self, len(data))
        if self.peer is not None:
            self.peer.transport.write(data)

    def readConnectionLost(self) -> None:
        """
        This side sent its end of stream: pass it on as a half-close.
        """
        self.readDone = True
        peer = self.peer
        if peer is None or peer.lost:
            self.close()
            return
        # A paused producer would keep the half-close from ever happening.
        peer.transport.unregisterProducer()
        transport: Any = peer.transport
        if _canHalfClose(transport):
            transport.loseWriteConnection()
        else:
            # TLS cannot half-close: close, as portforward does.  What the
            # peer sends before it answers our close_notify is still
            # forwarded, with backpressure; once it has gone, sideLost
            # closes this side.
            peer.closing = True
            peer.close()
        self.connection.maybeClose()
        if not (self.lost or self.transport.disconnecting):
            # Twisted reads no more after an end of stream.
            self.watchForReset()

    def writeConnectionLost(self) -> None:
        self.writeDone = True
        self.connection.maybeClose()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        self.connection.sideLost(self, reason)


class _ClientSide(_ProxySide):
    def connectionMade(self) -> None:
        # Read nothing until upstream is connected.
        self.transport.pauseProducing()
        self.connection.connect()


class _UpstreamSide(_ProxySide):
    #: Connected by the reactor itself (not through an endpoint, whose
    #: Deferred reports the connection instead).
    direct = False

    def connectionMade(self) -> None:
        if self.direct:
            self.connection._connected(self)


class _UpstreamFactory(ClientFactory):
    """
    Builds a connection's upstream side, and reports a failure to connect
    when the reactor connects directly.  Quiet: a log line per connection
    saying that a factory started and stopped says nothing useful.
    """

    noisy = False

    def __init__(self, connection: _Connection, direct: bool) -> None:
        self.connection = connection
        self.direct = direct

    def buildProtocol(self, addr: Any) -> _UpstreamSide:
        upstream = _UpstreamSide()
        upstream.connection = self.connection
        upstream.direct = self.direct
        return upstream

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if self.direct:
            self.connection._connectFailed(reason)


class _Connection:
    """
    A client connection and its upstream connection.
    """

    def __init__(self, factory: ProxyFactory, client: _ClientSide) -> None:
        self.factory = factory
        self.client = client
        self.upstream: Optional[_UpstreamSide] = None
        self.statistics = ProxyStatistics(clock=factory.reactor.seconds)
        self.done: Deferred[ProxyStatistics] = Deferred()
        #: The connection attempt: a connector, or an endpoint's Deferred.
        self._connecting: Optional[Any] = None
        #: Data going either way touches it, if there is an idle timeout.
        self._idle: Optional[IdleTimer] = None
        #: The zero-copy path, if this connection took it.
        self.splice: Optional[Splice] = None

    def connect(self) -> None:
        factory = self.factory
        reactor = factory.reactor
        direct = factory._directAddress()
        if direct is not None:
            # The reactor's own connector: no endpoint, no Deferred, and its
            # timeout is the connect timeout.
            connector, host, port, timeout, bind = direct
            self._connecting = cast(IReactorTCP, connector).connectTCP(
                host,
                port,
                _UpstreamFactory(self, True),
                timeout=timeout,
                bindAddress=bind,
            )
        else:
            d = factory.endpoint().connect(_UpstreamFactory(self, False))
            self._connecting = d
            if factory._endpoint is not factory._ownEndpoint:
                # An endpoint of the user's has a timeout of its own, or
                # none: this one is the connect timeout.
                d.addTimeout(factory.connectTimeout, reactor)
            d.addCallbacks(self._connected, self._connectFailed)
        self._idle = factory.limits.idleTimer(reactor, self._idleTimedOut)

    def _cancelConnecting(self) -> None:
        connecting = self._connecting
        self._connecting = None
        if isinstance(connecting, Deferred):
            connecting.cancel()
        elif connecting is not None:
            try:
                cast(IConnector, connecting).stopConnecting()
            except NotConnectingError:
                # It has already failed or connected.
                pass

    def _connected(self, upstream: _UpstreamSide) -> None:
        self._connecting = None
        self.upstream = upstream
        if self.factory.proxyHeader is not None:
            client = self.client.transport
            sendFirst(
                upstream.transport,
                proxyHeader(
                    self.factory.proxyHeader, client.getPeer(), client.getHost()
                ),
                direct=self.factory.zeroCopy,
            )
        self.statistics.path = "copied"
        if self.factory.zeroCopy:
            # Nothing has been read from either side yet, so nothing is
            # buffered that would have to go first.
            self.splice = Splice.start(
                self.client.transport,
                upstream.transport,
                self,
                self.factory._pipes,
                self.factory._resetWatch,
            )
            if self.splice is not None:
                self.statistics.path = "spliced"
                self.client.peer = upstream
                upstream.peer = self.client
                return
        self.client.link(upstream)
        upstream.link(self.client)
        self.client.transport.resumeProducing()

    def _side(self, transport: Any) -> _ProxySide:
        assert self.upstream is not None
        return self.client if transport is self.client.transport else self.upstream

    def spliced(self, source: Any, size: int) -> None:
        self.received(self._side(source), size)

    def spliceReadDone(self, source: Any) -> None:
        self._side(source).readDone = True

    def spliceFinished(self) -> None:
        for side in (self.client, self.upstream):
            assert side is not None
            side.writeDone = True
        self.maybeClose()

    def spliceFailed(self, transport: Any, reason: Failure) -> None:
        # What the reactor would have done had the transport been reading
        # or writing: sideLost then closes the other side.
        transport.connectionLost(reason)

    def _connectFailed(self, reason: Failure) -> None:
        self._connecting = None
        if self.client.lost:
            # The client left first; sideLost has reported it.
            return
        if reason.check(ConnectionRefusedError):
            self.statistics.reason = "refused"
        elif reason.check(TimeoutError, ConnectTimeoutError, CancelledError):
            self.statistics.reason = "connect timeout"
        else:
            self.statistics.reason = "connect failed"
        _log.info(
            "Upstream for {client} not reached: {error}",
            client=self.client.transport.getPeer(),
            error=reason.getErrorMessage(),
        )
        self.client.transport.loseConnection()

    def received(self, side: _ProxySide, size: int) -> None:
        if side is self.client:
            self.statistics.bytesToUpstream += size
        else:
            self.statistics.bytesToClient += size
        if self._idle is not None:
            self._idle.touch()

    def _idleTimedOut(self) -> None:
        self._idle = None
        self.abort("idle timeout")

    def drain(self) -> None:
        """
        The server is draining: a proxied connection carries on (what is in
        flight is not the proxy's to judge).
        """

    def abort(self, why: str) -> None:
        """
        Close both sides at once, and end as C{why} (unless already ending).
        """
        if self.splice is not None:
            self.splice.stop()
        self.statistics.reason = self.statistics.reason or why
        for side in (self.client, self.upstream):
            if side is not None and not side.lost:
                side.transport.abortConnection()

    def maybeClose(self) -> None:
        """
        Close both connections once both directions are done.
        """
        upstream = self.upstream
        if upstream is None:
            return
        clientDone = self.client.readDone or self.client.lost
        upstreamDone = upstream.readDone or upstream.lost
        if clientDone and upstreamDone:
            self.statistics.reason = self.statistics.reason or "closed"
            for side in (self.client, upstream):
                if not side.lost:
                    # A transport holding a paused producer would wait for it
                    # to be unregistered before closing: with both directions
                    # done, nothing more will be written, so let go first.
                    side.transport.unregisterProducer()
                    side.close()

    def sideLost(self, side: _ProxySide, reason: Failure) -> None:
        if self.statistics.ended is not None:
            return
        self.factory._resetWatch.unwatch(side)
        if side is self.client:
            # The client is gone: its slot is free, even if the upstream
            # side takes a while to close.
            self.factory.limits.release(self)
        if self.splice is not None:
            self.splice.stop()
        other = self.upstream if side is self.client else self.client
        if not self.statistics.reason:
            if (side.readDone or side.closing) and other is not None and other.readDone:
                self.statistics.reason = "closed"
            else:
                self.statistics.reason = (
                    "client lost" if side is self.client else "upstream lost"
                )
        if self._connecting is not None:
            self._cancelConnecting()
        if other is not None and not other.lost:
            other.transport.unregisterProducer()
            if not (
                reason.check(ConnectionDone) or (side.closing and side.handshakeDone)
            ):
                # A reset (or any error) is passed on as a reset, so that a
                # truncated stream does not look complete.  (A TLS peer that
                # the proxy was closing may end without answering.)
                abortNow(other.transport)
                return
            if not other.readDone:
                # The lost side's transport may have paused this one's
                # reading and will never resume it; closing may need to read
                # (TLS waits for the peer's close_notify), and what arrives
                # has nowhere to go, so read and drop it.
                other.readDone = True
                other.transport.resumeProducing()
            other.close()
            return
        if self._idle is not None:
            self._idle.cancel()
        self._idle = None
        self.statistics.ended = self.factory.reactor.seconds()
        stats = self.statistics
        client = self.client.transport.getPeer()
        path = stats.path or "not connected"
        # The text is made here, once, with an f-string: Twisted's formatter
        # (string.Formatter over the event) took a tenth of a short
        # connection's CPU time for five fields.  The fields stay in the
        # event for observers that keep them (JSON, filters).
        _log.info(
            "Proxied {summary}",
            summary=f"{client}: {stats.bytesToUpstream} bytes up, "
            f"{stats.bytesToClient} bytes down in {stats.duration:.3f}s, "
            f"{path} ({stats.reason})",
            client=client,
            up=stats.bytesToUpstream,
            down=stats.bytesToClient,
            duration=stats.duration,
            path=path,
            reason=stats.reason,
        )
        self.factory._connectionDone(self)
        self.done.callback(stats)


def _countBytes(counts: Counter[Tuple[str, str]], stats: ProxyStatistics) -> None:
    if stats.path:
        counts["to_upstream", stats.path] += stats.bytesToUpstream
        counts["to_client", stats.path] += stats.bytesToClient


class ProxyFactory(ServerFactory):
    """
    Forward every connection to an upstream server, with backpressure both
    ways and half-close.

    C{ProxyFactory(host, port)} is a drop-in for
    L{twisted.protocols.portforward.ProxyFactory}; L{forEndpoint} takes any
    client endpoint (TLS, UNIX, IPv6, anything C{clientFromString} makes).
    It can listen on any server endpoint.

      - Nothing is read from the client until the upstream connection is up.
      - Each transport is the other's streaming producer: a slow reader on
        either side pauses reading on the other, so a connection never holds
        more than the two transports' own buffers (about 64 KiB each plus one
        read).
      - An end of stream from either side becomes a half-close
        (C{loseWriteConnection}) of the other, and both connections close
        once both directions are done.  Over TLS, which cannot half-close,
        the other side is closed instead, as portforward does.
      - If upstream refuses, times out (L{connectTimeout}) or disconnects,
        the client is closed promptly, and the other way round.
      - Between two plain TCP connections on Linux, bytes are forwarded with
        L{os.splice} through a pipe per direction (of 1 MiB where the system
        allows, else its default), never entering Python; the pipes are then
        the buffers.  Up to 8 empty pipes are kept for the next connections,
        and closed when the factory stops.  TLS, UNIX sockets and anything
        else take the ordinary path, as does everything when L{zeroCopy} is
        false.

    Each connection's L{ProxyStatistics} are logged when it ends, passed to
    L{onConnectionDone} if set, and given by the Deferred of
    C{protocol.connection.done}.

    @ivar connectTimeout: Seconds to wait for the upstream connection.
    @ivar onConnectionDone: Called with each connection's L{ProxyStatistics}
        when it ends.
    @ivar zeroCopy: Use the L{os.splice} path where possible.
    @ivar proxyHeader: C{"v1"} or C{"v2"} to send HAProxy's PROXY header
        upstream first, with the client's address (on either path); L{None}
        for none.
    @ivar limits: The open connections and the limits on them (which
        L{maxConnections} and L{idleTimeout} set).
    """

    protocol = _ClientSide

    def __init__(
        self,
        host: str,
        port: int,
        *,
        reactor: Optional[IReactorTime] = None,
        connectTimeout: float = 30,
        idleTimeout: Optional[float] = None,
        maxConnections: Optional[int] = None,
        onConnectionDone: Optional[Callable[[ProxyStatistics], None]] = None,
        zeroCopy: bool = True,
        proxyHeader: Optional[str] = None,
    ) -> None:
        self.host = host
        self.port = port
        self._reactor = reactor
        self._endpoint: Optional[IStreamClientEndpoint] = None
        #: The endpoint that gives up after the connect timeout by itself
        #: (one L{endpoint} made, or one given with C{timesOut}).
        self._ownEndpoint: Optional[IStreamClientEndpoint] = None
        #: The host or endpoint last looked at by L{_directAddress}, and
        #: what it found.
        self._directHost: object = None
        self._direct: Optional[Tuple[Any, str, int, Any, Any]] = None
        self.connectTimeout = connectTimeout
        self.limits = ConnectionLimits(maxConnections, idleTimeout)
        self.onConnectionDone = onConnectionDone
        self.zeroCopy = zeroCopy
        if proxyHeader not in (None, *VERSIONS):
            raise ValueError(f"proxyHeader must be None or one of {VERSIONS}")
        self.proxyHeader = proxyHeader
        #: The bytes of the connections that have ended, by direction and
        #: path (see L{bytesForwarded}).
        self._bytesEnded: Counter[Tuple[str, str]] = Counter()
        #: Empty pipes for the next spliced connections; closed when the
        #: factory stops.
        self._pipes = PipePool()
        self._resets: Optional[ResetWatch] = None

    @classmethod
    def forEndpoint(
        cls: Type[_Factory],
        endpoint: IStreamClientEndpoint,
        *,
        timesOut: bool = False,
        **kwargs: Any,
    ) -> _Factory:
        """
        A proxy to whatever C{endpoint} connects to; keyword arguments as for
        the constructor.

        @param timesOut: C{endpoint} gives up by itself after
            C{connectTimeout} (a C{tcp:} endpoint string with that
            C{timeout=}), so no second timer is needed.
        """
        factory = cls("", 0, **kwargs)
        factory._endpoint = endpoint
        if timesOut:
            factory._ownEndpoint = endpoint
        return factory

    @property
    def idleTimeout(self) -> Optional[float]:
        """
        Close a connection after this many seconds without data either way;
        L{None} for never.
        """
        return self.limits.idleTimeout

    @idleTimeout.setter
    def idleTimeout(self, seconds: Optional[float]) -> None:
        self.limits.idleTimeout = seconds

    @property
    def maxConnections(self) -> Optional[int]:
        """
        Refuse (close at once) new clients beyond this many open
        connections; L{None} for no limit.
        """
        return self.limits.maxConnections

    @maxConnections.setter
    def maxConnections(self, count: Optional[int]) -> None:
        self.limits.maxConnections = count

    @property
    def connections(self) -> int:
        """
        The number of proxied connections whose client is still connected:
        what C{maxConnections} counts.  A connection stops counting when its
        client side has closed, even if its upstream side is still closing.
        """
        return len(self.limits.counted)

    @property
    def reactor(self) -> IReactorTime:
        """
        The reactor connections are timed and, for an upstream given by IP
        address, made with (it must then provide C{IReactorTCP} too).
        """
        if self._reactor is None:
            # The global reactor, looked up when first needed (importing it
            # installs one), then kept.
            self._reactor = getReactor(None)
        return self._reactor

    @property
    def _resetWatch(self) -> ResetWatch:
        """
        The sockets of this factory's connections that are not being read
        (paused, or after their end of stream), checked for a reset.
        """
        if self._resets is None:
            self._resets = ResetWatch(self.reactor)
        return self._resets

    def _directAddress(self) -> Optional[Tuple[Any, str, int, float, Any]]:
        """
        C{(reactor, host, port, timeout, bindAddress)} to connect with the
        reactor's C{connectTCP}, which is cheaper than an endpoint (no
        Deferred, no wrapping protocol), or L{None} to use L{endpoint}: when
        the host is an IP address and no endpoint was given, or the endpoint
        is a plain TCP endpoint to an IP address.
        """
        endpoint = self._endpoint
        if endpoint is None:
            host = self.host
            if self._directHost != host:
                self._directHost = host
                self._direct = None
                if isIPAddress(host) or isIPv6Address(host):
                    self._direct = (self.reactor, host, self.port, None, None)
            if self._direct is None:
                return None
            reactor, host, port, _, bind = self._direct
            return reactor, host, port, self.connectTimeout, bind
        if self._directHost is not endpoint:
            self._directHost = endpoint
            self._direct = connectTCPArguments(endpoint)
        if self._direct is None:
            return None
        reactor, host, port, timeout, bind = self._direct
        # The endpoint's own timeout, and the connect timeout if the
        # endpoint's is not it: whichever comes first.
        return reactor, host, port, min(timeout, self.connectTimeout), bind

    def endpoint(self) -> IStreamClientEndpoint:
        """
        The endpoint upstream connections are made with.
        """
        if self._endpoint is None:
            # An address needs no name lookup (which HostnameEndpoint does in
            # a thread, and which would halve the connections per second).
            if isIPAddress(self.host):
                self._endpoint = TCP4ClientEndpoint(
                    self.reactor, self.host, self.port, timeout=self.connectTimeout
                )
            elif isIPv6Address(self.host):
                self._endpoint = TCP6ClientEndpoint(
                    self.reactor, self.host, self.port, timeout=self.connectTimeout
                )
            else:
                self._endpoint = HostnameEndpoint(
                    self.reactor, self.host, self.port, timeout=self.connectTimeout
                )
            self._ownEndpoint = self._endpoint
        return self._endpoint

    def startFactory(self) -> None:
        self._pipes.open()

    def stopFactory(self) -> None:
        # Connections still open then close their pipes when they end.
        self._pipes.close()

    def buildProtocol(self, addr: Any) -> Optional[Protocol]:
        if not self.limits.admit(addr):
            return None
        client = _ClientSide()
        client.factory = self
        client.connection = _Connection(self, client)
        self.limits.add(client.connection)
        return client

    def bytesForwarded(self) -> Dict[Tuple[str, str], int]:
        """
        The bytes forwarded since the start, the open connections' so far
        included, by direction (C{"to_upstream"}, C{"to_client"}) and path
        (C{"spliced"}, C{"copied"}).
        """
        counts = Counter(self._bytesEnded)
        for direction in ("to_upstream", "to_client"):
            for path in ("spliced", "copied"):
                counts[direction, path] += 0
        for connection in self.limits.open:
            _countBytes(counts, cast(_Connection, connection).statistics)
        return dict(counts)

    def _connectionDone(self, connection: _Connection) -> None:
        stats = connection.statistics
        _countBytes(self._bytesEnded, stats)
        self.limits.remove(
            connection, None if stats.reason == "closed" else stats.reason
        )
        if self.onConnectionDone is not None:
            try:
                self.onConnectionDone(connection.statistics)
            except Exception:
                _log.failure("onConnectionDone failed")
