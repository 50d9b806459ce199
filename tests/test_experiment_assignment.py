"""Traffic splitting: experiments from TOML, the salted hash, independence across layers, and
the arms and their settings through the real Ranker."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import numpy as np
import pytest
from scipy import stats

import experiment_world
from adrank.experiments.assignment import (
    Arm,
    ArmSettings,
    Experiment,
    ExperimentSet,
    unit_position,
)
from adrank.experiments.exploration import EpsilonGreedy
from adrank.experiments.serving import ExperimentRanker
from adrank.simulation.world import DAY_START

TOML = """
[[experiment]]
name = "penalty"
layer = "scoring"
salt = "penalty-1"
start = 2025-01-01T00:00:00Z
end = 2025-02-01T00:00:00Z
[[experiment.arm]]
name = "control"
share = 0.5
[[experiment.arm]]
name = "high-penalty"
share = 0.5
neg_penalty = 5.0

[[experiment]]
name = "explore"
layer = "selection"
salt = "explore-1"
[[experiment.arm]]
name = "greedy"
share = 0.8
[[experiment.arm]]
name = "epsilon"
share = 0.2
epsilon = 0.5
pool = 4
max_revenue_loss = 0.5
"""


@pytest.fixture
def experiments(tmp_path) -> ExperimentSet:
    path = tmp_path / "experiments.toml"
    path.write_text(TOML)
    return ExperimentSet.from_toml(path)


def test_the_hash_is_the_documented_blake2b_and_deterministic():
    import hashlib

    digest = hashlib.blake2b(b"salt:42", digest_size=8).digest()
    assert unit_position("salt", 42) == int.from_bytes(digest, "big") / 2**64
    assert unit_position("salt", 42) == unit_position("salt", "42")  # the unit as text
    assert unit_position("salt", 42) != unit_position("other", 42)


def test_shares_are_met_and_assignment_changes_only_with_the_salt(experiments):
    users = [{"user_id": 10_000_000 + i} for i in range(20_000)]
    when = datetime(2025, 1, 2, tzinfo=timezone.utc)
    arms = [experiments.assign(u, when).arms for u in users]
    counts = np.bincount([a["explore"] == "epsilon" for a in arms], minlength=2)
    assert stats.chisquare(counts, [16_000, 4_000]).pvalue > 1e-3
    assert ExperimentSet.from_mapping({}).experiments == ()
    # Renaming the experiment keeps the assignment; a new salt reshuffles it.
    penalty = experiments.experiments[0]
    renamed = dataclasses.replace(penalty, name="renamed")
    resalted = dataclasses.replace(penalty, salt="penalty-2")
    first = [penalty.arm_for(u["user_id"]).name for u in users[:2000]]
    assert first == [renamed.arm_for(u["user_id"]).name for u in users[:2000]]
    moved = np.mean(
        [a != resalted.arm_for(u["user_id"]).name for a, u in zip(first, users[:2000], strict=True)]
    )
    assert 0.4 < moved < 0.6


def test_layers_are_independent(experiments):
    when = datetime(2025, 1, 2, tzinfo=timezone.utc)
    table = np.zeros((2, 2))
    for i in range(20_000):
        arms = experiments.assign({"user_id": i}, when).arms
        table[arms["penalty"] == "control", arms["explore"] == "greedy"] += 1
    assert stats.chi2_contingency(table).pvalue > 1e-3


def test_start_and_end_bound_an_experiment_and_settings_merge(experiments):
    before = experiments.assign({"user_id": 1}, datetime(2024, 12, 31, tzinfo=timezone.utc))
    assert set(before.arms) == {"explore"}
    user = next(
        {"user_id": i}
        for i in range(1000)
        if experiments.assign({"user_id": i}).arms
        == {"penalty": "high-penalty", "explore": "epsilon"}
    )
    settings = experiments.assign(user).settings
    assert (settings.neg_penalty, settings.reserve_ecpm) == (5.0, None)
    assert settings.exploration == EpsilonGreedy(0.5, pool=4, max_revenue_loss=0.5)
    assert experiments.assign({"other": 1}).arms == {}  # no unit: in no experiment


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ({"experiment": {}}, "array of tables"),
        ({"experiment": [{"name": "a", "layer": "l"}]}, "salt is required"),
        ({"experiment": [{"name": "a", "layer": "l", "salt": "s", "colour": 1}]}, "unknown keys"),
        ({"experiment": [{"name": "a", "layer": "l", "salt": "s", "arm": []}]}, "arms must not"),
        (
            {"experiment": [{"name": "a", "layer": "l", "salt": "s", "arm": [{"name": "x"}]}]},
            "a name and a share",
        ),
        (
            {
                "experiment": [
                    {"name": "a", "layer": "l", "salt": "s", "arm": [{"name": "x", "share": 0.7}]},
                    {"name": "b", "layer": "l", "salt": "t", "arm": [{"name": "x", "share": 0.7}]},
                ]
            },
            "overlap in time",
        ),
        (
            {
                "experiment": [
                    {"name": "a", "layer": "l", "salt": "s", "arm": [{"name": "x", "share": 0.7}]},
                    {"name": "b", "layer": "m", "salt": "s", "arm": [{"name": "x", "share": 0.7}]},
                ]
            },
            "distinct salts",
        ),
        (
            {
                "experiment": [
                    {
                        "name": "a",
                        "layer": "l",
                        "salt": "s",
                        "arm": [{"name": "x", "share": 0.7}, {"name": "y", "share": 0.7}],
                    }
                ]
            },
            "sum to <= 1",
        ),
        (
            {
                "experiment": [
                    {
                        "name": "a",
                        "layer": "l",
                        "salt": "s",
                        "arm": [{"name": "x", "share": 0.5, "neg_penalty": -1}],
                    }
                ]
            },
            "neg_penalty must be a number >= 0",
        ),
        (
            {
                "experiment": [
                    {
                        "name": "a",
                        "layer": "l",
                        "salt": "s",
                        "arm": [{"name": "x", "share": 0.5, "epsilon": 0.1, "temperature": 1}],
                    }
                ]
            },
            "epsilon or temperature",
        ),
        (
            {"experiment": [{"name": "a", "layer": "l", "salt": "s", "start": "monday"}]},
            "TOML datetime",
        ),
    ],
)
def test_bad_configuration_is_refused_naming_the_field(document, match):
    with pytest.raises(ValueError, match=match):
        ExperimentSet.from_mapping(document)


def test_bad_toml_and_bad_arms_are_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[[experiment]\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        ExperimentSet.from_toml(path)
    with pytest.raises(ValueError, match=r"share must be in \(0, 1\]"):
        Arm("a", 0.0)
    with pytest.raises(TypeError, match="share must be a number"):
        Arm("a", "half")
    with pytest.raises(ValueError, match="arm names must be unique"):
        Experiment("e", "l", "s", (Arm("a", 0.1), Arm("a", 0.1)))
    when = datetime(2025, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="end must be after start"):
        Experiment("e", "l", "s", (Arm("a", 0.1),), start=when, end=when)


def test_every_response_names_its_arms_and_an_arm_changes_the_ranking(experiments):
    world = experiment_world.world()
    ranker = experiment_world.ranker()
    logged = []
    served = ExperimentRanker(
        ranker,
        experiments,
        clock=lambda: datetime(2025, 1, 2, tzinfo=timezone.utc),
        log=lambda request, response: logged.append(response),
    )
    rng = np.random.default_rng(0)
    changed = 0
    for i in range(200):
        request = world.request(rng, f"r{i}", DAY_START, 40, 3)
        response = served.rank(request)
        arms = experiments.assign(request.user, datetime(2025, 1, 2, tzinfo=timezone.utc)).arms
        assert response.arms == arms
        assert set(arms) == {"penalty", "explore"}
        plain = ranker.rank(request)
        if arms["explore"] == "epsilon":
            assert len(response.propensity) == len(response)
        else:
            assert (response.propensity, response.pool) == (None, None)
            if arms["penalty"] == "control":  # no setting changed: the ranker's own answer
                np.testing.assert_array_equal(response.creative_id, plain.creative_id)
                np.testing.assert_array_equal(response.price, plain.price)
            else:
                changed += not np.array_equal(response.ecpm, plain.ecpm)
    assert changed > 10  # the penalty arm's eCPMs differ
    assert len(logged) == 200
    assert served.readiness()[0]
    assert served.catalog is ranker.catalog
    assert ArmSettings() == ArmSettings(None, None, None, None)
