"""Prometheus metrics of the control state, read at scrape time: the model version served,
spend against budget and pacing participation of the top campaigns, kill switches in force.

Glossary: the *top campaigns* are the ``top`` campaigns with a budget that spent most today.

    adrank_model_version_info{version}                1 for the version this process serves
    adrank_campaign_budget{campaign_id}               daily budget (top campaigns)
    adrank_campaign_spend{campaign_id}                today's recorded spend (top campaigns)
    adrank_campaign_participation{campaign_id}        pacing's share of requests entered, 0..1
    adrank_kill_switches{scope}                       kill switches in force (advertiser, campaign)
    adrank_state_available                            1 if the control store answered this scrape
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from adrank.stores.postgres import StateUnavailableError

DEFAULT_TOP = 20


class ControlStateCollector:
    """A prometheus_client collector over a service's pacing, traffic control and versions."""

    def __init__(
        self,
        pacing: Any,
        traffic: Any,
        version: Callable[[], Any],
        top: int = DEFAULT_TOP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"top must be an integer >= 1, got {top!r}")
        self.pacing, self.traffic, self.version, self.top, self.clock = (
            pacing,
            traffic,
            version,
            top,
            clock,
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "adrank_model_version_info", "The model version this process serves", labels=["version"]
        )
        info.add_metric([str(self.version())], 1.0)
        yield info
        snapshot = self.traffic.snapshot
        kills = GaugeMetricFamily(
            "adrank_kill_switches", "Kill switches in force", labels=["scope"]
        )
        kills.add_metric(["advertiser"], float(len(snapshot.killed_advertisers)))
        kills.add_metric(["campaign"], float(len(snapshot.killed_campaigns)))
        yield kills
        available = GaugeMetricFamily(
            "adrank_state_available", "1 if the control store answered this scrape"
        )
        try:
            statuses = self._top_campaigns()
        except StateUnavailableError:
            available.add_metric([], 0.0)
            yield available
            return
        available.add_metric([], 1.0)
        yield available
        families = {
            name: GaugeMetricFamily(f"adrank_campaign_{name}", text, labels=["campaign_id"])
            for name, text in (
                ("budget", "Daily budget of the top campaigns by spend"),
                ("spend", "Today's recorded spend of the top campaigns by spend"),
                ("participation", "Pacing participation (share of requests entered)"),
            )
        }
        for status in statuses:
            label = [str(status.campaign_id)]
            families["budget"].add_metric(label, float(status.daily_budget))
            families["spend"].add_metric(label, float(status.spend))
            families["participation"].add_metric(label, float(status.multiplier))
        yield from families.values()

    def _top_campaigns(self) -> list:
        now = self.clock()
        campaign_ids, _ = self.pacing.store.budgets()
        statuses = [self.pacing.status(int(c), now) for c in campaign_ids]
        statuses = [s for s in statuses if s.daily_budget is not None]
        return sorted(statuses, key=lambda s: -s.spend)[: self.top]
