"""
Small helpers shared by the producers, consumers and stages of this package.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from twisted.internet.interfaces import IConsumer
from twisted.python.failure import Failure

from twisted_streaming.interfaces import IFinishableConsumer


def getReactor(reactor: Optional[Any]) -> Any:
    """
    Return C{reactor}, or the global reactor if it is L{None}.

    The global reactor is imported here, lazily, so that importing this
    package never installs a reactor.
    """
    if reactor is not None:
        return reactor
    from twisted.internet import reactor as globalReactor

    return globalReactor


def isFinishable(consumer: IConsumer) -> bool:
    """
    Does C{consumer} take an end of stream through C{finish()}?

    True for providers of L{IFinishableConsumer}, and of
    C{twisted.protocols.ftp.IFinishableConsumer} when that module has been
    imported (it imports the global reactor, so it is never imported here).
    """
    if IFinishableConsumer.providedBy(consumer):
        return True
    ftp = sys.modules.get("twisted.protocols.ftp")
    return ftp is not None and bool(ftp.IFinishableConsumer.providedBy(consumer))


class ContextFailure(Failure):
    """
    A L{Failure} that also says where in a stream the error happened.

    C{value}, C{type}, C{check} and C{trap} are those of the original error,
    so callers handle it exactly as they would have without the context;
    L{getErrorMessage} and L{getTraceback} add the context, and so does the
    traceback Python prints if the error is raised again (a PEP 678 note).

    @ivar context: A sentence naming the object that failed and how far it
        had got, e.g. C{"in <Foo> after writing 10 bytes in 2 chunks"}.
    @ivar source: The producer or stage in which the error happened.
    @ivar bytesWritten: Bytes it had passed on before the error.
    @ivar chunksWritten: Writes (or items) it had passed on before the error.
    """

    context: str
    source: object
    bytesWritten: int
    chunksWritten: int

    def getErrorMessage(self) -> str:
        return f"{super().getErrorMessage()} ({self.context})"

    def getTraceback(self, *args: Any, **kwargs: Any) -> str:
        return f"{super().getTraceback(*args, **kwargs)}{self.context}\n"


def failureWithContext(
    error: BaseException, source: object, bytesWritten: int, chunksWritten: int
) -> ContextFailure:
    """
    Wrap C{error}, which is being handled now, in a L{ContextFailure} that
    names C{source} and how many bytes and chunks had passed through it.
    """
    context = (
        f"in {source!r} after writing {bytesWritten} bytes in {chunksWritten} chunks"
    )
    failure = ContextFailure(error, type(error), error.__traceback__)
    failure.context = context
    failure.source = source
    failure.bytesWritten = bytesWritten
    failure.chunksWritten = chunksWritten
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        notes.append(context)
    else:
        try:
            error.__notes__ = [context]
        except AttributeError:  # pragma: no cover - exotic exception types
            pass
    return failure
