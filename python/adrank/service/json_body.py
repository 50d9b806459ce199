"""Strict JSON bodies: :class:`StrictJsonRoute`, the route class of every adrank endpoint.

Glossary: *depth* is how many arrays and objects a value sits inside.

Python's ``json`` accepts what JSON does not (``NaN``, ``Infinity``), turns ``1e400`` into
``inf``, and fails with RecursionError (FastAPI: an undeclared 400) on deep nesting. Here a
body is parsed as RFC 8259 JSON in UTF-8 with finite numbers only and at most
``ServiceLimits.max_json_depth`` levels; anything else is FastAPI's ``json_invalid`` 422,
with the reason in ``msg``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from fastapi import Request, Response
from fastapi.routing import APIRoute

from adrank.service.limits import ServiceLimits

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', flags=re.DOTALL)
_OPENERS, _CLOSERS = b"[{", b"]}"


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (strings skipped)."""
    bare = np.frombuffer(_STRING.sub("", text).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    step = np.isin(bare, list(_OPENERS)).astype(np.int64) - np.isin(bare, list(_CLOSERS))
    return int(np.cumsum(step).max()) if len(step) else 0


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of the range of a 64-bit float")
    return value


def parse_json(body: bytes, max_depth: int) -> Any:
    """``body`` as JSON; raises json.JSONDecodeError saying what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise json.JSONDecodeError("the body is not valid UTF-8", "", error.start) from None
    if json_depth(text) > max_depth:
        raise json.JSONDecodeError(f"nesting deeper than {max_depth} levels", "", 0)
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as error:  # a constant, a float, a 5,000-digit int
        raise json.JSONDecodeError(str(error), "", 0) from None


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            state = getattr(self.scope.get("app"), "state", None)
            limits = getattr(state, "limits", None) or ServiceLimits()
            self._json = parse_json(await self.body(), limits.max_json_depth)
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose JSON body is parsed by :func:`parse_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
