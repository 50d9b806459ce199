"""Errors of the request path that callers handle by kind."""

from __future__ import annotations


class ModelUnavailableError(RuntimeError):
    """The ranking model did not answer: Triton is down, overloaded, or past the deadline.

    The service answers 503 with this message; the request can be retried.
    """
