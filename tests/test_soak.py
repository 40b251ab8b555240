"""The soak benchmark's 2-minute setting, run with the suite: 20 participants, random cancels,
a fault every 11 s through the whole fault list; no job lost, run twice, stuck or failed."""

from bench.soak import test_soak  # noqa: F401
