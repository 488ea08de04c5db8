"""
twisted_streaming: producers and consumers for Twisted that move a lot of data
without eating memory, burning CPU or stalling the reactor.
"""

from twisted_streaming._balance import Balance
from twisted_streaming._broadcast import Broadcast
from twisted_streaming._compression import Compress, Decompress
from twisted_streaming._connection import (
    ConnectionSink,
    ConnectionSource,
    StreamProtocol,
)
from twisted_streaming._extractdirectory import ExtractDirectory
from twisted_streaming._failure import ContextFailure
from twisted_streaming._fanout import FanOutput
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
from twisted_streaming._merge import Merge, MergeInput
from twisted_streaming._multipart import MultipartReader
from twisted_streaming._pipeline import pipeline
from twisted_streaming._proxy import ProxyFactory, ProxyStatistics
from twisted_streaming._pulltopush import PullToPush
from twisted_streaming._push import BasePushProducer
from twisted_streaming._reuseport import ReusePortServerEndpoint
from twisted_streaming._sinks import CollectBytes, CollectList, Count, ForEach, Sink
from twisted_streaming._stage import Stage
from twisted_streaming._streamingrequest import StreamingRequest, streamBody
from twisted_streaming._tarreader import TarReader
from twisted_streaming._tarwriter import TarDirectory, TarWriter
from twisted_streaming._toasynciterator import StreamIterator, toAsyncIterator
from twisted_streaming._uploads import MultipartResource, SaveUploads, UploadedFile
from twisted_streaming._version import __version__
from twisted_streaming._web import FileResource
from twisted_streaming.interfaces import (
    ChildStillOpen,
    ConsumerFinished,
    ConsumerTooSlow,
    IConsumer,
    IFinishableConsumer,
    INestedConsumer,
    IProducer,
    IPullProducer,
    IPushProducer,
    IStreamingBodyResource,
    MemberSizeError,
    MultipartError,
    ProducerStateError,
    ProducerStopped,
    TarFormatError,
    UnsafePath,
    UploadTooLarge,
)

__all__ = [
    "AsyncIterableProducer",
    "Balance",
    "BasePushProducer",
    "BodyProducer",
    "Broadcast",
    "ChildStillOpen",
    "CollectBytes",
    "CollectList",
    "Compress",
    "ConnectionSink",
    "ConnectionSource",
    "ConsumerFinished",
    "ConsumerTooSlow",
    "ContextFailure",
    "Count",
    "Decompress",
    "ExtractDirectory",
    "FanOutput",
    "FileConsumer",
    "FileResource",
    "FileSender",
    "ForEach",
    "Frame",
    "HashStage",
    "IConsumer",
    "IFinishableConsumer",
    "INestedConsumer",
    "IProducer",
    "IPullProducer",
    "IPushProducer",
    "IStreamingBodyResource",
    "LineJoiner",
    "LineSplitter",
    "MemberSizeError",
    "Merge",
    "MergeInput",
    "MultipartError",
    "MultipartReader",
    "MultipartResource",
    "ProducerStateError",
    "ProducerStopped",
    "ProxyFactory",
    "ProxyStatistics",
    "PullToPush",
    "ResponseBody",
    "ReusePortServerEndpoint",
    "SaveUploads",
    "Sink",
    "Stage",
    "StreamIterator",
    "StreamProtocol",
    "StreamingRequest",
    "TarDirectory",
    "TarFormatError",
    "TarReader",
    "TarWriter",
    "TurnLoop",
    "Unframe",
    "UnsafePath",
    "UploadTooLarge",
    "UploadedFile",
    "__version__",
    "fromAsyncIterable",
    "pipeline",
    "responseBody",
    "streamBody",
    "toAsyncIterator",
    "turnLoop",
]
