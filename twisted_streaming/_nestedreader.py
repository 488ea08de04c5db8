"""
What every reader of a hierarchical stream does (a tar archive, a
multipart body): take bytes from a producer, hand each child's bytes to the
consumer its handler gives for it, pass each child's backpressure back to
the producer, and fail once, naming the child and the offset.  Subclasses
parse.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._failure import failureWithContext
from twisted_streaming._flow import (
    FAILED,
    Completion,
    Flow,
    Task,
    Upstream,
    turnLoop,
)
from twisted_streaming.interfaces import ConsumerFinished, IFinishableConsumer

__all__ = ["NestedReader"]

_log = Logger()


class _Feed(Flow):
    """
    The push producer of one child's bytes, registered with the consumer the
    handler gave for it: its pauses block the reader, its end finishes
    that consumer.
    """

    def __init__(self, reader: NestedReader, tagPath: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reader = reader
        self.tagPath = tagPath

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.tagPath!r} at {id(self):#x}>"

    @property
    def upstream(self) -> NestedReader:
        return self._reader

    def start(self, consumer: IConsumer) -> Deferred[Any]:
        return self._start(consumer, True)

    def write(self, data: bytes) -> None:
        self.bytesWritten += len(data)
        self.chunksWritten += 1
        self.consumer.write(data)

    def end(self) -> None:
        self._finish(self.bytesWritten)

    def _flowPauseChanged(self, paused: bool) -> None:
        self._reader._childPaused(self, paused)


@implementer(IFinishableConsumer)
class NestedReader:
    """
    A consumer of a hierarchical stream's bytes that calls
    C{handler.startChild(tag, **meta)} for each child and writes the
    child's bytes to the consumer it returns (or nowhere, if it returns
    L{None}), registered with it as a streaming producer and finished at
    the child's end.

      - B{Backpressure}: while a child's consumer has paused its producer,
        nothing more is written to it, and the producer registered with
        this reader (a transport, a C{FileSender}) is paused; what it had
        written already is held (at most one of its chunks) and delivered
        when the child's consumer resumes.  A pull producer is asked for
        more on the turn loop while nothing is held and no child is paused.
      - B{End}: L{finish} (the input has ended) calls the handler's
        C{finish()}, if it has one, once the stream's own end has been read;
        input after that end is ignored.
      - B{Errors}: malformed or truncated input, a handler or a child's
        consumer that raises or stops, fail the reader once: the producer
        registered with it is stopped, the open child's producer
        unregistered (its consumer is not finished), the handler's
        C{abort(reason)} called if it has one, and L{whenFinished} fails
        with a L{ContextFailure <twisted_streaming.ContextFailure>} whose
        C{tagPath} names the child (C{name/child}) and whose message gives
        the offset.

    Subclasses implement L{_parse} and L{_truncated}.

    @ivar handler: What is given each child.
    @ivar name: The stream's name, the first part of each child's tag path.
    @ivar position: The bytes of the stream read so far.
    @ivar children: The children started so far.
    """

    #: What the stream is called in errors ("archive", "body").
    kind = "stream"

    def __init__(
        self,
        handler: Any,
        *,
        name: Optional[str] = None,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        self.handler = handler
        self.name = name
        self._reactor = reactor
        self._cooperator = cooperator
        self._task: Optional[Task] = None
        self._up = Upstream(self)
        self._pending = b""
        self._offset = 0
        self.position = 0
        self.children = 0
        self._feed: Optional[_Feed] = None
        self._childTag: Optional[str] = None
        self._blocked = False
        # The open child has ended while its consumer had paused it: it is
        # finished once it resumes, and nothing more is read before.
        self._ending = False
        self._advancing = False
        self._again = False
        self._inputEnded = False
        self._streamEnded = False
        self._done = False
        self._completion: Completion[Any] = Completion()

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"<{type(self).__name__}{name} at offset {self.position}>"

    @property
    def tagPath(self) -> str:
        """
        The open child's tag path (C{name/tag}), or the stream's name.
        """
        name = self.name or ""
        tag = self._childTag
        if tag is None:
            return name
        return f"{name}/{tag}" if name else tag

    @property
    def producer(self) -> Any:
        """
        The producer registered with this reader, or L{None}.
        """
        return self._up.producer

    @property
    def downstream(self) -> Any:
        """
        The open child's consumer, or L{None}.
        """
        return self._feed.consumer if self._feed is not None else None

    def whenFinished(self) -> Deferred[int]:
        """
        @return: A L{Deferred} that fires with the number of children once
            the whole stream has been read, every child's consumer finished,
            and the handler finished (if it has C{finish}); or fails with
            the reader's error.
        """
        return self._completion.whenDone()

    # IConsumer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register the producer of the stream's bytes.

        @raise ProducerStateError: If one is registered already.
        """
        self._up.register(producer, streaming)
        if self._done:
            self._up.stop()
        elif streaming:
            self._regulate()
        else:
            self._turns().wake()

    def unregisterProducer(self) -> None:
        self._up.unregister()

    def write(self, data: bytes) -> None:
        """
        Read C{data}: hand what belongs to children to their consumers, now.

        @raise ConsumerFinished: If L{finish} has been called.
        """
        if self._inputEnded:
            raise ConsumerFinished(f"{self!r} has already been finished")
        if self._done or not data:
            return
        if self._offset == len(self._pending):
            self._pending, self._offset = data, 0
        else:
            self._pending = self._pending[self._offset :] + data
            self._offset = 0
        self._advance()

    def finish(self) -> None:
        """
        The input has ended.

        @raise ConsumerFinished: If called twice.
        """
        if self._inputEnded:
            raise ConsumerFinished(f"{self!r} has already been finished")
        self._inputEnded = True
        self._advance()

    # For subclasses

    def _parse(self) -> bool:
        """
        Read what is held: start and end children, deliver their bytes, and
        say when the stream has ended (L{_ended}).  Raise to fail.

        @return: Whether to call again at once (more can be read); C{False}
            when more input is needed.
        """
        raise NotImplementedError()

    def _truncated(self) -> Optional[Exception]:
        """
        The input ended before the stream's end was read: the error to fail
        with, or L{None} if the stream may end here.
        """
        raise NotImplementedError()

    def _available(self) -> int:
        return len(self._pending) - self._offset

    def _held(self) -> Tuple[bytes, int]:
        """
        What is held, and where in it unread bytes start.
        """
        return self._pending, self._offset

    def _take(self, size: int) -> bytes:
        """
        Consume C{size} of the held bytes (at most what is held).
        """
        pending, start = self._pending, self._offset
        end = start + size
        if start == 0 and end >= len(pending):
            data, self._pending = pending, b""
        else:
            data = pending[start:end]
            self._offset = min(end, len(pending))
        self.position += len(data)
        return data

    def _startChild(self, tag: str, meta: Dict[str, Any]) -> None:
        """
        Ask the handler for the consumer of child C{tag}, and start writing
        to it.
        """
        self._childTag = tag
        self.children += 1
        consumer = self.handler.startChild(tag, **meta)
        if consumer is None:
            return
        feed = self._feed = _Feed(
            self, self.tagPath, reactor=self._reactor, cooperator=self._cooperator
        )
        started = feed.start(consumer)
        started.addErrback(self._feedFailed, feed)

    def _deliver(self, data: bytes) -> None:
        """
        Write C{data} to the open child's consumer (nowhere if it is
        skipped); its pause, from inside, blocks the reader.
        """
        feed = self._feed
        if feed is None:
            return
        try:
            feed.write(data)
        except Exception as error:
            self._fail(
                failureWithContext(error, feed, feed.bytesWritten, feed.chunksWritten)
            )

    def _endChild(self) -> None:
        """
        The open child has ended: finish its consumer, at once or, if it
        has paused the reader, once it resumes it (so that consumers still
        writing out what they hold do not pile up).
        """
        feed = self._feed
        self._childTag = None
        if feed is not None and self._blocked:
            self._ending = True
            return
        self._feed = None
        if feed is not None:
            feed.end()

    def _ended(self) -> None:
        """
        The stream's end has been read: what follows is ignored.
        """
        self._streamEnded = True

    # Internals

    def _advance(self) -> None:
        if self._advancing:
            # From inside a child's consumer (its resume): the loop below
            # carries on.
            self._again = True
            return
        self._advancing = True
        try:
            while not self._done:
                self._again = False
                while not self._blocked and not self._done and not self._streamEnded:
                    if not self._parse():
                        break
                if not self._again:
                    break
        except Exception as error:
            self._fail(failureWithContext(error, self, self.position, self.children))
        finally:
            self._advancing = False
        if self._done:
            return
        if self._streamEnded or self._inputEnded:
            self._maybeComplete()
        else:
            self._regulate()

    def _maybeComplete(self) -> None:
        if self._blocked:
            return
        if not self._streamEnded:
            error = self._truncated()
            if error is not None:
                self._fail(
                    failureWithContext(error, self, self.position, self.children)
                )
                return
            self._streamEnded = True
        if not self._inputEnded:
            # The end has been read: what else arrives is ignored.
            self._pending, self._offset = b"", 0
            self._regulate()
            return
        self._done = True
        if self._task is not None:
            self._task.cancel()
        self._up.unregister()
        finish = getattr(self.handler, "finish", None)
        if finish is not None:
            try:
                finish()
            except Exception as error:
                self._done = False
                self._fail(
                    failureWithContext(error, self, self.position, self.children)
                )
                return
        self._completion.fire(self.children)

    def _regulate(self) -> None:
        up = self._up
        if up.producer is None:
            return
        # What is held when not blocked is what cannot be read without
        # more: a part of a header, of a boundary.
        if up.streaming:
            if self._blocked:
                up.pause()
            else:
                up.resume()
        elif not self._blocked:
            self._turns().wake()

    def _turns(self) -> Task:
        task = self._task
        if task is None:
            cooperator = self._cooperator or turnLoop(self._reactor)
            task = self._task = Task(cooperator, self._pull)
        return task

    def _pull(self) -> bool:
        up = self._up
        if self._done or self._blocked or up.streaming:
            return False
        if up.producer is None or self._inputEnded:
            return False
        before = self.position + self._available()
        failure = up.pull()
        if failure is not None:
            self._fail(failure)
            return False
        return self.position + self._available() != before and not self._done

    def _childPaused(self, feed: _Feed, paused: bool) -> None:
        if feed is not self._feed:
            return
        self._blocked = paused
        if paused:
            self._regulate()
            return
        if self._ending:
            self._ending = False
            self._feed = None
            feed.end()
        self._advance()

    def _feedFailed(self, reason: Failure, feed: _Feed) -> None:
        # A child's consumer refused its producer, stopped it, or raised
        # from finish(); a feed aborted by _fail ends here too.
        if not self._done:
            self._fail(reason)

    def _fail(self, reason: Failure) -> None:
        if self._done:
            _log.failure("{reader!r} failed after it had ended", reason, reader=self)
            return
        self._done = True
        if self._task is not None:
            self._task.cancel()
        self._pending, self._offset = b"", 0
        feed, self._feed = self._feed, None
        if feed is not None:
            feed._abort(FAILED, reason)
        self._up.stop()
        abort = getattr(self.handler, "abort", None)
        if abort is not None:
            try:
                abort(reason)
            except Exception:
                _log.failure("Aborting {handler!r} failed", handler=self.handler)
        if not self._completion.fire(reason):
            _log.failure("Reading {reader!r} failed", reason, reader=self)
