"""
What every L{INestedConsumer} that writes its children, one after another,
to one consumer does (a tar archive; a multipart body, a zip file): the
tag paths, one open child per parent, the producers of the levels taking
turns at the consumer underneath, and one failure for the whole stream.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._failure import failureWithContext
from twisted_streaming._flow import Completion, PassThrough
from twisted_streaming._transportinternals import isRegistered
from twisted_streaming.interfaces import (
    ChildStillOpen,
    ConsumerFinished,
    IFinishableConsumer,
    MemberSizeError,
    ProducerStateError,
)

__all__ = ["NestedLeaf", "NestedNode", "NestedWriter", "ProducerStack"]

_log = Logger()


class ProducerStack:
    """
    The producers registered at the levels of a nested stream, taking turns
    at the one consumer underneath: the innermost (the last registered) is
    the one registered with it, so that it paces that producer as it would
    its own; the ones before are set aside (paused, if streaming) until it
    unregisters, and then the one before it is registered again (and
    resumed).  So the producer of a child runs while the producer that
    drives its parent (a directory walker) waits for it to end.
    """

    def __init__(self, consumer: IConsumer) -> None:
        self.consumer = consumer
        # (owner, producer, streaming), outermost first.
        self._entries: List[Tuple[object, Any, bool]] = []

    def producerOf(self, owner: object) -> Any:
        """
        The producer C{owner} registered, or L{None}.
        """
        for entryOwner, producer, _ in self._entries:
            if entryOwner is owner:
                return producer
        return None

    def register(self, owner: object, producer: IProducer, streaming: bool) -> None:
        """
        Register C{owner}'s producer, setting aside the one registered
        before it.

        @raise ProducerStateError: If C{owner} has one registered already.
        @raise Exception: What the consumer's C{registerProducer} raised;
            nothing is then registered, and the producer set aside is
            registered again.
        """
        if self.producerOf(owner) is not None:
            raise ProducerStateError(
                f"Cannot register producer {producer!r} with {owner!r}: "
                f"{self.producerOf(owner)!r} is registered and was never unregistered"
            )
        if self._entries:
            self._setAside(self._entries[-1])
        entry = (owner, producer, bool(streaming))
        self._entries.append(entry)
        try:
            # A disconnected transport stops the producer from inside, and it
            # may unregister from inside too.
            self.consumer.registerProducer(producer, streaming)
        except BaseException:
            if entry in self._entries:
                self._entries.remove(entry)
                self._restoreTop()
            raise

    def unregister(self, owner: object) -> None:
        """
        Forget C{owner}'s producer; if it was the one registered with the
        consumer, register the one set aside before it again.
        """
        owners = [entry[0] for entry in self._entries]
        if owner not in owners:
            return
        index = owners.index(owner)
        entry = self._entries.pop(index)
        top = index == len(self._entries)
        if not top:
            return
        # Only if still the consumer's: a transport forgets its producer
        # before stopping it.
        if isRegistered(self.consumer, entry[1]):
            self.consumer.unregisterProducer()
        self._restoreTop()

    def _setAside(self, entry: Tuple[object, Any, bool]) -> None:
        _, producer, streaming = entry
        if isRegistered(self.consumer, producer):
            self.consumer.unregisterProducer()
        if streaming:
            producer.pauseProducing()

    def _restoreTop(self) -> None:
        if not self._entries:
            return
        entry = self._entries[-1]
        _, producer, streaming = entry
        self.consumer.registerProducer(producer, streaming)
        if streaming and entry in self._entries:
            producer.resumeProducing()


class _Part:
    """
    What every part of a nested stream written to one consumer has: a
    root, a parent, a tag path, and a producer of its own registered
    through the root's L{ProducerStack}.

    @ivar tag: Its tag (L{None} for a root given no name).
    @ivar tagPath: Its parent's tag path and its own tag, joined by C{/};
        C{""} for a root given no name.
    @ivar finished: Whether it has been finished.
    """

    finished = False
    tagPath: str
    _root: NestedWriter

    def _place(self, parent: Optional[NestedNode], tag: Optional[str]) -> None:
        self.parent = parent
        self.tag = tag
        self.tagPath = _join(parent.tagPath if parent is not None else "", tag)

    @property
    def producer(self) -> Any:
        """
        The producer registered with this part, or L{None}.
        """
        return self._root._stack.producerOf(self)

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        """
        Register the producer that writes to (or drives) this part; see
        L{ProducerStack}.

        @raise ProducerStateError: If one is registered already.
        """
        self._root._stack.register(self, producer, streaming)

    def unregisterProducer(self) -> None:
        self._root._stack.unregister(self)

    def _checkOpen(self) -> None:
        """
        @raise ConsumerFinished: If this part has been finished, or the
            stream has failed.
        """
        failure = self._root._failure
        if failure is not None:
            raise ConsumerFinished(
                f"{self!r} cannot be used: the stream failed "
                f"({failure.getErrorMessage()})"
            )
        if self.finished:
            raise ConsumerFinished(f"{self!r} has already been finished")


class NestedNode(_Part):
    """
    A level of a nested stream written to one consumer that has children:
    the root (a L{NestedWriter}), or a child such as a directory.  One child
    is open at a time.
    """

    def __init__(
        self,
        root: Optional[NestedWriter],
        parent: Optional[NestedNode],
        tag: Optional[str],
    ) -> None:
        self._root = root if root is not None else self  # type: ignore[assignment]
        self._place(parent, tag)
        self._child: Optional[_Part] = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.tagPath!r} at {id(self):#x}>"

    @property
    def consumer(self) -> IConsumer:
        """
        The consumer underneath: the next link of the chain a failure names.
        """
        return self._root._stack.consumer

    def _checkNoChild(self, doing: str) -> None:
        """
        @raise ChildStillOpen: If a child of this level is open.
        """
        if self._child is not None:
            raise ChildStillOpen(
                f"Cannot {doing} {self!r}: its child {self._child.tagPath!r} "
                "has not been finished"
            )

    def _opened(self, child: _Part) -> None:
        self._child = child

    def _closed(self, child: _Part) -> None:
        if self._child is child:
            self._child = None


@implementer(IFinishableConsumer)
class NestedLeaf(_Part, PassThrough):
    """
    A child without children of its own, whose bytes pass unchanged to the
    consumer underneath (so that a C{FileSender} sends around it with
    C{sendfile}), counted against the size it was started with: writing
    more than C{size} bytes, or finishing it with fewer, fails the stream
    with L{MemberSizeError}, raised to the caller.

    @ivar size: The bytes it must be given.
    """

    def __init__(
        self, root: NestedWriter, parent: NestedNode, tag: str, size: int
    ) -> None:
        PassThrough.__init__(self, root._stack.consumer)
        self._root = root
        self._place(parent, tag)
        self.size = size

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.tagPath!r} {self.delivered}/{self.size} "
            f"bytes at {id(self):#x}>"
        )

    def write(self, data: bytes) -> None:
        """
        Pass C{data} on.

        @raise ConsumerFinished: If finished, or the stream has failed.
        @raise MemberSizeError: If it would take this child over its size.
        """
        root = self._root
        if self.finished or root._failure is not None:
            self._checkOpen()
        received = self.delivered + len(data)
        if received > self.size:
            root._failed(MemberSizeError(self.tagPath, self.size, received), self)
        root._emit(data, self)
        self.delivered = received

    def passedAround(self, size: int) -> None:
        """
        C{size} bytes were sent around this child; more than its size fails
        the stream and stops the producer that sent them.
        """
        self.delivered += size
        root = self._root
        root.bytesWritten += size
        if self.delivered > self.size and root._failure is None:
            error = MemberSizeError(self.tagPath, self.size, self.delivered)
            try:
                root._failed(error, self)
            except MemberSizeError:
                pass
            producer = self.producer
            if producer is not None:
                producer.stopProducing()

    def finish(self) -> None:
        """
        End this child.

        @raise ConsumerFinished: If called twice, or the stream has failed.
        @raise MemberSizeError: If it was given fewer bytes than its size.
        """
        self._checkOpen()
        if self.delivered != self.size:
            error = MemberSizeError(self.tagPath, self.size, self.delivered)
            self._root._failed(error, self)
        self.finished = True
        self._root._leafFinished(self)
        assert self.parent is not None
        self.parent._closed(self)


class NestedWriter(NestedNode):
    """
    The root of a nested stream written, child after child, to one
    consumer.  Subclasses (L{TarWriter <twisted_streaming.TarWriter>}) say
    what is written when a child starts and ends, and at the end.

    @ivar bytesWritten: The bytes written to the consumer underneath, or
        sent to it around a child.
    """

    bytesWritten = 0

    def __init__(self, consumer: IConsumer, name: Optional[str] = None) -> None:
        self._stack = ProducerStack(consumer)
        super().__init__(None, None, name)
        self._failure: Optional[Failure] = None
        self._completion: Completion[Any] = Completion()

    # For subclasses

    def _leafFinished(self, leaf: NestedLeaf) -> None:
        """
        C{leaf} has been given all its bytes and finished.
        """

    def _ending(self) -> None:
        """
        The root is being finished, with no child open: write what ends the
        stream.
        """

    # The stream

    def _emit(self, data: bytes, where: object) -> None:
        """
        Write C{data} to the consumer underneath; if that raises, fail the
        stream, naming C{where}, and raise.
        """
        try:
            self._stack.consumer.write(data)
        except Exception as error:
            self._failed(error, where)
        self.bytesWritten += len(data)

    def _failed(self, error: Exception, where: object) -> None:
        """
        Fail the stream with C{error}, which happened in C{where}, once, and
        raise it.
        """
        if self._failure is None:
            self._failure = failureWithContext(error, where, self.bytesWritten, 0)
            self._completion.fire(self._failure)
        raise error

    def finish(self) -> None:
        """
        End the stream: write what ends it, then finish the consumer
        underneath if it is finishable.

        @raise ChildStillOpen: If a child has not been finished.
        @raise ConsumerFinished: If called twice, or the stream has failed.
        """
        self._checkOpen()
        self._checkNoChild("finish")
        self._ending()
        self.finished = True
        consumer = self._stack.consumer
        if IFinishableConsumer.providedBy(consumer):
            try:
                consumer.finish()
            except Exception as error:
                self._failed(error, self)
        self._completion.fire(self.bytesWritten)

    def whenFinished(self) -> Deferred[int]:
        """
        @return: A L{Deferred} that fires with L{bytesWritten} once the
            stream has been finished, or fails with the stream's first
            error, in a L{ContextFailure <twisted_streaming.ContextFailure>}
            whose C{tagPath} names the child it happened in.
        """
        return self._completion.whenDone()


def _join(parent: str, tag: Optional[str]) -> str:
    if not tag:
        return parent
    return f"{parent}/{tag}" if parent else tag
