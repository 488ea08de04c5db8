"""
Tests of the programs in C{examples/}, run as a user runs them.

They live beside the examples, not in the C{twisted_streaming} package:
a wheel ships the package and its tests, not the examples, so the
package's tests must not need these files.  Run them from a checkout, in
the C{examples} directory (C{make test} does)::

    cd examples && python -m twisted.trial tests
    pytest examples/tests
"""
