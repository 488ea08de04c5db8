"""
twisted_streaming: producers and consumers for Twisted that move a lot of data
without eating memory, burning CPU or stalling the reactor.
"""

from twisted_streaming._compression import Compress, Decompress
from twisted_streaming._connection import (
    ConnectionSink,
    ConnectionSource,
    StreamProtocol,
)
from twisted_streaming._failure import ContextFailure
from twisted_streaming._fileconsumer import FileConsumer
from twisted_streaming._filesender import FileSender
from twisted_streaming._flow import TurnLoop, turnLoop
from twisted_streaming._framing import Frame, Unframe
from twisted_streaming._fromasynciterable import (
    AsyncIterableProducer,
    fromAsyncIterable,
)
from twisted_streaming._hashing import HashStage
from twisted_streaming._httpbody import BodyProducer, ResponseBody, responseBody
from twisted_streaming._lines import LineJoiner, LineSplitter
from twisted_streaming._pipeline import pipeline
from twisted_streaming._proxy import ProxyFactory, ProxyStatistics
from twisted_streaming._pulltopush import PullToPush
from twisted_streaming._push import BasePushProducer
from twisted_streaming._sinks import CollectBytes, CollectList, Count, ForEach, Sink
from twisted_streaming._stage import Stage
from twisted_streaming._toasynciterator import StreamIterator, toAsyncIterator
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
    "AsyncIterableProducer",
    "BasePushProducer",
    "BodyProducer",
    "CollectBytes",
    "CollectList",
    "Compress",
    "ConnectionSink",
    "ConnectionSource",
    "ConsumerFinished",
    "ContextFailure",
    "Count",
    "Decompress",
    "FileConsumer",
    "FileResource",
    "FileSender",
    "ForEach",
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
    "ResponseBody",
    "Sink",
    "Stage",
    "StreamIterator",
    "StreamProtocol",
    "TurnLoop",
    "Unframe",
    "__version__",
    "fromAsyncIterable",
    "pipeline",
    "responseBody",
    "toAsyncIterator",
    "turnLoop",
]
