"""
L{pipeline}: connect a source, stages and a sink, with one Deferred for the
whole chain.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Union, cast

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IConsumer
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._failure import failureWithContext
from twisted_streaming._flow import FAILED, STOPPED, Flow, PassThrough, isFinishable
from twisted_streaming._stage import Stage
from twisted_streaming.interfaces import IFinishableConsumer, ProducerStopped

__all__ = ["Source", "pipeline"]

#: What L{pipeline} takes as its source.
Source = Union[Any, Callable[[IConsumer], "Deferred[Any]"]]


@implementer(IFinishableConsumer)
class _Tap(PassThrough):
    """
    The sink, as a source sees it when there are no stages: registration
    goes straight to the sink (so the sink pauses the source itself), writes
    go through counted, and the sink is finished once, by the source or by
    the pipeline.  L{FileSender <twisted_streaming.FileSender>} sends around
    it (C{passThroughTo}) with L{os.sendfile}, and says how much.
    """

    finished = False

    def __repr__(self) -> str:
        return repr(self.passThroughTo)

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            sink = self.passThroughTo
            if isFinishable(sink):
                sink.finish()  # type: ignore[attr-defined]


def pipeline(source: Source, *stages: Stage, sink: IConsumer) -> Deferred[int]:
    """
    Connect C{source} through C{stages} to C{sink} and return one Deferred
    for the whole chain.

    @param source: A L{BasePushProducer <twisted_streaming.BasePushProducer>}
        (anything with C{startProducing(consumer) -> Deferred}), or a callable
        that starts any producer on the consumer it is given and returns its
        Deferred, e.g. C{lambda c: FileSender().beginFileTransfer(f, c)}.
    @param sink: Any consumer: a transport, a
        L{FileConsumer <twisted_streaming.FileConsumer>}, a request.  If it
        is finishable, it is finished once everything has reached it,
        whatever the number of stages and whether or not the source finishes
        its consumer (a pull producer such as C{FileSender} only
        unregisters).
    @return: Fires with the number of bytes delivered to C{sink} (an item
        that is not bytes counts as 1), whatever the source and the stages,
        once everything has reached C{sink}.  Fails with the first error, in
        a L{ContextFailure <twisted_streaming.ContextFailure>} naming where
        it happened and the whole chain, after every producer has been
        stopped and every stage has unregistered: also if C{sink} refuses
        the chain (it already has a producer) or the source cannot start (a
        file that cannot be opened), in which case nothing is left
        registered with C{sink}.  Cancelling it stops the whole chain.
    """
    chain = list(stages)
    # Registered from the sink back, so that a sink that refuses is told
    # first, with nothing else yet done.
    for index in range(len(chain) - 1, -1, -1):
        after: IConsumer = chain[index + 1] if index + 1 < len(chain) else sink
        try:
            chain[index].attach(after)
        except BaseException:
            refused = Failure()
            for stage in chain:
                stage.done.addErrback(lambda f: None)
                stage._abort(FAILED, refused)
            return fail(refused)
    # With no stages, a producer of this package writes straight to the
    # sink: it counts what it writes and finishes the sink itself.  Any other
    # source goes through a tap, which does both for it.
    direct = not chain and isinstance(source, Flow)
    tap = None if chain or direct else _Tap(sink)
    first: IConsumer = chain[0] if chain else (sink if direct else tap)  # type: ignore[assignment]
    outcome: List[Optional[Failure]] = []
    sourceDone: Optional[Deferred[Any]] = None

    def cancel(d: Deferred[int]) -> None:
        stop(Failure(CancelledError()))

    result: Deferred[int] = Deferred(cancel)

    def stop(reason: Failure) -> None:
        if outcome:
            return
        outcome.append(reason)
        if sourceDone is not None and not sourceDone.called:
            sourceDone.cancel()
        state = STOPPED if reason.check(ProducerStopped, CancelledError) else FAILED
        for stage in chain:
            stage._abort(state, reason)
        result.errback(reason)

    def sourceFailed(reason: Failure) -> None:
        if chain and not chain[0].producing:
            # The first stage ended and stopped the source: its own done
            # says why.
            return None
        stop(reason)
        return None

    def sourceFinished(value: Any) -> None:
        if outcome:
            return
        if chain:
            head = chain[0]
            if head.producing and not head._finishing:
                head.finish()
            return
        if direct:
            delivered = cast(Flow, source).bytesWritten
        else:
            assert tap is not None
            try:
                tap.finish()
            except BaseException as error:
                stop(failureWithContext(error, tap, tap.delivered, 0))
                return
            delivered = tap.delivered
        outcome.append(None)
        result.callback(delivered)

    def stageFailed(reason: Failure) -> None:
        stop(reason)

    def lastDone(items: int) -> None:
        if not outcome:
            outcome.append(None)
            result.callback(chain[-1].bytesOut)

    for stage in chain[:-1]:
        stage.done.addErrback(stageFailed)
    if chain:
        chain[-1].done.addCallbacks(lastDone, stageFailed)

    start = getattr(source, "startProducing", source)
    try:
        sourceDone = start(first)
    except BaseException as error:
        stop(failureWithContext(error, source, 0, 0))
        return result
    assert sourceDone is not None
    sourceDone.addCallbacks(sourceFinished, sourceFailed)
    return result
