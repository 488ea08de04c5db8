"""
The nested conformance suites of L{twisted_streaming.testing} fail nested
consumers and readers that break the contract, naming what they broke.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from twisted_streaming import TarReader, TarWriter
from twisted_streaming.test.test_tarreader import tarOf
from twisted_streaming.testing import (
    BackpressureConsumer,
    checkNestedConsumer,
    checkNestedOneChildAtATime,
    checkNestedReader,
    checkReaderDeliversChildren,
    checkReaderFailsOnTruncation,
)


def tarLeaf(tag: str, size: int) -> Dict[str, Any]:
    return {"size": size}


def encode(children: List[Tuple[str, bytes]]) -> bytes:
    return tarOf(children)


class NestedConsumerReportTests(SynchronousTestCase):
    """
    L{checkNestedConsumer} and its checks.
    """

    def test_passesTarWriter(self) -> None:
        """
        From plain pytest, the whole suite passes a L{TarWriter}.
        """
        checkNestedConsumer(
            lambda clock: TarWriter(BackpressureConsumer(clock=clock), reactor=clock),
            tarLeaf,
            lambda tag: {"type": "directory"},
            lambda nested: nested.whenFinished(),
        )

    def test_secondChildAllowed(self) -> None:
        """
        A nested consumer that starts a second child while one is open
        fails, naming what it did.
        """

        class Lax(TarWriter):
            def _checkNoChild(self, doing: str) -> None:
                pass

        error = self.assertRaises(
            AssertionError,
            checkNestedOneChildAtATime,
            lambda clock: Lax(BackpressureConsumer(clock=clock), reactor=clock),
            tarLeaf,
        )
        self.assertIn("did not raise ChildStillOpen", str(error))


class NestedReaderReportTests(SynchronousTestCase):
    """
    L{checkNestedReader} and its checks.
    """

    def test_passesTarReader(self) -> None:
        """
        From plain pytest, the whole suite passes a L{TarReader}.
        """
        checkNestedReader(
            lambda handler, clock: TarReader(handler, reactor=clock),
            encode,
            lambda reader: reader.whenFinished(),
        )

    def test_noBackpressure(self) -> None:
        """
        A reader that never pauses its input while a child is behind fails.
        """

        class Deaf(TarReader):
            def _regulate(self) -> None:
                pass

        error = self.assertRaises(
            AssertionError,
            checkReaderDeliversChildren,
            lambda handler, clock: Deaf(handler, reactor=clock),
            encode,
        )
        self.assertIn("never paused the producer", str(error))

    def test_truncationUnnoticed(self) -> None:
        """
        A reader that takes a stream cut inside a child for a whole one
        fails.
        """

        class Credulous(TarReader):
            def _truncated(self) -> None:
                return None

        error = self.assertRaises(
            AssertionError,
            checkReaderFailsOnTruncation,
            lambda handler, clock: Credulous(handler, reactor=clock),
            encode,
        )
        self.assertIn("truncated", str(error))
