"""
The random-integer server: the classic push-producer example, done right.

On connect the server sends C{how many random integers do you want?\\r\\n};
the client sends a decimal count N on a line (ending in C{\\n} or C{\\r\\n});
the server sends N integers drawn uniformly from C{[minimum, maximum]}, one
per line (C{%d\\r\\n}), then closes the connection.  A bad count gets an
C{error: ...} line and the prompt again; a line over 1 KiB gets an error and
the connection is closed.  So does a client beyond the factory's
C{maxConnections}, one that sends no request within its C{idleTimeout}, and
one still waiting to ask when the server drains or stops.  Every
connection's end is logged once, with what it was sent and why it ended.

The integers are produced by a L{BasePushProducer} in batches of tens of KiB:
bulk random bits are mapped through a table of pre-formatted lines, with
rejection sampling so that every value in the range is equally likely.
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from twisted_streaming._flow import getReactor
from twisted_streaming._limits import ConnectionLimits, IdleTimer
from twisted_streaming._push import BasePushProducer
from twisted_streaming.interfaces import ProducerStopped

__all__ = [
    "PROMPT",
    "IntegerLines",
    "RandomIntegerFactory",
    "RandomIntegerProducer",
    "RandomIntegerProtocol",
]

_log = Logger()

PROMPT = b"how many random integers do you want?\r\n"

# Ranges up to this size are drawn from 16-bit values through a lookup table.
_TABLE_BITS = 16
_TABLE_SIZE = 1 << _TABLE_BITS
_COUNT = re.compile(rb"[0-9]+")


class IntegerLines:
    """
    Uniformly distributed random integers in C{[minimum, maximum]}, as
    C{%d\\r\\n} lines.

    For ranges of at most 65536 values, 16-bit random values index a table
    whose entries are the formatted lines of C{minimum + value % size} for
    values below the largest multiple of C{size}, and empty for the rest (the
    rejected values), so no value is favoured and the whole batch is built by
    one C{bytes.join}.  Wider ranges fall back to C{Random.randrange}.
    """

    def __init__(self, minimum: int, maximum: int, rng: random.Random) -> None:
        if minimum > maximum:
            raise ValueError(f"minimum {minimum} is greater than maximum {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self._size = maximum - minimum + 1
        self._rng = rng
        self._table = _table(minimum, maximum) if self._size <= _TABLE_SIZE else None

    def lines(self, count: int) -> bytes:
        """
        Return exactly C{count} random lines.
        """
        if count <= 0:
            return b""
        table = self._table
        if table is None:
            low, randrange, size = self.minimum, self._rng.randrange, self._size
            return b"".join([b"%d\r\n" % (low + randrange(size)) for _ in range(count)])
        accepted = _TABLE_SIZE - _TABLE_SIZE % self._size
        pieces = []
        got = 0
        while got < count:
            need = count - got
            # Draw enough that rejections rarely force another round.
            draws = need + need * (_TABLE_SIZE - accepted) // accepted + 16
            values = memoryview(self._rng.randbytes(2 * draws)).cast("H")
            chunk = b"".join(map(table.__getitem__, values))
            made = chunk.count(b"\n")
            if made > need:
                end = len(chunk) - 1
                for _ in range(made - need):
                    end = chunk.rindex(b"\n", 0, end)
                chunk = chunk[: end + 1]
                made = need
            pieces.append(chunk)
            got += made
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


_tables: Dict[Tuple[int, int], List[bytes]] = {}


def _table(minimum: int, maximum: int) -> List[bytes]:
    """
    The lookup table for C{[minimum, maximum]}, shared by every connection.
    """
    key = (minimum, maximum)
    table = _tables.get(key)
    if table is None:
        size = maximum - minimum + 1
        lines = [b"%d\r\n" % (minimum + i) for i in range(size)]
        accepted = _TABLE_SIZE - _TABLE_SIZE % size
        table = [lines[v % size] if v < accepted else b"" for v in range(_TABLE_SIZE)]
        _tables[key] = table
    return table


class RandomIntegerProducer(BasePushProducer):
    """
    Produce C{count} random integer lines in batches of L{batchSize}.
    """

    batchSize = 8192

    def __init__(
        self,
        count: int,
        lines: IntegerLines,
        *,
        reactor: Optional[IReactorTime] = None,
    ) -> None:
        super().__init__(reactor=reactor)
        self.count = count
        self.produced = 0
        self._lines = lines
        #: Called, if set, with the integers and bytes of each batch as it
        #: is made.
        self.onBatch: Optional[Callable[[int, int], None]] = None

    def produce(self) -> Optional[bytes]:
        remaining = self.count - self.produced
        if remaining <= 0:
            return None
        batch = min(remaining, self.batchSize)
        self.produced += batch
        data = self._lines.lines(batch)
        if self.onBatch is not None:
            self.onBatch(batch, len(data))
        return data


class _Refused(Protocol):
    """
    A client beyond the factory's C{maxConnections}: told why, and closed.
    """

    def __init__(self, open: int) -> None:
        self.open = open

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(
            b"error: too many connections (%d open), try again later\r\n" % (self.open,)
        )
        self.transport.loseConnection()


class RandomIntegerProtocol(LineReceiver):
    """
    One client of the random-integer server.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1024

    factory: RandomIntegerFactory
    transport: Any  # A TCP transport, set by makeConnection.
    producer: Optional[RandomIntegerProducer] = None
    #: Why the connection is ending, once it is (C{"done"} if all is well).
    reason = ""
    #: Integers and bytes sent (counted as batches are made).
    integers = 0
    bytesSent = 0
    _idle: Optional[IdleTimer] = None

    def connectionMade(self) -> None:
        factory = self.factory
        self.started = factory.reactor.seconds()
        factory.limits.add(self)
        self._idle = factory.limits.idleTimer(factory.reactor, self._idleTimedOut)
        self.transport.write(PROMPT)

    def dataReceived(self, data: bytes) -> None:
        self.factory.bytesReceived += len(data)
        if self._idle is not None and self.producer is None:
            self._idle.touch()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self.reason:
            return  # Closing: see _end.
        count, error = self.factory.parseCount(line)
        if error is not None:
            self.factory.limits.errors["bad request"] += 1
            self.transport.write(b"error: %s\r\n%s" % (error.encode("ascii"), PROMPT))
            return
        assert count is not None
        # Anything more the client sends is read (so a disconnect is noticed
        # at once) and ignored.
        self.setRawMode()
        if count == 0:
            self._end("done")
            return
        self.producer = self.factory.buildProducer(count)
        self.producer.onBatch = self._sent
        d = self.producer.startProducing(self.transport)
        d.addCallbacks(self._done, self._failed)

    def rawDataReceived(self, data: bytes) -> None:
        pass

    def lineLengthExceeded(self, line: bytes) -> None:
        self._end("line too long", b"line longer than %d bytes" % (self.MAX_LENGTH,))

    def _sent(self, integers: int, size: int) -> None:
        self.integers += integers
        self.bytesSent += size
        self.factory.integersServed += integers
        self.factory.bytesSent += size
        if self._idle is not None:
            self._idle.touch()

    def _end(self, reason: str, error: bytes = b"") -> None:
        """
        End as C{reason}, telling the client C{error} if given (before any
        integers have been sent: afterwards a line would not be read as one).
        """
        if self.reason:
            return
        self.reason = reason
        if error and self.producer is None:
            self.transport.write(b"error: %s\r\n" % (error,))
        self.transport.loseConnection()

    def _idleTimedOut(self) -> None:
        self._idle = None
        timeout = self.factory.limits.idleTimeout or 0.0
        self.abort("idle timeout", b"no request in %g seconds" % (timeout,))

    def drain(self) -> None:
        """
        The server is draining: a client still to ask is told so and closed;
        one being sent integers carries on.
        """
        if self.producer is None:
            self._end("shutdown", b"server shutting down")

    def abort(self, why: str, error: bytes = b"server shutting down") -> None:
        """
        Close at once: a client still to ask is told why; one being sent
        integers, or not reading the last of them, is cut off (its buffer
        is full of them), as is one already told but still closing.
        """
        if self.producer is None and not self.reason:
            self._end(why, error)
            return
        if self.reason in ("", "done"):
            self.reason = why
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.producer is not None and self.producer.producing:
            # The client went away: the producer stops, and fails with
            # ProducerStopped (see _failed).
            self.reason = self.reason or "client lost"
        factory = self.factory
        ended = self.reason or "closed"
        factory.limits.remove(self, None if ended in ("done", "closed") else ended)
        _log.info(
            "Served {peer}: {integers} integers ({size} bytes) in "
            "{duration:.3f}s ({reason})",
            peer=self.transport.getPeer(),
            integers=self.integers,
            size=self.bytesSent,
            duration=factory.reactor.seconds() - self.started,
            reason=ended,
        )

    def _done(self, written: int) -> None:
        self._end("done")

    def _failed(self, reason: Failure) -> None:
        if not reason.check(ProducerStopped):
            _log.failure("Sending random integers failed", reason)
            self.reason = self.reason or "failed"
        self.transport.loseConnection()


