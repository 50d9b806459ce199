"""Strict JSON bodies: :class:`StrictJsonRoute`, the route class of every adrank endpoint.

Glossary: *depth* is how many arrays and objects a value sits inside.

Python's ``json`` accepts what JSON does not (``NaN``, ``Infinity``), turns ``1e400`` into
``inf``, and fails with RecursionError (FastAPI: an undeclared 400) on deep nesting. Here a
body is parsed as RFC 8259 JSON in UTF-8 with finite numbers only and at most
``ServiceLimits.max_json_depth`` levels; anything else is FastAPI's ``json_invalid`` 422,
with the reason in ``msg``.

Two parsers, one answer: orjson (about 5x faster) parses every body it reads exactly as the
strict parser does, and the strict parser (the standard library's, checked as above) takes
the rest: a body orjson refuses (it refuses lone surrogates, which the strict parser keeps
so that validation can name their field), one with a run of 19 digits or more (orjson reads
an integer beyond 64 bits as a float, where the strict parser keeps it exact so that the
int64 checks name it), and one that may nest deeper than allowed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from adrank.service.limits import ServiceLimits

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', flags=re.DOTALL)
_OPENERS, _CLOSERS = b"[{", b"]}"
# Each byte as one of three: ``[`` for an opener, ``1`` for a digit, ``0`` for anything else.
_SHAPE = bytes(91 if i in _OPENERS else 49 if 48 <= i <= 57 else 48 for i in range(256))
_LONG_NUMBER = b"1" * 19  # 2**63 has 19 digits: anything shorter is an int64 or a float
UNSURE = object()  # parse_fast could not vouch for its answer: ask the strict parser


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
    value = parse_fast(body, max_depth)
    return _parse_strict(body, max_depth) if value is UNSURE else value


def parse_fast(body: bytes, max_depth: int) -> Any:
    """orjson's parse of ``body`` where it is the strict parser's too; ``UNSURE`` elsewhere."""
    shape = body.translate(_SHAPE)
    if _LONG_NUMBER in shape:
        return UNSURE
    # Fewer openers than the limit cannot nest deeper than it (openers in strings count too).
    if shape.count(b"[") > max_depth and not _shallow(body, max_depth):
        return UNSURE
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:  # lone surrogates, NaN, 1e400, broken JSON, not UTF-8
        return UNSURE


def _shallow(body: bytes, max_depth: int) -> bool:
    try:
        return json_depth(body.decode("utf-8")) <= max_depth
    except UnicodeDecodeError:
        return False


def _parse_strict(body: bytes, max_depth: int) -> Any:
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
