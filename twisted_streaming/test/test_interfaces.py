"""
Tests for L{twisted_streaming.interfaces}.
"""

from __future__ import annotations

import subprocess
import sys

from twisted.internet import interfaces as ti
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

import twisted_streaming
from twisted_streaming import interfaces
from twisted_streaming._flow import isFinishable


class ReExportTests(SynchronousTestCase):
    """
    Twisted's producer and consumer interfaces are re-exported unchanged.
    """

    def test_sameObjects(self) -> None:
        """
        Each re-exported interface is Twisted's own object.
        """
        for name in ("IProducer", "IPushProducer", "IPullProducer", "IConsumer"):
            self.assertIs(getattr(interfaces, name), getattr(ti, name))
            self.assertIs(getattr(twisted_streaming, name), getattr(ti, name))

    def test_finishableExtendsConsumer(self) -> None:
        """
        L{interfaces.IFinishableConsumer} extends Twisted's L{IConsumer}.
        """
        self.assertTrue(interfaces.IFinishableConsumer.extends(ti.IConsumer))

    def test_importInstallsNoReactor(self) -> None:
        """
        Importing the package and its plugin module installs no reactor.
        """
        code = (
            "import sys, twisted_streaming, twisted_streaming.interfaces, "
            "twisted_streaming.testing, twisted_streaming.tap.randomintegers, "
            "twisted_streaming.tap.streamproxy\n"
            "from twisted.plugins import twisted_streaming_plugins\n"
            "print('twisted.internet.reactor' in sys.modules)\n"
        )
        out = subprocess.check_output([sys.executable, "-c", code])
        self.assertEqual(out.strip(), b"False")


@implementer(interfaces.IFinishableConsumer)
class _Finishable:
    def registerProducer(self, producer: object, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def finish(self) -> None:
        pass


class IsFinishableTests(SynchronousTestCase):
    """
    L{isFinishable} recognises our finishable consumers and FTP's.
    """

    def test_ours(self) -> None:
        """
        A provider of L{interfaces.IFinishableConsumer} is finishable.
        """
        consumer = _Finishable()
        verifyObject(interfaces.IFinishableConsumer, consumer)
        self.assertTrue(isFinishable(consumer))

    def test_plainConsumer(self) -> None:
        """
        A plain consumer is not finishable.
        """
        from twisted.internet.testing import StringTransport

        self.assertFalse(isFinishable(StringTransport()))

    def test_ftp(self) -> None:
        """
        A provider of FTP's C{IFinishableConsumer} is finishable too.
        """
        from twisted.protocols import ftp

        @implementer(ftp.IFinishableConsumer)
        class FTPConsumer(_Finishable):
            pass

        self.assertTrue(isFinishable(FTPConsumer()))


class ExceptionTests(SynchronousTestCase):
    """
    The exported exceptions carry what a caller needs.
    """

    def test_producerStopped(self) -> None:
        """
        L{interfaces.ProducerStopped} says who stopped and how far it had got.
        """
        error = interfaces.ProducerStopped("P", 10, 2)
        self.assertEqual(
            (error.producer, error.bytesWritten, error.chunksWritten), ("P", 10, 2)
        )
        self.assertEqual(
            str(error), "'P' was stopped after writing 10 bytes in 2 chunks"
        )
