"""Fixtures shared by test modules: one trained and exported workspace for the serving tests.

Training and exporting take seconds on two cores: the modules that serve a model without
changing its repository share this one (session-scoped) instead of each training its own.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from adrank.data import SyntheticConfig
from adrank.workspace import prepare_workspace

# CI shares two cores with servers and builds: an example's wall time says nothing about its
# correctness, so no example fails for being slow.
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

SERVING_WORLD = SyntheticConfig(
    num_advertisers=20, num_campaigns=60, num_creatives=600, num_users=500, num_categories=8
)


@pytest.fixture(scope="session")
def serving_workspace(tmp_path_factory):
    """A synthetic world, a model trained on 20,000 rows and exported (version 1). Tests must
    not add versions to its repository (tests/test_model_swap.py builds its own)."""
    root = tmp_path_factory.mktemp("serving_workspace")
    return prepare_workspace(
        root, rows=20_000, world=SERVING_WORLD, repository=root / "models", say=lambda _: None
    )
