"""
Tests for L{TarWriter}: headers Python's C{tarfile} and GNU tar read
exactly, sizes enforced, members as consumers any producer writes to, with
backpressure both ways, file bodies by C{sendfile} over real TCP, and the
nested conformance suite.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
from typing import Any, Dict, List, Tuple

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    BasePushProducer,
    ChildStillOpen,
    ConsumerFinished,
    ContextFailure,
    FileSender,
    INestedConsumer,
    MemberSizeError,
    ProducerStateError,
    ProducerStopped,
    TarDirectory,
    TarWriter,
    pipeline,
)
from twisted_streaming._flow import PassThrough
from twisted_streaming._nested import ProducerStack
from twisted_streaming._tarheader import (
    BLOCK,
    RECORD,
    decodeHeader,
    decodeNumber,
    encodeMember,
    parsePax,
)
from twisted_streaming.test._extras import skipGNUTar
from twisted_streaming.test.test_push import runTurn
from twisted_streaming.testing import (
    BackpressureConsumer,
    NestedConsumerConformanceMixin,
    RecordingPullProducer,
    RecordingPushProducer,
    loopbackReceive,
)

reactor: Any = _globalReactor

MiB = 1024 * 1024


def members(archive: Any) -> List[Tuple[str, int, int, float, bytes, str]]:
    """
    What Python's C{tarfile} reads in C{archive}: for each member, its
    name, size, mode, mtime, data and link target.
    """
    found = []
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            data = tar.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            found.append(
                (
                    member.name,
                    member.size,
                    member.mode,
                    member.mtime,
                    data,
                    member.linkname,
                )
            )
    return found


def writeTree(writer: Any, tree: Dict[str, Any], mtime: int = 1700000000) -> None:
    """
    Write C{tree} (names to bytes, or to trees for directories) with
    L{TarWriter.startChild}, each member written in one go.
    """
    for name, content in tree.items():
        if isinstance(content, dict):
            directory = writer.startChild(
                name, type="directory", mtime=mtime, mode=0o750
            )
            writeTree(directory, content, mtime + 1)
            directory.finish()
        else:
            child = writer.startChild(name, size=len(content), mtime=mtime, mode=0o640)
            if content:
                child.write(content)
            child.finish()


#: A tree with everything the round trips must keep: an empty file, a long
#: name, non-ASCII names, nested directories.
TREE: Dict[str, Any] = {
    "hello.txt": b"hello, world\n",
    "empty": b"",
    "block.bin": bytes(range(256)) * 2,
    "odd.bin": os.urandom(1000),
    "long-" + "n" * 150 + ".txt": b"a long name\n",
    "déjà vu.txt": "non-ASCII ✓\n".encode(),
    "dir": {
        "sub": {"deep.txt": b"deep\n", "日本語": b"\xe6\x97\xa5"},
        "empty-dir": {},
        "x" * 90: {"y" * 90: b"prefix and name\n"},
    },
}


def flatten(
    tree: Dict[str, Any], prefix: str = "", mtime: int = 1700000000
) -> Dict[str, Tuple[Any, int]]:
    """
    Every member of C{tree} by its path: its bytes (or C{None} for a
    directory) and its mtime.
    """
    flat: Dict[str, Tuple[Any, int]] = {}
    for name, content in tree.items():
        path = prefix + name
        if isinstance(content, dict):
            flat[path] = (None, mtime)
            flat.update(flatten(content, path + "/", mtime + 1))
        else:
            flat[path] = (content, mtime)
    return flat


class HeaderTests(SynchronousTestCase):
    """
    The headers of L{twisted_streaming._tarheader}, without writing data.
    """

    def test_ustar(self) -> None:
        """
        A short ASCII name gets one ustar header whose fields read back.
        """
        header = encodeMember(
            "a/b.txt", size=5, mtime=1234, mode=0o640, uid=7, uname="me"
        )
        self.assertEqual(len(header), BLOCK)
        self.assertEqual(header[257:265], b"ustar\x0000")
        fields = decodeHeader(header)
        self.assertEqual(
            (
                fields["name"],
                fields["size"],
                fields["mtime"],
                fields["mode"],
                fields["uid"],
                fields["uname"],
            ),
            ("a/b.txt", 5, 1234, 0o640, 7, "me"),
        )

    def test_prefix(self) -> None:
        """
        A name up to 255 bytes that splits at a C{/} uses the ustar prefix
        field, not a PAX header.
        """
        name = "p" * 120 + "/" + "n" * 100
        header = encodeMember(name)
        self.assertEqual(len(header), BLOCK)
        self.assertEqual(decodeHeader(header)["name"], name)

    def test_paxForLongAndNonASCII(self) -> None:
        """
        A name that does not fit, or is not ASCII, and a long link target
        go in a PAX header before the ustar one.
        """
        for name in ["n" * 101, "dé.txt"]:
            header = encodeMember(name, type="symlink", linkname="t" * 120)
            self.assertEqual(decodeHeader(header[:BLOCK])["typeflag"], b"x")
            size = decodeHeader(header[:BLOCK])["size"]
            records = parsePax(header[BLOCK : BLOCK + size])
            self.assertEqual(records, {"path": name, "linkpath": "t" * 120})
            self.assertEqual(len(header) % BLOCK, 0)

    def test_paxSizeOver8GiB(self) -> None:
        """
        A size of 8 GiB or more goes in a PAX C{size} record, with 0 in the
        ustar field; Python's C{tarfile} reads the size from it.
        """
        size = 8 * 1024**3
        header = encodeMember("huge.bin", size=size)
        self.assertEqual(parsePax(header[BLOCK : 2 * BLOCK]), {"size": str(size)})
        self.assertEqual(decodeHeader(header[-BLOCK:])["size"], 0)
        # 8 GiB - 1 still fits.
        self.assertEqual(len(encodeMember("fits.bin", size=size - 1)), BLOCK)
        with tarfile.open(
            fileobj=io.BytesIO(header + bytes(2 * BLOCK)), mode="r|"
        ) as tar:
            member = tar.next()
            assert member is not None
            self.assertEqual((member.name, member.size), ("huge.bin", size))

    def test_paxTimes(self) -> None:
        """
        A time with a fraction, or before 1970, goes in a PAX C{mtime}.
        """
        self.assertEqual(
            parsePax(encodeMember("f", mtime=1.5)[BLOCK : 2 * BLOCK]), {"mtime": "1.5"}
        )
        self.assertEqual(
            parsePax(encodeMember("f", mtime=-10)[BLOCK : 2 * BLOCK]), {"mtime": "-10"}
        )

    def test_badArguments(self) -> None:
        """
        Unknown types, empty names, NULs and negative sizes are refused.
        """
        self.assertRaises(ValueError, encodeMember, "f", type="socket")
        self.assertRaises(ValueError, encodeMember, "f", size=-1)
        self.assertRaises(ValueError, encodeMember, "")
        self.assertRaises(ValueError, encodeMember, "a\0b")

    def test_numbers(self) -> None:
        """
        Numeric fields are octal, padded with spaces or NULs, or GNU
        base-256; a checksum that does not match is refused.
        """
        self.assertEqual(decodeNumber(b"0000644 \0"), 0o644)
        self.assertEqual(
            decodeNumber(b"\x80" + (9 * 1024**3).to_bytes(11, "big")), 9 * 1024**3
        )
        self.assertEqual(decodeNumber(b"\xff" * 12), -1)
        header = bytearray(encodeMember("f", size=1))
        header[0] = ord("g")
        self.assertRaises(ValueError, decodeHeader, bytes(header))


class TarWriterTests(SynchronousTestCase):
    """
    L{TarWriter} over a L{BackpressureConsumer}, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.consumer = BackpressureConsumer(threshold=64 * 1024, clock=self.clock)
        self.writer = TarWriter(self.consumer, name="a.tar", reactor=self.clock)

    def test_interface(self) -> None:
        """
        The writer and its directories provide L{INestedConsumer}.
        """
        verifyObject(INestedConsumer, self.writer)
        directory = self.writer.startChild("d", type="directory")
        self.assertIsInstance(directory, TarDirectory)
        verifyObject(INestedConsumer, directory)

    def test_roundTrip(self) -> None:
        """
        Python's C{tarfile} reads back every member's name, size, mode,
        time and bytes, with empty files, long and non-ASCII names and
        nested directories; the archive ends with its end blocks, padded to
        a record, and the consumer is finished.
        """
        writeTree(self.writer, TREE)
        done = self.writer.whenFinished()
        self.writer.finish()
        archive = self.consumer.received
        self.assertEqual(self.successResultOf(done), len(archive))
        self.assertEqual(len(archive) % RECORD, 0)
        self.assertTrue(self.consumer.finished)
        read = {
            name: (size, mode, mtime, data)
            for name, size, mode, mtime, data, _ in members(archive)
        }
        for path, (content, mtime) in flatten(TREE).items():
            if content is None:
                self.assertEqual(read[path][1:3], (0o750, mtime), path)
            else:
                self.assertEqual(
                    read[path], (len(content), 0o640, mtime, content), path
                )
        self.assertEqual(len(read), len(flatten(TREE)))

    def test_links(self) -> None:
        """
        Symbolic and hard links are written with their targets.
        """
        self.writer.startChild(
            "s", type="symlink", linkname="target/" + "t" * 120
        ).finish()
        self.writer.startChild("h", type="hardlink", linkname="s").finish()
        self.writer.finish()
        read = {m[0]: m[5] for m in members(self.consumer.received)}
        self.assertEqual(read, {"s": "target/" + "t" * 120, "h": "s"})

    def test_tooManyBytes(self) -> None:
        """
        A write that would take a member past its size raises
        L{MemberSizeError}, writes nothing and fails the archive, in a
        L{ContextFailure} with the member's tag path; later calls raise
        L{ConsumerFinished}.
        """
        done = self.writer.whenFinished()
        directory = self.writer.startChild("photos", type="directory")
        child = directory.startChild("img.jpg", size=3)
        before = len(self.consumer.received)
        error = self.assertRaises(MemberSizeError, child.write, b"four")
        self.assertEqual((error.expected, error.received), (3, 4))
        self.assertEqual(len(self.consumer.received), before)
        failure = self.failureResultOf(done, MemberSizeError)
        self.assertIsInstance(failure, ContextFailure)
        self.assertEqual(failure.tagPath, "a.tar/photos/img.jpg")
        self.assertIn("a.tar/photos/img.jpg", failure.getErrorMessage())
        self.assertRaises(ConsumerFinished, child.write, b"x")
        self.assertRaises(ConsumerFinished, self.writer.startChild, "next")
        self.assertRaises(ConsumerFinished, self.writer.finish)

    def test_tooFewBytes(self) -> None:
        """
        Finishing a member with fewer bytes than its size raises
        L{MemberSizeError}: nothing is padded silently.
        """
        done = self.writer.whenFinished()
        child = self.writer.startChild("short", size=10)
        child.write(b"12345")
        before = len(self.consumer.received)
        self.assertRaises(MemberSizeError, child.finish)
        self.assertEqual(len(self.consumer.received), before)
        self.assertEqual(self.failureResultOf(done).tagPath, "a.tar/short")

    def test_oneChildAtATime(self) -> None:
        """
        A second member, or the end, while one is open raises
        L{ChildStillOpen}, and writes nothing.
        """
        self.writer.startChild("open", size=1)
        before = len(self.consumer.received)
        self.assertRaises(ChildStillOpen, self.writer.startChild, "next")
        self.assertRaises(ChildStillOpen, self.writer.finish)
        self.assertEqual(len(self.consumer.received), before)

    def test_noDataOfItsOwn(self) -> None:
        """
        An archive or a directory takes no data of its own.
        """
        self.assertRaises(TypeError, self.writer.write, b"x")
        self.assertRaises(
            TypeError, self.writer.startChild("d", type="directory").write, b"x"
        )

    def test_consumerWriteFails(self) -> None:
        """
        A write to the consumer that raises fails the archive with that
        error, naming the member.
        """
        consumer = BackpressureConsumer(
            failOnWrite=OSError("disk full"), failAfterWrites=1
        )
        writer = TarWriter(consumer)
        done = writer.whenFinished()
        child = writer.startChild("f", size=3)
        self.assertRaises(OSError, child.write, b"abc")
        self.assertEqual(self.failureResultOf(done, OSError).tagPath, "f")

    def test_backpressureBothWays(self) -> None:
        """
        The consumer paces the producer registered with a member directly:
        it is paused while the consumer is behind and resumed when it has
        caught up, and the one registered with the archive is set aside
        (paused) meanwhile and registered again after.
        """
        consumer = BackpressureConsumer(threshold=1000)
        writer = TarWriter(consumer)
        driver = RecordingPushProducer()
        writer.registerProducer(driver, True)
        self.assertIs(consumer.producer, driver)
        child = writer.startChild("f", size=3000)
        producer = RecordingPushProducer()
        child.registerProducer(producer, True)
        self.assertIs(consumer.producer, producer)
        self.assertIs(child.producer, producer)
        self.assertEqual(driver.calls, [("pause",)])
        child.write(b"x" * 3000)
        self.assertEqual(producer.calls, [("pause",)])
        consumer.drain()
        self.assertEqual(producer.calls, [("pause",), ("resume",)])
        child.unregisterProducer()
        self.assertIs(consumer.producer, driver)
        self.assertEqual(driver.calls, [("pause",), ("resume",)])
        self.assertRaises(
            ProducerStateError, writer.registerProducer, RecordingPushProducer(), True
        )

    def test_pullProducer(self) -> None:
        """
        A pull producer registered with a member is driven by the consumer.
        """
        data = tuple(bytes([i]) * 1000 for i in range(5))
        child = self.writer.startChild("pulled", size=5000)
        producer = RecordingPullProducer(child, data)
        child.registerProducer(producer, False)
        for _ in range(20):
            self.clock.advance(1)
        self.assertIsNone(producer.consumer)
        child.finish()
        self.writer.finish()
        self.assertEqual(members(self.consumer.received)[0][4], b"".join(data))

    def test_fileSenderAndPipeline(self) -> None:
        """
        A C{FileSender} and a C{pipeline()} write members like any
        consumer; the pipeline finishes its member.
        """
        child = self.writer.startChild("sent", size=len(TREE["odd.bin"]))
        sent = FileSender(reactor=self.clock).beginFileTransfer(
            io.BytesIO(TREE["odd.bin"]), child
        )
        self.clock.advance(1)
        self.successResultOf(sent)
        child.finish()

        class Three(BasePushProducer):
            chunks = 3

            def produce(self) -> Any:
                self.chunks -= 1
                return b"abc" if self.chunks >= 0 else None

        child = self.writer.startChild("piped", size=9)
        piped = pipeline(Three(reactor=self.clock), sink=child)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(piped), 9)
        self.assertTrue(child.finished)
        self.writer.finish()
        read = {m[0]: m[4] for m in members(self.consumer.received)}
        self.assertEqual(read, {"sent": TREE["odd.bin"], "piped": b"abcabcabc"})

    def test_passedAroundOverSize(self) -> None:
        """
        Bytes sent around a member (by C{sendfile}) beyond its size fail
        the archive and stop the producer that sent them.
        """
        done = self.writer.whenFinished()
        child = self.writer.startChild("f", size=10)
        producer = RecordingPushProducer()
        child.registerProducer(producer, True)
        child.passedAround(8)
        self.assertNoResult(done)
        child.passedAround(8)
        self.assertEqual(producer.calls, [("stop",)])
        self.assertEqual(self.failureResultOf(done, MemberSizeError).value.received, 16)

    def test_addTree(self) -> None:
        """
        L{TarWriter.add} writes a directory tree from the file system,
        sorted, with its modes, times and links, and fires with the number
        of members; the writer can then be finished.
        """
        root = self.mktemp()
        os.makedirs(os.path.join(root, "sub"))
        for name, data in [
            ("b.txt", b"bee" * 10000),
            ("a.txt", b""),
            ("sub/c.bin", os.urandom(70000)),
        ]:
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
        os.chmod(os.path.join(root, "a.txt"), 0o600)
        os.utime(os.path.join(root, "b.txt"), (1600000000, 1600000000))
        os.symlink("b.txt", os.path.join(root, "link"))
        added = self.writer.add(root, "tree")
        self.clock.advance(1)
        for _ in range(1000):
            if added.called:
                break
            self.clock.advance(0.01)
        self.assertEqual(self.successResultOf(added), 6)
        self.writer.finish()
        read = {m[0]: m for m in members(self.consumer.received)}
        self.assertEqual(
            list(read),
            [
                "tree",
                "tree/a.txt",
                "tree/b.txt",
                "tree/link",
                "tree/sub",
                "tree/sub/c.bin",
            ],
        )
        self.assertEqual(read["tree/b.txt"][3:5], (1600000000, b"bee" * 10000))
        self.assertEqual(stat.S_IMODE(read["tree/a.txt"][2]), 0o600)
        self.assertEqual(read["tree/link"][5], "b.txt")
        with open(os.path.join(root, "sub/c.bin"), "rb") as f:
            self.assertEqual(read["tree/sub/c.bin"][4], f.read())
        self.clock.advance(1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_addMissing(self) -> None:
        """
        A path that cannot be read fails L{TarWriter.add} with the error,
        in context.
        """
        added = self.writer.add(os.path.join(self.mktemp(), "missing"))
        self.clock.advance(0)
        failure = self.failureResultOf(added, FileNotFoundError)
        self.assertIsInstance(failure, ContextFailure)

    def test_addStoppedByTheConsumer(self) -> None:
        """
        A consumer that goes away stops L{TarWriter.add}.
        """
        root = self.mktemp()
        os.makedirs(root)
        with open(os.path.join(root, "big"), "wb") as f:
            f.write(b"x" * 500000)
        consumer = BackpressureConsumer(threshold=1000)
        writer = TarWriter(consumer, reactor=self.clock)
        added = writer.add(root)
        runTurn(self.clock)
        consumer.loseConnection()
        self.clock.advance(1)
        self.failureResultOf(added, ProducerStopped)


class ProducerStackTests(SynchronousTestCase):
    """
    L{ProducerStack}: the innermost registered producer is the consumer's.
    """

    def test_consumerRefuses(self) -> None:
        """
        A registration the consumer refuses leaves the one set aside
        registered again.
        """
        consumer = BackpressureConsumer()
        stack = ProducerStack(consumer)
        outer = RecordingPushProducer()
        stack.register("outer", outer, True)

        class Refusing(BackpressureConsumer):
            def registerProducer(self, producer: Any, streaming: bool) -> None:
                if producer is not outer:
                    raise RuntimeError("refused")
                super().registerProducer(producer, streaming)

        refusing = Refusing()
        stack = ProducerStack(refusing)
        stack.register("outer", outer, True)
        self.assertRaises(
            RuntimeError, stack.register, "inner", RecordingPushProducer(), True
        )
        self.assertIs(refusing.producer, outer)
        self.assertIsNone(stack.producerOf("inner"))

    def test_outerUnregistersFirst(self) -> None:
        """
        A producer set aside may unregister before the innermost one: the
        innermost stays the consumer's.
        """
        consumer = BackpressureConsumer()
        stack = ProducerStack(consumer)
        outer, inner = RecordingPushProducer(), RecordingPushProducer()
        stack.register("outer", outer, True)
        stack.register("inner", inner, True)
        stack.unregister("outer")
        self.assertIs(consumer.producer, inner)
        stack.unregister("inner")
        self.assertIsNone(consumer.producer)
        stack.unregister("nobody")

    def test_disconnected(self) -> None:
        """
        A producer registered again with a disconnected consumer is stopped,
        as a transport stops it.
        """
        consumer = BackpressureConsumer()
        stack = ProducerStack(consumer)
        outer, inner = RecordingPushProducer(), RecordingPushProducer()
        stack.register("outer", outer, True)
        stack.register("inner", inner, True)
        consumer.loseConnection()
        self.assertEqual(inner.calls, [("stop",)])
        stack.unregister("inner")
        self.assertIn(("stop",), outer.calls)


class TarWriterConformanceTests(NestedConsumerConformanceMixin, SynchronousTestCase):
    """
    L{TarWriter} keeps the nested consumer contract.
    """

    def makeNested(self, clock: Clock) -> Any:
        consumer = BackpressureConsumer(clock=clock)
        writer = TarWriter(consumer, name="c.tar", reactor=clock)
        writer.sink = consumer  # type: ignore[attr-defined]
        return writer

    def leafMeta(self, tag: str, size: int) -> Dict[str, Any]:
        return {"size": size}

    def nestedMeta(self, tag: str) -> Dict[str, Any]:
        return {"type": "directory"}

    def completion(self, nested: Any) -> Deferred[int]:
        return nested.whenFinished()

    def received(self, nested: Any) -> Dict[str, bytes]:
        return {m[0]: m[4] for m in members(nested.sink.received)}


class TarDirectoryConformanceTests(NestedConsumerConformanceMixin, SynchronousTestCase):
    """
    A L{TarDirectory} keeps the nested consumer contract too (finishing it
    finishes its archive, here).
    """

    def makeNested(self, clock: Clock) -> Any:
        consumer = BackpressureConsumer(clock=clock)
        writer = TarWriter(consumer, reactor=clock)
        directory: Any = writer.startChild("top", type="directory")
        finish = directory.finish

        def finishBoth() -> None:
            finish()
            writer.finish()

        directory.finish = finishBoth
        directory.sink = consumer
        directory.writer = writer
        return directory

    def leafMeta(self, tag: str, size: int) -> Dict[str, Any]:
        return {"size": size}

    def nestedMeta(self, tag: str) -> Dict[str, Any]:
        return {"type": "directory"}

    def completion(self, nested: Any) -> Deferred[int]:
        return nested.writer.whenFinished()

    def received(self, nested: Any) -> Dict[str, bytes]:
        return {
            m[0][len("top/") :]: m[4]
            for m in members(nested.sink.received)
            if m[0] != "top"
        }


def makeTree(testCase: TestCase, files: int, size: int) -> str:
    """
    A directory of C{files} files of C{size} random-ish bytes, in two
    levels, removed at the end of the test.
    """
    root = os.path.abspath(testCase.mktemp())
    testCase.addCleanup(shutil.rmtree, root, True)
    block = os.urandom(64 * 1024)
    for i in range(files):
        directory = os.path.join(root, f"d{i % 4}")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"f{i:04d}.bin"), "wb") as f:
            for start in range(0, size, len(block)):
                f.write(bytes([i % 256]) + block[1 : size - start])
    return root


