"""
L{TarWriter}: a tar archive written as a stream, member after member, to
any consumer; file bodies go by C{sendfile} to a plain TCP or UNIX
transport.
"""

from __future__ import annotations

import os
import stat
from typing import IO, Any, List, Optional, Tuple, Union, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_streaming._filesender import FileSender
from twisted_streaming._flow import FAILED, STOPPED, Flow
from twisted_streaming._nested import NestedLeaf, NestedNode, NestedWriter
from twisted_streaming._tarheader import (
    END_OF_ARCHIVE,
    RECORD,
    encodeMember,
    padding,
)
from twisted_streaming.interfaces import INestedConsumer, ProducerStopped

__all__ = ["TarDirectory", "TarWriter"]

_log = Logger()

_DEFAULT_MODES = {"directory": 0o755, "symlink": 0o777}


class _Members(NestedNode):
    """
    What the archive and its directories share: starting members below
    them, and adding files and trees from the file system.
    """

    # The names of members started here begin with this.
    _memberPrefix: str = ""

    def startChild(
        self,
        name: str,
        *,
        type: str = "file",
        size: int = 0,
        mtime: float = 0,
        mode: Optional[int] = None,
        linkname: str = "",
        uid: int = 0,
        gid: int = 0,
        uname: str = "",
        gname: str = "",
        **meta: Any,
    ) -> Any:
        """
        Start a member: write its header, and return the consumer of its
        data.

        @param name: Its path below this directory (or the archive): may
            have several parts, C{"sub/dir/file.txt"}, as in any tar.
        @param type: C{"file"}, C{"directory"}, C{"symlink"} or
            C{"hardlink"} (or another key of the tar typeflags:
            C{"fifo"}, C{"chardev"}, C{"blockdev"}).
        @param size: A file's size: its consumer must be given exactly this
            many bytes before it is finished.  Other types have none.
        @param mtime: Seconds since the epoch; a fraction is kept in a PAX
            header.
        @param mode: Permission bits; by default C{0o644} for a file,
            C{0o755} for a directory, C{0o777} for a link.
        @param linkname: A link's target.
        @param meta: Anything else (such as what L{TarReader
            <twisted_streaming.TarReader>} passes on: C{typeflag}, C{pax})
            is ignored.

        @return: For a directory, a L{TarDirectory}, itself an
            L{INestedConsumer} whose members' names start with its own;
            otherwise a consumer of the member's bytes, a pass-through to
            the archive's consumer (so that a C{FileSender} sends to a plain
            TCP or UNIX transport with C{sendfile}).  Either must be
            finished before the next member starts.
        @raise ChildStillOpen: If a member started here has not been
            finished.
        @raise ConsumerFinished: If this has been finished, or the archive
            has failed.
        @raise ValueError: For a bad type, name or size.
        """
        self._checkOpen()
        self._checkNoChild("start a member in")
        root = cast(TarWriter, self._root)
        if type != "file":
            size = 0
        header = encodeMember(
            self._memberPrefix + name,
            type=type,
            size=size,
            mtime=mtime,
            mode=_DEFAULT_MODES.get(type, 0o644) if mode is None else mode,
            linkname=linkname,
            uid=uid,
            gid=gid,
            uname=uname,
            gname=gname,
        )
        child: Union[NestedLeaf, TarDirectory]
        if type == "directory":
            child = TarDirectory(root, self, name)
        else:
            child = NestedLeaf(root, self, name, size)
        root._emit(header, child)
        self._opened(child)
        return child

    def write(self, data: bytes) -> None:
        """
        @raise TypeError: Always: an archive's data is all in its members.
        """
        raise TypeError(
            f"{self!r} takes no data of its own: write to a member from startChild"
        )

    def add(
        self,
        path: Union[str, os.PathLike[str]],
        name: Optional[str] = None,
    ) -> Deferred[int]:
        """
        Add C{path} from the file system, and everything under it if it is
        a directory (sorted by name, each directory before what is in it),
        with sizes, times and modes from C{lstat}.  Symbolic links are added
        as links; sockets, devices and FIFOs are skipped, and logged.

        The members are written by a producer registered with this
        directory (or archive), so the consumer underneath paces it; each
        file's bytes are sent by a L{FileSender <twisted_streaming.FileSender>}
        registered with its member (with C{sendfile}, to a plain TCP or
        UNIX transport).  A file that shrinks while it is sent fails with
        L{MemberSizeError <twisted_streaming.MemberSizeError>}; one that
        grows is cut at its size when it was added.

        @param name: Its name in the archive; by default its base name.
        @return: A L{Deferred} that fires with the number of members added,
            or fails with the first error (in a
            L{ContextFailure <twisted_streaming.ContextFailure>} naming the
            path), in which case the archive is incomplete; with
            L{ProducerStopped <twisted_streaming.ProducerStopped>} if the
            consumer went away.
        """
        path = os.fspath(path)
        if name is None:
            name = os.path.basename(os.path.normpath(path))
        root = cast(TarWriter, self._root)
        walker = _Walker(
            self, path, name, reactor=root._reactor, cooperator=root._cooperator
        )
        return walker.start()


