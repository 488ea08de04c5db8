"""
Stages that frame messages with a length prefix, and unframe them.
"""

from __future__ import annotations

import struct
from typing import Any, Iterable

from twisted_streaming._stage import Stage

__all__ = ["Frame", "Unframe"]

_LENGTH = struct.Struct("!I")


class Frame(Stage):
    """
    Messages (bytes) in, each prefixed with its length as a 4-byte
    big-endian integer.
    """

    def process(self, item: bytes) -> Iterable[bytes]:
        return [_LENGTH.pack(len(item)) + item]


class Unframe(Stage):
    """
    Length-prefixed bytes in, messages out; a message longer than
    C{maxLength} or a stream that ends mid-message is an error.
    """

    def __init__(self, maxLength: int = 16 * 1024 * 1024, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.maxLength = maxLength
        self._data = b""

    def process(self, item: bytes) -> Iterable[bytes]:
        data = self._data + item if self._data else item
        messages = []
        start = 0
        end = len(data)
        # Read by offset, and keep only the tail once: slicing the rest off
        # after each message would copy it again for every message.
        while end - start >= 4:
            (length,) = _LENGTH.unpack_from(data, start)
            if length > self.maxLength:
                raise ValueError(f"message of {length} bytes over {self.maxLength}")
            if end - start < 4 + length:
                break
            messages.append(data[start + 4 : start + 4 + length])
            start += 4 + length
        self._data = data[start:]
        return messages

    def flush(self) -> Iterable[bytes]:
        if self._data:
            raise ValueError(f"stream ended inside a message ({len(self._data)} bytes)")
        return ()