class TarWriterTCPTests(TestCase):
    """
    L{TarWriter} over real TCP connections on 127.0.0.1.
    """

    async def test_zeroCopyOverTCP(self) -> None:
        """
        File bodies go to a plain TCP transport with C{sendfile} (headers
        are ordinary writes); Python's C{tarfile} reads the archive exactly.
        """
        root = makeTree(self, 6, 300 * 1024)
        writers: List[TarWriter] = []

        def send(transport: Any) -> Deferred[Any]:
            writer = TarWriter(transport)
            writers.append(writer)
            done = writer.add(root, "t")
            done.addCallback(lambda _: writer.finish())
            return done

        archive = await loopbackReceive(send)
        self.assertGreater(writers[0].zeroCopyBytes, 5 * 300 * 1024)
        read = {m[0]: m[4] for m in members(archive)}
        for directory, _, names in os.walk(root):
            for name in names:
                path = os.path.join(directory, name)
                with open(path, "rb") as f:
                    self.assertEqual(read["t/" + os.path.relpath(path, root)], f.read())

    async def test_memberByFileSender(self) -> None:
        """
        A C{FileSender} a user registers with a member started by hand
        sends around it with C{sendfile}, and the member counts the bytes.
        """
        source = os.path.abspath(self.mktemp())
        data = os.urandom(700000)
        with open(source, "wb") as f:
            f.write(data)
        senders: List[FileSender] = []

        async def sendOne(transport: Any) -> None:
            writer = TarWriter(transport)
            member = writer.startChild("one.bin", size=len(data), mtime=5)
            sender = FileSender()
            senders.append(sender)
            await sender.beginFileTransfer(source, member)
            self.assertEqual(member.delivered, len(data))
            member.finish()
            writer.finish()

        archive = await loopbackReceive(lambda t: Deferred.fromCoroutine(sendOne(t)))
        self.assertEqual(senders[0].zeroCopyBytes, len(data))
        self.assertEqual(members(archive), [("one.bin", len(data), 0o644, 5, data, "")])

    async def test_slowReaderMemory(self) -> None:
        """
        Sending a 32 MiB tree through Python (no C{sendfile}) to a client
        that reads slowly over loopback grows the sender's memory by no
        more than a few MiB: each member's producer is paused by the
        transport.  (The client, in this process too, keeps only a hash.)
        """
        self.patch(FileSender, "ZERO_COPY", False)
        root = makeTree(self, 8, 4 * MiB)
        before = _rss()
        samples: List[int] = []
        writers: List[TarWriter] = []

        sentDigest = hashlib.sha256()

        class Sampling(PassThrough):
            def write(self, data: bytes) -> None:
                super().write(data)
                sentDigest.update(data)
                samples.append(_rss())

        def send(transport: Any) -> Deferred[Any]:
            writer = TarWriter(Sampling(transport))
            writers.append(writer)
            done = writer.add(root, "t")
            done.addCallback(lambda _: writer.finish())
            return done

        size, digest = await slowReceive(self, send, delay=0.0005)
        self.assertEqual(size, writers[0].bytesWritten)
        self.assertEqual(digest, sentDigest.hexdigest())
        self.assertEqual(writers[0].zeroCopyBytes, 0)
        grown = max(samples) - before
        self.assertLess(grown, 2 * MiB, f"RSS grew by {grown / MiB:.1f} MiB")


