"""
Running the examples: each as a subprocess, as a user runs it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType
from typing import Any, List, Tuple

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

__all__ = ["EXAMPLES", "loadExample", "reactor", "run", "serve"]

reactor: Any = _globalReactor

#: The examples directory, which holds this package.
EXAMPLES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loadExample(name: str) -> ModuleType:
    """
    Import C{examples/<name>.py}, which is not in a package.
    """
    spec = importlib.util.spec_from_file_location(
        f"_example_{name}", os.path.join(EXAMPLES, f"{name}.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Run(ProcessProtocol):
    """
    A running example: what it has printed, and Deferreds for what it
    prints next.
    """

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[int] = Deferred()
        # (on stderr?, text, Deferred)
        self._waiting: List[Tuple[bool, bytes, Deferred[bytes]]] = []

    def outReceived(self, data: bytes) -> None:
        self.out += data
        self._match()

    def errReceived(self, data: bytes) -> None:
        self.err += data
        self._match()

    def waitFor(self, prefix: bytes) -> Deferred[bytes]:
        """
        Fire with the rest of the first line printed that starts with
        C{prefix}; fail if the process ends without printing one.
        """
        return self._wait(False, prefix)

    def waitForLog(self, text: bytes) -> Deferred[bytes]:
        """
        Fire with the rest of the first line on stderr (where the examples
        log) that contains C{text}; fail if the process ends without
        logging one.
        """
        return self._wait(True, text)

    def _wait(self, onStderr: bool, text: bytes) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self._waiting.append((onStderr, text, d))
        self._match()
        return d

    def _match(self) -> None:
        for waiting in list(self._waiting):
            onStderr, text, d = waiting
            for line in (self.err if onStderr else self.out).split(b"\n")[:-1]:
                if onStderr and text in line:
                    rest = line.split(text, 1)[1]
                elif not onStderr and line.startswith(text):
                    rest = line[len(text) :]
                else:
                    continue
                self._waiting.remove(waiting)
                d.callback(rest)
                break

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", -1)
        waiting, self._waiting = self._waiting, []
        for _, text, d in waiting:
            d.errback(
                AssertionError(
                    f"exited ({code}) before printing {text!r}: {self.err!r}"
                )
            )
        self.ended.callback(code)

    def stop(self) -> Deferred[int]:
        """
        Interrupt the process, if it is still running; fire when it ends.
        """
        if not self.ended.called:
            self.transport.signalProcess("TERM")  # type: ignore[union-attr]
        return self.ended


def run(script: str, args: List[str]) -> _Run:
    """
    Start C{python examples/SCRIPT ARGS}.
    """
    process = _Run()
    reactor.spawnProcess(
        process,
        sys.executable,
        [sys.executable, os.path.join(EXAMPLES, script), *args],
        env=dict(os.environ),
    )
    return process


async def serve(testCase: TestCase, script: str, args: List[str]) -> Tuple[_Run, int]:
    """
    Run a server example, stopped at the end of the test, and wait until it
    prints C{listening on port N}.

    @return: The process and C{N}.
    """
    process = run(script, args)
    testCase.addCleanup(process.stop)
    port = await process.waitFor(b"listening on port ")
    return process, int(port)
