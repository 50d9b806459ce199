"""A ranker behind experiments: each request gets its arms' settings, each response names its
arms (:class:`ExperimentRanker`).

Glossary: *arms* are experiment name -> arm name (:mod:`adrank.experiments.assignment`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from adrank.experiments.assignment import ExperimentSet
from adrank.orchestrator.request import RankRequest, RankResponse
from adrank.orchestrator.scoring import ScoringConfig


class ExperimentRanker:
    """Wraps a ranker (``rank``, ``readiness``): assigns arms, applies their settings.

    ``clock`` gives the time experiments' start and end are read against (default: now);
    ``log``: called with every (request, response), e.g. :meth:`RequestLog.append`.
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
