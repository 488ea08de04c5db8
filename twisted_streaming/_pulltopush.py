"""
L{PullToPush}: lets any pull producer feed a consumer that wants a
streaming producer.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._failure import failureWithContext
from twisted_streaming._flow import FAILED, Flow, Upstream, sizeOf
from twisted_streaming.interfaces import ProducerStopped

__all__ = ["PullToPush"]

_log = Logger()


@implementer(IConsumer, IPushProducer)
class PullToPush(Flow):
    """
    Let a pull producer feed a consumer that wants a streaming producer.

    Give this object to the pull producer as its consumer
    (C{FileSender().beginFileTransfer(f, PullToPush(consumer))}): when the
    pull producer registers, this object registers with C{consumer} as a
    I{streaming} producer and calls the pull producer's C{resumeProducing},
    one call per step of the reactor's turn loop, while C{consumer} has not
    paused it.  Writes and unregistration are passed through to
    C{consumer}; a streaming producer registered with this object is passed
    through unchanged.

    It keeps the pull contract, as a transport does:

      - A pull producer whose C{resumeProducing} writes nothing is not
        called again until it writes of its own accord or C{consumer}
        resumes this adapter after a pause (a transport never calls it
        again), so a producer with nothing to say costs nothing.
      - An exception from the pull producer's C{resumeProducing} is logged,
        with context; the pull producer is not called again, and this
        adapter unregisters from C{consumer}.

    Pause and resume are flags: any number of pauses is undone by one resume.
    C{stopProducing} stops the loop, stops the pull producer and unregisters.
    Once a pull producer has unregistered, another may register.

    @ivar bytesWritten: Bytes passed through to C{consumer}.
    """

    reusable = True

    def __init__(self, consumer: IConsumer, **kwargs: Any) -> None:
        """
        @param consumer: The consumer to register with and write to.
        @param reactor: The reactor whose turn loop drives the pull producer;
            the global reactor if L{None}.
        @param cooperator: Drive it on this
            L{twisted.internet.task.Cooperator} instead.
        """
        super().__init__(**kwargs)
        self.consumer = consumer
        self._upstream = Upstream(self)
        self._stepping = False
        self._registering = False
        self._wrote = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.producer!r} at {id(self):#x}>"

    @property
    def producer(self) -> Optional[Any]:
        """
        The pull producer being driven, or L{None}.
        """
        return self._upstream.producer

    # IConsumer, for the pull producer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Register a pull producer, to be driven by this adapter, or pass a
        streaming one through to the consumer.

        @raise ProducerStateError: If a pull producer is already registered.
        @raise Exception: Whatever the consumer's C{registerProducer} raised
            if it refused this adapter; nothing is then registered.
        """
        if streaming:
            self.consumer.registerProducer(producer, True)
            return
        self._upstream.register(producer, False)
        self._registering = True
        try:
            done = self._start(self.consumer, True)
        finally:
            self._registering = False
        refused: List[Failure] = []
        if self._state is FAILED:
            # The only way to fail while starting: the consumer refused, and
            # the pull producer hears of it from its own registerProducer.
            done.addErrback(refused.append)
            refused[0].raiseException()
        done.addErrback(self._logFailure)
        if self.producing:
            self._turns().wake()

    def unregisterProducer(self) -> None:
        """
        The pull producer is done: stop driving it and unregister from the
        consumer.
        """
        if self._upstream.producer is None:
            self.consumer.unregisterProducer()
            return
        self._upstream.unregister()
        self._finish(self.bytesWritten, finishConsumer=False)

    def write(self, data: Any) -> None:
        """
        Pass C{data} through to the consumer.
        """
        self._wrote = True
        size = sizeOf(data)
        self.bytesWritten += size
        self.chunksWritten += 1
        self.consumer.write(data)
        if self._stepping:
            self._turns().charge(size)
        elif self.producing and not self.paused:
            # As a transport does, a write the producer made of its own
            # accord means it is to be asked again.
            self._turns().wake()

    # The flow core's hooks

    def _flowStep(self) -> bool:
        if self.paused or not self.producing:
            return False
        self._wrote = False
        self._stepping = True
        try:
            failure = self._upstream.pull()
        finally:
            self._stepping = False
        if failure is not None:
            self._pullFailed(failure)
            return False
        return self._wrote and self.producing and not self.paused

    def _pullFailed(self, failure: Failure) -> None:
        producer = self._upstream.producer
        self._upstream.unregister()
        error = failure.value
        assert isinstance(error, BaseException)
        self._abort(
            FAILED,
            failureWithContext(error, producer, self.bytesWritten, self.chunksWritten),
        )

    def _flowPauseChanged(self, paused: bool) -> None:
        if paused:
            self._turns().sleep()
        else:
            self._turns().wake(now=True)

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        if self._registering:
            # Refused while the pull producer was registering: it is told so
            # by the exception, and is not stopped.
            self._upstream.unregister()
            return
        # The pull producer may unregister from us while stopping: it has
        # been forgotten first.
        self._upstream.stop()

    def _logFailure(self, reason: Failure) -> None:
        if not reason.check(ProducerStopped, CancelledError):
            _log.failure("The pull producer failed; it is not called again", reason)
