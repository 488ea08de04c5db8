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

from typing import Any, Optional

from twisted.internet.interfaces import (
    IConsumer,
    IProducer,
    IPullProducer,
    IPushProducer,
)
from twisted.web.resource import IResource

__all__ = [
    "ChildStillOpen",
    "ConsumerFinished",
    "ConsumerTooSlow",
    "IConsumer",
    "IFinishableConsumer",
    "INestedConsumer",
    "IProducer",
    "IPullProducer",
    "IPushProducer",
    "IStreamingBodyResource",
    "MemberSizeError",
    "MultipartError",
    "ProducerStateError",
    "ProducerStopped",
    "TarFormatError",
    "UnsafePath",
    "UploadTooLarge",
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


class INestedConsumer(IFinishableConsumer):
    """
    A consumer of a hierarchical stream: a sequence of I{children}, each
    started with a tag and given a consumer of its own, which may have
    children in turn.  A tar archive (members, directories of members), a
    multipart upload (parts), a directory tree (files, subdirectories).

    B{Children.}  L{startChild} returns the child: an
    L{IFinishableConsumer} like any other, so any producer registers with
    it and writes to it (a C{FileSender}, a C{BasePushProducer}, a
    C{pipeline()}), one producer at a time (a second registration raises
    L{ProducerStateError}, as a transport's does).  C{finish()} on the
    child ends that child; whoever started its producer finishes it (a
    C{BasePushProducer} or a C{pipeline()} does so itself; a C{FileSender},
    like Twisted's, only unregisters).  A child may itself provide
    L{INestedConsumer}, so streams nest to any depth.

    B{One child at a time.}  Children of one parent are sequential unless
    the implementation says that it interleaves them: L{startChild} while a
    child of the same parent has not been finished raises L{ChildStillOpen},
    and so does the parent's C{finish()}; nothing is started, written or
    padded.  A child that is never finished leaves its parent open: the
    stream is incomplete until it is finished, and nothing finishes it
    implicitly.

    B{Backpressure, both ways.}  When the consumer underneath (the transport
    or file the whole stream goes to) pauses, the producer registered with
    the open child is paused, and it is resumed when that consumer resumes;
    a pull producer registered with a child is asked for data whenever that
    consumer wants more.  A producer registered with the parent itself (one
    that drives the stream: it starts the children and writes or finishes
    them, such as a directory walker) is driven the same way while no child
    of it has a producer registered, and is paused while one has.

    B{Errors, with the tag path.}  Every child has a L{tagPath}: its
    parent's, then its own tag, joined with C{/}
    (C{archive.tar/photos/2026/img.jpg}).  A write to a finished child, or
    a second C{finish()}, raises L{ConsumerFinished}.  A child that cannot
    take what it is given (too many bytes for the size it was started
    with, too few when it is finished, a write underneath that raised)
    raises the error to the caller and fails the whole stream, which the
    implementation's completion reports as a
    L{ContextFailure <twisted_streaming.ContextFailure>} whose C{tagPath}
    is the child's; every later call on the stream raises
    L{ConsumerFinished}.  A producer that fails while writing to a child
    reports the child's tag path in its own C{ContextFailure} too.

    B{Writes to the parent.}  Data written to the parent itself, between
    children, is for implementations whose format carries any; one whose
    data is all in its children (a tar archive) raises L{TypeError} from
    C{write}.
    """

    tagPath: str

    def startChild(tag: str, /, **meta: Any) -> IFinishableConsumer:
        """
        Start the next child, tagged C{tag}, described by C{meta} (what the
        implementation needs: a tar member's C{size}, C{mtime} and C{mode};
        a form field's C{filename}).

        @return: The child's consumer; it provides L{INestedConsumer} if the
            child has children of its own (a directory).
        @raise ChildStillOpen: If a child of this parent has not been
            finished.
        @raise ConsumerFinished: If this parent has been finished, or the
            stream has failed.
        """


class IStreamingBodyResource(IResource):
    """
    A C{twisted.web} resource that takes a request's body as it arrives,
    instead of after Twisted has stored all of it.

    Served through a L{StreamingRequest <twisted_streaming.StreamingRequest>}
    (C{Site(root, requestFactory=StreamingRequest)}), such a resource is
    rendered as soon as a request's headers have arrived, before its body.
    Its C{render} (or C{render_POST}...) calls
    C{request.streamBodyTo(consumer)}: the body is written to C{consumer}
    as it arrives, with the connection registered as its streaming
    producer (pausing it stops the socket being read), and C{consumer} is
    finished, if it is finishable, at the end of the body.  A body the
    resource never asks for is read and discarded.  The response may be
    written at any time, also before the body has ended (a C{413} for an
    upload over a limit): the rest of the body is then read and discarded,
    up to C{StreamingRequest.maxDiscard} bytes, and the connection closed
    if more follows.

    Through a plain C{twisted.web.server.Request} (or over HTTP/2), the
    resource is rendered after the whole body has arrived, and
    C{streamBodyTo} is not there: use
    L{streamBody <twisted_streaming.streamBody>}, which streams what is
    stored in C{request.content} instead.
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


class ChildStillOpen(RuntimeError):
    """
    A child of an L{INestedConsumer} was started, or the parent finished,
    while another child of the same parent had not been finished.
    """


class MemberSizeError(ValueError):
    """
    A member of a tar archive was given more bytes than the size it was
    started with, or fewer by the time it was finished.

    @ivar tagPath: The member's tag path.
    @ivar expected: The size it was started with.
    @ivar received: The bytes it was given.
    """

    def __init__(self, tagPath: str, expected: int, received: int) -> None:
        super().__init__(tagPath, expected, received)
        self.tagPath = tagPath
        self.expected = expected
        self.received = received

    def __str__(self) -> str:
        more = "more" if self.received > self.expected else "fewer"
        return (
            f"{self.tagPath!r} was started with a size of {self.expected} "
            f"bytes and given {more}: {self.received}"
        )


class TarFormatError(ValueError):
    """
    A tar archive being read is corrupt or truncated.

    @ivar member: The name of the member being read or, for a corrupt
        header, of the member before it; L{None} if there is none.
    @ivar offset: The offset in the archive, in bytes, where the error was
        found.
    """

    def __init__(self, message: str, member: Optional[str], offset: int) -> None:
        super().__init__(message, member, offset)
        self.message = message
        self.member = member
        self.offset = offset

    def __str__(self) -> str:
        where = f"member {self.member!r}, " if self.member is not None else ""
        return f"{self.message} ({where}offset {self.offset})"


class UnsafePath(ValueError):
    """
    A name to be extracted would land outside the target directory: an
    absolute path, a C{..} that climbs out, a path through a symbolic link,
    or a link whose target points outside.
    """


class MultipartError(ValueError):
    """
    A C{multipart/form-data} body is malformed (a C{400 Bad Request}).
    """


class UploadTooLarge(MultipartError):
    """
    A part of a C{multipart/form-data} body, or the whole body, is larger
    than its limit (a C{413 Content Too Large}).

    @ivar part: The name of the part over its limit, or L{None} for the
        whole body.
    @ivar limit: The limit, in bytes.
    """

    def __init__(self, part: Optional[str], limit: int) -> None:
        super().__init__(part, limit)
        self.part = part
        self.limit = limit

    def __str__(self) -> str:
        what = f"part {self.part!r}" if self.part is not None else "the body"
        return f"{what} is larger than its limit of {self.limit} bytes"
