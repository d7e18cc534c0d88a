"""Settings for the whole suite.

Hypothesis: under ``CI=true`` every property test draws the same examples on every run
(``derandomize``), so a red CI run fails again on any machine; elsewhere it keeps its example
database (``.hypothesis/``), so a failure found locally is tried first next time. Either way a
failing example is printed with the blob that replays it (``@reproduce_failure``).
"""

from __future__ import annotations

from hypothesis import settings

from tests.servers.process import in_ci

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if in_ci() else "dev")
