"""
Every read or write of Twisted's private transport attributes, in one place.

The zero-copy paths (L{os.sendfile} in C{FileSender}, L{os.splice} in the
proxy) must know what a C{twisted.internet.tcp} transport still has to send
and must tell it what they did behind its back.  Twisted has no public API
for either, so these functions read and write attributes of
C{twisted.internet.abstract.FileDescriptor} and C{tcp.Connection} that are
not part of Twisted's public interface:

  - C{dataBuffer}, C{offset}, C{_tempDataLen}: the bytes written but not
    yet sent;
  - C{_sendmsgQueue}: file descriptors queued by C{sendFileDescriptor} (UNIX
    sockets), which ride on the next bytes written;
  - C{_writeDisconnecting}, C{_writeDisconnected}: a half-close requested or
    done;
  - C{TLS}: set by C{startTLS()}, after which writes go through OpenSSL;
  - C{_appSendBuffer}: what C{twisted.protocols.tls}'s
    C{TLSMemoryBIOProtocol} holds, in clear, until its handshake is done;
  - C{_producer}: what C{twisted.protocols.tls}'s C{_ProducerMembrane} and
    C{twisted.internet._producer_helpers._PullToPush} wrap, so that a
    producer registered with a TLS transport can tell that it still is;
  - C{_asyncioEventloop}: the L{asyncio} event loop an
    C{AsyncioSelectorReactor} runs on, on which C{fromAsyncIterable} runs
    asyncio coroutines;
  - C{_reactor}, C{_host}, C{_port}, C{_timeout}, C{_bindAddress}: what a
    C{TCP4ClientEndpoint} or C{TCP6ClientEndpoint} passes to
    C{connectTCP}, which the proxy calls itself to connect without an
    endpoint's Deferred and wrapping protocol.

And one behaviour: C{tcp.Connection.connectionLost} does nothing when
called a second time (it checks that its C{socket} is still there), which
L{abortNow} relies on.

How C{twisted.web} is built, which C{FileResource} relies on, is in its own
module, C{_twistedweb}, with its own test.

Checked against Twisted 22.10 through 26.10 (the versions C{setup.cfg}
allows, and the newest).  C{twisted_streaming/test/test_transportinternals.py}
checks each attribute on real transports and fails loudly if a Twisted
release changes them; when it does, this module is the only one to fix.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, Tuple

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionAborted
from twisted.python.failure import Failure

__all__ = [
    "CHECKED_VERSIONS",
    "abortNow",
    "asyncioLoop",
    "connectTCPArguments",
    "isRegistered",
    "isTCPTransport",
    "markWriteDisconnected",
    "pendingBytes",
    "queuesFileDescriptors",
    "unsentBytes",
    "writeClosing",
    "zeroCopySocket",
]

#: The Twisted releases the attributes below were checked against.
CHECKED_VERSIONS = ("22.10", "26.10")

_tcpConnection: Any
try:
    from twisted.internet.tcp import Connection as _tcpConnection
except ImportError:  # pragma: no cover - a platform without tcp.Connection
    _tcpConnection = None


def isTCPTransport(transport: object) -> bool:
    """
    Is C{transport} a C{twisted.internet.tcp} connection (which UNIX stream
    transports subclass too) of a file-descriptor reactor?
    """
    return _tcpConnection is not None and isinstance(transport, _tcpConnection)


def unsentBytes(transport: Any) -> int:
    """
    The bytes written to C{transport} (a L{isTCPTransport}) and not yet sent.
    """
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def pendingBytes(transport: Any) -> Optional[int]:
    """
    The bytes C{transport} holds that its socket has not yet taken, for a
    TCP or UNIX transport (L{unsentBytes}) and for a TLS transport made by
    C{twisted.protocols.tls} over one (what it holds in clear, and what its
    own transport holds); L{None} for any other transport, whose buffer is
    not known.
    """
    if isTCPTransport(transport):
        return unsentBytes(transport)
    tls = sys.modules.get("twisted.protocols.tls")
    if tls is not None and isinstance(transport, tls.TLSMemoryBIOProtocol):
        below = pendingBytes(transport.transport)
        if below is None:
            return None
        return below + sum(len(data) for data in transport._appSendBuffer)
    return None


def queuesFileDescriptors(transport: Any) -> bool:
    """
    Has C{transport} file descriptors queued by C{sendFileDescriptor}, which
    must ride on the next bytes it writes itself?
    """
    return bool(getattr(transport, "_sendmsgQueue", None))


def writeClosing(transport: Any) -> bool:
    """
    Has C{transport}'s write side been asked to close, or closed?
    """
    return bool(transport._writeDisconnecting or transport._writeDisconnected)


def markWriteDisconnected(transport: Any) -> None:
    """
    Tell C{transport} that its socket's write side was shut down behind its
    back, as it would have noted had it done so itself, so that its
    C{loseConnection} closes at once instead of waiting to be writable.
    """
    transport._writeDisconnected = True


def zeroCopySocket(consumer: object) -> Optional[int]:
    """
    The socket's file descriptor if C{consumer} is a connected plain (not
    TLS) TCP or UNIX transport that L{os.sendfile} can write to directly,
    with no file descriptors queued; else L{None}.
    """
    if not hasattr(os, "sendfile") or not isTCPTransport(consumer):
        return None
    transport: Any = consumer
    if queuesFileDescriptors(transport):
        return None
    if getattr(transport, "TLS", False) or not transport.connected:
        return None
    try:
        return int(transport.fileno())
    except Exception:
        return None


def isRegistered(consumer: object, producer: object) -> bool:
    """
    Is C{producer} still C{consumer}'s registered producer, as far as
    C{consumer} says?

    A consumer that keeps no C{producer} attribute is taken at its word that
    it still has it; one whose C{producer} is L{None} has forgotten it (a
    transport does, before it calls C{stopProducing}).  A TLS transport's
    C{producer} is Twisted's wrapper of the producer (itself wrapped in a
    pull-to-push adapter, for a pull producer), followed through their
    C{_producer}.
    """
    current = getattr(consumer, "producer", producer)
    for _ in range(4):
        if current is producer:
            return True
        if current is None:
            return False
        current = getattr(current, "_producer", None)
    return False


def abortNow(transport: Any) -> None:
    """
    Abort C{transport}'s connection (with a reset, dropping what it has
    not sent) and report it lost now, not on the reactor's next turn as
    C{abortConnection} does: once the reactor is shutting down there is
    no next turn, and the connection would never be reported lost.

    Reported lost by calling the C{twisted.internet.tcp} transport's
    C{connectionLost} (under a protocol wrapper such as TLS, if need be),
    as the reactor would; the call C{abortConnection} scheduled then does
    nothing.  Any other transport is only asked to abort.
    """
    transport.abortConnection()
    lowest = transport
    for _ in range(4):
        if isTCPTransport(lowest):
            lowest.connectionLost(Failure(ConnectionAborted()))
            return
        # A protocol wrapper is the protocol of the transport under it.
        lowest = getattr(lowest, "transport", None)
        if lowest is None:
            return


def asyncioLoop(reactor: object) -> Optional[Any]:
    """
    The L{asyncio} event loop C{reactor} runs on, if it is an
    C{AsyncioSelectorReactor} (or anything else that keeps one where it
    does); else L{None}.
    """
    return getattr(reactor, "_asyncioEventloop", None)


def connectTCPArguments(endpoint: object) -> Optional[Tuple[Any, str, int, Any, Any]]:
    """
    C{(reactor, host, port, timeout, bindAddress)}, what C{endpoint}'s
    C{connect} would pass to C{reactor.connectTCP}, if it is a
    C{TCP4ClientEndpoint} or C{TCP6ClientEndpoint} (not a subclass) whose
    host is an IP address of its family (a C{TCP6ClientEndpoint} given a
    name looks it up first); else L{None}.
    """
    kind = type(endpoint)
    if kind not in (TCP4ClientEndpoint, TCP6ClientEndpoint):
        return None
    e: Any = endpoint
    ipv4 = kind is TCP4ClientEndpoint
    if not (isIPAddress(e._host) if ipv4 else isIPv6Address(e._host)):
        return None
    return e._reactor, e._host, e._port, e._timeout, e._bindAddress
