"""
Tests for the zero-copy (L{os.splice}) path of L{twisted_streaming.ProxyFactory}
beyond what L{twisted_streaming.test.test_proxy.ProxyTests} covers: which
connections take it, pipes that cannot be enlarged, resets, timeouts and file
descriptors.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
from typing import Any, List, Tuple

from twisted.internet import reactor as _globalReactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
)
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_streaming import _splice
from twisted_streaming._transportinternals import writeClosing
from twisted_streaming.test.test_proxy import (
    MiB,
    Peer,
    ProxyTestsMixin,
    RecordingProxyFactory,
    Vanishing,
    connected,
    digest,
    turn,
)

reactor: Any = _globalReactor


def openDescriptors() -> List[str]:
    """
    What this process's open file descriptors point to, sorted.
    """
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            # The descriptor listdir used, closed by now.
            pass
    return sorted(found)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def openPipes() -> int:
    return sum(1 for target in openDescriptors() if target.startswith("pipe:"))


class SpliceTests(ProxyTestsMixin, TestCase):
    """
    The zero-copy path over real loopback connections.
    """

    def refuseEnlargement(self, smallSize: int = 0) -> List[int]:
        """
        Make pipe enlargement fail with EPERM, as it does for an unprivileged
        user over C{pipe-user-pages-soft}; if C{smallSize}, pipes then report
        that size.  Returns the list of refused requests.
        """
        refused: List[int] = []

        def fakeFcntl(fd: int, command: int, *args: Any) -> int:
            if command == fcntl.F_SETPIPE_SZ:
                refused.append(args[0])
                raise OSError(errno.EPERM, os.strerror(errno.EPERM))
            if command == fcntl.F_GETPIPE_SZ and smallSize:
                return smallSize
            return fcntl.fcntl(fd, command, *args)

        self.patch(_splice, "_fcntl", fakeFcntl)
        return refused

    async def bothWays(self, size: int) -> Any:
        """
        Send C{size} bytes each way through the proxy, check them, and return
        the connection.
        """
        port = self.proxy(self.upstream(lambda: Peer(send=size, seed=2)))
        client = await self.client(port, Peer(send=size, seed=1))
        await client.lost
        await self.upstreams[0].lost
        self.assertEqual(client.hash.digest(), digest(2, size))
        self.assertEqual(self.upstreams[0].hash.digest(), digest(1, size))
        connection = self.factory.clients[0].connection
        stats = await connection.done
        self.assertEqual((stats.bytesToUpstream, stats.bytesToClient), (size, size))
        self.assertEqual(stats.reason, "closed")
        return connection

    async def test_enlargedPipes(self) -> None:
        """
        Plain TCP on both sides is spliced through pipes enlarged to 1 MiB,
        which are closed and unregistered at the end.
        """
        connection = await self.bothWays(8 * MiB)
        self.assertEqual(connection.splice.capacity, _splice.PIPE_SIZE)
        self.assertTrue(connection.splice.stopped)
        self.assertEqual(connection.splice.buffered, 0)
        registered = reactor.getReaders() + reactor.getWriters()
        self.assertEqual(
            [d for d in registered if isinstance(d, _splice._SpliceSocket)], []
        )

    async def test_enlargementRefused(self) -> None:
        """
        A refused enlargement leaves the pipes at their default size, which
        is still spliced through, intact.
        """
        refused = self.refuseEnlargement()
        connection = await self.bothWays(8 * MiB)
        self.assertEqual(refused, [_splice.PIPE_SIZE] * 2)
        self.assertIsNot(connection.splice, None)
        self.assertGreaterEqual(connection.splice.capacity, _splice.MIN_PIPE_SIZE)
        self.assertLess(connection.splice.capacity, _splice.PIPE_SIZE)

    async def test_tinyPipesFallBack(self) -> None:
        """
        Pipes smaller than C{MIN_PIPE_SIZE} (what a user over the limit gets)
        are closed and the ordinary path is taken instead.
        """
        self.refuseEnlargement(smallSize=8192)
        # The running reactor has its own pipes (its wakers); count with it.
        await turn()
        before = openPipes()
        connection = await self.bothWays(4 * MiB)
        self.assertIs(connection.splice, None)
        self.assertEqual(openPipes(), before)

    async def test_unixNotSpliced(self) -> None:
        """
        A client on a UNIX socket takes the ordinary path.
        """
        upstreamPort = self.upstream(lambda: Peer(echo=True))
        factory = RecordingProxyFactory("127.0.0.1", upstreamPort)
        path = self.mktemp()
        port = reactor.listenUNIX(path, factory)
        self.addCleanup(port.stopListening)
        client = Peer(send=2 * MiB, seed=8)
        await connectProtocol(UNIXClientEndpoint(reactor, path), client)
        await client.lost
        self.assertEqual(client.hash.digest(), digest(8, 2 * MiB))
        connection = factory.clients[0].connection
        self.assertTrue(factory.zeroCopy)
        self.assertIs(connection.splice, None)
        stats = await connection.done
        self.assertEqual((stats.bytesToUpstream, stats.bytesToClient), (2 * MiB,) * 2)

    async def test_bufferedDataNotSpliced(self) -> None:
        """
        A transport with bytes waiting to be written cannot be spliced (they
        must go first); a plain idle TCP transport can.
        """
        server = Peer()
        port = self.listen(Factory.forProtocol(lambda: server))
        self.addCleanup(lambda: server.lost)
        client = await self.client(port, Peer())
        transport: Any = client.transport
        self.assertTrue(_splice.canSplice(transport))
        transport.write(b"pending")
        self.assertFalse(_splice.canSplice(transport))
        self.assertFalse(_splice.canSplice(object()))

    async def test_resetsLeakNothing(self) -> None:
        """
        Connections that finish, that the client resets mid-stream and that
        upstream resets mid-stream end with the right reasons, and leave the
        process with the descriptors it had: sockets and pipes all closed.
        """
        mode = ["closed"]
        upstreams: List[Peer] = []

        def build() -> Peer:
            resets = mode[0] == "upstream lost"
            upstreams.append(Vanishing(echo=True) if resets else Peer(echo=True))
            return upstreams[-1]

        port = self.proxy(self.listen(Factory.forProtocol(build), backlog=1024))

        async def run(reason: str, count: int) -> None:
            mode[0] = reason
            first = len(self.factory.clients)
            for i in range(count):
                resets = reason == "client lost"
                client = (Vanishing if resets else Peer)(send=4 * MiB, seed=i)
                await self.client(port, client)
                await client.lost
                if reason == "closed":
                    self.assertEqual(client.hash.digest(), digest(i, 4 * MiB))
            await gatherResults([p.lost for p in upstreams])
            proxied = [p.connection for p in self.factory.clients[first:]]
            finished = await gatherResults([c.done for c in proxied])
            self.assertEqual({s.reason for s in finished}, {reason})
            for c in proxied:
                self.assertTrue(c.splice.stopped)

        # The first connection may open descriptors kept for later; count
        # after it.
        await run("closed", 1)
        before = openDescriptors()
        await run("closed", 10)
        await run("client lost", 10)
        await run("upstream lost", 10)
        # A transport's socket is closed before its protocol's connectionLost
        # runs, so before the Deferreds above fire.
        self.assertEqual(openDescriptors(), before)
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_idleTimeout(self) -> None:
        """
        Spliced bytes postpone the idle timeout; once it passes, both
        connections are closed and the splice stopped.
        """
        clock = Clock()
        upstreamPort = self.upstream(lambda: Peer())
        factory = RecordingProxyFactory.forEndpoint(
            TCP4ClientEndpoint(reactor, "127.0.0.1", upstreamPort),
            reactor=clock,
            idleTimeout=10,
        )
        port = self.listen(factory)
        client = await self.client(port, Peer())
        await connected(factory)
        connection = factory.clients[0].connection
        self.assertIsNot(connection.splice, None)
        for _ in range(10_000):
            if self.upstreams:
                break
            await turn()
        upstream = self.upstreams[0]
        for n in (1, 2):
            clock.advance(9)
            self.assertFalse(connection.splice.stopped)
            client.transport.write(b"x")  # type: ignore[union-attr]
            while upstream.received < n:
                await turn()
        clock.advance(9)
        self.assertFalse(connection.splice.stopped)
        clock.advance(1)
        self.assertTrue(connection.splice.stopped)
        await client.lost
        await upstream.lost
        stats = await connection.done
        self.assertEqual((stats.reason, stats.bytesToUpstream), ("idle timeout", 2))

    async def test_finishedConnectionsCloseAtOnce(self) -> None:
        """
        Once both directions are done, the splice has shut down each socket's
        write side as the transport would have, so closing the transports
        takes effect at once rather than on another turn of the reactor.
        """
        port = self.proxy(self.upstream(lambda: Peer(reply=True)))
        client = await self.client(port, Peer())
        await connected(self.factory)
        connection = self.factory.clients[0].connection
        self.assertIsNot(connection.splice, None)
        transports = [connection.client.transport, connection.upstream.transport]
        seen: List[Any] = []
        original = connection.spliceFinished

        def spliceFinished() -> None:
            seen.append([writeClosing(t) for t in transports])
            original()
            seen.append([t.connected for t in transports])

        connection.spliceFinished = spliceFinished
        got: List[bytes] = []
        client.dataReceived = got.append  # type: ignore[method-assign,assignment]
        client.transport.write(b"hello")  # type: ignore[union-attr]
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        await client.lost
        self.assertEqual(b"".join(got), b"REPLY:hello")
        self.assertEqual(seen, [[True, True], [False, False]])
        stats = await connection.done
        self.assertEqual(stats.reason, "closed")

    async def test_pipesPooled(self) -> None:
        """
        Pipes are given back to the factory's pool when a connection ends and
        taken by the next ones; the pool keeps no more than its size, and is
        closed when the factory stops listening.
        """
        await turn()
        before = openPipes()
        upstreamPort = self.upstream(lambda: Peer(echo=True))
        factory = RecordingProxyFactory("127.0.0.1", upstreamPort)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=1024)
        proxyPort = port.getHost().port

        async def run(count: int) -> List[Any]:
            first = len(factory.clients)
            clients = [Peer(send=65536, seed=i) for i in range(count)]
            await gatherResults(
                [Deferred.fromCoroutine(self.client(proxyPort, c)) for c in clients]
            )
            await gatherResults([c.lost for c in clients])
            for i, c in enumerate(clients):
                self.assertEqual(c.hash.digest(), digest(i, 65536))
            proxied = [p.connection for p in factory.clients[first:]]
            await gatherResults([c.done for c in proxied])
            return proxied

        [one] = await run(1)
        self.assertEqual(len(factory._pipes), 2)
        [two] = await run(1)
        self.assertEqual(set(two.splice._pipes), set(one.splice._pipes))
        # More connections at once than the pool holds pipes for: all are
        # spliced, and when they end the pool keeps only its size.
        size = factory._pipes.size
        first = len(factory.clients)
        clients = [Peer() for _ in range(size)]
        await gatherResults(
            [Deferred.fromCoroutine(self.client(proxyPort, c)) for c in clients]
        )
        while len(factory.clients) < first + size or any(
            p.connection.splice is None for p in factory.clients[first:]
        ):
            await turn()
        self.assertEqual(len(factory._pipes), 0)
        self.assertEqual(openPipes(), before + 4 * size)
        for client in clients:
            client.transport.write(b"hello")  # type: ignore[union-attr]
            client.transport.loseWriteConnection()  # type: ignore[union-attr]
        await gatherResults([c.lost for c in clients])
        self.assertEqual([c.hash.digest() for c in clients], [sha256(b"hello")] * size)
        await gatherResults([p.connection.done for p in factory.clients[first:]])
        self.assertEqual(len(factory._pipes), size)
        self.assertEqual(openPipes(), before + 2 * size)
        await port.stopListening()
        self.assertEqual(len(factory._pipes), 0)
        self.assertEqual(openPipes(), before)


class PipePoolTests(SynchronousTestCase):
    """
    L{_splice.PipePool}.
    """

    def take(self, pool: _splice.PipePool) -> Tuple[int, int, int]:
        pipe = pool.take()
        assert pipe is not None
        return pipe

    def test_bounded(self) -> None:
        """
        Pipes given back beyond the pool's size are closed; closing the pool
        closes those it kept.
        """
        before = openPipes()
        pool = _splice.PipePool(2)
        pipes = [self.take(pool) for _ in range(3)]
        self.assertEqual(openPipes(), before + 6)
        for pipe in pipes:
            pool.give(pipe, 0)
        self.assertEqual((len(pool), openPipes()), (2, before + 4))
        pool.close()
        self.assertEqual((len(pool), openPipes()), (0, before))

    def test_reused(self) -> None:
        """
        A pipe given back is the next one taken.
        """
        pool = _splice.PipePool()
        self.addCleanup(pool.close)
        pipe = self.take(pool)
        pool.give(pipe, 0)
        self.assertEqual(self.take(pool), pipe)
        pool.give(pipe, 0)

    def test_emptiedWhenGivenBack(self) -> None:
        """
        A pipe given back with bytes in it is emptied before it is kept.
        """
        pool = _splice.PipePool()
        self.addCleanup(pool.close)
        pipe = self.take(pool)
        os.write(pipe[1], b"x" * 100000)
        pool.give(pipe, 100000)
        self.assertEqual(self.take(pool), pipe)
        self.assertRaises(BlockingIOError, os.read, pipe[0], 1)
        pool.give(pipe, 0)

    def test_closedPoolKeepsNothing(self) -> None:
        """
        Once closed, a pool closes the pipes given back, until opened again.
        """
        before = openPipes()
        pool = _splice.PipePool()
        pipe = self.take(pool)
        pool.close()
        pool.give(pipe, 0)
        self.assertEqual((len(pool), openPipes()), (0, before))
        pool.open()
        pool.give(self.take(pool), 0)
        self.assertEqual((len(pool), openPipes()), (1, before + 2))
        pool.close()
        self.assertEqual(openPipes(), before)


class FakeTransport:
    """
    As much of a TCP transport as a L{_splice.Splice} uses.
    """

    def __init__(self, sock: socket.socket, reactor: Any) -> None:
        self.socket = sock
        self.reactor = reactor

    def stopReading(self) -> None:
        pass

    def stopWriting(self) -> None:
        pass


class RecordingOwner:
    """
    A L{_splice.SpliceOwner} that records what it is told.
    """

    def __init__(self) -> None:
        self.events: List[Tuple[Any, ...]] = []

    def spliced(self, source: Any, size: int) -> None:
        self.events.append(("spliced", source, size))

    def spliceReadDone(self, source: Any) -> None:
        self.events.append(("end", source))

    def spliceFinished(self) -> None:
        self.events.append(("finished",))

    def spliceFailed(self, transport: Any, reason: Failure) -> None:
        self.events.append(("failed", transport))


class SpliceUnitTests(SynchronousTestCase):
    """
    A L{_splice.Splice} between real loopback sockets, driven by hand.
    """

    def tcpPair(self) -> Tuple[socket.socket, socket.socket]:
        """
        Two connected loopback TCP sockets: a blocking one (with a timeout)
        for the test's side, and a non-blocking one for the splice's.
        """
        with socket.create_server(("127.0.0.1", 0)) as server:
            outside = socket.create_connection(server.getsockname())
            inside, _ = server.accept()
        outside.settimeout(10)
        inside.setblocking(False)
        for sock in (outside, inside):
            self.addCleanup(sock.close)
        return outside, inside

    def setUp(self) -> None:
        self.client, clientInside = self.tcpPair()
        self.upstream, upstreamInside = self.tcpPair()
        reactor = MemoryReactor()
        self.a = FakeTransport(clientInside, reactor)
        self.b = FakeTransport(upstreamInside, reactor)
        self.owner = RecordingOwner()
        pipes = [_splice._openPipe(), _splice._openPipe()]
        self.splice = _splice.Splice(self.a, self.b, self.owner, pipes)  # type: ignore[arg-type]
        self.addCleanup(self.splice.stop)
        self.reads: List[int] = []
        realSplice = os.splice

        def countingSplice(src: int, dst: int, count: int, **kwargs: Any) -> int:
            if src == clientInside.fileno():
                self.reads.append(src)
            return realSplice(src, dst, count, **kwargs)

        self.patch(os, "splice", countingSplice)

    def receive(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.upstream.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def test_endOfStreamWithFirstBytes(self) -> None:
        """
        An end of stream that arrived with the first bytes is seen and
        passed on in the same read: the bytes and then the end of stream
        reach the other socket.
        """
        self.client.sendall(b"hello")
        self.client.shutdown(socket.SHUT_WR)
        self.splice._a.doRead()
        self.assertEqual(self.owner.events, [("end", self.a), ("spliced", self.a, 5)])
        self.assertEqual(len(self.reads), 2)
        self.assertEqual(self.receive(6), b"hello")

    def test_laterReadsAskOnce(self) -> None:
        """
        Only the first read looks again for more: later reads make one
        system call each.
        """
        self.client.sendall(b"hello")
        self.splice._a.doRead()
        self.assertEqual(len(self.reads), 2)
        self.assertEqual(self.receive(5), b"hello")
        self.client.sendall(b"again")
        self.splice._a.doRead()
        self.assertEqual(len(self.reads), 3)
        self.assertEqual(self.receive(5), b"again")
        self.assertEqual(
            self.owner.events, [("spliced", self.a, 5), ("spliced", self.a, 5)]
        )
