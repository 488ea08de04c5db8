"""
Tests for the C{random-integers} twistd plugin: discovery, options, and the
service end to end, in process and as a real C{twistd} process.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import sys
from typing import Any, Callable, List, Optional, Tuple

from twisted.application.service import IServiceMaker
from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import ProcessProtocol
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_streaming.randomintegers import PROMPT, RandomIntegerFactory
from twisted_streaming.tap import randomintegers as tap
from twisted_streaming.test.test_randomintegers import _Client, values

reactor: Any = _globalReactor


class DiscoveryTests(SynchronousTestCase):
    """
    twistd finds the plugin.
    """

    def test_discovered(self) -> None:
        """
        L{getPlugins} lists C{random-integers}, pointing at L{tap}.
        """
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        self.assertIn("random-integers", makers)
        maker: Any = makers["random-integers"]
        self.assertEqual(maker.module, "twisted_streaming.tap.randomintegers")


class PackagingTests(SynchronousTestCase):
    """
    The dropin is installed where twistd looks for it, without shadowing
    Twisted's own packages.
    """

    def test_dropinInstalled(self) -> None:
        """
        Installed from a wheel, the distribution's files include
        C{twisted/plugins/twisted_streaming_plugins.py} and no
        C{__init__.py} under C{twisted/} (which would replace Twisted's
        own); installed in editable mode, the dropin is imported from the
        source tree's C{twisted/plugins}, which holds no C{__init__.py}.
        """
        from twisted.plugins import twisted_streaming_plugins

        self.assertTrue(hasattr(twisted_streaming_plugins, "randomIntegers"))
        files = {
            str(f).replace(os.sep, "/")
            for f in importlib.metadata.files("twisted_streaming") or ()
        }
        if "twisted_streaming/__init__.py" in files:
            self.assertIn("twisted/plugins/twisted_streaming_plugins.py", files)
            self.assertNotIn("twisted/__init__.py", files)
            self.assertNotIn("twisted/plugins/__init__.py", files)
            self.assertIn("twisted_streaming/py.typed", files)
        else:
            plugins = os.path.dirname(
                os.path.abspath(twisted_streaming_plugins.__file__)
            )
            self.assertEqual(os.path.basename(plugins), "plugins")
            self.assertFalse(os.path.exists(os.path.join(plugins, "__init__.py")))
            parent = os.path.dirname(plugins)
            self.assertFalse(os.path.exists(os.path.join(parent, "__init__.py")))


class OptionsTests(SynchronousTestCase):
    """
    L{tap.Options} parses and refuses properly.
    """

    def parse(self, *args: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(args))
        return options

    def test_defaults(self) -> None:
        """
        The defaults are port 1234 with a backlog of 1024, range 0..10000,
        at most 10**9, no seed, an idle timeout of 60 seconds, at most 1000
        connections, no drain, no metrics, no port sharing.
        """
        options = self.parse()
        self.assertEqual(
            (options["port"], options["min"], options["max"], options["max-count"]),
            ("tcp:1234:backlog=1024", 0, 10000, 10**9),
        )
        self.assertIsNone(options["seed"])
        self.assertEqual(
            (options["idle-timeout"], options["max-connections"]), (60.0, 1000)
        )
        self.assertEqual(options["drain-timeout"], 0.0)
        self.assertIsNone(options["metrics"])
        self.assertFalse(options["reuse-port"])

    def test_helpListsEveryOption(self) -> None:
        """
        C{--help} of both services lists each production option, with its
        explanation.
        """
        from twisted_streaming.tap import streamproxy

        for options in (tap.Options(), streamproxy.Options()):
            text = str(options)
            for name in (
                "reuse-port",
                "drain-timeout",
                "idle-timeout",
                "max-connections",
                "metrics",
            ):
                self.assertRegex(text, rf"--{name}=?\s+\w")
        self.assertIn("--send-proxy=", str(streamproxy.Options()))

    def test_values(self) -> None:
        """
        Every option is parsed into its type.
        """
        options = self.parse(
            "--port", "tcp:0", "--min", "-5", "--max", "5", "--max-count", "7",
            "--seed", "9",
        )  # fmt: skip
        self.assertEqual(
            (options["port"], options["min"], options["max"]),
            ("tcp:0:backlog=1024", -5, 5),
        )
        self.assertEqual((options["max-count"], options["seed"]), (7, 9))

    def test_refused(self) -> None:
        """
        Non-integers, an empty range and a negative maximum count are refused.
        """
        for args in (
            ["--min", "x"],
            ["--max", "1.5"],
            ["--min", "6", "--max", "5"],
            ["--max-count", "-1"],
            ["--seed", "abc"],
            ["--bogus"],
        ):
            self.assertRaises(usage.UsageError, self.parse, *args)


class ServiceTests(TestCase):
    """
    L{tap.makeService} serves over a real TCP connection.
    """

    async def test_endToEnd(self) -> None:
        """
        The service listens where C{--port} says and serves seeded integers
        in range, after answering bad input.
        """
        options = tap.Options()
        options.parseOptions(
            ["--port", "tcp:0:interface=127.0.0.1", "--min", "10", "--max", "20"]
        )
        service = tap.makeService(options)
        service.startService()
        self.addCleanup(service.stopService)
        port = await service.listening._waitingForPort  # type: ignore[attr-defined]
        client = _Client(b"x\r\n500\r\n")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await connectProtocol(endpoint, client)
        data = await client.done
        self.assertIn(b"error: ", data)
        got = values(data[data.rindex(PROMPT) + len(PROMPT) :])
        self.assertEqual(len(got), 500)
        self.assertEqual(set(got) - set(range(10, 21)), set())


class _Twistd(ProcessProtocol):
    """
    A twistd child process; C{port} fires with the port it listens on.
    """

    def __init__(
        self, pattern: bytes = rb"RandomIntegerFactory starting on (\d+)"
    ) -> None:
        self.pattern = pattern
        self.output = b""
        self.port: Deferred[int] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.reason: Optional[Failure] = None
        self.transport: Any = None
        self._waiting: List[Tuple[bytes, int, Deferred[Any]]] = []

    def waitFor(self, pattern: bytes, count: int = 1) -> Deferred[Any]:
        """
        Fire with the C{count}th match of C{pattern} in the output once it
        has been written (fail if the process ends first).
        """
        d: Deferred[Any] = Deferred()
        self._waiting.append((pattern, count, d))
        self._check()
        return d

    def _check(self) -> None:
        for waiting in list(self._waiting):
            pattern, count, d = waiting
            matches = list(re.finditer(pattern, self.output))
            if len(matches) >= count:
                self._waiting.remove(waiting)
                d.callback(matches[count - 1])
            elif self.reason is not None:
                self._waiting.remove(waiting)
                d.errback(RuntimeError(self.output.decode(errors="replace")))

    def signal(self, number: int = signal.SIGTERM) -> None:
        """
        Send the process signal C{number}.
        """
        self.transport.signalProcess(number)

    def outReceived(self, data: bytes) -> None:
        self.output += data
        match = re.search(self.pattern, self.output)
        if match and not self.port.called:
            self.port.callback(int(match.group(1)))
        self._check()

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        if not self.port.called:
            self.port.errback(RuntimeError(self.output.decode(errors="replace")))
        self._check()
        self.ended.callback(None)


def twistd(
    case: TestCase, args: List[str], pattern: bytes
) -> Tuple[_Twistd, Callable[[], Deferred[None]]]:
    """
    Start C{twistd -n ARGS} in a child process, stopped by the returned
    function (also a cleanup of C{case}).
    """
    process = _Twistd(pattern)
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    argv += ["-n", "--pidfile=", "--logfile=-", *args]
    transport = reactor.spawnProcess(
        process, sys.executable, argv, env=dict(os.environ), path=os.getcwd()
    )
    process.transport = transport

    def stop() -> Deferred[None]:
        if not process.ended.called:
            transport.signalProcess(signal.SIGTERM)
        return process.ended

    case.addCleanup(stop)
    return process, stop


def twistdProxy(
    case: TestCase, upstreamPort: int, *extra: str
) -> Tuple[_Twistd, Callable[[], Deferred[None]]]:
    """
    Start a real C{twistd -n stream-proxy} on 127.0.0.1 that forwards to
    C{upstreamPort}, with the C{extra} options.
    """
    return twistd(
        case,
        [
            "stream-proxy",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--connect",
            f"tcp:127.0.0.1:{upstreamPort}",
            *extra,
        ],
        rb"ProxyFactory starting on (\d+)",
    )


def twistdRandomIntegers(
    case: TestCase, *extra: str
) -> Tuple[_Twistd, Callable[[], Deferred[None]]]:
    """
    Start a real C{twistd -n random-integers} on 127.0.0.1, with the
    C{extra} options.
    """
    return twistd(
        case,
        ["random-integers", "--port", "tcp:0:interface=127.0.0.1", *extra],
        rb"RandomIntegerFactory starting on (\d+)",
    )


class TwistdTests(TestCase):
    """
    A real C{twistd -n random-integers} process.
    """

    async def test_realTwistd(self) -> None:
        """
        C{twistd -n random-integers --seed 7} serves exactly the integers that
        a factory seeded with 7 gives, and stops cleanly on SIGTERM.
        """
        process, stop = twistd(
            self,
            ["random-integers", "--port", "tcp:0:interface=127.0.0.1", "--seed", "7"],
            rb"RandomIntegerFactory starting on (\d+)",
        )
        port = await process.port
        client = _Client(b"20000\r\n")
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        data = await client.done
        producer = RandomIntegerFactory(seed=7).buildProducer(20000)
        expected = b"".join(iter(producer.produce, None))
        self.assertEqual(data, PROMPT + expected)
        await stop()
        self.assertIn(b"Server Shut Down", process.output)
        self.assertNotIn(b"Traceback", process.output)

    async def test_idleClientToldAndClosed(self) -> None:
        """
        A client of a real C{twistd random-integers --idle-timeout 1} that
        sends nothing gets an C{error:} line saying why and is closed, and
        the server logs it.
        """
        process, stop = twistdRandomIntegers(self, "--idle-timeout", "1")
        port = await process.port
        client = _Client()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        data = await client.done
        self.assertEqual(data, PROMPT + b"error: no request in 1 seconds\r\n")
        await process.waitFor(rb"Served [^\n]*\(idle timeout\)")
        await stop()
