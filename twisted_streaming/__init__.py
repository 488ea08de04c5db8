"""
twisted_streaming: producers and consumers for Twisted that move a lot of data
without eating memory, burning CPU or stalling the reactor.
"""

from twisted_streaming._balance import Balance
from twisted_streaming._broadcast import Broadcast
from twisted_streaming._compression import Compress, Decompress
from twisted_streaming._failure import ContextFailure
from twisted_streaming._fanout import FanOutput
from twisted_streaming._fileconsumer import FileConsumer
from twisted_streaming._filesender import FileSender
from twisted_streaming._flow import TurnLoop, turnLoop
from twisted_streaming._framing import Frame, Unframe
from twisted_streaming._hashing import HashStage
from twisted_streaming._lines import LineJoiner, LineSplitter
from twisted_streaming._merge import Merge, MergeInput
from twisted_streaming._pipeline import pipeline
from twisted_streaming._proxy import ProxyFactory, ProxyStatistics
from twisted_streaming._pulltopush import PullToPush
from twisted_streaming._push import BasePushProducer
from twisted_streaming._stage import Stage
from twisted_streaming._version import __version__
from twisted_streaming._web import FileResource
from twisted_streaming.interfaces import (
    ConsumerFinished,
    ConsumerTooSlow,
    IConsumer,
    IFinishableConsumer,
    IProducer,
    IPullProducer,
    IPushProducer,
    ProducerStateError,
    ProducerStopped,
)

__all__ = [
    "Balance",
    "BasePushProducer",
    "Broadcast",
    "Compress",
    "ConsumerFinished",
    "ConsumerTooSlow",
    "ContextFailure",
    "Decompress",
    "FanOutput",
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
    "Merge",
    "MergeInput",
    "ProducerStateError",
    "ProducerStopped",
    "ProxyFactory",
    "ProxyStatistics",
    "PullToPush",
    "Stage",
    "TurnLoop",
    "Unframe",
    "__version__",
    "pipeline",
    "turnLoop",
]
