"""
Tests for C{--metrics}: the Prometheus metrics of both services, read with
C{prometheus_client}'s own parser, match what the tests did.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from twisted.internet import reactor as _globalReactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_streaming._metrics import proxyMetrics, randomIntegerMetrics
from twisted_streaming.randomintegers import PROMPT, RandomIntegerFactory
from twisted_streaming.tap import randomintegers as randomtap
from twisted_streaming.test._extras import missing
from twisted_streaming.test.test_drain import Upstream
from twisted_streaming.test.test_plugin import twistdProxy, twistdRandomIntegers
from twisted_streaming.test.test_proxy import Peer, ProxyTestsMixin
from twisted_streaming.test.test_proxyheader import Answer
from twisted_streaming.test.test_randomintegers import _Client

reactor: Any = _globalReactor

#: prometheus_client: in the metrics extra, and in the test extra.
skipMetrics = missing("prometheus_client")

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """
    Every sample of C{text} (Prometheus's text format) read by
    C{prometheus_client}'s parser, by name and labels.
    """
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def collected(metrics: Any) -> Samples:
    """
    The samples of C{metrics} (an iterable of metric families), through a
    registry and the text format.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)

    class Collector:
        def collect(self) -> Any:
            return metrics

    registry.register(Collector())
    return parse(generate_latest(registry).decode())


async def scrape(port: int) -> Samples:
    """
    GET the metrics served on C{port} (any path serves them).
    """
    client = Answer()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    head, body = (await client.done).split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200 "), head
    assert b"\r\ncontent-type: text/plain" in head.lower(), head
    return parse(body.decode())


class CollectorTests(ProxyTestsMixin, TestCase):
    """
    The collectors, in process, over real connections.
    """

    zeroCopy = False

    async def test_proxyCopied(self) -> None:
        """
        A proxy's bytes on the ordinary path are counted as copied, each
        way; its connections as accepted, with none open at the end.
        """
        port = self.proxy(self.upstream(lambda: Peer(reply=True)))
        for _ in range(3):
            client = await self.client(port, Peer())
            client.transport.write(b"hello")  # type: ignore[union-attr]
            client.transport.loseWriteConnection()  # type: ignore[union-attr]
            await client.lost
        for connection in [c.connection for c in self.factory.clients]:
            await connection.done
        samples = collected(proxyMetrics(self.factory))
        self.assertEqual(samples["stream_proxy_connections_total", ()], 3)
        self.assertEqual(samples["stream_proxy_connections_open", ()], 0)
        self.assertEqual(samples["stream_proxy_connections_refused_total", ()], 0)
        bytes_ = "stream_proxy_bytes_total"
        self.assertEqual(
            samples[bytes_, (("direction", "to_upstream"), ("path", "copied"))], 15
        )
        self.assertEqual(
            samples[bytes_, (("direction", "to_client"), ("path", "copied"))], 33
        )
        self.assertEqual(
            samples[bytes_, (("direction", "to_client"), ("path", "spliced"))], 0
        )

    def test_randomIntegersErrors(self) -> None:
        """
        A random-integer server's counts: bad requests and refusals as
        errors by kind, integers and bytes.
        """
        factory = RandomIntegerFactory(maxConnections=0)
        factory.buildProtocol(None)
        factory.limits.errors["bad request"] += 2
        factory.integersServed = 7
        samples = collected(randomIntegerMetrics(factory))
        self.assertEqual(samples["random_integers_connections_refused_total", ()], 1)
        self.assertEqual(
            samples["random_integers_errors_total", (("kind", "bad_request"),)], 2
        )
        self.assertEqual(
            samples[
                "random_integers_errors_total", (("kind", "too_many_connections"),)
            ],
            1,
        )
        self.assertEqual(samples["random_integers_integers_sent_total", ()], 7)


class OptionTests(SynchronousTestCase):
    """
    C{--metrics} takes an endpoint, given a backlog like every listener.
    """

    def test_backlog(self) -> None:
        """
        A C{tcp:} metrics endpoint gets the default backlog.
        """
        options = randomtap.Options()
        options.parseOptions(["--metrics", "tcp:9100"])
        self.assertEqual(options["metrics"], "tcp:9100:backlog=1024")


