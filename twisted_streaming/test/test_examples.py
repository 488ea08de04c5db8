"""
The examples run, as subprocesses, against servers on 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
from typing import Any, List

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from twisted_streaming.randomintegers import RandomIntegerFactory

reactor: Any = _globalReactor

EXAMPLES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "examples",
)


class _Run(ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", -1))


def run(script: str, args: List[str]) -> _Run:
    process = _Run()
    reactor.spawnProcess(
        process,
        sys.executable,
        [sys.executable, os.path.join(EXAMPLES, script), *args],
        env=dict(os.environ),
    )
    return process


class RandomIntegersClientTests(TestCase):
    """
    C{examples/random_integers_client.py}.
    """

    async def test_readsWithProgress(self) -> None:
        """
        The client reads exactly what it asked for from a seeded server,
        drawing a progress bar, and reports the count and the sum.
        """
        factory = RandomIntegerFactory(seed=11)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        process = run(
            "random_integers_client.py",
            ["--port", str(port.getHost().port), "--count", "300000"],
        )
        self.assertEqual(await process.ended, 0, process.err)
        producer = factory.buildProducer(300000)
        expected = sum(map(int, b"".join(iter(producer.produce, None)).split()))
        self.assertEqual(
            process.out, b"received 300000 integers, sum %d\n" % (expected,)
        )
        self.assertIn(b"100.0%", process.err)
        self.assertIn(b"integers/s", process.err)
