"""A ranker behind experiments: each request gets its arms' settings, each response names its
arms (:class:`ExperimentRanker`).

Glossary: *arms* are experiment name -> arm name (:mod:`adrank.experiments.assignment`).

An arm's model version is applied, not only recorded: its requests carry it
(``RankRequest.model_version``) and the ranker scores them with that version, pinned beside the
serving one (:meth:`adrank.Ranker.pin_model`; the service pins every version its experiments
name at start, :meth:`adrank.service.model_versions.ModelVersions.pin`), so the response's
``model_version`` and the request log name the version that scored it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from adrank.experiments.assignment import ExperimentSet
from adrank.orchestrator.request import RankRequest, RankResponse
from adrank.orchestrator.scoring import ScoringConfig


class ArmVersionError(ValueError):
    """An arm names a model version the service does not serve (not exported, not loadable,
    or not pinned in the ranker): refused at start, never a failed request."""


class ExperimentRanker:
    """Wraps a ranker (``rank``, ``readiness``): assigns arms, applies their settings.

    ``clock`` gives the time experiments' start and end are read against (default: now);
    ``log``: called with every (request, response), e.g. :meth:`RequestLog.append`.
    Raises :class:`ArmVersionError` when an arm names a model version ``ranker`` has not
    pinned.
    """

    def __init__(
        self,
        ranker: Any,
        experiments: ExperimentSet,
        clock: Callable[[], datetime] | None = None,
        log: Callable[[RankRequest, RankResponse], None] | None = None,
    ) -> None:
        self.ranker, self.experiments, self.log = ranker, experiments, log
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        pinned = getattr(ranker, "pinned_versions", frozenset())
        for version, arms in sorted(experiments.model_versions().items()):
            if version not in pinned:
                raise ArmVersionError(
                    f"arm {', '.join(arms)}: model version {version} is not loaded beside the "
                    f"serving one (loaded: {sorted(pinned) or 'none'})"
                )

    def rank(self, request: RankRequest) -> RankResponse:
        assignment = self.experiments.assign(request.user, self.clock())
        settings = assignment.settings
        changes: dict[str, Any] = {}
        if settings.reserve_ecpm is not None or settings.neg_penalty is not None:
            base = self.ranker.scoring_config
            changes["scoring"] = ScoringConfig(
                reserve_ecpm=_either(settings.reserve_ecpm, base.reserve_ecpm),
                neg_penalty=_either(settings.neg_penalty, base.neg_penalty),
                value=base.value,  # an arm changes the prices, not what is bid for
            )
        if settings.exploration is not None:
            changes["exploration"] = settings.exploration
        if settings.model_version is not None:
            changes["model_version"] = settings.model_version
        if changes:
            request = dataclasses.replace(request, **changes)
        response = dataclasses.replace(self.ranker.rank(request), arms=dict(assignment.arms))
        if self.log is not None:
            self.log(request, response)
        return response

    def readiness(self) -> tuple[bool, str]:
        return self.ranker.readiness()

    def __getattr__(self, name: str) -> Any:  # the wrapped ranker's other attributes
        return getattr(self.ranker, name)


def _either(value: float | None, default: float) -> float:
    return default if value is None else value
