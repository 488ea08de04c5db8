"""
Stages that split bytes into lines and join lines into bytes.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted_streaming._stage import Stage

__all__ = ["LineJoiner", "LineSplitter"]


class LineSplitter(Stage):
    """
    Bytes in, lines out (without their delimiter); a last line without a
    delimiter is emitted at the end.
    """

    def __init__(self, delimiter: bytes = b"\n", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delimiter = delimiter
        self._partial = b""

    def process(self, item: bytes) -> Iterable[bytes]:
        lines = (self._partial + item).split(self.delimiter)
        self._partial = lines.pop()
        return lines

    def flush(self) -> Iterable[bytes]:
        return [self._partial] if self._partial else []


class LineJoiner(Stage):
    """
    Lines in (bytes, or str encoded as UTF-8), bytes out, each followed by
    the delimiter.
    """

    def __init__(self, delimiter: bytes = b"\n", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delimiter = delimiter

    def process(self, item: Any) -> Iterable[bytes]:
        line = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        return [line + self.delimiter]
