"""
The tar format, as L{TarWriter <twisted_streaming.TarWriter>} writes it and
L{TarReader <twisted_streaming.TarReader>} reads it: POSIX ustar headers,
PAX extended headers (POSIX.1-2001) for what ustar cannot hold, and, when
reading, GNU tar's own long names and base-256 numbers.

References: POSIX.1-2017, C{pax}, "ustar Interchange Format" and "pax
Extended Header"; GNU tar's manual, "Basic Tar Format".
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

__all__ = [
    "BLOCK",
    "DATA_TYPES",
    "END_OF_ARCHIVE",
    "RECORD",
    "TYPES",
    "decodeHeader",
    "decodeNumber",
    "encodeMember",
    "padding",
    "parsePax",
]

#: Everything in an archive comes in blocks of this many bytes.
BLOCK = 512

#: Archives are padded to a multiple of this (20 blocks), as GNU tar and
#: Python's C{tarfile} do.
RECORD = 20 * BLOCK

#: The end of an archive: two zero blocks.
END_OF_ARCHIVE = bytes(2 * BLOCK)

#: A member's C{type}, as given to and by C{startChild}, and its typeflag.
TYPES: Dict[str, bytes] = {
    "file": b"0",
    "hardlink": b"1",
    "symlink": b"2",
    "chardev": b"3",
    "blockdev": b"4",
    "directory": b"5",
    "fifo": b"6",
}

_FLAG_TYPES = {flag: name for name, flag in TYPES.items()}
# A NUL typeflag (pre-POSIX archives) and "contiguous" files are files.
_FLAG_TYPES[b"\0"] = _FLAG_TYPES[b"7"] = "file"

#: Types whose members are followed by C{size} bytes of data; any typeflag
#: that is not known is read as one too, as POSIX asks.
DATA_TYPES = frozenset({"file", "other"})

_USTAR_MAGIC = b"ustar\x0000"
_GNU_MAGIC = b"ustar  \0"

_MAX_OCTAL = {8: 8**7, 12: 8**11}


def padding(size: int) -> bytes:
    """
    The zero bytes that pad C{size} bytes of data to a whole block.
    """
    return bytes(-size % BLOCK)


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _text(value: str, width: int) -> bytes:
    """
    C{value} in ASCII (anything else replaced), cut to C{width} and padded
    with NULs: what goes in a ustar field when a PAX record holds the real
    value.
    """
    raw = value.encode("ascii", "replace")[:width]
    return raw + bytes(width - len(raw))


def _fits(value: str, width: int) -> bool:
    return value.isascii() and len(value) <= width


def _splitName(name: str) -> Optional[Tuple[str, str]]:
    """
    Split C{name} into a ustar C{(prefix, name)}, or L{None} if it does not
    fit in the 155 + 100 bytes (or is not ASCII).
    """
    if not name.isascii():
        return None
    if len(name) <= 100:
        return "", name
    cut = name.rfind("/", 0, 156)
    while cut > 0:
        if len(name) - cut - 1 <= 100:
            return name[:cut], name[cut + 1 :]
        cut = name.rfind("/", 0, cut)
    return None


def _paxRecord(key: str, value: str) -> bytes:
    """
    One C{"%d key=value\\n"} record, whose length counts its own digits.
    """
    body = b" " + key.encode() + b"=" + value.encode("utf-8", "surrogateescape") + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _ustarHeader(
    name: bytes,
    prefix: bytes,
    typeflag: bytes,
    size: int,
    mtime: int,
    mode: int,
    linkname: bytes,
    uid: int,
    gid: int,
    uname: bytes,
    gname: bytes,
) -> bytes:
    header = bytearray(BLOCK)
    header[0:100] = name.ljust(100, b"\0")
    header[100:108] = _octal(mode, 8)
    header[108:116] = _octal(uid, 8)
    header[116:124] = _octal(gid, 8)
    header[124:136] = _octal(size, 12)
    header[136:148] = _octal(mtime, 12)
    header[148:156] = b" " * 8
    header[156:157] = typeflag
    header[157:257] = linkname.ljust(100, b"\0")
    header[257:265] = _USTAR_MAGIC
    header[265:297] = uname.ljust(32, b"\0")
    header[297:329] = gname.ljust(32, b"\0")
    header[329:337] = _octal(0, 8)
    header[337:345] = _octal(0, 8)
    header[345:500] = prefix.ljust(155, b"\0")
    header[148:156] = b"%06o\0 " % (sum(header),)
    return bytes(header)


def encodeMember(
    name: str,
    *,
    type: str = "file",
    size: int = 0,
    mtime: float = 0,
    mode: int = 0o644,
    linkname: str = "",
    uid: int = 0,
    gid: int = 0,
    uname: str = "",
    gname: str = "",
) -> bytes:
    """
    The header blocks of one member: a ustar header, preceded by a PAX
    extended header for whatever ustar cannot hold (a name that does not
    fit in its 100 + 155 bytes, or is not ASCII; a size of 8 GiB or more;
    a time before 1970, after 2242 or with a fraction of a second; large
    ids; long or non-ASCII link targets and owner names).

    @param name: The member's path in the archive; a directory's gets a
        trailing C{/}.
    @raise ValueError: For an unknown C{type}, an empty name, a name with
        a NUL, or a negative size.
    """
    typeflag = TYPES.get(type)
    if typeflag is None:
        raise ValueError(f"unknown member type {type!r}: one of {sorted(TYPES)}")
    if "\0" in name or "\0" in linkname:
        raise ValueError(f"a member name or link target contains a NUL: {name!r}")
    name = name.lstrip("/")
    if type == "directory" and not name.endswith("/"):
        name += "/"
    if not name.strip("/"):
        raise ValueError("a member needs a name")
    if size < 0:
        raise ValueError(f"a member's size cannot be negative: {size}")
    pax: Dict[str, str] = {}
    split = _splitName(name)
    if split is None:
        pax["path"] = name
        prefix, short = "", name
    else:
        prefix, short = split
    if not _fits(linkname, 100):
        pax["linkpath"] = linkname
    for key, value in (("uname", uname), ("gname", gname)):
        if not _fits(value, 32):
            pax[key] = value
    numbers: Dict[str, Any] = {"size": size, "uid": uid, "gid": gid}
    wholeTime = int(mtime // 1)
    numbers["mtime"] = wholeTime
    if mtime != wholeTime:
        pax["mtime"] = _decimal(mtime)
    for key, width in (("size", 12), ("uid", 8), ("gid", 8), ("mtime", 12)):
        value = numbers[key]
        if not 0 <= value < _MAX_OCTAL[width]:
            pax.setdefault(key, str(value))
            numbers[key] = 0
    header = _ustarHeader(
        _text(short, 100),
        _text(prefix, 155),
        typeflag,
        numbers["size"],
        numbers["mtime"],
        mode & 0o7777,
        _text(linkname, 100),
        numbers["uid"],
        numbers["gid"],
        _text(uname, 32),
        _text(gname, 32),
    )
    if not pax:
        return header
    records = b"".join(_paxRecord(key, value) for key, value in pax.items())
    paxHeader = _ustarHeader(
        b"././@PaxHeader", b"", b"x", len(records), 0, 0, b"", 0, 0, b"", b""
    )
    return paxHeader + records + padding(len(records)) + header


def _decimal(value: float) -> str:
    """
    C{value} in decimal, to the nanosecond, without trailing zeros.
    """
    return f"{value:.9f}".rstrip("0").rstrip(".")


# Reading


def decodeNumber(field: bytes) -> int:
    """
    A numeric header field: octal digits (padded with spaces or NULs), or
    GNU tar's base-256 (a first byte of 0x80 or, for a negative number,
    0xff).

    @raise ValueError: If it is neither.
    """
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:
            value -= 256 ** (len(field) - 1)
        return value
    digits = field.split(b"\0", 1)[0].strip()
    return int(digits or b"0", 8)


def _string(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def decodeHeader(block: bytes) -> Dict[str, Any]:
    """
    The fields of a header block.

    @return: C{name} (with the ustar prefix), C{typeflag} (one byte),
        C{type} (a name from L{TYPES}, C{"file"} for a NUL or C{"7"}
        typeflag, or C{"other"}), C{size}, C{mtime}, C{mode}, C{uid},
        C{gid}, C{linkname}, C{uname} and C{gname}.
    @raise ValueError: If its checksum is wrong or a number cannot be read.
    """
    stored = decodeNumber(block[148:156])
    unsigned = 256 + sum(block[:148]) + sum(block[156:])
    if stored != unsigned:
        # Some old writers summed signed bytes.
        signed = 256 + sum(b - 256 if b > 127 else b for b in block[:148] + block[156:])
        if stored != signed:
            raise ValueError(f"bad header checksum: {stored}, not {unsigned}")
    typeflag = block[156:157]
    name = _string(block[0:100])
    if block[257:265] == _USTAR_MAGIC:
        prefix = _string(block[345:500])
        if prefix:
            name = f"{prefix}/{name}"
    return {
        "name": name,
        "typeflag": typeflag,
        "type": _FLAG_TYPES.get(typeflag, "other"),
        "mode": decodeNumber(block[100:108]),
        "uid": decodeNumber(block[108:116]),
        "gid": decodeNumber(block[116:124]),
        "size": decodeNumber(block[124:136]),
        "mtime": decodeNumber(block[136:148]),
        "linkname": _string(block[157:257]),
        "uname": _string(block[265:297]),
        "gname": _string(block[297:329]),
    }


def parsePax(data: bytes) -> Dict[str, str]:
    """
    The records of a PAX extended header.

    @raise ValueError: If a record is malformed.
    """
    records: Dict[str, str] = {}
    position = 0
    while position < len(data) and data[position] != 0:
        space = data.index(b" ", position)
        length = int(data[position:space])
        if length <= 0:
            raise ValueError(f"a PAX record of length {length}")
        record = data[space + 1 : position + length]
        if not record.endswith(b"\n") or b"=" not in record:
            raise ValueError(f"a malformed PAX record: {record[:60]!r}")
        key, value = record[:-1].split(b"=", 1)
        records[key.decode("utf-8", "surrogateescape")] = value.decode(
            "utf-8", "surrogateescape"
        )
        position += length
    return records
