"""Hypothesis profiles for the fuzz tests, and a count of the cases they ran.

    python -m pytest -q tests/fuzz                               # "ci": the short run (default)
    HYPOTHESIS_PROFILE=long python -m pytest -q tests/fuzz       # "long": >= 10,000 cases

The profile applies to the properties in tests/fuzz only (they take `FUZZ` as their
settings), not to the other hypothesis tests of the suite. "ci" is derandomized: every CI
run tries the same cases, so a red build always means a change in the code, never luck.
"long" draws fresh cases on every run. A failure prints the example and a
`@reproduce_failure` blob; the end of the run prints how many cases each property checked.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings

_CHECKS = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
    HealthCheck.function_scoped_fixture,
]
# Properties weigh differently (an HTTP request costs more than a parse): a test asks for
# `examples(weight)`, i.e. weight x the profile's base count.
BASE_EXAMPLES = {"ci": 80, "long": 400}

settings.register_profile(
    "ci",
    max_examples=BASE_EXAMPLES["ci"],
    deadline=None,  # each property checks its own time bound: 1 s per parse, not hypothesis's 200 ms
    derandomize=True,
    database=None,
    suppress_health_check=_CHECKS,
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=BASE_EXAMPLES["long"],
    deadline=None,
    suppress_health_check=_CHECKS,
    print_blob=True,
)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in BASE_EXAMPLES:
    raise pytest.UsageError(f"HYPOTHESIS_PROFILE must be one of {sorted(BASE_EXAMPLES)}")
FUZZ = settings.get_profile(PROFILE)


def examples(weight: float) -> settings:
    """The profile's settings with `weight` times its base number of examples."""
    return settings(FUZZ, max_examples=max(1, round(BASE_EXAMPLES[PROFILE] * weight)))


CASES: Counter[str] = Counter()
_STARTED = time.monotonic()


def count_case(prop: str) -> None:
    CASES[prop] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CASES:
        return
    took = time.monotonic() - _STARTED
    total = sum(CASES.values())
    terminalreporter.write_sep("-", f"fuzz: profile {PROFILE!r}, {total} cases in {took:.0f} s")
    for prop, n in sorted(CASES.items()):
        terminalreporter.write_line(f"{n:8d}  {prop}")
