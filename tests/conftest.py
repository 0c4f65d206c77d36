"""``pytest --device cuda`` runs the device tests (tests/test_device.py) on a GPU; the default is the CPU.

CI has no GPU, so CI runs them on the CPU; a lent GPU machine runs the very same tests with one flag. Code
that was never run on CUDA breaks there (an int64 matmul did), so every path that can run on a GPU has a test
here that takes the device as a parameter.
"""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="device for tests/test_device.py: cpu or cuda")


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda given but CUDA is not available")
    return torch.device(name)
