"""
Prometheus metrics of the package's servers, served over HTTP in
Prometheus's text format by U{prometheus_client
<https://github.com/prometheus/client_python>} (the C{metrics} extra).

Nothing is counted for the metrics alone: at each scrape a collector reads
the counters the servers keep anyway (L{ConnectionLimits}, the proxy's
statistics, the random-integer server's totals), so a server pays nothing
per connection or per byte for being watched.  C{prometheus_client} is
imported only when metrics are served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from twisted_streaming._limits import ConnectionLimits

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from twisted_streaming._proxy import ProxyFactory
    from twisted_streaming.randomintegers import RandomIntegerFactory

__all__ = [
    "MetricsResource",
    "connectionMetrics",
    "metricsService",
    "proxyMetrics",
    "randomIntegerMetrics",
    "requireMetrics",
]


def connectionMetrics(namespace: str, limits: ConnectionLimits) -> Iterator[Metric]:
    """
    What every server reports about its connections, its names prefixed
    with C{namespace}: C{_connections_open} (a gauge),
    C{_connections_total} (admitted), C{_connections_refused_total}
    (beyond C{maxConnections}) and C{_errors_total} by C{kind}.
    """
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    yield GaugeMetricFamily(
        f"{namespace}_connections_open", "Connections open now.", value=len(limits)
    )
    yield CounterMetricFamily(
        f"{namespace}_connections",
        "Connections accepted and served.",
        value=limits.accepted,
    )
    yield CounterMetricFamily(
        f"{namespace}_connections_refused",
        "Clients refused because the connection limit was reached.",
        value=limits.refused,
    )
    errors = CounterMetricFamily(
        f"{namespace}_errors",
        "Connections that ended badly, and bad requests, by kind.",
        labels=["kind"],
    )
    for kind, count in sorted(limits.errors.items()):
        errors.add_metric([kind.replace(" ", "_")], count)
    yield errors


def proxyMetrics(factory: ProxyFactory) -> Iterator[Metric]:
    """
    The metrics of a proxy, as C{stream_proxy_...}: those of
    L{connectionMetrics}, and C{stream_proxy_bytes_total} by C{direction}
    (C{to_upstream}, C{to_client}) and C{path} (C{spliced}, C{copied}),
    counting the open connections' bytes so far.
    """
    from prometheus_client.core import CounterMetricFamily

    yield from connectionMetrics("stream_proxy", factory.limits)
    forwarded = CounterMetricFamily(
        "stream_proxy_bytes",
        "Bytes forwarded, by direction and by path (spliced or copied).",
        labels=["direction", "path"],
    )
    for (direction, path), count in sorted(factory.bytesForwarded().items()):
        forwarded.add_metric([direction, path], count)
    yield forwarded


def randomIntegerMetrics(factory: RandomIntegerFactory) -> Iterator[Metric]:
    """
    The metrics of a random-integer server, as C{random_integers_...}:
    those of L{connectionMetrics}, C{random_integers_integers_sent_total}
    and C{random_integers_bytes_total} by C{direction} (C{sent},
    C{received}).
    """
    from prometheus_client.core import CounterMetricFamily

    yield from connectionMetrics("random_integers", factory.limits)
    yield CounterMetricFamily(
        "random_integers_integers_sent",
        "Random integers sent to clients.",
        value=factory.integersServed,
    )
    moved = CounterMetricFamily(
        "random_integers_bytes", "Bytes sent and received.", labels=["direction"]
    )
    moved.add_metric(["received"], factory.bytesReceived)
    moved.add_metric(["sent"], factory.bytesSent)
    yield moved


class _Collector:
    """
    A C{prometheus_client} collector calling C{collect} at each scrape.
    """

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self.collect = collect


class MetricsResource(Resource):
    """
    A C{twisted.web} resource serving a C{prometheus_client} registry in the
    format the scraper asks for (Prometheus text, or OpenMetrics), at any
    path.  Unlike C{prometheus_client.twisted.MetricsResource}, it collects
    in the reactor's thread, where the counters change, not in a thread
    pool.
    """

    isLeaf = True

    def __init__(self, registry: Any) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        from prometheus_client.exposition import choose_encoder

        accept = request.getHeader("accept")
        encode, contentType = choose_encoder(accept or "")
        request.setHeader("content-type", contentType)
        return bytes(encode(self.registry))


class _QuietSite(Site):
    """
    A site that does not log every scrape.
    """

    noisy = False

    def log(self, request: Any) -> None:
        pass


def metricsService(
    endpoint: Any,
    collect: Callable[[], Iterable[Metric]],
    process: bool = True,
) -> IService:
    """
    A service serving the metrics C{collect} gives on C{endpoint} (an
    C{IStreamServerEndpoint}), with the process's own (CPU, memory, open
    files: C{process_...}) if C{process}.

    @raise ImportError: If C{prometheus_client} is not installed.
    """
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(collect))
    if process:
        ProcessCollector(registry=registry)
    return StreamServerEndpointService(endpoint, _QuietSite(MetricsResource(registry)))


def requireMetrics() -> Optional[str]:
    """
    L{None} if metrics can be served, else why not.
    """
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return (
            "serving metrics needs prometheus_client: "
            "pip install 'twisted_streaming[metrics]'"
        )
    return None
