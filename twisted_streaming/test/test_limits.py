"""
Tests for L{twisted_streaming._limits}: the open connections of a server
and the limits on them, shared by the proxy and the random-integer server.
"""

from __future__ import annotations

import resource
from typing import List

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_streaming._limits import ConnectionLimits, IdleTimer, raiseFileLimit


class Connection:
    """
    A L{twisted_streaming._limits.Limited} that records what it is told.
    """

    def __init__(self) -> None:
        self.calls: List[str] = []

    def drain(self) -> None:
        self.calls.append("drain")

    def abort(self, why: str) -> None:
        self.calls.append(f"abort {why}")


class IdleTimerTests(SynchronousTestCase):
    """
    L{IdleTimer} calls back once after the timeout without a touch.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.idle: List[float] = []
        self.timer = IdleTimer(self.clock, 10, lambda: self.idle.append(0))

    def test_expires(self) -> None:
        """
        Untouched, it calls back after exactly the timeout, once.
        """
        self.clock.advance(9.9)
        self.assertEqual(self.idle, [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.idle), 1)
        self.clock.advance(100)
        self.assertEqual(len(self.idle), 1)

    def test_touchPostpones(self) -> None:
        """
        A touch starts the idle time again; the timer reschedules itself
        only when it expires (one delayed call at a time).
        """
        self.clock.advance(6)
        self.timer.touch()
        self.clock.advance(6)
        self.assertEqual(self.idle, [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(3.9)
        self.assertEqual(self.idle, [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.idle), 1)

    def test_cancel(self) -> None:
        """
        Cancelled, it never calls back and leaves no delayed call; a second
        cancel does nothing.
        """
        self.timer.cancel()
        self.timer.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(20)
        self.assertEqual(self.idle, [])


class ConnectionLimitsTests(SynchronousTestCase):
    """
    L{ConnectionLimits} admits up to its limit, counts, and closes all.
    """

    def test_admitUpToTheLimit(self) -> None:
        """
        Clients are admitted while fewer than C{maxConnections} are open;
        beyond, they are refused and counted; once one ends, admitted again.
        """
        limits = ConnectionLimits(maxConnections=2)
        first, second = Connection(), Connection()
        for connection in (first, second):
            self.assertTrue(limits.admit(None))
            limits.add(connection)
        self.assertFalse(limits.admit(None))
        self.assertFalse(limits.admit(None))
        self.assertEqual((len(limits), limits.accepted, limits.refused), (2, 2, 2))
        limits.remove(first)
        self.assertTrue(limits.admit(None))

    def test_released(self) -> None:
        """
        A released connection no longer counts against the limit but is
        still open (drained, closed on stop, waited for) until removed.
        """
        limits = ConnectionLimits(maxConnections=1)
        first = Connection()
        limits.add(first)
        self.assertFalse(limits.admit(None))
        limits.release(first)
        limits.release(first)
        self.assertTrue(limits.admit(None))
        self.assertEqual((len(limits), len(limits.counted)), (1, 0))
        empty = limits.whenEmpty()
        limits.abortAll("shutdown")
        self.assertEqual(first.calls, ["abort shutdown"])
        self.assertNoResult(empty)
        limits.remove(first)
        self.successResultOf(empty)
        self.assertEqual((len(limits), len(limits.counted)), (0, 0))

    def test_noLimit(self) -> None:
        """
        Without C{maxConnections} every client is admitted.
        """
        limits = ConnectionLimits()
        for _ in range(100):
            self.assertTrue(limits.admit(None))
            limits.add(Connection())
        self.assertEqual((len(limits), limits.refused), (100, 0))

    def test_errorsByKind(self) -> None:
        """
        Connections removed with an error kind are counted by kind.
        """
        limits = ConnectionLimits()
        connections = [Connection() for _ in range(3)]
        for c in connections:
            limits.add(c)
        limits.remove(connections[0], "idle timeout")
        limits.remove(connections[1], "idle timeout")
        limits.remove(connections[2])
        self.assertEqual(dict(limits.errors), {"idle timeout": 2})

    def test_whenEmpty(self) -> None:
        """
        C{whenEmpty} fires at once with nothing open, else when the last
        open connection is removed.
        """
        limits = ConnectionLimits()
        self.successResultOf(limits.whenEmpty())
        a, b = Connection(), Connection()
        limits.add(a)
        limits.add(b)
        d = limits.whenEmpty()
        limits.remove(a)
        self.assertNoResult(d)
        limits.remove(b)
        self.successResultOf(d)

    def test_drainAndAbortAll(self) -> None:
        """
        C{drain} and C{abortAll} tell every open connection, even one that
        removes itself when told.
        """
        limits = ConnectionLimits()
        a, b = Connection(), Connection()
        limits.add(a)
        limits.add(b)
        b.drain = lambda: limits.remove(b)  # type: ignore[method-assign]
        limits.drain()
        self.assertTrue(limits.draining)
        self.assertEqual(a.calls, ["drain"])
        self.assertEqual(limits.open, {a})
        limits.abortAll("shutdown")
        self.assertEqual(a.calls, ["drain", "abort shutdown"])

    def test_idleTimer(self) -> None:
        """
        C{idleTimer} gives a timer of C{idleTimeout} seconds, or none.
        """
        clock = Clock()
        fired: List[None] = []
        self.assertIsNone(ConnectionLimits().idleTimer(clock, lambda: None))
        timer = ConnectionLimits(idleTimeout=5).idleTimer(
            clock, lambda: fired.append(None)
        )
        self.assertIsInstance(timer, IdleTimer)
        clock.advance(5)
        self.assertEqual(fired, [None])


class FileLimitTests(SynchronousTestCase):
    """
    L{raiseFileLimit} raises the soft limit, never lowers it.
    """

    def setUp(self) -> None:
        self.before = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, self.before)

    def test_neverLowers(self) -> None:
        """
        Asking for less than the soft limit changes nothing.
        """
        self.assertEqual(raiseFileLimit(10), self.before[0])
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE), self.before)

    def test_raisesUpToTheHardLimit(self) -> None:
        """
        Asking for more raises the soft limit, as far as the hard limit.
        """
        soft, hard = self.before
        if soft <= 64:
            raise AssertionError(f"a soft limit of {soft} open files is too low")
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        wanted = soft + 1 if hard == resource.RLIM_INFINITY else hard
        self.assertEqual(raiseFileLimit(wanted), wanted)
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE), (wanted, hard))
