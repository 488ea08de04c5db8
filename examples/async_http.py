"""
Stream HTTP bodies from C{async def} code with C{treq}: upload what an async
generator yields, and download a file to disk with C{async for}, in bounded
memory both ways.

    python examples/async_http.py upload http://127.0.0.1:8080/upload --mib 100
    python examples/async_http.py download http://127.0.0.1:8080/big.iso big.iso

C{upload} POSTs C{--mib} MiB of generated data, chunked, from an async
generator wrapped in L{fromAsyncIterable} and L{BodyProducer}; the generator
is asked for the next chunk only while the connection has room, so a slow
server never makes it buffer.  It prints C{sent SIZE bytes, sha256 HEX}
and then the server's answer.  C{download} GETs the URL and writes the body
to FILE with C{async for} over L{toAsyncIterator}; the connection stops
reading while a quarter of a megabyte is waiting for the loop (a slow disk).
It prints C{saved SIZE bytes, sha256 HEX}.  It needs C{treq} (C{pip install
treq}).
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Any, AsyncIterator, List, Optional

import treq
from twisted.internet.defer import Deferred
from twisted.internet.task import react

from twisted_streaming import (
    BodyProducer,
    fromAsyncIterable,
    responseBody,
    toAsyncIterator,
)


async def generate(mib: int, digest: Any) -> AsyncIterator[bytes]:
    """
    Yield C{mib} MiB in 64 KiB chunks, hashing them on the way.
    """
    for i in range(mib * 16):
        chunk = hashlib.sha256(b"%d" % i).digest() * 2048
        digest.update(chunk)
        yield chunk


async def upload(url: str, mib: int) -> None:
    digest = hashlib.sha256()
    body = BodyProducer(fromAsyncIterable(generate(mib, digest)))
    response = await treq.post(url, data=body)
    answer = await response.text()
    print(f"sent {mib * 1024 * 1024} bytes, sha256 {digest.hexdigest()}")
    print(f"server answered {response.code}: {answer}")


async def download(url: str, path: str) -> None:
    response = await treq.get(url, unbuffered=True)
    if response.code != 200:
        raise SystemExit(f"{url}: {response.code} {response.phrase.decode()}")
    digest, size = hashlib.sha256(), 0
    with open(path, "wb") as f:
        async for chunk in toAsyncIterator(responseBody(response)):
            f.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    print(f"saved {size} bytes, sha256 {digest.hexdigest()}")


async def main(reactor: Any, argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Stream HTTP bodies with treq.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upload", help="POST generated data to URL")
    up.add_argument("url")
    up.add_argument("--mib", type=int, default=16)
    down = commands.add_parser("download", help="GET URL into FILE")
    down.add_argument("url")
    down.add_argument("file")
    args = parser.parse_args(argv)
    if args.command == "upload":
        await upload(args.url, args.mib)
    else:
        await download(args.url, args.file)


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
