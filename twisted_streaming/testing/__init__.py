"""
Test helpers for producers and consumers: fakes that apply backpressure the
way real transports do, conformance suites for producers and consumers, and
a real loopback connection.

Twisted's own doubles (C{StringTransport}) never pause a producer and never
drive a pull producer, so producer bugs pass their tests.  L{BackpressureConsumer}
behaves like a TCP transport: it pauses a streaming producer when its buffer
passes a threshold, I{repeats} the pause on every further write while over it,
resumes once when drained, and calls C{resumeProducing} on a pull producer
after registration and after each drain.

The producer conformance suite checks a producer against the contract; use
L{PushProducerConformanceMixin} or L{PullProducerConformanceMixin} with trial,
or L{checkPushProducer} / L{checkPullProducer} from plain pytest.  A producer
that is fed by a source (a stage, an adapter, one direction of a proxy) goes
through the same suite wrapped in a L{FedPushProducer}.  The consumer side of
the contract is checked by L{ConsumerConformanceMixin} or L{checkConsumer}.
Hierarchical streams have suites of their own: L{checkNestedConsumer} (or
L{NestedConsumerConformanceMixin}) checks an
L{INestedConsumer <twisted_streaming.INestedConsumer>}, and
L{checkNestedReader} (or L{NestedReaderConformanceMixin}) a reader that
hands each child of a stream to a handler, such as a C{TarReader}.
L{loopbackReceive} sends a stream over a real TCP connection on 127.0.0.1.

Each concept lives in a module of its own: C{_fakes}, C{_producerconformance},
C{_consumerconformance}, C{_nestedconformance} and C{_loopback}; everything
public is importable from here.  Importing this package does not install a reactor.
"""

from twisted_streaming.testing._consumerconformance import (
    ConsumerConformanceMixin,
    checkConsumer,
    checkConsumerDrivesPullProducer,
    checkConsumerPausesPushProducer,
)
from twisted_streaming.testing._fakes import (
    BackpressureConsumer,
    FedPushProducer,
    RecordingPullProducer,
    RecordingPushProducer,
)
from twisted_streaming.testing._loopback import loopbackReceive
from twisted_streaming.testing._nestedconformance import (
    NestedConsumerConformanceMixin,
    NestedReaderConformanceMixin,
    checkNestedChildren,
    checkNestedConsumer,
    checkNestedFailureTagPath,
    checkNestedOneChildAtATime,
    checkNestedReader,
    checkNestedWritesAfterFinish,
    checkReaderDeliversChildren,
    checkReaderFailsOnTruncation,
    checkReaderPullProducer,
    checkReaderSkipsChildren,
    checkReaderStopsOnChildFailure,
)
from twisted_streaming.testing._producerconformance import (
    FILE_DATA,
    PullProducerConformanceMixin,
    PushProducerConformanceMixin,
    checkCompletion,
    checkIdempotentPause,
    checkNoWriteAfterPause,
    checkOneWritePerResume,
    checkPullProducer,
    checkPushProducer,
    checkStop,
    defaultStart,
)

__all__ = [
    "FILE_DATA",
    "BackpressureConsumer",
    "ConsumerConformanceMixin",
    "FedPushProducer",
    "NestedConsumerConformanceMixin",
    "NestedReaderConformanceMixin",
    "PullProducerConformanceMixin",
    "PushProducerConformanceMixin",
    "RecordingPullProducer",
    "RecordingPushProducer",
    "checkCompletion",
    "checkConsumer",
    "checkConsumerDrivesPullProducer",
    "checkConsumerPausesPushProducer",
    "checkIdempotentPause",
    "checkNestedChildren",
    "checkNestedConsumer",
    "checkNestedFailureTagPath",
    "checkNestedOneChildAtATime",
    "checkNestedReader",
    "checkNestedWritesAfterFinish",
    "checkNoWriteAfterPause",
    "checkOneWritePerResume",
    "checkPullProducer",
    "checkPushProducer",
    "checkReaderDeliversChildren",
    "checkReaderFailsOnTruncation",
    "checkReaderPullProducer",
    "checkReaderSkipsChildren",
    "checkReaderStopsOnChildFailure",
    "checkStop",
    "defaultStart",
    "loopbackReceive",
]
