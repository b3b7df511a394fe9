"""Shared pytest fixtures and options for ddpm_ref's tests."""

import sys
from pathlib import Path

import numpy as np
import pytest

# The repository root on sys.path, so that a test can import shared helpers as ``tests.nn.conftest``
# under a plain ``pytest`` too (which puts only the tests' own folders on the path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture
def rng():
    """A seeded generator: every test draws from its own, so tests do not depend on order."""
    return np.random.default_rng(0)
