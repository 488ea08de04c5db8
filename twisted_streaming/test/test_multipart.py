"""
Tests for L{MultipartReader} and L{SaveUploads}: what C{curl -F} and
browsers send, split anywhere, limits enforced as the bytes arrive, errors
that name the part, and the nested conformance suites.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_streaming import (
    ChildStillOpen,
    ContextFailure,
    INestedConsumer,
    MultipartError,
    MultipartReader,
    SaveUploads,
    UploadTooLarge,
)
from twisted_streaming._multipart import parseHeaderValue
from twisted_streaming.test.test_tarreader import Recorder
from twisted_streaming.testing import (
    NestedConsumerConformanceMixin,
    NestedReaderConformanceMixin,
    RecordingPushProducer,
)

BOUNDARY = "------------------------d74496d66958873e"

Part = Tuple[str, Optional[str], Optional[str], bytes]


def multipartBody(
    parts: List[Part],
    boundary: str = BOUNDARY,
    preamble: bytes = b"",
    epilogue: bytes = b"",
) -> bytes:
    """
    A C{multipart/form-data} body as C{curl -F} sends it: for each part,
    its name, file name (L{None} for a field), content type and bytes.
    """
    out = [preamble]
    for name, filename, contentType, data in parts:
        out.append(b"--" + boundary.encode() + b"\r\n")
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.append(f"Content-Disposition: {disposition}\r\n".encode())
        if contentType is not None:
            out.append(f"Content-Type: {contentType}\r\n".encode())
        out.append(b"\r\n" + data + b"\r\n")
    out.append(b"--" + boundary.encode() + b"--\r\n" + epilogue)
    return b"".join(out)


CURL_PARTS: List[Part] = [
    (
        "file",
        "a.bin",
        "application/octet-stream",
        os.urandom(3000) + b"\r\n--" + b"\r\n" * 3,
    ),
    ("other", "b.txt", "text/plain", b""),
    ("field", None, None, b"a value"),
    ("last", "c.bin", "application/octet-stream", b"\r" * 100),
]


def read(
    body: bytes, handler: Any, chunks: List[int], **kwargs: Any
) -> Tuple[MultipartReader, Deferred[int]]:
    """
    Write C{body} to a new L{MultipartReader} cut at C{chunks} (offsets),
    then finish it.
    """
    reader = MultipartReader(handler, BOUNDARY, reactor=Clock(), **kwargs)
    done = reader.whenFinished()
    cuts = [0, *chunks, len(body)]
    for start, end in zip(cuts, cuts[1:]):
        if not reader._done:
            reader.write(body[start:end])
    if not reader._done:
        reader.finish()
    return reader, done


class ParseTests(SynchronousTestCase):
    """
    Header values with parameters.
    """

    def test_parameters(self) -> None:
        """
        Quoted and unquoted values, backslash escapes, and RFC 5987
        extended values are read; names are lowercased.
        """
        self.assertEqual(
            parseHeaderValue('form-data; name="a \\"b\\""; FileName=plain.txt'),
            ("form-data", {"name": 'a "b"', "filename": "plain.txt"}),
        )
        self.assertEqual(
            parseHeaderValue(
                "attachment; filename=\"x\"; filename*=UTF-8''%E2%9C%93.txt"
            ),
            ("attachment", {"filename": "✓.txt"}),
        )
        self.assertEqual(
            parseHeaderValue("multipart/form-data; boundary=abc"),
            ("multipart/form-data", {"boundary": "abc"}),
        )

    def test_fromContentType(self) -> None:
        """
        A reader is made from a C{multipart/form-data} content type with a
        boundary; anything else is a L{MultipartError}.
        """
        reader = MultipartReader.fromContentType(
            Recorder(), b'multipart/form-data; boundary="xy z"'
        )
        self.assertEqual(reader._dashBoundary, b"--xy z")
        for bad in [
            b"text/plain",
            b"multipart/form-data",
            None,
            "multipart/form-data; boundary=" + "b" * 71,
        ]:
            self.assertRaises(
                MultipartError, MultipartReader.fromContentType, Recorder(), bad
            )


class MultipartReaderTests(SynchronousTestCase):
    """
    L{MultipartReader} over bodies in memory.
    """

    def test_curlBodySplitAnywhere(self) -> None:
        """
        What C{curl -F} sends (files with CRs, dashes and empty lines in
        them, an empty file, a field) is read exactly, however the body is
        cut between writes; the handler gets each part's name, file name,
        type and headers.
        """
        body = multipartBody(
            CURL_PARTS, preamble=b"ignored\r\n", epilogue=b"ignored too"
        )
        for cut in range(0, len(body), 7):
            for second in (cut + 1, cut + 50):
                recorder = Recorder()
                _, done = read(body, recorder, [cut, min(second, len(body))])
                self.assertEqual(self.successResultOf(done), 4)
                self.assertEqual(list(recorder.members), [p[0] for p in CURL_PARTS])
                for name, filename, contentType, data in CURL_PARTS:
                    meta = recorder.members[name]
                    self.assertEqual(
                        (meta["filename"], meta["contentType"]),
                        (filename, contentType),
                        name,
                    )
                    self.assertEqual(recorder.data(name), data, (name, cut))
                self.assertTrue(recorder.finished)
        self.assertEqual(
            recorder.members["file"]["headers"]["content-type"],
            "application/octet-stream",
        )

    def test_byteByByte(self) -> None:
        """
        A body written one byte at a time is read exactly.
        """
        body = multipartBody(CURL_PARTS)
        recorder = Recorder()
        _, done = read(body, recorder, list(range(1, len(body))))
        self.successResultOf(done)
        self.assertEqual(
            [recorder.data(p[0]) for p in CURL_PARTS], [p[3] for p in CURL_PARTS]
        )

    def test_emptyForm(self) -> None:
        """
        A body with no parts (just the closing boundary) is read.
        """
        recorder = Recorder()
        _, done = read(b"--" + BOUNDARY.encode() + b"--\r\n", recorder, [])
        self.assertEqual(self.successResultOf(done), 0)

    def test_partTooLarge(self) -> None:
        """
        A part over C{maxPartSize} fails with L{UploadTooLarge} naming it,
        as soon as its bytes pass the limit: the producer of the body is
        stopped, and the rest is not read.
        """
        body = multipartBody(
            [("small", "s", None, b"x" * 100), ("big", "b", None, b"y" * 100000)]
        )
        reader = MultipartReader(
            Recorder(), BOUNDARY, name="/upload", maxPartSize=1000, reactor=Clock()
        )
        done = reader.whenFinished()
        producer = RecordingPushProducer()
        reader.registerProducer(producer, True)
        reader.write(body[:5000])
        failure = self.failureResultOf(done, UploadTooLarge)
        self.assertEqual((failure.value.part, failure.value.limit), ("big", 1000))
        self.assertIsInstance(failure, ContextFailure)
        self.assertEqual(failure.tagPath, "/upload/big")
        self.assertEqual(producer.calls, [("stop",)])
        reader.write(body[5000:])

    def test_bodyTooLarge(self) -> None:
        """
        A body over C{maxTotalSize} fails with L{UploadTooLarge} for the
        whole body.
        """
        body = multipartBody([("a", "a", None, b"x" * 5000)])
        _, done = read(body, Recorder(), [100, 4000], maxTotalSize=4000)
        failure = self.failureResultOf(done, UploadTooLarge)
        self.assertIsNone(failure.value.part)
        _, done = read(body, Recorder(), [], maxTotalSize=len(body))
        self.successResultOf(done)

    def test_malformed(self) -> None:
        """
        Bodies that are not multipart fail with L{MultipartError}, naming
        where.
        """
        dash = b"--" + BOUNDARY.encode()
        good = multipartBody([("a", None, None, b"1")])
        for body, message in [
            (good[:-20], "inside part 'a'"),
            (b"no boundary at all" * 2000, "no boundary"),
            (dash + b"junk\r\n", "junk after a boundary"),
            (
                dash + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n" + dash + b"--",
                "no Content-Disposition",
            ),
            (dash + b"\r\nno colon\r\n\r\n", "malformed part header"),
            (dash + b"\r\nX: " + b"y" * 20000, "over 16384 bytes"),
            (dash + b"\r\n", "inside the headers of part 1"),
        ]:
            _, done = read(body, Recorder(), [])
            failure = self.failureResultOf(done, MultipartError)
            self.assertIn(message, str(failure.value), body[:60])

    def test_tooManyParts(self) -> None:
        """
        More than C{maxParts} parts fail with L{MultipartError}.
        """
        body = multipartBody([(str(i), None, None, b"") for i in range(5)])
        _, done = read(body, Recorder(), [], maxParts=4)
        self.assertIn(
            "more than 4 parts", str(self.failureResultOf(done, MultipartError).value)
        )

    def test_skippedParts(self) -> None:
        """
        A part the handler returns L{None} for is skipped, and still
        limited.
        """

        class OnlyFields(Recorder):
            def startChild(self, name: str, **meta: Any) -> Any:
                return None if meta["filename"] else super().startChild(name, **meta)

        recorder = OnlyFields()
        _, done = read(multipartBody(CURL_PARTS), recorder, [])
        self.successResultOf(done)
        self.assertEqual(list(recorder.members), ["field"])
        _, done = read(multipartBody(CURL_PARTS), OnlyFields(), [], maxPartSize=10)
        self.failureResultOf(done, UploadTooLarge)


def encodeParts(children: List[Tuple[str, bytes]]) -> bytes:
    return multipartBody(
        [(tag, tag, "application/octet-stream", data) for tag, data in children]
    )


class MultipartReaderConformanceTests(
    NestedReaderConformanceMixin, SynchronousTestCase
):
    """
    L{MultipartReader} keeps the reader contract.
    """

    def makeReader(self, handler: Any, clock: Clock) -> Any:
        return MultipartReader(handler, BOUNDARY, name="form", reactor=clock)

    def encode(self, children: List[Tuple[str, bytes]]) -> bytes:
        return encodeParts(children)

    def completion(self, reader: Any) -> Deferred[int]:
        return reader.whenFinished()


class SaveUploadsTests(SynchronousTestCase):
    """
    L{SaveUploads}, the handler that saves files and keeps fields.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.clock = Clock()
        self.uploads = SaveUploads(self.directory, maxFieldSize=20, reactor=self.clock)

    def readBody(self, body: bytes) -> Deferred[int]:
        reader = MultipartReader(self.uploads, BOUNDARY, reactor=self.clock)
        done = reader.whenFinished()
        reader.write(body)
        reader.finish()
        self.clock.advance(1)
        return done

    def test_interface(self) -> None:
        """
        It is an L{INestedConsumer}.
        """
        verifyObject(INestedConsumer, self.uploads)

    def test_savesFilesKeepsFields(self) -> None:
        """
        Files are saved under safe new names with their bytes; fields are
        kept, decoded.
        """
        parts: List[Part] = [
            ("doc", "../../etc/pass\x00wd", "text/plain", b"contents"),
            ("doc", "C:\\Users\\me\\photo.jpg", "image/jpeg", os.urandom(200000)),
            ("title", None, None, "café".encode()),
            ("title", None, None, b"second"),
            ("hidden", ".bashrc", None, b""),
        ]
        self.successResultOf(self.readBody(multipartBody(parts)))
        saved = self.successResultOf(self.uploads.whenFinished())
        self.assertIs(saved, self.uploads)
        self.assertEqual(self.uploads.fields, {"title": ["café", "second"]})
        files = self.uploads.files
        self.assertEqual(
            [(f.name, f.filename, f.contentType, f.size) for f in files],
            [
                ("doc", "../../etc/pass\x00wd", "text/plain", 8),
                ("doc", "C:\\Users\\me\\photo.jpg", "image/jpeg", 200000),
                ("hidden", ".bashrc", None, 0),
            ],
        )
        for upload, part in zip(files, [parts[0], parts[1], parts[4]]):
            self.assertEqual(os.path.dirname(upload.path), self.directory)
            with open(upload.path, "rb") as f:
                self.assertEqual(f.read(), part[3])
        names = [os.path.basename(f.path) for f in files]
        self.assertTrue(names[0].endswith("-pass_wd"), names)
        self.assertTrue(names[1].endswith("-photo.jpg"), names)
        self.assertTrue(names[2].endswith("-bashrc"), names)

    def test_fieldTooLarge(self) -> None:
        """
        A field over C{maxFieldSize} fails the upload, and every file it
        had saved is removed.
        """
        body = multipartBody(
            [("f", "f.bin", None, b"data"), ("big", None, None, b"x" * 21)]
        )
        failure = self.failureResultOf(self.readBody(body), UploadTooLarge)
        self.assertEqual(failure.value.part, "big")
        self.failureResultOf(self.uploads.whenFinished(), UploadTooLarge)
        self.assertEqual(os.listdir(self.directory), [])

    def test_oneChildAtATime(self) -> None:
        """
        A second part while one is open raises L{ChildStillOpen}.
        """
        self.uploads.startChild("a", filename="a")
        self.assertRaises(ChildStillOpen, self.uploads.startChild, "b")
        self.assertRaises(ChildStillOpen, self.uploads.finish)
        self.assertRaises(TypeError, self.uploads.write, b"x")


class SaveUploadsConformanceTests(NestedConsumerConformanceMixin, SynchronousTestCase):
    """
    L{SaveUploads}, the multipart reader's handler, keeps the nested
    consumer contract.
    """

    def makeNested(self, clock: Clock) -> Any:
        return SaveUploads(os.path.abspath(self.mktemp()), reactor=clock)

    def leafMeta(self, tag: str, size: int) -> Dict[str, Any]:
        return {"filename": tag + ".bin"}

    def completion(self, nested: Any) -> Deferred[Any]:
        return nested.whenFinished()

    def received(self, nested: Any) -> Dict[str, bytes]:
        found = {}
        for upload in nested.files:
            with open(upload.path, "rb") as f:
                found[upload.name] = f.read()
        return found
