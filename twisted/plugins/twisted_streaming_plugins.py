# The twistd dropin of twisted_streaming.  Keep it tiny: importing the reactor
# here would break `twistd --reactor=...` for every plugin on the machine.
from twisted.application.service import ServiceMaker

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