class MissingTests(SynchronousTestCase):
    """
    C{--metrics} without C{prometheus_client}.
    """

    def test_missing(self) -> None:
        """
        Without prometheus_client, C{--metrics} is refused, naming the extra.
        """
        import sys

        before = sys.modules.get("prometheus_client")

        def restore() -> None:
            if before is None:
                del sys.modules["prometheus_client"]
            else:
                sys.modules["prometheus_client"] = before

        sys.modules["prometheus_client"] = None  # type: ignore[assignment]
        self.addCleanup(restore)
        options = randomtap.Options()
        with self.assertRaises(usage.UsageError) as caught:
            options.parseOptions(["--metrics", "tcp:9100"])
        self.assertIn("twisted_streaming[metrics]", str(caught.exception))


class TwistdMetricsTests(TestCase):
    """
    C{--metrics} on real twistd processes, scraped over HTTP.
    """

    async def test_proxy(self) -> None:
        """
        A proxy limited to one connection: while one is open and has sent 4
        bytes (spliced), a second client is refused; the metrics say so,
        live; once the first has had its reply, they count its bytes both
        ways and nothing open.
        """
        upstream = Upstream()
        listening = reactor.listenTCP(
            0, Factory.forProtocol(lambda: upstream), interface="127.0.0.1"
        )
        self.addCleanup(listening.stopListening)
        process, _ = twistdProxy(
            self,
            listening.getHost().port,
            "--max-connections",
            "1",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
        )
        port = await process.port
        metrics = int((await process.waitFor(rb"_QuietSite starting on (\d+)"))[1])
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        first = Peer()
        got: List[bytes] = []
        first.dataReceived = got.append  # type: ignore[method-assign,assignment]
        await connectProtocol(endpoint, first)
        first.transport.write(b"hold")  # type: ignore[union-attr]
        await upstream.gotData
        second = Peer()
        await connectProtocol(endpoint, second)
        await second.lost
        samples = await scrape(metrics)
        self.assertEqual(samples["stream_proxy_connections_open", ()], 1)
        self.assertEqual(samples["stream_proxy_connections_total", ()], 1)
        self.assertEqual(samples["stream_proxy_connections_refused_total", ()], 1)
        spliced = (("direction", "to_upstream"), ("path", "spliced"))
        self.assertEqual(samples["stream_proxy_bytes_total", spliced], 4)
        first.transport.loseWriteConnection()  # type: ignore[union-attr]
        await first.lost
        self.assertEqual(b"".join(got), b"REPLY:hold")
        await process.waitFor(rb"Proxied .*spliced \(closed\)")
        samples = await scrape(metrics)
        self.assertEqual(samples["stream_proxy_connections_open", ()], 0)
        self.assertEqual(samples["stream_proxy_bytes_total", spliced], 4)
        back = (("direction", "to_client"), ("path", "spliced"))
        self.assertEqual(samples["stream_proxy_bytes_total", back], 10)
        self.assertNotIn(("stream_proxy_errors_total", (("kind", "closed"),)), samples)
        # The process's own, from prometheus_client.
        self.assertGreater(samples["process_open_fds", ()], 0)

    async def test_randomIntegers(self) -> None:
        """
        A random-integer server's metrics count the integers it sent, the
        bytes each way, a bad request, and the connection.
        """
        process, _ = twistdRandomIntegers(
            self, "--metrics", "tcp:0:interface=127.0.0.1"
        )
        port = await process.port
        metrics = int((await process.waitFor(rb"_QuietSite starting on (\d+)"))[1])
        request = b"x\r\n1000\r\n"
        client = _Client(request)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        data = await client.done
        await process.waitFor(rb"Served .*\(done\)")
        samples = await scrape(metrics)
        self.assertEqual(samples["random_integers_integers_sent_total", ()], 1000)
        self.assertEqual(samples["random_integers_connections_total", ()], 1)
        self.assertEqual(samples["random_integers_connections_open", ()], 0)
        self.assertEqual(
            samples["random_integers_errors_total", (("kind", "bad_request"),)], 1
        )
        integers = len(data) - data.rindex(PROMPT) - len(PROMPT)
        self.assertEqual(
            samples["random_integers_bytes_total", (("direction", "sent"),)], integers
        )
        self.assertEqual(
            samples["random_integers_bytes_total", (("direction", "received"),)],
            len(request),
        )


for case in (CollectorTests, TwistdMetricsTests, OptionTests):
    case.skip = skipMetrics