# startChild takes the meta of a tar member by name, which mypy reads as
# narrower than the interface's **meta: Any.
@implementer(INestedConsumer)
class TarDirectory(_Members):  # type: ignore[override]
    """
    A directory member of a L{TarWriter}'s archive: an L{INestedConsumer}
    whose members' names start with the directory's.  Finishing it ends the
    directory (it writes nothing: its header went first).
    """

    def __init__(self, root: TarWriter, parent: NestedNode, tag: str) -> None:
        super().__init__(root, parent, tag)
        assert isinstance(parent, _Members)
        self._memberPrefix = parent._memberPrefix + tag.strip("/") + "/"

    def finish(self) -> None:
        """
        End the directory.

        @raise ChildStillOpen: If a member in it has not been finished.
        @raise ConsumerFinished: If called twice, or the archive failed.
        """
        self._checkOpen()
        self._checkNoChild("finish")
        self.finished = True
        assert self.parent is not None
        self.parent._closed(self)


@implementer(INestedConsumer)
class TarWriter(_Members, NestedWriter):  # type: ignore[override]
    """
    Write a tar archive to C{consumer} as a stream: each member's header
    when it is started, its bytes as they are written to its consumer, and
    the two end-of-archive blocks (padded to a 10 KiB record, as GNU tar
    and Python's C{tarfile} do) on L{finish}.  Nothing is buffered: memory
    stays flat whatever the archive's size.

    Headers are POSIX ustar, preceded by a PAX extended header for a name
    that does not fit (longer than 100 bytes, or 255 with a directory
    prefix), a name, owner or link that is not ASCII, a size of 8 GiB or
    more, or a time with a fraction of a second.  GNU tar and Python's
    C{tarfile} read them exactly.

    Members are started with L{startChild} (a file's consumer must be given
    exactly its C{size}; a directory is a L{TarDirectory}, a nested
    consumer of its own) or added from the file system with L{add}.  A
    member's consumer passes its bytes unchanged to C{consumer}, so a
    C{FileSender} writing to it sends to a plain TCP or UNIX transport with
    C{sendfile}, and any producer registered with it (a C{FileSender}, a
    C{BasePushProducer}, a C{pipeline()}) is paced by C{consumer} directly.

    An error (a member given the wrong number of bytes, a write to
    C{consumer} that raises) is raised to the caller and fails the archive:
    L{whenFinished} fails with it, in a
    L{ContextFailure <twisted_streaming.ContextFailure>} naming the
    member's tag path, and every later call raises
    L{ConsumerFinished <twisted_streaming.ConsumerFinished>}.  A member's
    bytes have already gone: close the connection.

    @ivar bytesWritten: Bytes of the archive written so far.
    @ivar zeroCopyBytes: Bytes of files added with L{add} that were sent
        with C{sendfile}.
    """

    zeroCopyBytes = 0

    def __init__(
        self,
        consumer: IConsumer,
        *,
        name: Optional[str] = None,
        reactor: Optional[IReactorTime] = None,
        cooperator: Optional[Cooperator] = None,
    ) -> None:
        """
        @param consumer: Where the archive goes: a transport, a request, a
            L{FileConsumer <twisted_streaming.FileConsumer>}, a stage.  It
            is finished when the archive is, if it is finishable.
        @param name: The archive's name, the first part of every tag path
            (C{"photos.tar"} in C{"photos.tar/2026/img.jpg"}); by default
            none.
        @param reactor: The reactor whose turn loop L{add} runs on; the
            global reactor if L{None}, looked up when first needed.
        @param cooperator: Run L{add} on this L{Cooperator} instead.
        """
        NestedWriter.__init__(self, consumer, name)
        self._reactor = reactor
        self._cooperator = cooperator

    def _leafFinished(self, leaf: NestedLeaf) -> None:
        if leaf.size % 512:
            self._emit(padding(leaf.size), leaf)

    def _ending(self) -> None:
        end = END_OF_ARCHIVE + bytes(
            -(self.bytesWritten + len(END_OF_ARCHIVE)) % RECORD
        )
        self._emit(end, self)


