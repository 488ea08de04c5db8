"""
Both async bridges under C{AsyncioSelectorReactor}, in a process of its own
(C{twisted_streaming.test._asynciobridges}): a reactor is installed once
per process, and this one runs the default reactor.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import reactor as _globalReactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

reactor: Any = _globalReactor


class AsyncioReactorTests(TestCase):
    """
    L{fromAsyncIterable <twisted_streaming.fromAsyncIterable>} and
    L{toAsyncIterator <twisted_streaming.toAsyncIterator>} with asyncio
    coroutines, under the asyncio reactor.
    """

    async def test_bothBridges(self) -> None:
        """
        An async generator that awaits asyncio futures and Deferreds, in an
        asyncio task, streams over real TCP; C{async for} works in an
        asyncio task and on Twisted's driver, and C{break} stops the
        source; cancelling closes a generator waiting on an asyncio future;
        errors come with their context.
        """
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "twisted_streaming.test._asynciobridges"],
            env=dict(os.environ),
            reactor=reactor,
        )
        self.assertEqual(code, 0, (out + err).decode(errors="replace"))
        self.assertEqual(
            out.decode().splitlines(),
            [
                "ok fromAsyncIterable over TCP",
                "ok toAsyncIterator in an asyncio task",
                "ok toAsyncIterator in Twisted's driver",
                "ok cancel closes the generator",
                "ok errors with context",
            ],
        )
