"""
Stopping a server gracefully: stop accepting, let the open connections
finish up to a deadline, then close what is left; a second stop signal
closes everything at once.  Every connection ends through its own code, so
each is logged once however the server stops.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable, Optional

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from twisted_streaming._limits import ConnectionLimits

__all__ = ["DrainingService", "onStopSignals"]

_log = Logger()

#: Installs a handler for the stop signals and returns what restores the
#: previous ones.
SignalInstaller = Callable[[Callable[[], None]], Callable[[], None]]


def onStopSignals(reactor: Any) -> SignalInstaller:
    """
    A L{SignalInstaller} for SIGTERM and SIGINT that calls the handler in
    C{reactor}'s thread, as Twisted's own handlers do; it installs nothing
    outside the main thread (where C{signal.signal} cannot).
    """

    def install(handler: Callable[[], None]) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def caught(number: int, frame: Any) -> None:
            reactor.callFromThread(handler)

        previous = {
            s: signal.signal(s, caught) for s in (signal.SIGTERM, signal.SIGINT)
        }

        def restore() -> None:
            for number, old in previous.items():
                signal.signal(number, old)

        return restore

    return install


class DrainingService(MultiService):
    """
    A server's services, stopped gracefully.

    Started, it starts its children (L{listening}, the server's listener,
    first).  Stopped (on twistd's first SIGTERM or SIGINT), it stops
    L{listening}, so new clients are refused (or, with several processes on
    one port, go to the others); it tells every open connection of
    L{limits} that the server is draining (L{ConnectionLimits.drain}) and
    waits for them to finish, for at most L{timeout} seconds; then it
    closes what is left at once (L{ConnectionLimits.abortAll}), waits until
    each has ended, and only then stops its other children and lets the
    reactor stop.  A stop signal during the drain closes everything at once.
    Each step is logged with the number of connections concerned.

    @ivar timeout: Seconds to wait for the open connections; 0 closes them
        at once.
    """

    def __init__(
        self,
        listening: IService,
        limits: ConnectionLimits,
        timeout: float,
        reactor: Any,
        installSignals: Optional[SignalInstaller] = None,
    ) -> None:
        """
        @param reactor: Times the deadline (C{IReactorTime}); the default
            signal handlers call into it with C{callFromThread}.
        @param installSignals: How to hear a second stop signal; the default
            is L{onStopSignals}.
        """
        super().__init__()
        self.listening = listening
        self.limits = limits
        self.timeout = timeout
        self._reactor = reactor
        self._installSignals = installSignals or onStopSignals(reactor)
        self._deadline: Optional[IDelayedCall] = None
        self._closed = 0
        listening.setServiceParent(self)

    @property
    def factory(self) -> Any:
        """
        The server's protocol factory (that of L{listening}).
        """
        return getattr(self.listening, "factory", None)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        restore = self._installSignals(self._signalled)
        try:
            await maybeDeferred(self.listening.stopService)
            await self._drain()
        finally:
            restore()
        others = [s for s in reversed(list(self)) if s is not self.listening]
        await gatherResults([maybeDeferred(s.stopService) for s in others])

    async def _drain(self) -> None:
        limits = self.limits
        reactor = self._reactor
        began = reactor.seconds()
        open = len(limits)
        self._closed = 0
        if self.timeout > 0 and open:
            _log.info(
                "Stopped accepting: draining {open} connections for up to "
                "{timeout:g} seconds",
                open=open,
                timeout=self.timeout,
            )
            limits.drain()
            if limits.open:
                self._deadline = reactor.callLater(self.timeout, self._expired)
        else:
            self._close("Stopping")
        await limits.whenEmpty()
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if open:
            _log.info(
                "Drained in {seconds:.3f}s: {finished} of {open} connections "
                "finished, {closed} closed",
                seconds=reactor.seconds() - began,
                finished=open - self._closed,
                open=open,
                closed=self._closed,
            )

    def _close(self, why: str) -> None:
        count = len(self.limits)
        if count and not self._closed:
            _log.info("{why}: closing {count} connections", why=why, count=count)
            self._closed += count
            self.limits.abortAll("shutdown")

    def _expired(self) -> None:
        self._deadline = None
        self._close("Drain deadline")

    def _signalled(self) -> None:
        self._close("Second stop signal")
