"""
L{MultipartReader}: a C{multipart/form-data} body (RFC 7578) read as a
stream, each part's bytes handed to the consumer a handler gives for it,
with each part's size limit enforced as it arrives.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Tuple, Union
from urllib.parse import unquote

from twisted_streaming._failure import failureWithContext
from twisted_streaming._nestedreader import NestedReader
from twisted_streaming.interfaces import MultipartError, UploadTooLarge

__all__ = ["MultipartReader", "parseHeaderValue"]

_PREAMBLE, _AFTER, _HEADERS, _BODY = "preamble", "after", "headers", "body"

_PARAMETER = re.compile(r';\s*([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.DOTALL)
# Browsers and curl percent-encode quotes in names; some clients escape
# them with a backslash.  Other backslashes (a Windows path) are kept.
_ESCAPE = re.compile(r'\\(")')
# Boundaries have at most 70 characters (RFC 2046, 5.1.1).
_MAX_BOUNDARY = 70


def parseHeaderValue(value: str) -> Tuple[str, Dict[str, str]]:
    """
    Split a header value with parameters, such as C{form-data;
    name="file"; filename="a.txt"} or C{multipart/form-data;
    boundary=xyz}, into its lowercased first part and its parameters
    (names lowercased, quotes removed and C{\\"} unescaped; an RFC 5987
    C{filename*=UTF-8''...} decoded into C{filename}).
    """
    first, _, rest = value.partition(";")
    parameters: Dict[str, str] = {}
    extended: Dict[str, str] = {}
    for match in _PARAMETER.finditer(";" + rest):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) > 1:
            raw = _ESCAPE.sub(r"\1", raw[1:-1])
        if key.endswith("*"):
            charset, _, encoded = raw.partition("'")
            _, _, encoded = encoded.partition("'")
            try:
                extended[key[:-1]] = unquote(encoded, charset or "utf-8", "strict")
            except (LookupError, UnicodeDecodeError):
                continue
        else:
            parameters[key] = raw
    parameters.update(extended)
    return first.strip().lower(), parameters


class MultipartReader(NestedReader):
    """
    Read a C{multipart/form-data} body written to this consumer and call
    C{handler.startChild(name, filename=..., contentType=..., headers=...)}
    for each part, in order: C{name} is the form field's name, C{filename}
    the uploaded file's name (L{None} for a plain field), C{contentType}
    the part's C{Content-Type} (L{None} if it has none) and C{headers} all
    its headers (names lowercased).  The handler returns the consumer of
    the part's bytes, or L{None} to skip it; L{SaveUploads
    <twisted_streaming.SaveUploads>} saves files to a directory and keeps
    fields in memory.

    Each part's consumer is registered with a streaming producer; while it
    is paused the producer of the body (the connection) is paused too, so
    a slow disk slows the client down, and memory stays flat whatever the
    size of the upload.  The consumer is finished at the end of its part.
    When L{finish} has been called after the closing boundary, the
    handler's C{finish()} is called if it has one, and L{whenFinished} fires with the
    number of parts.

    Limits, checked as the bytes arrive: a part larger than
    C{maxPartSize}, or a body larger than C{maxTotalSize}, fails with
    L{UploadTooLarge <twisted_streaming.UploadTooLarge>} (a C{413}) at once,
    without reading the rest; part headers over C{maxHeaderSize}, more than
    C{maxParts} parts, a part without a name, anything that is not
    C{multipart} framing, and a body that ends before its closing boundary
    fail with L{MultipartError <twisted_streaming.MultipartError>} (a
    C{400}).  Failures come in a L{ContextFailure
    <twisted_streaming.ContextFailure>} whose C{tagPath} names the part; the
    body's producer is then stopped, and the handler's C{abort(reason)}
    called if it has one.

    For C{twisted.web}, L{MultipartResource
    <twisted_streaming.MultipartResource>} reads uploads with it as they
    arrive.
    """

    def __init__(
        self,
        handler: Any,
        boundary: Union[bytes, str],
        *,
        maxPartSize: Optional[int] = None,
        maxTotalSize: Optional[int] = None,
        maxHeaderSize: int = 16 * 1024,
        maxParts: int = 1000,
        **kwargs: Any,
    ) -> None:
        """
        @param handler: Has C{startChild(name, **meta)}; may have
            C{finish()} and C{abort(reason)}.
        @param boundary: The body's boundary, from its C{Content-Type} (see
            L{fromContentType}).
        @param maxPartSize: The most bytes one part may have; L{None} for
            no limit.
        @param maxTotalSize: The most bytes the whole body may have; L{None}
            for no limit.
        @param maxHeaderSize: The most bytes of one part's headers (and of
            the preamble).
        @param maxParts: The most parts.
        @param name: The body's name, the first part of each part's tag
            path in errors.
        @param reactor: The reactor whose turn loop pulls a pull producer;
            the global reactor if L{None}.
        @param cooperator: Pull on this L{twisted.internet.task.Cooperator}
            instead.
        @raise MultipartError: If the boundary is empty or too long.
        """
        super().__init__(handler, **kwargs)
        if isinstance(boundary, str):
            boundary = boundary.encode("ascii")
        if not 0 < len(boundary) <= _MAX_BOUNDARY:
            raise MultipartError(f"a boundary of {len(boundary)} bytes: {boundary!r}")
        self._dashBoundary = b"--" + boundary
        self._delimiter = b"\r\n" + self._dashBoundary
        self.maxPartSize = maxPartSize
        self.maxTotalSize = maxTotalSize
        self.maxHeaderSize = maxHeaderSize
        self.maxParts = maxParts
        self._state = _PREAMBLE
        self._received = 0
        self._partSize = 0

    @classmethod
    def fromContentType(
        cls, handler: Any, contentType: Union[bytes, str, None], **kwargs: Any
    ) -> MultipartReader:
        """
        A reader of a body with this C{Content-Type}.

        @raise MultipartError: If it is not C{multipart/form-data} with a
            boundary.
        """
        if isinstance(contentType, bytes):
            contentType = contentType.decode("latin-1")
        kind, parameters = parseHeaderValue(contentType or "")
        if kind != "multipart/form-data":
            raise MultipartError(f"not multipart/form-data: {contentType!r}")
        boundary = parameters.get("boundary")
        if not boundary:
            raise MultipartError(f"no boundary in {contentType!r}")
        return cls(handler, boundary, **kwargs)

    def write(self, data: bytes) -> None:
        """
        Read C{data}; fail at once if the body is now over C{maxTotalSize}.
        """
        self._received += len(data)
        limit = self.maxTotalSize
        if limit is not None and self._received > limit and not self._done:
            error = UploadTooLarge(None, limit)
            self._fail(failureWithContext(error, self, self.position, self.children))
            return
        super().write(data)

    # Parsing

    def _parse(self) -> bool:
        state = self._state
        if state is _BODY:
            return self._readBody()
        if state is _HEADERS:
            return self._readHeaders()
        if state is _AFTER:
            return self._readAfterBoundary()
        return self._readPreamble()

    def _readPreamble(self) -> bool:
        pending, start = self._held()
        dash = self._dashBoundary
        if self.position == 0:
            # The first boundary may open the body, with no CRLF before it.
            if len(pending) - start < len(dash):
                return False
            if pending.startswith(dash, start):
                self._take(len(dash))
                self._state = _AFTER
                return True
        found = pending.find(self._delimiter, start)
        if found < 0:
            self._take(max(0, len(pending) - start - len(self._delimiter) + 1))
            if self.position > self.maxHeaderSize:
                raise MultipartError(
                    f"no boundary in the first {self.maxHeaderSize} bytes of the body"
                )
            return False
        self._take(found - start + len(self._delimiter))
        self._state = _AFTER
        return True

    def _readAfterBoundary(self) -> bool:
        pending, start = self._held()
        if len(pending) - start < 2:
            return False
        if pending.startswith(b"--", start):
            # The closing boundary: the epilogue is ignored.
            self._take(2)
            self._ended()
            return False
        end = pending.find(b"\r\n", start, start + 256)
        if end < 0:
            if len(pending) - start >= 256:
                raise MultipartError("no line break after a boundary")
            return False
        if pending[start:end].strip(b" \t"):
            raise MultipartError(f"junk after a boundary: {pending[start:end][:40]!r}")
        self._take(end - start + 2)
        self._state = _HEADERS
        return True

    def _readHeaders(self) -> bool:
        pending, start = self._held()
        if pending.startswith(b"\r\n", start):
            raw, size = b"", 2
        else:
            end = pending.find(b"\r\n\r\n", start, start + self.maxHeaderSize + 4)
            if end < 0:
                if len(pending) - start > self.maxHeaderSize:
                    raise MultipartError(
                        f"the headers of part {self.children + 1} are over "
                        f"{self.maxHeaderSize} bytes"
                    )
                return False
            raw, size = pending[start:end], end - start + 4
        self._take(size)
        self._startPart(raw)
        return True

    def _startPart(self, raw: bytes) -> None:
        headers: Dict[str, str] = {}
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            if line[:1] in (" ", "\t") and headers:
                # An obsolete folded line continues the last header.
                key = list(headers)[-1]
                headers[key] += " " + line.strip()
                continue
            key, colon, value = line.partition(":")
            if not colon:
                raise MultipartError(f"a malformed part header: {line[:60]!r}")
            headers[key.strip().lower()] = value.strip()
        kind, parameters = parseHeaderValue(headers.get("content-disposition", ""))
        name = parameters.get("name")
        if kind != "form-data" or name is None:
            raise MultipartError(
                f"part {self.children + 1} has no Content-Disposition: form-data "
                "with a name"
            )
        if self.children >= self.maxParts:
            raise MultipartError(f"more than {self.maxParts} parts")
        self._partSize = 0
        self._state = _BODY
        self._startChild(
            name,
            {
                "filename": parameters.get("filename"),
                "contentType": headers.get("content-type"),
                "headers": headers,
            },
        )

    def _readBody(self) -> bool:
        pending, start = self._held()
        delimiter = self._delimiter
        found = pending.find(delimiter, start)
        if found >= 0:
            if found > start:
                self._deliverPart(self._take(found - start))
            self._take(len(delimiter))
            self._endChild()
            self._state = _AFTER
            return True
        # Keep back what could be the start of a delimiter split between
        # two writes: nothing, unless a CR is among the last bytes.
        keep = len(delimiter) - 1
        tail = max(start, len(pending) - keep)
        cr = pending.find(b"\r", tail)
        size = (cr if cr >= 0 else len(pending)) - start
        if size > 0:
            self._deliverPart(self._take(size))
        return False

    def _deliverPart(self, data: bytes) -> None:
        self._partSize += len(data)
        limit = self.maxPartSize
        if limit is not None and self._partSize > limit:
            raise UploadTooLarge(self._childTag, limit)
        self._deliver(data)

    def _truncated(self) -> Optional[Exception]:
        where = {
            _PREAMBLE: "before its first boundary",
            _AFTER: "after a boundary",
            _HEADERS: f"inside the headers of part {self.children + 1}",
            _BODY: f"inside part {self._childTag!r}",
        }[self._state]
        return MultipartError(
            f"the body ended {where}, at offset {self.position}, "
            "without its closing boundary"
        )
