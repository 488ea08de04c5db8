"""
Tests for L{TarReader} and L{ExtractDirectory}: archives written by GNU tar
and Python's C{tarfile} read exactly, errors that name the member and the
offset, extraction that never leaves its directory, backpressure, and the
nested conformance suites.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_streaming import (
    ChildStillOpen,
    ContextFailure,
    ExtractDirectory,
    FileSender,
    INestedConsumer,
    TarFormatError,
    TarReader,
    TarWriter,
    UnsafePath,
    pipeline,
)
from twisted_streaming._tarheader import BLOCK, encodeMember
from twisted_streaming.test._extras import skipGNUTar
from twisted_streaming.test.test_tarwriter import (
    TREE,
    flatten,
    members,
    writeTree,
)
from twisted_streaming.testing import (
    BackpressureConsumer,
    NestedConsumerConformanceMixin,
    NestedReaderConformanceMixin,
    RecordingPushProducer,
    loopbackReceive,
)

reactor: Any = _globalReactor


def tarOf(children: List[Tuple[str, bytes]], format: int = tarfile.GNU_FORMAT) -> bytes:
    """
    An archive of C{children}, files with those names and bytes, written by
    Python's C{tarfile}.
    """
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=format) as tar:
        for name, data in children:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Recorder:
    """
    A handler that keeps every member's meta and bytes.
    """

    def __init__(self) -> None:
        self.members: Dict[str, Dict[str, Any]] = {}
        self.finished = False

    def startChild(self, name: str, **meta: Any) -> Any:
        consumer = BackpressureConsumer(threshold=2**62)
        self.members[name] = dict(meta, consumer=consumer)
        return consumer

    def data(self, name: str) -> bytes:
        return self.members[name]["consumer"].received

    def finish(self) -> None:
        self.finished = True


def readAll(
    archive: bytes, handler: Any, chunk: int = 1000, **kwargs: Any
) -> Deferred[int]:
    """
    Write C{archive} to a new L{TarReader} in chunks, then finish it.
    """
    reader = TarReader(handler, reactor=Clock(), **kwargs)
    done = reader.whenFinished()
    for start in range(0, len(archive), chunk):
        reader.write(archive[start : start + chunk])
    reader.finish()
    return done


class TarReaderTests(SynchronousTestCase):
    """
    L{TarReader} over archives in memory.
    """

    def test_tarfileFormats(self) -> None:
        """
        Archives from Python's C{tarfile} in GNU, PAX and ustar format are
        read exactly, long and non-ASCII names included, whatever the size
        of the writes.
        """
        children = [
            ("a.txt", b"abc"),
            ("empty", b""),
            ("d/" + "n" * 120, os.urandom(5000)),
        ]
        for format in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
            for chunk in (1, 511, 512, 513, 100000):
                recorder = Recorder()
                done = readAll(
                    tarOf([*children, ("é.txt", b"e")], format), recorder, chunk
                )
                self.assertEqual(self.successResultOf(done), 4)
                self.assertEqual(
                    {n: recorder.data(n) for n in recorder.members},
                    dict([*children, ("é.txt", b"e")]),
                )
                self.assertTrue(recorder.finished)
        recorder = Recorder()
        self.successResultOf(
            readAll(tarOf(children[:2], tarfile.USTAR_FORMAT), recorder)
        )
        self.assertEqual(list(recorder.members), ["a.txt", "empty"])

    def test_meta(self) -> None:
        """
        The handler gets each member's type, size, mode, time, owner and
        link target, with PAX values (a time with a fraction, a global
        header) applied.
        """
        out = io.BytesIO()
        with tarfile.open(
            fileobj=out,
            mode="w",
            format=tarfile.PAX_FORMAT,
            pax_headers={"comment": "global"},
        ) as tar:
            info = tarfile.TarInfo("dir")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o750, 1600000000
            tar.addfile(info)
            info = tarfile.TarInfo("dir/f")
            info.size, info.mode, info.mtime, info.uid, info.uname = (
                2,
                0o600,
                1600000000.25,
                1000,
                "üser",
            )
            tar.addfile(info, io.BytesIO(b"hi"))
            info = tarfile.TarInfo("link")
            info.type, info.linkname = tarfile.SYMTYPE, "dir/f"
            tar.addfile(info)
        recorder = Recorder()
        self.successResultOf(readAll(out.getvalue(), recorder))
        d, f, link = (recorder.members[n] for n in ["dir", "dir/f", "link"])
        self.assertEqual(
            (d["type"], d["mode"], d["mtime"], d["size"]),
            ("directory", 0o750, 1600000000, 0),
        )
        self.assertEqual(
            (f["type"], f["mode"], f["mtime"], f["uid"], f["uname"], f["size"]),
            ("file", 0o600, 1600000000.25, 1000, "üser", 2),
        )
        self.assertEqual(f["pax"]["comment"], "global")
        self.assertEqual((link["type"], link["linkname"]), ("symlink", "dir/f"))
        self.assertEqual(link["typeflag"], "2")

    def test_base256Size(self) -> None:
        """
        A size in GNU tar's base-256 (its encoding of sizes over 8 GiB) is
        read.
        """
        header = bytearray(encodeMember("f", size=0))
        header[124:136] = b"\x80" + (5).to_bytes(11, "big")
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % (sum(header),)
        recorder = Recorder()
        archive = bytes(header) + b"hello" + bytes(BLOCK - 5) + bytes(2 * BLOCK)
        self.successResultOf(readAll(archive, recorder))
        self.assertEqual(recorder.data("f"), b"hello")

    def test_endBlocksAndAfter(self) -> None:
        """
        The archive ends at its first zero block: what follows is read and
        ignored; an archive with no end blocks ends between members.
        """
        archive = tarOf([("a", b"1")])
        recorder = Recorder()
        self.successResultOf(readAll(archive + b"junk" * 1000, recorder))
        self.assertEqual(list(recorder.members), ["a"])
        recorder = Recorder()
        self.successResultOf(readAll(archive[: 2 * BLOCK], recorder))
        self.assertEqual(recorder.data("a"), b"1")

    def test_corruptHeader(self) -> None:
        """
        A header with a wrong checksum fails with L{TarFormatError} naming
        the member before it and the header's offset, in a
        L{ContextFailure}.
        """
        archive = bytearray(tarOf([("first", b"x" * 600), ("second", b"y")]))
        archive[3 * BLOCK + 10] ^= 0xFF
        failure = self.failureResultOf(
            readAll(bytes(archive), Recorder()), TarFormatError
        )
        self.assertEqual(
            (failure.value.member, failure.value.offset), ("first", 3 * BLOCK)
        )
        self.assertIn("checksum", str(failure.value))
        self.assertIsInstance(failure, ContextFailure)
        self.assertIn("offset 1536", failure.getErrorMessage())

    def test_truncated(self) -> None:
        """
        An archive cut inside a member's data, or inside a header, fails
        naming the member and the offset; the handler is not finished.
        """
        archive = tarOf(
            [("first", b"x" * 600), ("second", b"y" * 100)], tarfile.USTAR_FORMAT
        )
        recorder = Recorder()
        failure = self.failureResultOf(
            readAll(archive[: 4 * BLOCK + 50], recorder, name="t.tar")
        )
        self.assertEqual(
            (failure.value.member, failure.value.offset), ("second", 4 * BLOCK + 50)
        )
        self.assertEqual(failure.tagPath, "t.tar/second")
        self.assertFalse(recorder.finished)
        failure = self.failureResultOf(readAll(archive[: 3 * BLOCK + 100], Recorder()))
        self.assertIn("inside a header", str(failure.value))
        self.assertEqual(failure.value.member, "first")

    def test_corruptExtendedHeaders(self) -> None:
        """
        A PAX record that is malformed, or an extended header too large to
        be one, fails naming the offset.
        """
        records = b"9 path=a\n" + b"x"
        archive = encodeMember("p", size=len(records))
        header = bytearray(archive)
        header[156:157] = b"x"
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % (sum(header),)
        corrupt = (
            bytes(header) + records + bytes(BLOCK - len(records)) + encodeMember("f")
        )
        self.failureResultOf(readAll(corrupt, Recorder()), TarFormatError)
        header[124:136] = b"%011o\0" % (2 * 1024 * 1024,)
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % (sum(header),)
        failure = self.failureResultOf(
            readAll(bytes(header), Recorder()), TarFormatError
        )
        self.assertIn("extended header", str(failure.value))

    def test_handlerErrors(self) -> None:
        """
        A handler that raises from C{startChild} fails the reader with its
        error, naming the member; its C{abort} is called.
        """

        class Refusing(Recorder):
            reason: Optional[Failure] = None

            def startChild(self, name: str, **meta: Any) -> Any:
                if name == "second":
                    raise PermissionError("no")
                return super().startChild(name, **meta)

            def abort(self, reason: Failure) -> None:
                self.reason = reason

        handler = Refusing()
        failure = self.failureResultOf(
            readAll(tarOf([("first", b"1"), ("second", b"2")]), handler, name="r")
        )
        self.assertEqual(failure.tagPath, "r/second")
        self.assertIs(handler.reason, failure)

    def test_backpressurePausesInput(self) -> None:
        """
        A member's consumer that is behind pauses the producer of the
        archive; it is resumed once the consumer catches up.
        """
        consumer = BackpressureConsumer(threshold=1000)

        class One:
            def startChild(self, name: str, **meta: Any) -> Any:
                return consumer

        reader = TarReader(One(), reactor=Clock())
        producer = RecordingPushProducer()
        reader.registerProducer(producer, True)
        archive = tarOf([("big", b"z" * 5000)])
        reader.write(archive[:4000])
        self.assertEqual(producer.calls, [("pause",)])
        self.assertEqual(len(consumer.received), 4000 - BLOCK)
        consumer.drain()
        self.assertEqual(producer.calls, [("pause",), ("resume",)])
        reader.write(archive[4000:])
        consumer.drain()
        self.assertEqual(consumer.received, b"z" * 5000)

    def test_copiesIntoTarWriter(self) -> None:
        """
        A L{TarWriter} is a handler: it writes a copy of the archive.
        """
        source = io.BytesIO()
        writeTree(TarWriter(_Collect(source)), TREE)
        out = _Collect(io.BytesIO())
        writer = TarWriter(out)
        self.successResultOf(
            readAll(source.getvalue() + bytes(1024), writer, chunk=4096)
        )
        self.assertEqual(
            members(out.file.getvalue()), members(source.getvalue() + bytes(1024))
        )


@implementer(IConsumer)
class _Collect:
    """
    A consumer that writes into a file object.
    """

    producer: Any = None

    def __init__(self, file: io.BytesIO) -> None:
        self.file = file

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        if not streaming:
            while self.producer is not None:
                producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.file.write(data)


class TarReaderConformanceTests(NestedReaderConformanceMixin, SynchronousTestCase):
    """
    L{TarReader} keeps the reader contract.
    """

    def makeReader(self, handler: Any, clock: Clock) -> Any:
        return TarReader(handler, name="conformance.tar", reactor=clock)

    def encode(self, children: List[Tuple[str, bytes]]) -> bytes:
        return tarOf(children)

    def completion(self, reader: Any) -> Deferred[int]:
        return reader.whenFinished()


def tree(path: str) -> Dict[str, Tuple[str, int, int, bytes]]:
    """
    Everything under C{path}: kind, mode, mtime and bytes (or link target).
    """
    found = {}
    for directory, names, files in os.walk(path):
        for name in names + files:
            full = os.path.join(directory, name)
            status = os.lstat(full)
            relative = os.path.relpath(full, path)
            if stat.S_ISLNK(status.st_mode):
                found[relative] = ("link", 0, 0, os.readlink(full).encode())
            elif stat.S_ISDIR(status.st_mode):
                found[relative] = (
                    "dir",
                    stat.S_IMODE(status.st_mode),
                    int(status.st_mtime),
                    b"",
                )
            else:
                with open(full, "rb") as f:
                    found[relative] = (
                        "file",
                        stat.S_IMODE(status.st_mode),
                        int(status.st_mtime),
                        f.read(),
                    )
    return found


class ExtractDirectoryTests(SynchronousTestCase):
    """
    L{ExtractDirectory} as L{TarReader}'s handler.
    """

    def setUp(self) -> None:
        self.target = os.path.abspath(self.mktemp())
        self.clock = Clock()
        self.extract = ExtractDirectory(self.target, name="x", reactor=self.clock)

    def extractArchive(self, archive: bytes) -> Deferred[int]:
        reader = TarReader(self.extract, name="a.tar", reactor=self.clock)
        done = reader.whenFinished()
        reader.write(archive)
        reader.finish()
        self.clock.advance(1)
        return done

    def test_interface(self) -> None:
        """
        It is an L{INestedConsumer}, and so are its directories.
        """
        verifyObject(INestedConsumer, self.extract)
        verifyObject(INestedConsumer, self.extract.startChild("d", type="directory"))

    def test_extractsTree(self) -> None:
        """
        Files (with their bytes, modes and times), directories (with theirs,
        set at the end) and links are created.
        """
        source = io.BytesIO()
        writer = TarWriter(_Collect(source))
        writeTree(writer, TREE)
        writer.startChild("dir/link", type="symlink", linkname="sub/deep.txt").finish()
        writer.startChild("hard", type="hardlink", linkname="hello.txt").finish()
        writer.finish()
        done = self.extract.whenFinished()
        self.successResultOf(self.extractArchive(source.getvalue()))
        self.assertEqual(self.successResultOf(done), len(flatten(TREE)) + 2)
        found = tree(self.target)
        for path, (content, mtime) in flatten(TREE).items():
            if content is None:
                self.assertEqual(found[path][:3], ("dir", 0o750, mtime), path)
            else:
                self.assertEqual(found[path], ("file", 0o640, mtime, content), path)
        self.assertEqual(found["dir/link"][3], b"sub/deep.txt")
        self.assertEqual(
            os.stat(os.path.join(self.target, "hard")).st_ino,
            os.stat(os.path.join(self.target, "hello.txt")).st_ino,
        )

    def test_refusesEscapes(self) -> None:
        """
        Absolute names, C{..} parts, links pointing outside, and paths
        through a link are refused with L{UnsafePath}, naming the member;
        nothing is written outside the directory.
        """
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        for name, kwargs in [
            ("/etc/evil", {}),
            ("../evil", {}),
            ("a/../../evil", {}),
            ("up", {"type": "symlink", "linkname": "../" + os.path.basename(outside)}),
            ("abs", {"type": "symlink", "linkname": outside}),
            ("deep/up", {"type": "symlink", "linkname": "../../x"}),
        ]:
            target = os.path.abspath(self.mktemp())
            extract = ExtractDirectory(target, reactor=self.clock)
            self.assertRaises(UnsafePath, extract.startChild, name, **kwargs)
        # A link inside is fine, but nothing goes through it.
        os.symlink(outside, os.path.join(self.target, "out"))
        self.assertRaises(UnsafePath, self.extract.startChild, "out/evil")
        self.extract.startChild("in", type="symlink", linkname="sub/../x").finish()
        self.assertEqual(os.listdir(outside), [])

    def test_unsafeMemberFailsReader(self) -> None:
        """
        Through a L{TarReader}, an unsafe member fails the extraction with
        L{UnsafePath}, naming the member and its tag path.
        """
        archive = tarOf([("ok", b"1"), ("../escape", b"2")])
        failure = self.failureResultOf(self.extractArchive(archive), UnsafePath)
        self.assertEqual(failure.tagPath, "a.tar/../escape")
        self.assertIn("offset", failure.getErrorMessage())
        self.failureResultOf(self.extract.whenFinished(), UnsafePath)
        self.assertFalse(os.path.exists(os.path.join(self.target, "..", "escape")))

    def test_replacesFiles(self) -> None:
        """
        A file or link of a member's name is replaced, not written through.
        """
        outside = os.path.abspath(self.mktemp())
        with open(outside, "wb") as f:
            f.write(b"keep")
        os.symlink(outside, os.path.join(self.target, "f"))
        self.successResultOf(self.extractArchive(tarOf([("f", b"new")])))
        with open(outside, "rb") as f:
            self.assertEqual(f.read(), b"keep")
        self.assertEqual(tree(self.target)["f"][3], b"new")

    def test_oneChildAtATime(self) -> None:
        """
        A second child while one is open raises L{ChildStillOpen}.
        """
        self.extract.startChild("a")
        self.assertRaises(ChildStillOpen, self.extract.startChild, "b")
        self.assertRaises(ChildStillOpen, self.extract.finish)
        self.assertRaises(TypeError, self.extract.write, b"x")


class ExtractDirectoryConformanceTests(
    NestedConsumerConformanceMixin, SynchronousTestCase
):
    """
    L{ExtractDirectory} keeps the nested consumer contract.
    """

    def makeNested(self, clock: Clock) -> Any:
        return ExtractDirectory(os.path.abspath(self.mktemp()), name="x", reactor=clock)

    def leafMeta(self, tag: str, size: int) -> Dict[str, Any]:
        return {}

    def nestedMeta(self, tag: str) -> Dict[str, Any]:
        return {"type": "directory"}

    def completion(self, nested: Any) -> Deferred[int]:
        return nested.whenFinished()

    def received(self, nested: Any) -> Dict[str, bytes]:
        return {path: found[3] for path, found in tree(nested.path).items()}


def gnuTree(testCase: SynchronousTestCase) -> str:
    """
    A tree for GNU tar to archive: files big and empty, long and non-ASCII
    names, nested directories, modes, times and a link.
    """
    root = os.path.abspath(testCase.mktemp())
    for path, content in flatten(TREE).items():
        full = os.path.join(root, path)
        if content[0] is None:
            os.makedirs(full, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(content[0])
            os.chmod(full, 0o640)
            os.utime(full, (content[1], content[1]))
    with open(os.path.join(root, "dir", "big.bin"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 7))
    os.symlink("sub/deep.txt", os.path.join(root, "dir", "link"))
    for path, content in flatten(TREE).items():
        if content[0] is None:
            os.utime(os.path.join(root, path), (content[1], content[1]))
    return root


class GNUTarReadTests(TestCase):
    """
    Archives written by GNU tar are read exactly by L{TarReader}.
    """

    skip = skipGNUTar

    def gnuArchive(self, root: str, *options: str) -> str:
        path = os.path.abspath(self.mktemp()) + ".tar"
        subprocess.run(["tar", *options, "-cf", path, "-C", root, "."], check=True)
        return path

    async def readWithReader(self, archive: str, handler: Any) -> int:
        reader = TarReader(handler, name=os.path.basename(archive))
        await pipeline(
            lambda c: FileSender().beginFileTransfer(archive, c), sink=reader
        )
        result: int = await reader.whenFinished()
        return result

    async def test_gnuAndPosixFormats(self) -> None:
        """
        GNU tar's own format (long names as C{././@LongLink}) and its POSIX
        format (PAX) are read exactly: every member's name, type, size,
        mode, time and bytes, and an extraction matches the tree.
        """
        root = gnuTree(self)
        expected = tree(root)
        for options in [(), ("--format=posix",)]:
            archive = self.gnuArchive(root, *options)
            recorder = Recorder()
            count = await self.readWithReader(archive, recorder)
            self.assertEqual(count, len(expected) + 1)
            for path, (kind, mode, mtime, content) in expected.items():
                meta = recorder.members["./" + path]
                self.assertEqual(
                    meta["type"],
                    {"file": "file", "dir": "directory", "link": "symlink"}[kind],
                    path,
                )
                if kind == "link":
                    self.assertEqual(meta["linkname"].encode(), content, path)
                    continue
                self.assertEqual(
                    (meta["mode"], int(meta["mtime"])), (mode, mtime), (path, options)
                )
                if kind == "file":
                    self.assertEqual(meta["size"], len(content), path)
                    self.assertEqual(recorder.data("./" + path), content, path)
            target = os.path.abspath(self.mktemp())
            extract = ExtractDirectory(target)
            await self.readWithReader(archive, extract)
            await extract.whenFinished()
            self.assertEqual(tree(target), expected)


class TarOverTCPTests(TestCase):
    """
    A tree sent by L{TarWriter} over real TCP, read by L{TarReader}.
    """

    async def test_roundTrip(self) -> None:
        """
        The tree extracted from the bytes received is the tree sent.
        """
        root = gnuTree(self)

        def send(transport: Any) -> Deferred[Any]:
            writer = TarWriter(transport)
            done = writer.add(root, "t")
            done.addCallback(lambda _: writer.finish())
            return done

        archive = await loopbackReceive(send)
        target = os.path.abspath(self.mktemp())
        extract = ExtractDirectory(target)
        reader = TarReader(extract)
        reader.write(archive)
        reader.finish()
        await reader.whenFinished()
        await extract.whenFinished()
        self.assertEqual(tree(os.path.join(target, "t")), tree(root))
        shutil.rmtree(target)