class _Walker(Flow):
    """
    The producer behind L{_Members.add}: one file-system entry per unit of
    work on the turn loop, waiting for each file's C{FileSender}.
    """

    def __init__(self, node: _Members, path: str, name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._node = node
        self._path = path
        self._name = name
        self.members = 0
        # (member node, the (name, path) entries left in it, last first),
        # innermost last; a node of None is the one add() was called on.
        self._levels: List[Tuple[Any, List[Tuple[str, str]]]] = []
        self._sender: Optional[FileSender] = None
        self._file: Optional[IO[bytes]] = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._path!r} {self._state} at {id(self):#x}>"

    def start(self) -> Deferred[int]:
        self._levels.append((None, [(self._name, self._path)]))
        d = self._start(cast(IConsumer, self._node), True)
        if self.producing:
            self._turns().wake()
        return d

    def _progress(self) -> Tuple[int, int]:
        return self.bytesWritten, self.members

    def _flowPauseChanged(self, paused: bool) -> None:
        if not paused:
            self._turns().wake(now=True)

    def _flowStep(self) -> bool:
        task = self._turns()
        while self.producing and not self.paused and self._sender is None:
            if not self._levels:
                self._finish(self.members, finishConsumer=False)
                return False
            node, entries = self._levels[-1]
            if not entries:
                self._levels.pop()
                if node is not None:
                    node.finish()
                continue
            name, path = entries.pop()
            try:
                self._addEntry(path, name)
            except Exception as error:
                self._failOn(error, path)
                return False
            if task.charge(512):
                return True
        return False

    def _failOn(self, error: Exception, path: str) -> None:
        """
        Fail with C{error}, which adding C{path} raised, in context.
        """
        self._fail(
            error,
            item=path,
            itemIndex=self.members,
            itemOffset=self.bytesWritten,
            itemOf="the tree",
        )

    def _parentNode(self) -> Any:
        for node, _ in reversed(self._levels):
            if node is not None:
                return node
        return self._node

    def _addEntry(self, path: str, name: str) -> None:
        status = os.lstat(path)
        parent = self._parentNode()
        meta = {
            "mtime": int(status.st_mtime),
            "mode": stat.S_IMODE(status.st_mode),
            "uid": status.st_uid,
            "gid": status.st_gid,
        }
        kind = status.st_mode
        if stat.S_ISDIR(kind):
            names = sorted(os.listdir(path), reverse=True)
            node = parent.startChild(name, type="directory", **meta)
            self._count(512)
            self._levels.append((node, [(n, os.path.join(path, n)) for n in names]))
        elif stat.S_ISLNK(kind):
            parent.startChild(
                name, type="symlink", linkname=os.readlink(path), **meta
            ).finish()
            self._count(512)
        elif stat.S_ISREG(kind):
            self._sendFile(parent, path, name, meta)
        else:
            _log.info(
                "Skipping {path}: neither a file, a directory nor a link", path=path
            )

    def _count(self, size: int) -> None:
        self.members += 1
        self.bytesWritten += size

    def _sendFile(self, parent: Any, path: str, name: str, meta: Any) -> None:
        file = open(path, "rb")
        try:
            size = os.fstat(file.fileno()).st_size
            child = parent.startChild(name, size=size, **meta)
        except BaseException:
            file.close()
            raise
        self._file = file
        sender = self._sender = FileSender(
            reactor=self._reactor, cooperator=self._cooperator
        )
        sent = sender.beginFileTransfer(file, child, length=size)
        sent.addCallbacks(
            self._sent,
            self._notSent,
            callbackArgs=(child, sender, size, path),
            errbackArgs=(child, sender),
        )

    def _release(self, sender: FileSender) -> None:
        self._sender = None
        root = cast(TarWriter, self._node._root)
        root.zeroCopyBytes += sender.zeroCopyBytes
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def _sent(
        self, _: bytes, child: Any, sender: FileSender, size: int, path: str
    ) -> None:
        self._release(sender)
        if not self.producing:
            return
        try:
            child.finish()
        except Exception as error:
            self._failOn(error, path)
            return
        self._count(512 + size + len(padding(size)))
        self._turns().wake()

    def _notSent(
        self, reason: Failure, child: Any, sender: FileSender, *args: Any
    ) -> None:
        self._release(sender)
        self._abort(STOPPED if reason.check(ProducerStopped) else FAILED, reason)

    def _flowEnded(self, reason: Optional[Failure]) -> None:
        sender = self._sender
        if sender is not None:
            sender.stopProducing()
