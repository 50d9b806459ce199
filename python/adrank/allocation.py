"""The mixed feed: where the ranked ads go among the organic items.

Glossary: ``O`` organic items (in feed order, with their value); ``A`` ranked ads (in rank
order, with their eCPM); ``L`` slots of the feed (``O`` unless given).

**Exchange rate.** Organic values and ad eCPMs are in different units. An ad's value in a slot,
in organic units, is ``ecpm / 1000 * exchange_rate``: eCPM is currency per thousand
impressions, so ``ecpm / 1000`` is the expected revenue of this one impression, and
``exchange_rate`` is how many organic value units one unit of currency is worth (the price of
user experience the business has chosen; calibrate it from experiments).

**Rules** (:class:`AllocationRules`), walking the slots from the top, the next ad in rank
order goes into slot ``p`` only if all of these hold, else the next organic item does::

    p >= first_ad_position                      (slots count from 0)
    p - previous_ad_slot - 1 >= min_gap          (organic items between two ads)
    ads_placed + 1 <= floor(max_ad_share * L)
    ad_value > value of the organic item it displaces (the one that would take slot p)

A displaced item moves down a slot; items pushed past slot ``L - 1`` leave the feed. An ad that
does not beat the item at ``p`` may still beat a lower-valued item further down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

ORGANIC = 0
AD = 1


@dataclass(frozen=True)
class AllocationRules:
    """Where ads may go in one placement and region (see the module docstring)."""

    first_ad_position: int = 2
    min_gap: int = 3
    max_ad_share: float = 0.25
    exchange_rate: float = 1.0

    def __post_init__(self) -> None:
        for name in ("first_ad_position", "min_gap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not (isinstance(self.max_ad_share, (int, float)) and 0 <= self.max_ad_share <= 1):
            raise ValueError(f"max_ad_share must be a number in [0, 1], got {self.max_ad_share!r}")
        rate = self.exchange_rate
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"exchange_rate must be a finite number > 0, got {rate!r}")


@dataclass(frozen=True)
class AllocationPolicy:
    """Rules per placement and region, most specific first.

    ``overrides`` keys are ``(placement, region)``, ``(placement, None)`` or ``(None, region)``;
    lookups try them in that order, then ``default``.
    """

    default: AllocationRules = field(default_factory=AllocationRules)
    overrides: Mapping[tuple[str | None, str | None], AllocationRules] = field(default_factory=dict)

    def rules_for(
        self, placement: str | None, region: str | None, ad_load_cap: float = 1.0
    ) -> AllocationRules:
        """The rules of a request, with ``max_ad_share`` lowered to the traffic ad-load cap."""
        rules = self.default
        for key in ((placement, region), (placement, None), (None, region)):
            if key != (None, None) and key in self.overrides:
                rules = self.overrides[key]
                break
        if ad_load_cap < rules.max_ad_share:
            rules = replace(rules, max_ad_share=max(float(ad_load_cap), 0.0))
        return rules


@dataclass(frozen=True)
class MixedFeed:
    """The feed, slot by slot (arrays [L']): ``kind`` ORGANIC or AD, ``index`` into the organic
    items or the ads given, ``value`` in organic units."""

    kind: np.ndarray  # int8
    index: np.ndarray  # int64
    value: np.ndarray  # float64

    @property
    def ad_slots(self) -> np.ndarray:
        return np.flatnonzero(self.kind == AD)

    @property
    def placed_ads(self) -> np.ndarray:
        """Indices of the ads that made it into the feed (a prefix of the rank order)."""
        return self.index[self.kind == AD]


def _values(array: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(array, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got {values.ndim} dimensions")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite")
    return values


def build_feed(
    organic_values: np.ndarray,
    ad_ecpm: np.ndarray,
    rules: AllocationRules,
    feed_length: int | None = None,
) -> MixedFeed:
    """Builds the mixed feed (see the module docstring); a pure function of its inputs.

    ``organic_values`` float [O] in feed order; ``ad_ecpm`` float [A] in rank order;
    ``feed_length`` the slots to fill (default ``O``). Fewer slots come back when the items
    run out.
    """
    organic = _values(organic_values, "organic_values")
    ads = _values(ad_ecpm, "ad_ecpm") / 1000.0 * rules.exchange_rate
    length = len(organic) if feed_length is None else feed_length
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"feed_length must be an integer >= 0, got {feed_length!r}")
    max_ads = math.floor(rules.max_ad_share * length + 1e-9)

    kind, index, value = [], [], []
    next_organic = next_ad = placed = 0
    previous_ad = -(rules.min_gap + 1)  # as if an ad sat far above the top
    for slot in range(length):
        displaced = organic[next_organic] if next_organic < len(organic) else 0.0
        if (
            next_ad < len(ads)
            and placed < max_ads
            and slot >= rules.first_ad_position
            and slot - previous_ad - 1 >= rules.min_gap
            and ads[next_ad] > displaced
        ):
            kind.append(AD)
            index.append(next_ad)
            value.append(ads[next_ad])
            next_ad, placed, previous_ad = next_ad + 1, placed + 1, slot
        elif next_organic < len(organic):
            kind.append(ORGANIC)
            index.append(next_organic)
            value.append(organic[next_organic])
            next_organic += 1
        else:
            break
    return MixedFeed(
        kind=np.array(kind, dtype=np.int8),
        index=np.array(index, dtype=np.int64),
        value=np.array(value, dtype=np.float64),
    )
