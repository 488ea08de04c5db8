"""
L{ExtractDirectory}: a nested consumer that writes the files and
directories it is given under a directory, refusing any path that would
land outside it.
"""

from __future__ import annotations

import os
import stat
from typing import Any, List, Optional, Set, Tuple, Union

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._fileconsumer import FileConsumer
from twisted_streaming._flow import Completion
from twisted_streaming.interfaces import (
    ChildStillOpen,
    ConsumerFinished,
    IFinishableConsumer,
    INestedConsumer,
    ProducerStateError,
    UnsafePath,
)

__all__ = ["ExtractDirectory", "safeParts"]

_log = Logger()

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def safeParts(name: str) -> List[str]:
    """
    The parts of C{name}, a relative path with C{/} between its parts,
    without empty and C{.} parts.

    @raise UnsafePath: If C{name} is absolute, has a C{..} part or a NUL.
    """
    if name.startswith("/"):
        raise UnsafePath(f"{name!r} is an absolute path")
    if "\0" in name:
        raise UnsafePath(f"{name!r} contains a NUL")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"{name!r} has a '..' part")
    return parts


class _NoData:
    """
    A consumer with no data to wait for: a producer that registers is
    never paused (a pull producer is asked once).
    """

    producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        @raise ProducerStateError: If a producer is registered already.
        """
        if self.producer is not None:
            raise ProducerStateError(f"{self!r} has a producer: {self.producer!r}")
        self.producer = producer
        if not streaming:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None


@implementer(IFinishableConsumer)
class _Discard(_NoData):
    """
    The consumer of a member that is not extracted: a link (made when it
    starts), or a device or FIFO (skipped); any bytes it is given are
    dropped.
    """

    def __init__(self, parent: ExtractDirectory, tagPath: str) -> None:
        self._parent = parent
        self.tagPath = tagPath

    def write(self, data: bytes) -> None:
        pass

    def finish(self) -> None:
        self._parent._closed(self)


@implementer(IFinishableConsumer)
class _ExtractedFile:
    """
    The consumer of one file: a L{FileConsumer} on a file created for it,
    whose mode and time are set once its bytes are on disk.
    """

    def __init__(
        self,
        parent: ExtractDirectory,
        tagPath: str,
        path: str,
        file: Any,
        mode: int,
        mtime: Optional[float],
    ) -> None:
        self._parent = parent
        self.tagPath = tagPath
        self.path = path
        self._mode = mode
        self._mtime = mtime
        root = parent._root
        self.consumer = FileConsumer(
            file, reactor=root._reactor, cooperator=root._cooperator
        )
        self.finished = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.tagPath!r}>"

    @property
    def producer(self) -> Any:
        return self.consumer.producer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.consumer.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.consumer.unregisterProducer()

    def write(self, data: bytes) -> None:
        self.consumer.write(data)

    def finish(self) -> None:
        """
        The file is complete: write it out, then set its mode and time.

        @raise ConsumerFinished: If called twice.
        """
        if self.finished:
            raise ConsumerFinished(f"{self!r} has already been finished")
        self.finished = True
        self.consumer.finish()
        written = self.consumer.whenFinished()
        written.addBoth(self._written)
        self._parent._root._track(written)
        self._parent._closed(self)

    def _written(self, result: Any) -> Any:
        self.consumer.file.close()
        if isinstance(result, Failure):
            return result
        os.chmod(self.path, self._mode)
        if self._mtime is not None:
            os.utime(self.path, (self._mtime, self._mtime))
        return result


@implementer(INestedConsumer)
class ExtractDirectory(_NoData):
    """
    Extract what it is given into a directory: the handler of a
    L{TarReader <twisted_streaming.TarReader>} that extracts an archive
    (C{TarReader(ExtractDirectory(path))}), and an L{INestedConsumer} of
    its own.

    C{startChild(name, type=..., mode=..., mtime=..., linkname=...)}
    (what L{TarReader} passes) creates, under the directory:

      - a file (C{type="file"}, the default): a new file, written by a
        L{FileConsumer <twisted_streaming.FileConsumer>} (with its
        backpressure), whose mode (without set-id and sticky bits) and
        time are set once its bytes are on disk; a file or link of the
        same name is replaced;
      - a directory: created if missing, and returned as an
        C{ExtractDirectory} of its own for names below it; its mode and
        time are set when the root is finished, after everything in it;
      - a symbolic link whose target stays inside the directory, or a hard
        link to a member already extracted;
      - nothing for FIFOs and devices, which are skipped and logged.

    Missing parent directories are created.  Nothing is ever written
    outside the directory: a name that is absolute or has a C{..} part, a
    path through a symbolic link (one the archive made, or one that was
    there), or a link whose target is absolute or climbs out, raises
    L{UnsafePath <twisted_streaming.UnsafePath>} from C{startChild}, which
    fails the L{TarReader} naming the member and its offset.

    L{whenFinished} fires once the root is finished and every file is on
    disk.  If the reader fails, it calls L{abort}: the file being written is
    finished (it stays, cut short) and L{whenFinished} fails.

    @ivar path: The directory.
    @ivar tagPath: Its name, the first part of its children's tag paths.
    @ivar extracted: Members extracted so far (below the root).
    """

    extracted = 0

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        *,
        name: Optional[str] = None,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
        _root: Optional[ExtractDirectory] = None,
        _parent: Optional[ExtractDirectory] = None,
    ) -> None:
        """
        @param path: The directory, created if missing.
        @param name: Its name in tag paths; by default its path.
        @param reactor: The reactor whose turn loop writes the files; the
            global reactor if L{None}.
        @param cooperator: Write on this L{Cooperator} instead.
        """
        self.path = os.fspath(path)
        self.tagPath = name if name is not None else self.path
        self._root: ExtractDirectory = _root if _root is not None else self
        self._parent = _parent
        self._reactor = reactor
        self._cooperator = cooperator
        self._child: Optional[Any] = None
        self.finished = False
        if _root is None:
            os.makedirs(self.path, exist_ok=True)
            self._pending: Set[Deferred[Any]] = set()
            # (path, mode, mtime) of every directory, set at the end.
            self._directories: List[Tuple[str, int, Optional[float]]] = []
            self._completion: Completion[Any] = Completion()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r}>"

    # INestedConsumer

    def startChild(
        self,
        name: str,
        /,
        *,
        type: str = "file",
        mode: Optional[int] = None,
        mtime: Optional[float] = None,
        linkname: str = "",
        **meta: Any,
    ) -> Any:
        """
        Create C{name} below this directory; see the class.

        @raise UnsafePath: If it would land outside the directory.
        @raise ChildStillOpen: If the last child has not been finished.
        @raise ConsumerFinished: If this has been finished.
        @raise OSError: If it cannot be created.
        """
        if self.finished or self._root._completion.done:
            raise ConsumerFinished(f"{self!r} has already been finished")
        if self._child is not None:
            raise ChildStillOpen(
                f"Cannot start {name!r} in {self!r}: {self._child.tagPath!r} "
                "has not been finished"
            )
        parts = safeParts(name)
        tagPath = f"{self.tagPath}/{name}"
        parent = self._parentOf(parts, name)
        path = os.path.join(parent, parts[-1]) if parts else self.path
        child: Any
        if type == "directory":
            self._makeDirectory(path)
            self._root._directories.append(
                (path, 0o755 if mode is None else mode & 0o777, mtime)
            )
            child = ExtractDirectory(path, name=tagPath, _root=self._root, _parent=self)
        elif not parts:
            raise UnsafePath(f"{name!r} names the directory itself, not a file")
        elif type == "file":
            self._replace(path)
            fd = os.open(path, _NEW_FILE, 0o600)
            file = os.fdopen(fd, "wb")
            child = _ExtractedFile(
                self,
                tagPath,
                path,
                file,
                0o644 if mode is None else mode & 0o777,
                mtime,
            )
        else:
            if type == "symlink":
                self._symlink(path, parts, linkname, name)
                if mtime is not None and os.utime in os.supports_follow_symlinks:
                    os.utime(path, (mtime, mtime), follow_symlinks=False)
            elif type == "hardlink":
                target = os.path.join(self._root.path, *safeParts(linkname))
                self._root._parentOf(safeParts(linkname), linkname)
                self._replace(path)
                os.link(target, path, follow_symlinks=False)
            else:
                _log.info("Skipping {name!r}: a {type}", name=name, type=type)
            child = _Discard(self, tagPath)
        self._child = child
        self._root.extracted += 1
        return child

    def write(self, data: bytes) -> None:
        """
        @raise TypeError: Always: the directory's data is in its children.
        """
        raise TypeError(f"{self!r} takes no data of its own")

    def finish(self) -> None:
        """
        Nothing more goes in this directory; for the root, once every file
        is on disk, set the directories' modes and times and fire
        L{whenFinished}.

        @raise ChildStillOpen: If a child has not been finished.
        @raise ConsumerFinished: If called twice.
        """
        if self.finished:
            raise ConsumerFinished(f"{self!r} has already been finished")
        if self._child is not None:
            raise ChildStillOpen(
                f"Cannot finish {self!r}: {self._child.tagPath!r} has not been finished"
            )
        self.finished = True
        if self._parent is not None:
            self._parent._closed(self)
            return
        written = DeferredList(
            list(self._pending), fireOnOneErrback=True, consumeErrors=True
        )
        written.addCallbacks(self._allWritten, self._writeFailed)

    def whenFinished(self) -> Deferred[int]:
        """
        @return: A L{Deferred} that fires with the number of members
            extracted once the root has been finished and everything is on
            disk, or fails with the first error writing a file, or with the
            reason given to L{abort}.
        """
        return self._root._completion.whenDone()

    def abort(self, reason: Failure) -> None:
        """
        Reading failed: finish the file being written (it stays, cut
        short) and fail L{whenFinished} with C{reason}.
        """
        root = self._root
        node: Any = root
        while node is not None:
            child = node._child
            if isinstance(child, _ExtractedFile) and not child.finished:
                child.finish()
            node = child if isinstance(child, ExtractDirectory) else None
        root._completion.fire(reason)

    # Internals

    def _closed(self, child: Any) -> None:
        if self._child is child:
            self._child = None

    def _track(self, written: Deferred[Any]) -> None:
        self._pending.add(written)
        written.addBoth(self._untrack, written)

    def _untrack(self, result: Any, written: Deferred[Any]) -> Any:
        self._pending.discard(written)
        return result

    def _allWritten(self, _: Any) -> None:
        try:
            for path, mode, mtime in reversed(self._directories):
                os.chmod(path, mode)
                if mtime is not None:
                    os.utime(path, (mtime, mtime))
        except OSError:
            self._completion.fire(Failure())
            return
        self._completion.fire(self.extracted)

    def _writeFailed(self, reason: Failure) -> None:
        self._completion.fire(reason.value.subFailure)  # type: ignore[union-attr]

    def _parentOf(self, parts: List[str], name: str) -> str:
        """
        The directory C{parts[-1]} goes in, below this one, its missing
        parents created.

        @raise UnsafePath: If the way there goes through a symbolic link.
        """
        directory = self.path
        for part in parts[:-1]:
            directory = os.path.join(directory, part)
            self._makeDirectory(directory, name)
        return directory

    def _makeDirectory(self, path: str, name: Optional[str] = None) -> None:
        try:
            status = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o700)
            return
        if stat.S_ISLNK(status.st_mode):
            raise UnsafePath(
                f"{name or path!r} goes through the symbolic link {path!r}"
            )
        if not stat.S_ISDIR(status.st_mode):
            raise NotADirectoryError(f"{path!r} exists and is not a directory")

    def _replace(self, path: str) -> None:
        """
        Remove a file or link at C{path}, as tar does before extracting a
        member of that name.
        """
        try:
            status = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(f"{path!r} is a directory")
        os.unlink(path)

    def _symlink(self, path: str, parts: List[str], linkname: str, name: str) -> None:
        """
        Make a symbolic link to C{linkname}, if it stays inside the root.
        """
        if not linkname or linkname.startswith("/"):
            raise UnsafePath(f"{name!r} links to {linkname!r}, outside the directory")
        below = os.path.relpath(self.path, self._root.path)
        depth = [] if below == "." else below.split(os.sep)
        resolved = os.path.normpath(os.path.join(*depth, *parts[:-1], linkname))
        if resolved == ".." or resolved.startswith("../") or resolved.startswith("/"):
            raise UnsafePath(f"{name!r} links to {linkname!r}, outside the directory")
        self._replace(path)
        os.symlink(linkname, path)
