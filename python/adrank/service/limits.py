"""How much work one HTTP request may ask of the service: :class:`ServiceLimits`.

Glossary: a *body* is the request's bytes as sent (any transfer encoding); *depth* is how many
JSON arrays and objects a value sits inside (``{"a": [1]}`` has depth 2).

Every bound is checked before the work it protects: the body's size and its read time while it
arrives (413, 408), its JSON depth before it is parsed (422), the feature values before they are
encoded (422), the candidates and ``k`` before ranking (413, 422), and spend events before
anything is stored (422). The schema's fixed bounds (``request_id`` up to 128 characters,
``region`` up to 64, ...) are in the OpenAPI document; these are the ones a deployment tunes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceLimits:
    """Per-request bounds of the HTTP API (``adrank serve`` flags of the same names).

    max_candidates     candidate ids per rank request; more is a 413
    max_body_bytes     request body size, declared or streamed (chunked); more is a 413
    max_k              creatives asked for per rank request; more is a 422 naming ``k``
    max_string_length  characters of one feature value or feature name
    max_feature_values values of one multi-valued feature (a list), and features per side
    max_json_depth     nesting of arrays and objects in a body; deeper is a 422
    read_timeout_s     seconds a client has to send its whole body; slower is a 408 and a close
    max_event_cost     the largest cost one spend event may carry
    max_event_age_s    how far in the past a spend event's timestamp may lie (late delivery)
    max_event_lead_s   how far in the future it may lie (clock skew between hosts)
    """

    max_candidates: int = 10_000
    max_body_bytes: int = 2 * 1024 * 1024
    max_k: int = 1000
    max_string_length: int = 256
    max_feature_values: int = 1000
    max_json_depth: int = 16
    read_timeout_s: float = 10.0
    max_event_cost: float = 10_000.0
    max_event_age_s: float = 3 * 86_400.0
    max_event_lead_s: float = 300.0

    def __post_init__(self) -> None:
        minimums = {
            "max_candidates": 1,
            "max_body_bytes": 1024,
            "max_k": 1,
            "max_string_length": 1,
            "max_feature_values": 1,
            "max_json_depth": 4,  # the rank body itself is 3 deep
        }
        for name, least in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        for name in (
            "read_timeout_s",
            "max_event_cost",
            "max_event_age_s",
            "max_event_lead_s",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
