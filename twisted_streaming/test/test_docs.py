"""
The API reference keeps up with the public names.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

import twisted_streaming

API = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "docs",
    "api.rst",
)


class APIReferenceTests(SynchronousTestCase):
    """
    docs/api.rst names every public name of the package.
    """

    def test_everyPublicName(self) -> None:
        """
        Every name in C{twisted_streaming.__all__} appears in the reference.
        """
        if not os.path.exists(API):
            # Installed without its source tree: nothing to check against.
            self.assertTrue(twisted_streaming.__all__)
            return
        with open(API) as f:
            text = f.read()
        missing = [
            name
            for name in twisted_streaming.__all__
            if name != "__version__" and name not in text
        ]
        self.assertEqual(missing, [])
