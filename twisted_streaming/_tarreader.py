"""
L{TarReader}: a tar archive read as a stream, each member's bytes handed to
the consumer a handler gives for it, with backpressure.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from twisted_streaming._nestedreader import NestedReader
from twisted_streaming._tarheader import (
    BLOCK,
    DATA_TYPES,
    decodeHeader,
    parsePax,
)
from twisted_streaming.interfaces import TarFormatError

__all__ = ["TarReader"]

#: The most bytes of an extended header (PAX, or a GNU long name) held in
#: memory; anything longer is a corrupt (or hostile) archive.
MAX_EXTENDED_HEADER = 1024 * 1024

_EXTENDED = (b"x", b"g", b"L", b"K")


class TarReader(NestedReader):
    """
    Read a tar archive written to this consumer, and call
    C{handler.startChild(name, **meta)} for each member, in order.  The
    handler returns the consumer of that member's bytes (a
    L{FileConsumer <twisted_streaming.FileConsumer>}, a C{pipeline()}'s
    stage, a L{TarWriter <twisted_streaming.TarWriter>}'s member,
    anything), or L{None} to skip it.  An L{ExtractDirectory
    <twisted_streaming.ExtractDirectory>} extracts into a directory; a
    L{TarWriter} copies the archive.

    C{name} is the member's path in the archive, without a trailing C{/};
    C{meta} has C{type} (C{"file"}, C{"directory"}, C{"symlink"},
    C{"hardlink"}, C{"fifo"}, C{"chardev"}, C{"blockdev"}, or C{"other"}
    for a typeflag that is not known), C{size} (the bytes that follow: 0
    but for files and unknown types), C{mtime} (an C{int}, or a C{float}
    from a PAX header with a fraction), C{mode}, C{uid}, C{gid}, C{uname},
    C{gname}, C{linkname}, C{typeflag} (the header's, one character) and
    C{pax} (the PAX records that applied, after those it reads into the
    other keys).  It reads POSIX ustar and PAX (C{path}, C{linkpath},
    C{size}, C{mtime}, C{uid}, C{gid}, C{uname}, C{gname}; global headers
    too), GNU tar's long names and links and base-256 numbers (sizes over
    8 GiB), and pre-POSIX archives.

    Each member's consumer is registered with a streaming producer, paused
    and resumed by it; while it is paused the producer of the archive's
    bytes (a transport, a C{FileSender}) is paused too.  The consumer is
    finished at the end of the member's data.  The archive ends at its
    first zero block (what follows is read and ignored) or, if it has none,
    when its input ends between two members; when L{finish} has been
    called and the end has been read, the handler's C{finish()} is called
    if it has one, and L{whenFinished} fires with the number of members.

    A corrupt header (a wrong checksum, a number that is not one) or input
    that ends inside a member fails with L{TarFormatError
    <twisted_streaming.TarFormatError>}, which names the member (for a
    corrupt header, the one before it) and the offset in the archive, in a
    L{ContextFailure <twisted_streaming.ContextFailure>} whose C{tagPath}
    is the member's; so do a handler or a member's consumer that raise or
    stop.  Then the producer of the archive is stopped, and the handler's
    C{abort(reason)} is called if it has one.

    To read a file: C{pipeline(lambda c: FileSender().beginFileTransfer(path,
    c), sink=TarReader(handler))}, which finishes the reader at the end.
    """

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        """
        @param handler: Has C{startChild(name, **meta)}; may have C{finish()}
            and C{abort(reason)}.
        @param name: The archive's name, the first part of each member's
            tag path in errors.
        @param reactor: The reactor whose turn loop pulls a pull producer;
            the global reactor if L{None}.
        @param cooperator: Pull on this L{twisted.internet.task.Cooperator}
            instead.
        """
        super().__init__(handler, **kwargs)
        self._inData = False
        self._remaining = 0
        self._padding = 0
        # The typeflag of the extended header whose data is being read.
        self._extended: Optional[bytes] = None
        self._extendedData: List[bytes] = []
        self._pax: Dict[str, str] = {}
        self._globalPax: Dict[str, str] = {}
        self._longName: Optional[str] = None
        self._longLink: Optional[str] = None
        # The last member started, for errors.
        self._member: Optional[str] = None

    def _parse(self) -> bool:
        if self._inData:
            return self._readData()
        if self._available() < BLOCK:
            return False
        offset = self.position
        block = self._take(BLOCK)
        if not any(block):
            self._ended()
            return False
        try:
            fields = decodeHeader(block)
        except ValueError as error:
            raise TarFormatError(
                f"corrupt header: {error}", self._member, offset
            ) from None
        typeflag = fields["typeflag"]
        if typeflag in _EXTENDED:
            size = fields["size"]
            if not 0 <= size <= MAX_EXTENDED_HEADER:
                raise TarFormatError(
                    f"an extended header of {size} bytes", self._member, offset
                )
            self._extended = typeflag
            self._startData(size)
            return True
        self._startMember(fields, offset)
        return True

    def _startData(self, size: int) -> None:
        self._inData = True
        self._remaining = size
        self._padding = -size % BLOCK

    def _readData(self) -> bool:
        available = self._available()
        if self._remaining:
            if not available:
                return False
            data = self._take(min(self._remaining, available))
            self._remaining -= len(data)
            if self._extended is not None:
                self._extendedData.append(data)
            else:
                self._deliver(data)
            if self._remaining:
                return True
        if self._padding:
            skipped = len(self._take(self._padding))
            self._padding -= skipped
            if self._padding:
                return False
        self._inData = False
        if self._extended is not None:
            self._readExtended()
        else:
            self._endChild()
        return True

    def _readExtended(self) -> None:
        typeflag, self._extended = self._extended, None
        data = b"".join(self._extendedData)
        self._extendedData = []
        if typeflag in (b"L", b"K"):
            text = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            if typeflag == b"L":
                self._longName = text
            else:
                self._longLink = text
            return
        try:
            records = parsePax(data)
        except ValueError as error:
            raise TarFormatError(
                f"corrupt PAX header: {error}", self._member, self.position
            ) from None
        (self._pax if typeflag == b"x" else self._globalPax).update(records)

    def _startMember(self, fields: Dict[str, Any], offset: int) -> None:
        pax = {**self._globalPax, **self._pax}
        name = pax.get("path") or self._longName or fields["name"]
        linkname = pax.get("linkpath") or self._longLink or fields["linkname"]
        self._pax, self._longName, self._longLink = {}, None, None
        try:
            numbers = {
                key: decodePaxNumber(pax[key]) if key in pax else fields[key]
                for key in ("size", "mtime", "uid", "gid")
            }
        except ValueError as error:
            raise TarFormatError(f"corrupt PAX header: {error}", name, offset) from None
        kind = fields["type"]
        size = numbers["size"] if kind in DATA_TYPES else 0
        if size < 0:
            raise TarFormatError(f"a negative size, {size}", name, offset)
        if kind == "directory" or name.endswith("/"):
            name = name.rstrip("/") or name
        self._member = name
        meta = {
            "type": kind,
            "size": size,
            "mtime": numbers["mtime"],
            "mode": fields["mode"],
            "uid": numbers["uid"],
            "gid": numbers["gid"],
            "uname": pax.get("uname", fields["uname"]),
            "gname": pax.get("gname", fields["gname"]),
            "linkname": linkname,
            "typeflag": fields["typeflag"].decode("latin-1"),
            "pax": pax,
        }
        self._startChild(name, meta)
        self._startData(size)

    def _truncated(self) -> Optional[Exception]:
        if self._inData:
            what = "an extended header" if self._extended is not None else "its data"
            return TarFormatError(
                f"the archive ended inside {what}, {self._remaining} bytes short",
                self._member,
                self.position,
            )
        if self._available():
            return TarFormatError(
                f"the archive ended inside a header ({self._available()} of 512 bytes)",
                self._member,
                self.position,
            )
        # Between two members with no end blocks: GNU tar and tarfile
        # accept it too.
        return None


def decodePaxNumber(value: str) -> Any:
    """
    A number from a PAX record: an C{int}, or a C{float} if it has a
    fraction (times).

    @raise ValueError: If it is not a decimal number.
    """
    if "." in value:
        number = float(value)
        return int(number) if number.is_integer() else number
    return int(value)
