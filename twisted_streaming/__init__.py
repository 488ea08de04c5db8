"""
twisted_streaming: producers and consumers for Twisted that move a lot of data
without eating memory, burning CPU or stalling the reactor.
"""

from twisted_streaming._consumers import FileConsumer
from twisted_streaming._proxy import ProxyFactory, ProxyStatistics
from twisted_streaming._pull import FileSender, PullToPush
from twisted_streaming._push import BasePushProducer
from twisted_streaming._stages import (
    Compress,
    Decompress,
    Frame,
    HashStage,
    LineJoiner,
    LineSplitter,
    Stage,
    Unframe,
    pipeline,
)
from twisted_streaming._util import ContextFailure
from twisted_streaming._version import __version__
from twisted_streaming._web import FileResource
from twisted_streaming.interfaces import (
    ConsumerFinished,
    IConsumer,
    IFinishableConsumer,
    IProducer,
    IPullProducer,
    IPushProducer,
    ProducerStateError,
    ProducerStopped,
)

__all__ = [
    "BasePushProducer",
    "Compress",
    "ConsumerFinished",
    "ContextFailure",
    "Decompress",
    "FileConsumer",
    "FileResource",
    "FileSender",
    "Frame",
    "HashStage",
    "IConsumer",
    "IFinishableConsumer",
    "IProducer",
    "IPullProducer",
    "IPushProducer",
    "LineJoiner",
    "LineSplitter",
    "ProducerStateError",
    "ProducerStopped",
    "ProxyFactory",
    "ProxyStatistics",
    "PullToPush",
    "Stage",
    "Unframe",
    "__version__",
    "pipeline",
]
