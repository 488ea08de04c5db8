"""
The examples of hierarchical streams, run as subprocesses against
127.0.0.1: C{examples/tar_server.py} read by GNU tar and Python's
C{tarfile}, and C{examples/upload_server.py} fed by C{curl -F}.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from typing import Any, Dict, List

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from twisted_streaming.test._extras import skipCurl, skipGNUTar

from .helpers import reactor, run, serve


def temporaryDirectory(testCase: TestCase) -> str:
    """
    A new directory, removed at the end of the test (not in the current
    directory, which is the checkout under pytest).
    """
    path = tempfile.mkdtemp(prefix="twisted_streaming-examples-")
    testCase.addCleanup(shutil.rmtree, path, True)
    return path


def makeTree(testCase: TestCase) -> str:
    """
    A directory to serve: files big and empty, a non-ASCII name, a
    subdirectory; removed at the end of the test.
    """
    root = os.path.join(temporaryDirectory(testCase), "served")
    os.makedirs(os.path.join(root, "sub"))
    for name, data in [
        ("big.bin", os.urandom(5 * 1024 * 1024 + 3)),
        ("empty", b""),
        ("été.txt", b"summer\n"),
        ("sub/deep.txt", b"deep\n"),
    ]:
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    return root


def contents(root: str) -> Dict[str, bytes]:
    """
    Every file under C{root}, by its path below it.
    """
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


class _Collect(Protocol):
    def __init__(self) -> None:
        self.received: List[bytes] = []
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class TarServerTests(TestCase):
    """
    C{examples/tar_server.py}.
    """

    async def start(self, root: str) -> Any:
        server = run(
            "tar_server.py",
            ["--directory", root, "--http-port", "0", "--tcp-port", "0"],
        )
        self.addCleanup(server.stop)
        self.http = int(await server.waitFor(b"http on port "))
        self.tcp = int(await server.waitFor(b"tcp on port "))
        return server

    async def test_overTCP(self) -> None:
        """
        A client that connects over raw TCP receives the directory as a tar
        archive that Python's C{tarfile} reads exactly; the server says it
        sent the files with C{sendfile}.
        """
        root = makeTree(self)
        server = await self.start(root)
        client = _Collect()
        await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.tcp), client
        )
        await client.lost
        name = os.path.basename(root)
        found = {}
        with tarfile.open(fileobj=io.BytesIO(b"".join(client.received))) as tar:
            for member in tar:
                if member.isfile():
                    found[os.path.relpath(member.name, name)] = tar.extractfile(
                        member
                    ).read()  # type: ignore[union-attr]
        self.assertEqual(found, contents(root))
        line = await server.waitForLog(b"Sent 6 members over TCP, ")
        self.assertGreater(int(line.split()[0]), 5 * 1024 * 1024)

    async def test_overHTTPToGNUTar(self) -> None:
        """
        C{curl URL | tar -xf -} extracts the directory as it was.
        """
        if skipGNUTar or skipCurl:
            raise self.skipTest(skipGNUTar or skipCurl)
        root = makeTree(self)
        await self.start(root)
        target = temporaryDirectory(self)
        _, err, code = await getProcessOutputAndValue(
            "sh",
            [
                "-c",
                f"curl -sS --noproxy '*' http://127.0.0.1:{self.http}/ | tar -xf - -C {target}",
            ],
            env=dict(os.environ),
            reactor=reactor,
        )
        self.assertEqual((code, err), (0, b""))
        self.assertEqual(
            contents(os.path.join(target, os.path.basename(root))), contents(root)
        )


class UploadServerTests(TestCase):
    """
    C{examples/upload_server.py}.
    """

    skip = skipCurl

    async def test_uploadsAndLimits(self) -> None:
        """
        Files sent with C{curl -F} are saved byte for byte and listed in
        the answer; a file over the part limit gets a C{413} and leaves
        nothing behind.
        """
        directory = temporaryDirectory(self)
        sources = makeTree(self)
        server, port = await serve(
            self,
            "upload_server.py",
            ["--directory", directory, "--port", "0", "--max-part-size", "4000000"],
        )
        url = f"http://127.0.0.1:{port}/upload"
        small = os.path.join(sources, "sub", "deep.txt")
        out, err, code = await getProcessOutputAndValue(
            "curl",
            [
                "-sS",
                "--noproxy",
                "*",
                "-F",
                f"file=@{small}",
                "-F",
                "title=hi",
                "-w",
                "%{http_code}",
                url,
            ],
            env=dict(os.environ),
            reactor=reactor,
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(
            out, b"field title: 2 characters\nfile file: deep.txt (5 bytes)\n200"
        )
        [saved] = os.listdir(directory)
        self.assertTrue(saved.endswith("-deep.txt"))
        with open(os.path.join(directory, saved), "rb") as f:
            self.assertEqual(f.read(), b"deep\n")
        await server.waitForLog(b"Saved 'deep.txt' (5 bytes)")
        big = os.path.join(sources, "big.bin")
        out, err, code = await getProcessOutputAndValue(
            "curl",
            ["-sS", "--noproxy", "*", "-F", f"file=@{big}", "-w", "%{http_code}", url],
            env=dict(os.environ),
            reactor=reactor,
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(
            out, b"part 'file' is larger than its limit of 4000000 bytes\n413"
        )
        self.assertEqual(os.listdir(directory), [saved])
