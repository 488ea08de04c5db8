"""
Run trial on the installed twisted_streaming, as `trial twisted_streaming`
does, and then check how tests were skipped:

    python trial.py --no-skips        every test must run (and pass)
    python trial.py --skip-reason X   a test may be skipped only if the
                                      reason says X

Run it from outside the checkout, with the Python of the virtualenv under
test: `.ci/test-wheel` does.  Exits non-zero if a test failed or errored,
or if a skip breaks the rule.
"""

from __future__ import annotations

import argparse
import sys

from twisted.trial import reporter, runner


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    rule = parser.add_mutually_exclusive_group(required=True)
    rule.add_argument("--no-skips", action="store_true")
    rule.add_argument("--skip-reason", metavar="TEXT")
    parser.add_argument("--temp-directory", default="_trial_temp")
    parser.add_argument("tests", nargs="*", default=["twisted_streaming"])
    args = parser.parse_args()

    suite = runner.TestLoader().loadByNames(args.tests, recurse=True)
    trialRunner = runner.TrialRunner(
        reporter.TreeReporter, workingDirectory=args.temp_directory
    )
    result = trialRunner.run(suite)
    if not result.wasSuccessful():
        return 1
    skips = [(test.id(), str(reason)) for test, reason in result.skips]
    if args.no_skips:
        broken = skips
        rule = "no test may be skipped"
    else:
        broken = [(t, reason) for t, reason in skips if args.skip_reason not in reason]
        rule = f"a skip must say {args.skip_reason!r}"
    for test, reason in broken:
        print(f"{test}: skipped ({reason}), but {rule}", file=sys.stderr)
    if broken:
        return 1
    passed = result.testsRun - len(skips)
    print(f"trial: {passed} passed, 0 failed, {len(skips)} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