class RandomIntegerFactory(Factory):
    """
    Serve random integers.

    @param minimum: The smallest integer sent.
    @param maximum: The largest integer sent (inclusive).
    @param maxCount: The largest count a client may ask for.
    @param seed: If not L{None}, every connection draws from
        C{random.Random(seed)}, so the same request always gets the same
        integers.
    @param reactor: The reactor the producers schedule on and connections
        are timed with; the global one if L{None}.
    @param maxConnections: Beyond this many open connections a new client
        gets an C{error:} line and is closed; L{None} for no limit.
    @param idleTimeout: A client that sends no request within this many
        seconds gets an C{error:} line and is closed, and one that reads
        none of its integers for as long is cut off; L{None} for never.

    @ivar limits: The open connections and the limits on them.
    @ivar integersServed: Integers sent since the start, to every client.
    @ivar bytesSent: Bytes of integers sent since the start.
    @ivar bytesReceived: Bytes received from clients since the start.
    """

    protocol = RandomIntegerProtocol  # type: ignore[assignment]

    def __init__(
        self,
        minimum: int = 0,
        maximum: int = 10000,
        maxCount: int = 10**9,
        seed: Optional[int] = None,
        reactor: Optional[IReactorTime] = None,
        maxConnections: Optional[int] = None,
        idleTimeout: Optional[float] = None,
    ) -> None:
        if minimum > maximum:
            raise ValueError(f"minimum {minimum} is greater than maximum {maximum}")
        if maxCount < 0:
            raise ValueError(f"maxCount {maxCount} is negative")
        self.minimum = minimum
        self.maximum = maximum
        self.maxCount = maxCount
        self.seed = seed
        self._reactor = reactor
        self.limits = ConnectionLimits(maxConnections, idleTimeout)
        self.integersServed = 0
        self.bytesSent = 0
        self.bytesReceived = 0

    @property
    def reactor(self) -> IReactorTime:
        """
        The reactor given, or the global one, looked up when first needed.
        """
        if self._reactor is None:
            self._reactor = getReactor(None)
        return self._reactor

    def buildProtocol(self, addr: Any) -> Optional[Protocol]:
        if not self.limits.admit(addr):
            self.limits.errors["too many connections"] += 1
            return _Refused(len(self.limits))
        return cast(Optional[Protocol], super().buildProtocol(addr))

    def parseCount(self, line: bytes) -> Tuple[Optional[int], Optional[str]]:
        """
        Parse a request line.

        @return: C{(count, None)} for a valid count, else C{(None, reason)}.
        """
        text = line.rstrip(b"\r").strip(b" \t")
        if not _COUNT.fullmatch(text):
            shown = text[:40].decode("ascii", "backslashreplace")
            return None, f"expected a non-negative decimal integer, got {shown!r}"
        count = int(text)
        if count > self.maxCount:
            return None, f"at most {self.maxCount} integers may be asked for"
        return count, None

    def buildProducer(self, count: int) -> RandomIntegerProducer:
        rng = random.Random(self.seed)
        lines = IntegerLines(self.minimum, self.maximum, rng)
        return RandomIntegerProducer(count, lines, reactor=self._reactor)
