"""A class of 20 opening the workshop at once (bench/class_start.py)."""

import pytest

from bench.class_start import test_class_start  # noqa: F401


@pytest.fixture
def class_size():
    return 20
