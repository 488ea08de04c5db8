# The twistd dropin of twisted_streaming.  Keep it tiny: importing the reactor
# here would break `twistd --reactor=...` for every plugin on the machine.
from twisted.application.service import ServiceMaker
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer

randomIntegers = ServiceMaker(
    "twisted_streaming random integers",
    "twisted_streaming.tap.randomintegers",
    "Serve random integers with a push producer.",
    "random-integers",
)

streamProxy = ServiceMaker(
    "twisted_streaming stream proxy",
    "twisted_streaming.tap.streamproxy",
    "Forward connections with backpressure both ways and half-close.",
    "stream-proxy",
)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class _ReusePortParser:
    """
    C{reuseport:PORT[:interface=...][:backlog=...]}: a TCP server endpoint
    with SO_REUSEPORT.  The package is imported only when one is parsed:
    every plugin lookup on the machine imports this module.
    """

    prefix = "reuseport"

    def parseStreamServer(self, reactor, *args, **kwargs):  # type: ignore[no-untyped-def]
        from twisted_streaming._reuseport import parseReusePort

        return parseReusePort(reactor, *args, **kwargs)


reusePort = _ReusePortParser()
