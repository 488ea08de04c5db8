"""
L{ContextFailure}: a failure that says where in a stream it happened, the
chain of producers and consumers it travelled, and the item that set it off.
"""

from __future__ import annotations

import reprlib
from typing import Any, Callable, List, Optional, Tuple

from twisted.python.failure import Failure

__all__ = ["ContextFailure", "chainOf", "failureWithContext", "tagPathOf"]

#: The most links followed either way when naming a chain; a chain longer
#: than this (or a cycle) is cut short with C{"..."}.
_MAX_LINKS = 32

_itemRepr = reprlib.Repr()
_itemRepr.maxstring = 60
_itemRepr.maxother = 60
_itemRepr.maxlist = _itemRepr.maxtuple = _itemRepr.maxdict = 6


def _upstreamOf(obj: object) -> Any:
    # A stage names its producer "upstream"; a transport, PullToPush and
    # FileConsumer name it "producer".
    return getattr(obj, "upstream", None) or getattr(obj, "producer", None)


def _downstreamOf(obj: object) -> Any:
    return getattr(obj, "consumer", None) or getattr(obj, "downstream", None)


def _links(start: object, seen: set[int], step: Callable[[object], Any]) -> List[str]:
    """
    The reprs of the links from C{start} on, following C{step}, stopping at
    a cycle or after L{_MAX_LINKS}.
    """
    links: List[str] = []
    link = step(start)
    while link is not None:
        if id(link) in seen or len(links) >= _MAX_LINKS:
            links.append("...")
            break
        seen.add(id(link))
        links.append(repr(link))
        link = step(link)
    return links


def tagPathOf(where: object) -> Optional[str]:
    """
    The tag path of the nested stream C{where} is part of: its own
    C{tagPath}, else that of the first link downstream of it that has one
    (a producer writing to a child of an
    L{INestedConsumer <twisted_streaming.INestedConsumer>} reaches the
    child through its C{consumer}); L{None} if there is none.
    """
    link: Any = where
    seen: set[int] = set()
    while link is not None and id(link) not in seen and len(seen) <= _MAX_LINKS:
        seen.add(id(link))
        tagPath = getattr(link, "tagPath", None)
        if isinstance(tagPath, str) and tagPath:
            return tagPath
        link = _downstreamOf(link)
    return None


def chainOf(where: object) -> Tuple[str, ...]:
    """
    The chain C{where} is part of, from its source to its sink, each link
    by C{repr}: followed upstream through C{upstream} or C{producer}
    attributes and downstream through C{consumer} or C{downstream}.
    """
    seen = {id(where)}
    before = _links(where, seen, _upstreamOf)
    after = _links(where, seen, _downstreamOf)
    return (*reversed(before), repr(where), *after)


class ContextFailure(Failure):
    """
    A L{Failure} that also says where in a stream the error happened.

    C{value}, C{type}, C{check} and C{trap} are those of the original error,
    so callers handle it exactly as they would have without the context;
    L{getErrorMessage} and L{getTraceback} add the context, and so does the
    traceback Python prints if the error is raised again (a PEP 678 note).

    @ivar context: A sentence naming the object that failed, how far it had
        got and, if one item set the error off, which, e.g.
        C{"in <Stage 'parse'> after writing 10 bytes in 2 chunks, at item 3
        (byte 12288 of its input): b'{\\"id\\": 7,'"}.
    @ivar source: The producer, stage or consumer in which the error
        happened.
    @ivar bytesWritten: Bytes it had passed on before the error.
    @ivar chunksWritten: Writes (or items) it had passed on before the error.
    @ivar chain: Every producer and consumer the stream went through, from
        its source to its sink, by C{repr}, as they were linked when the
        error happened.
    @ivar itemIndex: The offending item's index (from 0) in what C{source}
        was given (or, for an error writing downstream, in what it passed
        on); L{None} if no one item set the error off.
    @ivar itemOffset: The offending item's offset in bytes in the same
        stream (items that are not bytes count as 1); L{None} likewise.
    @ivar item: A short, truncated C{repr} of the offending item; L{None}
        likewise.
    @ivar tagPath: Where in a hierarchical stream the error happened: the
        tag path of the child of an
        L{INestedConsumer <twisted_streaming.INestedConsumer>} (or of the
        member being read) that C{source} is, or writes to, such as
        C{"archive.tar/photos/2026/img.jpg"}; L{None} outside one.
    """

    context: str
    source: object
    bytesWritten: int
    chunksWritten: int
    chain: Tuple[str, ...] = ()
    itemIndex: Optional[int] = None
    itemOffset: Optional[int] = None
    item: Optional[str] = None
    tagPath: Optional[str] = None

    @property
    def chainText(self) -> str:
        """
        The chain as one line: C{"<Source> -> <Stage 'a'> -> <Sink>"}.
        """
        return " -> ".join(self.chain)

    def getErrorMessage(self) -> str:
        return f"{super().getErrorMessage()} ({self.context}; chain: {self.chainText})"

    def getTraceback(self, *args: Any, **kwargs: Any) -> str:
        return (
            f"{super().getTraceback(*args, **kwargs)}{self.context}\n"
            f"chain: {self.chainText}\n"
        )


def failureWithContext(
    error: BaseException,
    source: object,
    bytesWritten: int,
    chunksWritten: int,
    *,
    item: Any = None,
    itemIndex: Optional[int] = None,
    itemOffset: Optional[int] = None,
    itemOf: str = "its input",
    objects: bool = False,
    tagPath: Optional[str] = None,
) -> ContextFailure:
    """
    Wrap C{error}, which is being handled now, in a L{ContextFailure} that
    names C{source}, how far it had got, the chain it is part of and, if
    C{itemIndex} is given, the offending C{item}, its C{itemIndex} and
    C{itemOffset} in the stream C{itemOf} names.

    Call it where the error is caught, before anything is torn down, so that
    the chain is still linked.

    @param objects: Some of what passed was not bytes: say how many items,
        not how many bytes, went through.
    @param tagPath: Where in a hierarchical stream the error happened; by
        default found by L{tagPathOf}.
    """
    if objects:
        context = f"in {source!r} after writing {chunksWritten} items"
    else:
        context = f"in {source!r} after writing {bytesWritten} bytes in {chunksWritten} chunks"
    shown: Optional[str] = None
    if itemIndex is not None:
        shown = _itemRepr.repr(item)
        context += f", at item {itemIndex} (offset {itemOffset}) of {itemOf}: {shown}"
    if tagPath is None:
        tagPath = tagPathOf(source)
    if tagPath is not None:
        context += f", at tag path {tagPath}"
    failure = ContextFailure(error, type(error), error.__traceback__)
    failure.context = context
    failure.source = source
    failure.bytesWritten = bytesWritten
    failure.chunksWritten = chunksWritten
    failure.chain = chainOf(source)
    failure.itemIndex = itemIndex
    failure.itemOffset = itemOffset
    failure.item = shown
    failure.tagPath = tagPath
    note = f"{context}; chain: {failure.chainText}"
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        notes.append(note)
    else:
        try:
            error.__notes__ = [note]
        except AttributeError:  # pragma: no cover - exotic exception types
            pass
    return failure
