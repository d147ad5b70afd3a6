"""Suite-wide rules: in CI (CI=true) a skipped test is a failed test; no hypothesis deadlines."""
from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Property tests check what is computed, not how fast: speed lives in scripts/bench_*.py.
# Hypothesis' default 200 ms deadline per example fails them at random on a loaded
# 2-core machine (seen: a range-coalescing example took 289 ms), so it is off.
settings.register_profile("azlift", deadline=None)
settings.load_profile("azlift")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every real component must be present: {reason}"
