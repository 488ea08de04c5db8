"""
The interfaces and exceptions of twisted_streaming.

L{IProducer}, L{IPushProducer}, L{IPullProducer} and L{IConsumer} are Twisted's
own objects, re-exported unchanged: C{interfaces.IPushProducer is
twisted.internet.interfaces.IPushProducer}, so everything here registers with
real transports and everything Twisted ships registers with what is here.

What real transports do, which the contracts below rely on:

  - A TCP, UNIX or TLS transport with a registered I{streaming} producer calls
    C{pauseProducing()} when its write buffer grows past 64 KiB, and calls it
    again on B{every} further C{write()} while the buffer stays over that
    threshold.  It calls C{resumeProducing()} B{once}, when the buffer has been
    drained completely.  Pause state must therefore be a flag, never a count:
    a producer that counts pauses and waits for as many resumes deadlocks.
  - The pause usually arrives I{from inside} C{write()}: the producer is in the
    middle of producing when it learns it must stop.
  - A transport calls C{resumeProducing()} on a I{pull} producer once when it
    is registered, and again each time its buffer is empty.  A pull producer
    that returns from C{resumeProducing()} without writing is never called
    again.
  - When the connection is lost, the transport calls C{stopProducing()} and
    forgets the producer.  A transport that is already disconnected calls
    C{stopProducing()} from inside C{registerProducer()}.
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IConsumer,
    IProducer,
    IPullProducer,
    IPushProducer,
)

__all__ = [
    "ConsumerFinished",
    "ConsumerTooSlow",
    "IConsumer",
    "IFinishableConsumer",
    "IProducer",
    "IPullProducer",
    "IPushProducer",
    "ProducerStateError",
    "ProducerStopped",
]


class IFinishableConsumer(IConsumer):
    """
    A consumer that can be told that its stream has ended.

    C{finish()} is a write-side end of stream, the equivalent of a file's
    end or a TCP half-close: it says that no more data will ever be written,
    and it does not disconnect anything or discard buffered data.  A consumer
    that is also a producer (a stage in a pipeline) passes the end of stream
    on to its own consumer once it has delivered what it holds.

    Twisted removed its C{IFinishableConsumer} from
    L{twisted.internet.interfaces} in 2012 and keeps a copy only in
    L{twisted.protocols.ftp}.  This interface deliberately does I{not} extend
    that one: C{twisted.protocols.ftp} imports the global reactor when it is
    imported, and a library interface module that did so would install the
    default reactor before C{twistd --reactor=...} could choose one.  Instead,
    the producers of this package call C{finish()} on any consumer that
    provides either this interface or FTP's (checked only when
    C{twisted.protocols.ftp} has already been imported by someone else, since
    otherwise no object can provide it), so FTP's consumers are recognised
    without the import.
    """

    def finish() -> None:
        """
        No more data will be written.

        The producer, if any, has already been unregistered by the time this
        is called.  After this, L{IConsumer.write} and C{finish} must not be
        called again.

        @raise ConsumerFinished: If the consumer has already been finished
            (consumers of this package raise it; others may not).
        """


class ProducerStopped(Exception):
    """
    A producer was told to stop (C{stopProducing}) before it had finished.

    This is what the completion L{Deferred <twisted.internet.defer.Deferred>}
    of a producer fails with when its consumer went away, for example when the
    peer of a TCP connection disconnected in the middle of a stream.

    @ivar producer: The producer that was stopped.
    @ivar bytesWritten: How many bytes it had written to its consumer.
    @ivar chunksWritten: How many writes it had made.
    """

    def __init__(
        self, producer: object = None, bytesWritten: int = 0, chunksWritten: int = 0
    ) -> None:
        super().__init__(producer, bytesWritten, chunksWritten)
        self.producer = producer
        self.bytesWritten = bytesWritten
        self.chunksWritten = chunksWritten

    def __str__(self) -> str:
        return (
            f"{self.producer!r} was stopped after writing "
            f"{self.bytesWritten} bytes in {self.chunksWritten} chunks"
        )


class ConsumerTooSlow(ProducerStopped):
    """
    An output of a L{Broadcast <twisted_streaming.Broadcast>} with the
    C{"disconnect"} policy fell more than C{maxLag} behind, or stayed paused
    longer than its C{timeout}, and was disconnected.

    A L{ProducerStopped}, so that code which handles a consumer that went
    away handles this too.

    @ivar why: What it did: C{"fell 1048576 bytes behind"}, or C{"stayed
        paused for more than 30 seconds"}.
    """

    def __init__(
        self,
        producer: object = None,
        bytesWritten: int = 0,
        chunksWritten: int = 0,
        why: str = "",
    ) -> None:
        super().__init__(producer, bytesWritten, chunksWritten)
        self.why = why

    def __str__(self) -> str:
        return (
            f"{self.producer!r} was disconnected: its consumer {self.why}, "
            f"after {self.bytesWritten} bytes in {self.chunksWritten} chunks"
        )


class ProducerStateError(RuntimeError):
    """
    A producer was used in a way its state does not allow: started twice, or
    asked to write or finish after it had already finished or stopped.
    """


class ConsumerFinished(RuntimeError):
    """
    Data was written to, or C{finish()} called on, a consumer that had already
    been finished.
    """
