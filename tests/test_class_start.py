"""The class-start benchmark's tiny setting, run with the suite to keep it working."""

import pytest

from bench.class_start import test_class_start  # noqa: F401


@pytest.fixture
def class_size():
    return 2
