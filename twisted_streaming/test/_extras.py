"""
Skip reasons for tests that need what a plain C{pip install
twisted_streaming} does not bring, following Twisted's convention for
OpenSSL: the test case says C{skip = skipTLS}, never fails to import.
"""

from __future__ import annotations

import shutil
import subprocess
from types import FunctionType
from typing import Optional

from twisted.python.reflect import requireModule

__all__ = [
    "Absent",
    "missing",
    "skipCurl",
    "skipGNUTar",
    "skipHAProxy",
    "skipHTTP2",
    "skipHypothesis",
    "skipTLS",
    "skipTreq",
]

#: The command that installs everything the suite needs.
INSTALL = "pip install 'twisted_streaming[test]'"


def missing(*modules: str) -> Optional[str]:
    """
    A skip reason naming the extra that installs C{modules}, or L{None} if
    all of them can be imported.
    """
    absent = [name for name in modules if requireModule(name) is None]
    if not absent:
        return None
    return f"{', '.join(absent)} not installed: {INSTALL}"


#: TLS: pyOpenSSL, cryptography and service_identity (Twisted's C{tls} extra).
skipTLS = missing("OpenSSL", "cryptography", "service_identity")

#: HTTP/2 in twisted.web (Twisted's C{http2} extra), which also needs TLS.
skipHTTP2 = skipTLS or missing("h2", "priority")

#: Property-based tests.
skipHypothesis = missing("hypothesis")

#: treq, the HTTP client of the upload and download tests.
skipTreq = missing("treq")

#: curl, the client of the twisted.web tests; a program, not a package.
skipCurl: Optional[str] = (
    None
    if shutil.which("curl")
    else "curl is not installed: apt-get install curl (make test installs it)"
)

#: HAProxy, the PROXY protocol tests' third-party receiver; a program.
skipHAProxy: Optional[str] = (
    None
    if shutil.which("haproxy")
    else "haproxy is not installed: apt-get install haproxy (make test installs it)"
)


def _gnuTar() -> Optional[str]:
    tar = shutil.which("tar")
    if tar is None:
        return "tar is not installed: apt-get install tar (make test installs it)"
    version = subprocess.run([tar, "--version"], capture_output=True).stdout
    if b"GNU tar" not in version:
        return "tar is not GNU tar: apt-get install tar (make test installs it)"
    return None


#: GNU tar, the peer of the tar tests; a program, not a package.
skipGNUTar = _gnuTar()


class Absent:
    """
    Stands in for a module that is not installed, so that a test module
    whose decorators and module-level values use it still imports, and its
    tests are reported as skipped: every attribute and call gives this
    object back, except that a call on a lone function (a decorator)
    gives the function back unchanged.
    """

    def __getattr__(self, name: str) -> Absent:
        return self

    def __call__(self, *args: object, **kwargs: object) -> object:
        if len(args) == 1 and not kwargs and isinstance(args[0], FunctionType):
            return args[0]
        return self

    def __or__(self, other: object) -> Absent:
        return self
