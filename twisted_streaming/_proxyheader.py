"""
Sending HAProxy's PROXY protocol header (version 1, text, or 2, binary):
the first bytes a proxy sends upstream, carrying its client's address, as
U{https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt} specifies.
Twisted parses it (the C{haproxy:} server endpoint); this is the sending
half.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Optional

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress, ISystemHandle

__all__ = ["VERSIONS", "proxyHeader", "sendFirst"]

#: The versions that L{proxyHeader} makes, as C{--send-proxy} names them.
VERSIONS = ("v1", "v2")

_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: Version 2, command PROXY (relayed: use the addresses that follow) or
#: LOCAL (use the connection's own addresses).
_V2_PROXY, _V2_LOCAL = 0x21, 0x20
#: Address family and transport: TCP over IPv4, over IPv6, UNIX stream,
#: and unspecified (the receiver ignores the addresses).
_V2_TCP4, _V2_TCP6, _V2_UNIX, _V2_UNSPEC = 0x11, 0x21, 0x31, 0x00
_UNIX_PATH = 108


def _unixPath(address: UNIXAddress) -> bytes:
    name: Any = address.name
    if name is None:
        return b""
    if isinstance(name, str):
        name = name.encode("utf-8", "surrogateescape")
    return bytes(name)[:_UNIX_PATH]


def proxyHeader(version: str, source: IAddress, destination: IAddress) -> bytes:
    """
    The PROXY header saying that a connection came from C{source} to
    C{destination} (a proxy's client's C{getPeer()} and C{getHost()}).

    TCP over IPv4 and IPv6 is carried by both versions, UNIX sockets by
    version 2 only; anything else (and UNIX under version 1) is sent as
    unknown (C{UNKNOWN}; version 2's C{LOCAL} command, as HAProxy sends it),
    which a receiver takes as "use the connection's own address".  HAProxy
    (2.6) refuses version 2's UNIX family: in front of it, a UNIX listener
    sends version 1.

    @param version: C{"v1"} or C{"v2"}.
    @raise ValueError: For another version.
    """
    if version == "v1":
        if isinstance(source, IPv4Address) and isinstance(destination, IPv4Address):
            kind = b"TCP4"
        elif isinstance(source, IPv6Address) and isinstance(destination, IPv6Address):
            kind = b"TCP6"
        else:
            # As the specification writes it, and as HAProxy 2.6 accepts it
            # (it refuses anything after UNKNOWN).  Twisted's parser (26.10)
            # refuses this form: send v2 to it.
            return b"PROXY UNKNOWN\r\n"
        return b"PROXY %s %s %s %d %d\r\n" % (
            kind,
            source.host.encode("ascii"),
            destination.host.encode("ascii"),
            source.port,
            destination.port,
        )
    if version != "v2":
        raise ValueError(f"PROXY protocol version {version!r} is not one of {VERSIONS}")
    if isinstance(source, IPv4Address) and isinstance(destination, IPv4Address):
        family = _V2_TCP4
        body = struct.pack(
            "!4s4sHH",
            socket.inet_pton(socket.AF_INET, source.host),
            socket.inet_pton(socket.AF_INET, destination.host),
            source.port,
            destination.port,
        )
    elif isinstance(source, IPv6Address) and isinstance(destination, IPv6Address):
        family = _V2_TCP6
        body = struct.pack(
            "!16s16sHH",
            socket.inet_pton(socket.AF_INET6, source.host.split("%")[0]),
            socket.inet_pton(socket.AF_INET6, destination.host.split("%")[0]),
            source.port,
            destination.port,
        )
    elif isinstance(source, UNIXAddress) and isinstance(destination, UNIXAddress):
        family = _V2_UNIX
        body = struct.pack("!108s108s", _unixPath(source), _unixPath(destination))
    else:
        # PROXY with an unspecified family may be refused (HAProxy does);
        # LOCAL must be accepted.
        return _V2_SIGNATURE + struct.pack("!BBH", _V2_LOCAL, _V2_UNSPEC, 0)
    return _V2_SIGNATURE + struct.pack("!BBH", _V2_PROXY, family, len(body)) + body


def sendFirst(transport: Any, data: bytes, direct: bool) -> None:
    """
    Send C{data} on C{transport} before anything else.

    @param direct: Send on the transport's socket at once (if it has one),
        so that nothing is left in the transport's buffer and the
        connection can still be spliced; whatever the socket does not take
        at once is given to C{transport.write}.  Otherwise (TLS, or no
        splice to come) just C{transport.write}.
    """
    handle: Optional[Any] = None
    if direct and ISystemHandle.providedBy(transport):
        handle = transport.getHandle()
    if isinstance(handle, socket.socket):
        try:
            sent = handle.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # The connection has failed: reading it will say so.
            return
        data = data[sent:]
    if data:
        transport.write(data)
