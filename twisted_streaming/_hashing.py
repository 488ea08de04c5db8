"""
A stage that hashes what passes through it.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

from twisted_streaming._stage import Stage

__all__ = ["HashStage"]


class HashStage(Stage):
    """
    Pass bytes through unchanged, hashing them; L{hexdigest} gives the digest
    of everything that passed.
    """

    def __init__(self, algorithm: str = "sha256", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hash = hashlib.new(algorithm)

    def process(self, item: bytes) -> Iterable[bytes]:
        self._hash.update(item)
        return [item]

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
