"""
Benchmark tar streams: a directory of 1,000 files (1 GiB) sent as a tar
archive over TCP loopback by L{TarWriter} against GNU tar (C{tar -cf - DIR |
socat}) and against one C{FileSender} sending a single file of the same
size; the sender's memory while a client reads slowly; and L{TarReader}
extracting a GNU-tar archive against C{tar -xf -}.

    python -m bench.bench_tar [--quick] [--files N] [--file-mib N]

Sending: a plain socket reader in another process counts the bytes and
times them from accept to end of stream, for every sender alike.  CPU is
the sender's: this process's for ours, GNU tar's and socat's for theirs.
Memory: the sender's RSS growth, sampled every 50 ms, while a reader takes
a tenth of the tree at 128 MB/s.  Extracting: the archive is in the page
cache, the target on the same file system, and C{sync} runs before each
(untimed).  Ratios are against GNU tar; one run each (the machine's noise
is in the text of the performance page).  The data is made in a temporary
directory and removed as soon as it is not needed (at most about 2 GiB on
disk at once).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import LoopingCall, react

from bench.bench_filesender import _rss, _startReceiver
from bench.bench_stages import Connection, Sink, cpuSeconds
from twisted_streaming import (
    ExtractDirectory,
    FileSender,
    TarReader,
    TarWriter,
    pipeline,
)

MiB = 2**20
# No single run may take longer than this.
TIMEOUT = 600.0


def childCPU() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def makeTree(root: str, files: int, size: int) -> str:
    """
    C{files} files of C{size} bytes in 10 directories under C{root/tree}.
    """
    tree = os.path.join(root, "tree")
    block = os.urandom(MiB)
    for i in range(files):
        directory = os.path.join(tree, f"d{i % 10}")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"file-{i:05d}.bin"), "wb") as f:
            left = size
            while left > 0:
                f.write(bytes([i % 256]) + block[1 : min(left, len(block))])
                left -= min(left, len(block))
    return tree


def makeFile(path: str, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(block)
        f.write(block[: size % MiB])


async def ours(reactor: Any, sink: Sink, send: Any) -> Tuple[float, float, int]:
    """
    Connect to C{sink} and run C{send(transport)}.

    @return: The sink's MB/s, this process's CPU seconds, the bytes sent.
    """
    connection = Connection()
    await connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", sink.port), connection
    )
    began = cpuSeconds()
    done: Deferred[Any] = send(connection.transport)
    done.addTimeout(TIMEOUT, reactor)
    await done
    connection.transport.loseConnection()
    await connection.lost
    cpu = cpuSeconds() - began
    total, seconds = sink.readline(TIMEOUT).split()
    return int(total) / float(seconds) / 1e6, cpu, int(total)


def gnuTar(sink: Sink, tree: str) -> Tuple[float, float, int]:
    """
    C{tar -cf - DIR | socat - TCP:sink}.
    """
    began = childCPU()
    subprocess.run(
        f"tar -cf - -C {os.path.dirname(tree)} {os.path.basename(tree)}"
        f" | socat -u - TCP:127.0.0.1:{sink.port}",
        shell=True,
        check=True,
        timeout=TIMEOUT,
    )
    total, seconds = sink.readline(TIMEOUT).split()
    return int(total) / float(seconds) / 1e6, childCPU() - began, int(total)


def sendTree(tree: str) -> Any:
    def send(transport: Any) -> Deferred[Any]:
        writer = TarWriter(transport)
        done = writer.add(tree)
        done.addCallback(lambda _: writer.finish())
        return done

    return send


async def sending(
    reactor: Any, tree: str, single: str, size: int
) -> List[Tuple[str, float, float, int]]:
    sink = Sink()
    rows = []
    try:
        rows.append(("GNU tar | socat", *gnuTar(sink, tree)))
        rows.append(
            ("TarWriter (sendfile)", *(await ours(reactor, sink, sendTree(tree))))
        )
        FileSender.ZERO_COPY = False
        try:
            rows.append(
                ("TarWriter (read-write)", *(await ours(reactor, sink, sendTree(tree))))
            )
        finally:
            FileSender.ZERO_COPY = True
        rows.append(
            (
                "FileSender, 1 file",
                *(
                    await ours(
                        reactor,
                        sink,
                        lambda t: FileSender().beginFileTransfer(single, t),
                    )
                ),
            )
        )
    finally:
        sink.stop()
    return rows


async def memory(reactor: Any, tree: str, rate: int) -> List[Tuple[str, float, int]]:
    """
    The sender's RSS growth while a reader takes a tenth of the tree (its
    first directory) at C{rate} bytes per second.
    """
    rows = []
    for name, zeroCopy in [
        ("TarWriter (sendfile)", True),
        ("TarWriter (read-write)", False),
    ]:
        FileSender.ZERO_COPY = zeroCopy
        try:
            rows.append((name, *(await slowReader(reactor, tree, rate))))
        finally:
            FileSender.ZERO_COPY = True
    return rows


async def slowReader(reactor: Any, tree: str, rate: int) -> Tuple[float, int]:
    """
    Send the tree's first directory to a reader taking C{rate} bytes per
    second.

    @return: The sender's RSS growth in MiB, and the bytes sent.
    """
    listener, pipe, process = _startReceiver(bytesPerSecond=rate)
    try:
        connection = Connection()
        port = listener.getsockname()[1]
        await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port), connection
        )
        base = _rss()
        peak = [base]
        sampler = LoopingCall(lambda: peak.append(_rss()))
        sampler.clock = reactor
        sampler.start(0.05)
        writer = TarWriter(connection.transport)
        done: Deferred[Any] = writer.add(
            os.path.join(tree, sorted(os.listdir(tree))[0])
        )
        done.addCallback(lambda _: writer.finish())
        done.addTimeout(TIMEOUT, reactor)
        await done
        connection.transport.loseConnection()
        await connection.lost
        sampler.stop()
        received = pipe.recv()
        if received != writer.bytesWritten:
            raise RuntimeError(f"sent {writer.bytesWritten}, received {received}")
        return (max(peak) - base) / MiB, writer.bytesWritten
    finally:
        process.kill()
        listener.close()


async def extracting(
    reactor: Any, root: str, archive: str
) -> List[Tuple[str, float, float]]:
    rows = []
    size = os.path.getsize(archive)
    target = os.path.join(root, "x-gnu")
    os.makedirs(target)
    os.sync()
    began, cpu = time.perf_counter(), childCPU()
    with open(archive, "rb") as f:
        subprocess.run(
            ["tar", "-xf", "-", "-C", target], stdin=f, check=True, timeout=TIMEOUT
        )
    rows.append(
        ("tar -xf -", size / (time.perf_counter() - began) / 1e6, childCPU() - cpu)
    )
    shutil.rmtree(target)
    target = os.path.join(root, "x-ours")
    os.sync()
    began, cpu = time.perf_counter(), cpuSeconds()
    extract = ExtractDirectory(target)
    reader = TarReader(extract)
    done = pipeline(lambda c: FileSender().beginFileTransfer(archive, c), sink=reader)
    done.addTimeout(TIMEOUT, reactor)
    await done
    await extract.whenFinished()
    rows.append(
        (
            "TarReader + ExtractDirectory",
            size / (time.perf_counter() - began) / 1e6,
            cpuSeconds() - cpu,
        )
    )
    shutil.rmtree(target)
    return rows


def report(
    files: int,
    fileSize: int,
    sent: List[Tuple[str, float, float, int]],
    grown: List[Tuple[str, float, int]],
    extracted: List[Tuple[str, float, float]],
    rate: int,
) -> None:
    out = sys.stdout.write
    total = files * fileSize
    out(
        f"Sending a directory of {files} files of {fileSize // MiB} MiB ({total / 2**30:.2f} GiB) as tar over TCP loopback\n"
    )
    out(
        f"{'sender':<26}{'MB/s':>8}{'x GNU tar':>11}{'CPU s/GiB':>11}{'archive MB':>12}\n"
    )
    anchor = sent[0][1]
    for name, mbps, cpu, size in sent:
        out(
            f"{name:<26}{mbps:>8.0f}{mbps / anchor:>11.2f}{cpu / (size / 2**30):>11.2f}{size / 1e6:>12.0f}\n"
        )
    out(f"\nSender RSS growth, a reader taking {rate // 10**6} MB/s\n")
    out(f"{'sender':<26}{'sent MB':>9}{'RSS growth MiB':>16}\n")
    for name, mib, size in grown:
        out(f"{name:<26}{size / 1e6:>9.0f}{mib:>16.2f}\n")
    out("\nExtracting the GNU-tar archive of that directory (from the page cache)\n")
    out(f"{'reader':<30}{'MB/s':>8}{'x tar -xf':>11}{'CPU s/GiB':>11}\n")
    anchor = extracted[0][1]
    gib = total / 2**30
    for name, mbps, cpu in extracted:
        out(f"{name:<30}{mbps:>8.0f}{mbps / anchor:>11.2f}{cpu / gib:>11.2f}\n")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller tree")
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--file-mib", type=int, default=1)
    args = parser.parse_args(argv)
    for tool in ("tar", "socat"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench_tar needs {tool}: make bench installs it")
    files = args.files or (128 if args.quick else 1000)
    fileSize = args.file_mib * MiB
    rate = 128 * 10**6

    async def run(reactor: Any) -> None:
        root = tempfile.mkdtemp(prefix="bench_tar_")
        try:
            tree = makeTree(root, files, fileSize)
            single = os.path.join(root, "single.bin")
            makeFile(single, files * fileSize)
            sent = await sending(reactor, tree, single, files * fileSize)
            os.remove(single)
            grown = await memory(reactor, tree, rate)
            archive = os.path.join(root, "tree.tar")
            subprocess.run(["tar", "-cf", archive, "-C", root, "tree"], check=True)
            shutil.rmtree(tree)
            extracted = await extracting(reactor, root, archive)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        report(files, fileSize, sent, grown, extracted, rate)

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
