"""Experiments as configuration, and the salted hash that puts a unit in an arm.

Glossary: a *unit* is what is randomized (a user id by default); an *arm* is one variant of an
experiment with a *share* of the units; a *layer* is a namespace of ranking settings: one
experiment per layer runs at a time, and layers are independent of each other because each
experiment hashes the unit with its own *salt*; *settings* are what an arm changes in ranking
(scoring's reserve and negative-feedback penalty, exploration, the model version).

A unit's position in an experiment is ``blake2b(salt + ":" + unit) / 2**64`` in ``[0, 1)``;
the arms take consecutive ranges of it by share (shares may sum to less than 1: the rest is not
in the experiment). It depends on the salt and the unit only, so assignment is deterministic
across processes and changes only when the salt does.

The TOML form (``adrank serve --experiments FILE``)::

    [[experiment]]
    name = "penalty-v2"
    layer = "scoring"
    salt = "penalty-v2-2025-01"
    unit = "user_id"                      # the user field hashed (default user_id)
    start = 2025-01-01T00:00:00Z          # optional; end likewise
    [[experiment.arm]]
    name = "control"
    share = 0.5
    [[experiment.arm]]
    name = "treatment"
    share = 0.5
    neg_penalty = 1.0                     # reserve_ecpm, epsilon, temperature, pool likewise
    model_version = 2                     # an exported version, scored by it (see below)

An arm's ``model_version`` is an exported version of the served model (``<artifacts>/NAME/V``):
the service loads it beside the version it serves, and that arm's requests are scored by it
(:meth:`adrank.Ranker.pin_model`); a version it cannot load stops the service at start.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from adrank.experiments.exploration import EpsilonGreedy, ExplorationPolicy, SoftmaxExploration

_ARM_KEYS = {
    "name",
    "share",
    "reserve_ecpm",
    "neg_penalty",
    "epsilon",
    "temperature",
    "pool",
    "max_revenue_loss",
    "model_version",
}
_EXPERIMENT_KEYS = {"name", "layer", "salt", "unit", "start", "end", "arm"}


def unit_position(salt: str, unit: Any) -> float:
    """Where ``unit`` falls in ``[0, 1)`` for ``salt`` (uniform, deterministic)."""
    digest = hashlib.blake2b(f"{salt}:{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class ArmSettings:
    """What an arm changes; None keeps the ranker's own setting."""

    reserve_ecpm: float | None = None
    neg_penalty: float | None = None
    exploration: ExplorationPolicy | None = None
    model_version: int | None = None  # an exported version; None: the version serving


@dataclass(frozen=True)
class Arm:
    name: str
    share: float
    settings: ArmSettings = field(default_factory=ArmSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"arm name must be a non-empty string, got {self.name!r}")
        if isinstance(self.share, bool) or not isinstance(self.share, (int, float)):
            raise TypeError(f"arm {self.name!r}: share must be a number")
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"arm {self.name!r}: share must be in (0, 1], got {self.share}")


@dataclass(frozen=True)
class Experiment:
    name: str
    layer: str
    salt: str
    arms: tuple[Arm, ...]
    unit: str = "user_id"
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        for key in ("name", "layer", "salt", "unit"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"experiment {key} must be a non-empty string, got {value!r}")
        if not self.arms:
            raise ValueError(f"experiment {self.name!r}: arms must not be empty")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name!r}: arm names must be unique, got {names}")
        if sum(a.share for a in self.arms) > 1.0 + 1e-9:
            raise ValueError(f"experiment {self.name!r}: arm shares must sum to <= 1")
        if self.start and self.end and self.end <= self.start:
            raise ValueError(f"experiment {self.name!r}: end must be after start")

    def running(self, now: datetime | None) -> bool:
        if now is None:
            return True
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)

    def arm_for(self, unit: Any) -> Arm | None:
        """The unit's arm, or None when it falls outside the shares."""
        position = unit_position(self.salt, unit)
        edge = 0.0
        for arm in self.arms:
            edge += arm.share
            if position < edge:
                return arm
        return None


@dataclass(frozen=True)
class Assignment:
    """A request's arms: experiment name -> arm name, and the settings they add up to."""

    arms: Mapping[str, str]
    settings: ArmSettings


