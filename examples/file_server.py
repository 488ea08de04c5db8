"""
A web server for the large files in a directory, with byte ranges: the
library's L{twisted_streaming.FileResource} on a C{twisted.web} site.

    python examples/file_server.py --directory /srv/files --port 8080

It prints C{listening on port N} (C{--port 0} picks a free port), logs
requests on stderr, and answers:

  - no C{Range} header: 200 and the whole file, with C{Content-Length};
  - one range, C{bytes=a-b}, C{bytes=a-} or C{bytes=-n}: 206 and those bytes,
    with C{Content-Range};
  - a range that starts past the end of the file: 416;
  - a range with C{If-Range}: the range only if the date given is the file's
    C{Last-Modified}, else 200 and the whole file (the file has changed, so
    the part the client holds is stale).
  - C{If-Modified-Since} at or after the file's C{Last-Modified}: 304, no
    body.

Over plain HTTP the body goes from the file to the socket with
C{os.sendfile}, never through Python; memory stays flat however big the
file.  When a client goes away mid-transfer, sending stops, the file is
closed and the server logs how far it got.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.python.filepath import FilePath
from twisted.web.server import Site

from twisted_streaming import FileResource


async def main(reactor: Any, argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a directory's files.")
    parser.add_argument("--directory", default=".")
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stderr)], redirectStandardIO=False
    )
    site = Site(FileResource(FilePath(args.directory)))
    port = reactor.listenTCP(args.port, site, interface=args.interface)
    print(f"listening on port {port.getHost().port}", flush=True)
    await Deferred()  # Serve until interrupted.


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
