"""
Receiving uploads: L{SaveUploads}, a handler of a L{MultipartReader} that
saves files to a directory and keeps fields in memory, and
L{MultipartResource}, the C{twisted.web} resource that reads uploads as they
arrive.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import Any, Callable, Dict, List, Optional, Union

import attr
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import (
    BAD_REQUEST,
    INTERNAL_SERVER_ERROR,
    OK,
    REQUEST_ENTITY_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
)
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from twisted_streaming._extractdirectory import ExtractDirectory, _NoData
from twisted_streaming._multipart import MultipartReader, parseHeaderValue
from twisted_streaming._streamingrequest import streamBody
from twisted_streaming.interfaces import (
    ChildStillOpen,
    ConsumerFinished,
    IFinishableConsumer,
    INestedConsumer,
    IStreamingBodyResource,
    MultipartError,
    UploadTooLarge,
)

__all__ = ["MultipartResource", "SaveUploads", "UploadedFile"]

_log = Logger()

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


@attr.s(auto_attribs=True)
class UploadedFile:
    """
    A file saved by L{SaveUploads}.

    @ivar name: The form field's name.
    @ivar filename: The name the client gave the file.
    @ivar path: Where it was saved.
    @ivar contentType: The part's C{Content-Type}, if it had one.
    @ivar size: Its size in bytes, once saved.
    """

    name: str
    filename: str
    path: str
    contentType: Optional[str]
    size: int = 0


@implementer(IFinishableConsumer)
class _Field(_NoData):
    """
    The consumer of a form field's value: kept in memory, up to a limit.
    """

    def __init__(self, parent: SaveUploads, name: str, limit: int) -> None:
        self._parent = parent
        self.name = name
        self.tagPath = f"{parent.tagPath}/{name}"
        self._limit = limit
        self._data: List[bytes] = []
        self._size = 0
        self.finished = False

    def write(self, data: bytes) -> None:
        """
        @raise UploadTooLarge: If the value is over its limit.
        """
        self._size += len(data)
        if self._size > self._limit:
            raise UploadTooLarge(self.name, self._limit)
        self._data.append(data)

    def finish(self) -> None:
        if self.finished:
            raise ConsumerFinished(f"{self!r} has already been finished")
        self.finished = True
        value = b"".join(self._data).decode("utf-8", "replace")
        self._parent.fields.setdefault(self.name, []).append(value)


@implementer(INestedConsumer)
class SaveUploads(_NoData):
    """
    The handler of a L{MultipartReader} (an L{INestedConsumer}) that saves
    each uploaded file to a new file in a directory, written as it arrives
    by a L{FileConsumer <twisted_streaming.FileConsumer>} (with its
    backpressure), and keeps the form's other fields in L{fields}.

    A file is saved under a new name made of a random prefix and the
    client's file name, cut to its last part and stripped of anything that
    could make it a path.  A field's value over C{maxFieldSize} bytes fails
    the upload with L{UploadTooLarge <twisted_streaming.UploadTooLarge>}.
    If the upload fails (L{abort}), every file it saved is removed.

    @ivar fields: Each field's values, by name, decoded from UTF-8.
    @ivar files: What was saved, an L{UploadedFile} per file, in order.
    """

    def __init__(
        self,
        directory: Union[str, os.PathLike[str]],
        *,
        maxFieldSize: int = 64 * 1024,
        name: str = "form",
        reactor: Optional[IReactorTime] = None,
    ) -> None:
        """
        @param directory: Where files are saved; created if missing.
        @param maxFieldSize: The most bytes of a field's value.
        @param name: The form's name, the first part of tag paths.
        @param reactor: The reactor whose turn loop writes files; the
            global reactor if L{None}.
        """
        self.tagPath = name
        self.maxFieldSize = maxFieldSize
        self.fields: Dict[str, List[str]] = {}
        self.files: List[UploadedFile] = []
        self._directory = ExtractDirectory(directory, name=name, reactor=reactor)
        self._child: Any = None
        self._savers: List[Any] = []
        self.finished = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._directory.path!r}>"

    def startChild(
        self,
        name: str,
        /,
        *,
        filename: Optional[str] = None,
        contentType: Optional[str] = None,
        **meta: Any,
    ) -> Any:
        """
        Start a part: a field (no C{filename}) or a file.

        @raise ChildStillOpen: If the last part has not been finished.
        @raise ConsumerFinished: If this has been finished.
        """
        if self.finished:
            raise ConsumerFinished(f"{self!r} has already been finished")
        if self._child is not None and not self._child.finished:
            raise ChildStillOpen(
                f"Cannot start {name!r} in {self!r}: {self._child.tagPath!r} "
                "has not been finished"
            )
        if filename is None:
            self._child = _Field(self, name, self.maxFieldSize)
            return self._child
        saved = f"{secrets.token_hex(6)}-{_safeName(filename)}"
        child = self._directory.startChild(saved, mode=0o644)
        child.tagPath = f"{self.tagPath}/{name}"
        self.files.append(UploadedFile(name, filename, child.path, contentType))
        self._savers.append(child)
        self._child = child
        return child

    def write(self, data: bytes) -> None:
        """
        @raise TypeError: Always: the form's data is in its parts.
        """
        raise TypeError(f"{self!r} takes no data of its own")

    def finish(self) -> None:
        """
        The form has ended; L{whenFinished} fires once its files are on
        disk.

        @raise ChildStillOpen: If the last part has not been finished.
        """
        if self._child is not None and not self._child.finished:
            raise ChildStillOpen(
                f"Cannot finish {self!r}: {self._child.tagPath!r} has not been finished"
            )
        self.finished = True
        self._directory.finish()

    def whenFinished(self) -> Deferred[SaveUploads]:
        """
        @return: A L{Deferred} that fires with this object once every file
            is on disk (and L{UploadedFile.size} set), or fails with the
            upload's error.
        """
        done = self._directory.whenFinished()

        def saved(_: int) -> SaveUploads:
            for upload, saver in zip(self.files, self._savers):
                upload.size = saver.consumer.bytesWritten
            return self

        return done.addCallback(saved)

    def abort(self, reason: Failure) -> None:
        """
        The upload failed: remove the files it saved, once written.
        """
        self._directory.abort(reason)
        for upload, saver in zip(self.files, self._savers):
            saver.consumer.whenFinished().addBoth(_remove, upload.path)


def _remove(result: object, path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        _log.failure("Removing {path} failed", path=path)


def _safeName(filename: str) -> str:
    """
    The last part of C{filename}, without control characters, slashes or
    leading dots, at most 100 characters; C{"upload"} if nothing is left.
    """
    last = re.split(r"[/\\]", filename)[-1]
    cleaned = _UNSAFE.sub("_", last).lstrip(". ")[-100:]
    return cleaned or "upload"


@implementer(IStreamingBodyResource)
class MultipartResource(Resource):
    """
    Receive C{multipart/form-data} uploads (what an HTML form with files,
    or C{curl -F}, sends to C{POST}) as they arrive: each part goes to the
    handler made for the request, with constant memory whatever the size
    of the upload, and each limit is enforced as the bytes arrive.

    Serve it through a L{StreamingRequest
    <twisted_streaming.StreamingRequest>}
    (C{Site(root, requestFactory=StreamingRequest)}), so that the body
    streams as it arrives; through a plain C{Request}, Twisted stores the
    whole body first (and parses it into C{request.args}, in memory).

    Responses: C{200} with L{uploaded}'s body once every part has been
    handled (and, if the handler has C{whenFinished}, once that has
    fired); C{413} as soon as a part is over C{maxPartSize}, or the body
    over C{maxTotalSize} (at once from its C{Content-Length}); C{400} for
    a malformed body; C{415} for a body that is not C{multipart/form-data};
    C{500} for anything else (logged).  An error sent before the body has
    ended closes the connection once the client stops sending.

    @ivar makeHandler: Called with each request; returns its handler (an
        L{INestedConsumer} such as L{SaveUploads}, or anything with
        C{startChild}).
    """

    isLeaf = True

    def __init__(
        self,
        makeHandler: Callable[[Any], Any],
        *,
        maxPartSize: Optional[int] = None,
        maxTotalSize: Optional[int] = None,
        maxParts: int = 1000,
        reactor: Optional[IReactorTime] = None,
    ) -> None:
        """
        @param makeHandler: Makes each request's handler.
        @param maxPartSize: The most bytes of one part; L{None}, no limit.
        @param maxTotalSize: The most bytes of the body; L{None}, no limit.
        @param maxParts: The most parts in one body.
        @param reactor: The reactor whose turn loop the readers run on; the
            global reactor if L{None}.
        """
        super().__init__()
        self.makeHandler = makeHandler
        self.maxPartSize = maxPartSize
        self.maxTotalSize = maxTotalSize
        self.maxParts = maxParts
        self._reactor = reactor

    def render_POST(self, request: Any) -> Any:
        """
        Start reading the upload; answer when it has been handled, or has
        failed.
        """
        contentType = (request.getHeader(b"content-type") or b"").decode("latin-1")
        if parseHeaderValue(contentType)[0] != "multipart/form-data":
            return _answer(
                request, UNSUPPORTED_MEDIA_TYPE, "expected multipart/form-data"
            )
        length = request.getHeader(b"content-length")
        limit = self.maxTotalSize
        if limit is not None and length is not None and length.isdigit():
            if int(length) > limit:
                return _answer(
                    request, REQUEST_ENTITY_TOO_LARGE, str(UploadTooLarge(None, limit))
                )
        try:
            handler = self.makeHandler(request)
            reader = MultipartReader.fromContentType(
                handler,
                contentType,
                maxPartSize=self.maxPartSize,
                maxTotalSize=limit,
                maxParts=self.maxParts,
                name=request.path.decode("utf-8", "replace"),
                reactor=self._reactor,
            )
        except MultipartError as error:
            return _answer(request, BAD_REQUEST, str(error))
        lost: List[Failure] = []
        request.notifyFinish().addErrback(lost.append)
        done: Deferred[Any] = reader.whenFinished()
        whenFinished = getattr(handler, "whenFinished", None)
        if whenFinished is not None:
            done.addCallback(lambda _: whenFinished())
        done.addCallback(lambda _: self.uploaded(request, handler))

        def answer(body: Union[str, bytes]) -> None:
            if not lost:
                _answer(request, OK, body, finish=True)

        def failed(failure: Failure) -> None:
            if not lost:
                self._failed(request, failure)

        done.addCallbacks(answer, failed)
        streamBody(request, reader)
        return NOT_DONE_YET

    def uploaded(self, request: Any, handler: Any) -> Union[str, bytes]:
        """
        The body of the C{200} response, once the upload has been handled.
        Override for another; by default, for a L{SaveUploads}, a line per
        field and per file, and C{"ok"} otherwise.
        """
        if not isinstance(handler, SaveUploads):
            return "ok"
        lines = [
            f"field {name}: {len(value)} characters"
            for name, values in handler.fields.items()
            for value in values
        ]
        lines += [
            f"file {f.name}: {f.filename} ({f.size} bytes)" for f in handler.files
        ]
        return "\n".join(lines)

    def _failed(self, request: Any, failure: Failure) -> None:
        if failure.check(UploadTooLarge):
            code = REQUEST_ENTITY_TOO_LARGE
        elif failure.check(MultipartError):
            code = BAD_REQUEST
        else:
            code = INTERNAL_SERVER_ERROR
            _log.failure(
                "Receiving an upload to {path} failed", failure, path=request.path
            )
        message = (
            str(failure.value) if code != INTERNAL_SERVER_ERROR else "internal error"
        )
        _answer(request, code, message, finish=True)


def _answer(
    request: Any, code: int, body: Union[str, bytes], finish: bool = False
) -> Any:
    """
    Answer C{request} with C{code} and a plain-text C{body}: return the
    body, for C{render}, or write it and finish.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    body += b"\n"
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", b"%d" % (len(body),))
    if code != OK and not getattr(request, "bodyEnded", True):
        request.setHeader(b"connection", b"close")
    if not finish:
        return body
    request.write(body)
    request.finish()
    return None
