"""
A web server that receives file uploads (C{multipart/form-data}, what an
HTML form or C{curl -F} sends) as they arrive, with
L{twisted_streaming.MultipartResource}: each file goes straight to disk
with constant memory, whatever its size, and the limits are enforced while
the bytes arrive.

    python examples/upload_server.py --directory /tmp/uploads --port 8080 \\
        --max-part-size 1000000000 --max-total-size 2000000000

It prints C{listening on port N} (C{--port 0} picks a free port).  C{GET /}
is a form to upload with; C{POST /upload} saves the files in the directory
(each under a new name) and answers with what it received:

    curl -F "photo=@big.jpg" -F "title=Holidays" http://127.0.0.1:8080/upload

A part over C{--max-part-size}, or a body over C{--max-total-size}, is
answered C{413} as soon as it passes its limit, and what was saved of that
upload is removed; a malformed body gets a C{400}.  The site's requests are
L{twisted_streaming.StreamingRequest}s, which hand the body to the resource
as it arrives (a plain Twisted site stores the whole body first, then
parses it in memory).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from twisted_streaming import MultipartResource, SaveUploads, StreamingRequest

_log = Logger()

FORM = b"""<!DOCTYPE html>
<title>Upload</title>
<form action="/upload" method="post" enctype="multipart/form-data">
  <input type="file" name="file" multiple> <input name="title">
  <button>Upload</button>
</form>
"""


class Uploads(MultipartResource):
    """
    Save each upload's files in a directory, and log what arrived.
    """

    def uploaded(self, request: Any, handler: Any) -> Any:
        for upload in handler.files:
            _log.info(
                "Saved {filename!r} ({size} bytes) as {path}",
                filename=upload.filename,
                size=upload.size,
                path=upload.path,
            )
        return super().uploaded(request, handler)


def makeSite(
    directory: str, maxPartSize: Optional[int], maxTotalSize: Optional[int]
) -> Site:
    """
    The site: the form at C{/}, uploads at C{/upload}.
    """
    root = Resource()
    root.putChild(b"", Data(FORM, "text/html; charset=utf-8"))
    uploads = Uploads(
        lambda request: SaveUploads(directory),
        maxPartSize=maxPartSize,
        maxTotalSize=maxTotalSize,
    )
    root.putChild(b"upload", uploads)
    return Site(root, requestFactory=StreamingRequest)


async def main(reactor: Any, argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Receive uploads.")
    parser.add_argument("--directory", default=".")
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-part-size", type=int, default=None)
    parser.add_argument("--max-total-size", type=int, default=None)
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stderr)], redirectStandardIO=False
    )
    site = makeSite(args.directory, args.max_part_size, args.max_total_size)
    port = reactor.listenTCP(args.port, site, interface=args.interface)
    print(f"listening on port {port.getHost().port}", flush=True)
    await Deferred()  # Serve until interrupted.


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
