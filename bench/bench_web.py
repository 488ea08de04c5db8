"""
Benchmark: serving a file over twisted.web to curl, with Twisted's
C{twisted.web.static.File} and our C{FileResource}, side by side in one run.

Run: python -m bench.bench_web [--quick] [--size-mib N] [--repeat N]

One L{Site} in this process serves the same file (in C{/dev/shm}) from each
resource; C{curl} in another process downloads it over HTTP/1.1 on
127.0.0.1 to C{/dev/null}, then over HTTPS.  For each case: MB/s as curl
saw it, and the server's CPU seconds per GiB sent (this process's user and
system time, which curl's is not part of), the median of C{--repeat}
interleaved rounds, with ratios to C{static.File}.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
from typing import Any, Dict, Generator, List, Optional, Sequence, Tuple, cast

from bench.bench_filesender import Result, _table


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _makeFile(directory: str, size: int) -> str:
    path = os.path.join(directory, "file.bin")
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
    return path


def run(size: int, repeat: int) -> List[Result]:
    """
    Serve a file of C{size} bytes to curl from each resource, C{repeat}
    rounds of every case in turn.

    @return: A L{Result} per case: the median of its rounds.
    """
    from twisted.internet import defer
    from twisted.internet import reactor as _reactor
    from twisted.internet.ssl import CertificateOptions
    from twisted.internet.utils import getProcessOutputAndValue
    from twisted.web.resource import Resource
    from twisted.web.server import Site
    from twisted.web.static import File

    from twisted_streaming import FileResource
    from twisted_streaming.test.test_faults import selfSigned

    reactor: Any = _reactor
    directory = tempfile.mkdtemp(
        prefix="bench_web_", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    _makeFile(directory, size)
    ours = FileResource(directory)
    readWrite = FileResource(directory)
    readWrite.zeroCopy = False
    root = Resource()
    root.putChild(b"static", File(directory))
    root.putChild(b"ours", ours)
    root.putChild(b"readwrite", readWrite)
    site = Site(root)
    site.log = lambda request: None  # type: ignore[method-assign]
    key, cert = selfSigned("127.0.0.1")
    plain = reactor.listenTCP(0, site, interface="127.0.0.1")
    # pyOpenSSL takes cryptography's objects directly.
    options = CertificateOptions(privateKey=cast(Any, key), certificate=cast(Any, cert))
    tls = reactor.listenSSL(0, site, options, interface="127.0.0.1")
    cases = [
        ("twisted.web.static.File", plain, "static"),
        ("FileResource (zero-copy)", plain, "ours"),
        ("FileResource, zeroCopy=False", plain, "readwrite"),
        ("HTTPS: twisted.web.static.File", tls, "static"),
        ("HTTPS: FileResource", tls, "ours"),
    ]
    rounds: Dict[str, List[Tuple[float, float]]] = {}

    @defer.inlineCallbacks
    def runAll() -> Generator[Any, Any, None]:
        try:
            for name, port, path in [c for _ in range(repeat) for c in cases]:
                scheme = "https" if port is tls else "http"
                url = f"{scheme}://127.0.0.1:{port.getHost().port}/{path}/file.bin"
                args = ["--silent", "--show-error", "--noproxy", "*", "--insecure"]
                args += ["--http1.1", "--max-time", "600", "--output", os.devnull]
                args += ["--write-out", "%{http_code} %{size_download} %{time_total}"]
                before = ours.zeroCopyBytes
                cpu0 = _cpu()
                out, err, code = yield getProcessOutputAndValue(
                    "curl", [*args, url], env=dict(os.environ)
                )
                cpu = _cpu() - cpu0
                status, got, seconds = out.decode().split()
                assert code == 0 and status == "200", (name, out, err)
                assert int(got) == size, (name, got)
                if path == "ours" and port is plain:
                    # The zero-copy path was taken, for every byte.
                    assert ours.zeroCopyBytes - before == size
                rounds.setdefault(name, []).append(
                    (size / float(seconds) / 1e6, cpu * (1 << 30) / size)
                )
        finally:
            yield plain.stopListening()
            yield tls.stopListening()
            reactor.stop()

    reactor.callWhenRunning(runAll)
    try:
        reactor.run()
    finally:
        shutil.rmtree(directory)
    return [
        (
            name,
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
        )
        for name, runs in rounds.items()
    ]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int)
    parser.add_argument("--quick", action="store_true", help="a smaller file")
    parser.add_argument("--repeat", type=int, help="rounds; the median is shown")
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        raise SystemExit("bench_web needs curl: apt-get install curl")
    mib = args.size_mib or (64 if args.quick else 256)
    repeat = args.repeat or (1 if args.quick else 3)
    results = run(mib * 1024 * 1024, repeat)
    print(
        f"{mib} MiB from a twisted.web Site to curl over HTTP/1.1 on 127.0.0.1,"
        f" median of {repeat} rounds; CPU is the server's"
    )
    _table([r for r in results if not r[0].startswith("HTTPS")], "resource")
    print(f"\n{mib} MiB over HTTPS (TLS 1.3, curl --insecure)")
    _table([r for r in results if r[0].startswith("HTTPS")], "resource")


if __name__ == "__main__":
    main()