class _SlowReader(Protocol):
    """
    Count and hash what arrives, through a small receive buffer, stopping
    reading for C{delay} seconds after each read.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.size = 0
        self.digest = hashlib.sha256()
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.getHandle().setsockopt(  # type: ignore[union-attr]
            socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024
        )

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        self.digest.update(data)
        self.transport.pauseProducing()  # type: ignore[union-attr]
        reactor.callLater(self.delay, self._resume)

    def _resume(self) -> None:
        if self.transport.connected:  # type: ignore[union-attr]
            self.transport.resumeProducing()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


async def slowReceive(testCase: TestCase, send: Any, delay: float) -> Tuple[int, str]:
    """
    Serve C{send(transport)} on 127.0.0.1 (the server closes the connection
    when its Deferred fires) to a client that reads slowly (see
    L{_SlowReader}), keeping only a hash.

    @return: The size and SHA-256 of what arrived.
    """
    sent: List[Deferred[Any]] = []

    class Sender(Protocol):
        def connectionMade(self) -> None:
            done = send(self.transport)
            sent.append(done)
            done.addBoth(lambda result: (self.transport.loseConnection(), result)[1])  # type: ignore[union-attr]

    port = reactor.listenTCP(0, Factory.forProtocol(Sender), interface="127.0.0.1")
    testCase.addCleanup(port.stopListening)
    reader = _SlowReader(delay)
    await connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), reader
    )
    await reader.lost
    await sent[0]
    return reader.size, reader.digest.hexdigest()


def _rss() -> int:
    """
    This process's resident set size in bytes.
    """
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class GNUTarTests(TestCase):
    """
    GNU tar reads what L{TarWriter} writes exactly (C{tar -tvf}, C{tar
    -xf}).
    """

    skip = skipGNUTar

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.addCleanup(shutil.rmtree, self.directory, True)

    def writeArchive(self) -> str:
        consumer = BackpressureConsumer(threshold=2**62)
        writer = TarWriter(consumer)
        writeTree(writer, TREE)
        writer.finish()
        path = os.path.join(self.directory, "w.tar")
        with open(path, "wb") as f:
            f.write(consumer.received)  # type: ignore[arg-type]
        return path

    def test_list(self) -> None:
        """
        C{tar -tvf} lists every member with its mode, size and name,
        including long and non-ASCII names, and no warning.
        """
        path = self.writeArchive()
        result = subprocess.run(
            ["tar", "--utc", "-tvf", path],
            capture_output=True,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        lines = result.stdout.decode("utf-8").splitlines()
        listed = {
            line.split(None, 5)[5].rstrip("/"): line.split(None, 5) for line in lines
        }
        flat = flatten(TREE)
        self.assertEqual(set(listed), set(flat))
        for name, (content, _) in flat.items():
            perms, _, size = listed[name][:3]
            self.assertEqual(
                perms, "drwxr-x---" if content is None else "-rw-r-----", name
            )
            self.assertEqual(int(size), 0 if content is None else len(content), name)

    def test_extract(self) -> None:
        """
        C{tar -xf} extracts every file with its bytes, mode and time.
        """
        path = self.writeArchive()
        target = os.path.join(self.directory, "x")
        os.makedirs(target)
        result = subprocess.run(["tar", "-xf", path, "-C", target], capture_output=True)
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        for name, (content, mtime) in flatten(TREE).items():
            extracted = os.path.join(target, name)
            status = os.stat(extracted)
            self.assertEqual(int(status.st_mtime), mtime, name)
            if content is None:
                self.assertTrue(stat.S_ISDIR(status.st_mode), name)
                self.assertEqual(stat.S_IMODE(status.st_mode), 0o750, name)
            else:
                self.assertEqual(stat.S_IMODE(status.st_mode), 0o640, name)
                with open(extracted, "rb") as f:
                    self.assertEqual(f.read(), content, name)
