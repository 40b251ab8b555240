"""The benchmarks' tiny settings, run with the suite only to keep them working (no figures)."""

import pytest

from bench.test_200_workspaces import test_many_workspaces_on_one_daphne  # noqa: F401
from bench.test_big_output import test_big_output  # noqa: F401
from bench.test_catalog_memory import test_catalog_memory  # noqa: F401
from bench.test_dispatch_gap import test_dispatch_gap  # noqa: F401
from bench.test_model_affinity import test_model_affinity_saves_loads  # noqa: F401
from bench.test_spine_latency import test_spine_latency  # noqa: F401


@pytest.fixture
def affinity_jobs():
    return 12


@pytest.fixture
def runs():
    return 3


@pytest.fixture
def burst():
    return 4, 1


@pytest.fixture
def short_jobs():
    return 3, 1, 0.0


@pytest.fixture
def long_jobs():
    return 2, 2, 0.05


@pytest.fixture
def socket_counts():
    return 3, 5


@pytest.fixture
def changes():
    return 2


@pytest.fixture
def output_bytes():
    return 20 * 1024 * 1024 + 5  # three parts, the last a few bytes