class ExperimentSet:
    """The experiments running together; at most one per layer at any time."""

    def __init__(self, experiments: Sequence[Experiment]) -> None:
        salts = [e.salt for e in experiments]
        if len(set(salts)) != len(salts):
            raise ValueError("experiments must have distinct salts (layers would be correlated)")
        names = [e.name for e in experiments]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment names must be unique, got {names}")
        for i, a in enumerate(experiments):
            for b in experiments[i + 1 :]:
                if a.layer == b.layer and _overlap(a, b):
                    raise ValueError(
                        f"experiments {a.name!r} and {b.name!r} share layer {a.layer!r} "
                        "and overlap in time"
                    )
        self.experiments = tuple(experiments)

    def model_versions(self) -> dict[int, list[str]]:
        """The exported versions arms name -> the arms naming each (``experiment/arm``)."""
        named: dict[int, list[str]] = {}
        for experiment in self.experiments:
            for arm in experiment.arms:
                if arm.settings.model_version is not None:
                    where = f"{experiment.name}/{arm.name}"
                    named.setdefault(arm.settings.model_version, []).append(where)
        return named

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentSet:
        try:
            document = tomllib.loads(Path(path).read_text())
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML: {error}") from error
        return cls.from_mapping(document)

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any]) -> ExperimentSet:
        entries = document.get("experiment", [])
        if not isinstance(entries, list):
            raise ValueError("experiment must be an array of tables ([[experiment]])")
        return cls([_experiment(entry) for entry in entries])

    def assign(self, user: Mapping[str, Any], now: datetime | None = None) -> Assignment:
        """The arms of a request by ``user`` at ``now`` (None: ignore start and end)."""
        arms: dict[str, str] = {}
        merged: dict[str, Any] = {}
        for experiment in self.experiments:
            if not experiment.running(now) or user.get(experiment.unit) is None:
                continue
            arm = experiment.arm_for(user[experiment.unit])
            if arm is None:
                continue
            arms[experiment.name] = arm.name
            for key, value in vars(arm.settings).items():
                if value is not None:
                    merged[key] = value
        return Assignment(arms, ArmSettings(**merged))


def _overlap(a: Experiment, b: Experiment) -> bool:
    starts_before_b_ends = b.end is None or a.start is None or a.start < b.end
    starts_before_a_ends = a.end is None or b.start is None or b.start < a.end
    return starts_before_b_ends and starts_before_a_ends


def _experiment(entry: Any) -> Experiment:
    if not isinstance(entry, Mapping):
        raise ValueError("each [[experiment]] must be a table")
    unknown = set(entry) - _EXPERIMENT_KEYS
    if unknown:
        raise ValueError(f"experiment {entry.get('name')!r}: unknown keys {sorted(unknown)}")
    for key in ("name", "layer", "salt"):
        if key not in entry:
            raise ValueError(f"experiment {entry.get('name')!r}: {key} is required")
    for key in ("start", "end"):
        if key in entry and not isinstance(entry[key], datetime):
            raise ValueError(f"experiment {entry['name']!r}: {key} must be a TOML datetime")
    arms = entry.get("arm", [])
    if not isinstance(arms, list) or not all(isinstance(a, Mapping) for a in arms):
        raise ValueError(f"experiment {entry['name']!r}: arm must be an array of tables")
    return Experiment(
        name=entry["name"],
        layer=entry["layer"],
        salt=entry["salt"],
        unit=entry.get("unit", "user_id"),
        start=entry.get("start"),
        end=entry.get("end"),
        arms=tuple(_arm(entry["name"], arm) for arm in arms),
    )


def _arm(experiment: str, entry: Mapping[str, Any]) -> Arm:
    unknown = set(entry) - _ARM_KEYS
    if unknown:
        raise ValueError(f"experiment {experiment!r}: unknown arm keys {sorted(unknown)}")
    if "name" not in entry or "share" not in entry:
        raise ValueError(f"experiment {experiment!r}: every arm needs a name and a share")
    explore = None
    pool = int(entry.get("pool", 5))
    loss = float(entry.get("max_revenue_loss", 0.3))
    if "epsilon" in entry and "temperature" in entry:
        raise ValueError(f"arm {entry['name']!r}: give epsilon or temperature, not both")
    if "epsilon" in entry:
        explore = EpsilonGreedy(float(entry["epsilon"]), pool=pool, max_revenue_loss=loss)
    elif "temperature" in entry:
        explore = SoftmaxExploration(float(entry["temperature"]), pool=pool, max_revenue_loss=loss)
    settings = ArmSettings(
        reserve_ecpm=_number(entry, "reserve_ecpm"),
        neg_penalty=_number(entry, "neg_penalty"),
        exploration=explore,
        model_version=_version(entry),
    )
    return Arm(entry["name"], entry["share"], settings)


def _version(entry: Mapping[str, Any]) -> int | None:
    value = entry.get("model_version")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"arm {entry.get('name')!r}: model_version must be an exported version, an integer "
            f">= 1, got {value!r}"
        )
    return value


def _number(entry: Mapping[str, Any], key: str) -> float | None:
    if key not in entry:
        return None
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"arm {entry.get('name')!r}: {key} must be a number >= 0")
    return float(value)
