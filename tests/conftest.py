"""Shared pytest fixtures and options for ddpm_ref's tests."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded generator: every test draws from its own, so tests do not depend on order."""
    return np.random.default_rng(0)
