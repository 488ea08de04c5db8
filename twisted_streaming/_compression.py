"""
Stages that compress and decompress with zlib or gzip.
"""

from __future__ import annotations

import zlib
from typing import Any, Iterable

from twisted_streaming._stage import Stage

__all__ = ["Compress", "Decompress"]


class Compress(Stage):
    """
    Compress bytes with zlib, or gzip with C{gzip=True}.
    """

    def __init__(self, level: int = 6, gzip: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31 if gzip else 15)

    def process(self, item: bytes) -> Iterable[bytes]:
        out = self._compressor.compress(item)
        return [out] if out else []

    def flush(self) -> Iterable[bytes]:
        return [self._compressor.flush()]


class Decompress(Stage):
    """
    Decompress zlib or gzip bytes (detected from the header).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._decompressor = zlib.decompressobj(47)

    def process(self, item: bytes) -> Iterable[bytes]:
        out = self._decompressor.decompress(item)
        return [out] if out else []

    def flush(self) -> Iterable[bytes]:
        out = self._decompressor.flush()
        if not self._decompressor.eof:
            raise zlib.error("compressed stream ended early")
        return [out] if out else []
