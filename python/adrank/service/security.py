"""Who may do what: :class:`AccessPolicy`, its bearer-token check and its Host allow-list.

Glossary: the *control plane* is every endpoint that changes budgets, spend, kill switches or
ad-load caps (writes) or shows them (reads); a *token* is the shared secret a client sends as
``Authorization: Bearer <token>``.

Writes need the token whenever one is set (401 without it, 403 with a wrong one; compared in
constant time). Reads of control state and ``/v1/rank`` need it only when ``guard_reads`` or
``guard_rank`` say so. Every request but the health probes must carry a ``Host`` header in
``allowed_hosts`` (any port), or it gets 421: a web page that rebinds its own DNS name to
127.0.0.1 reaches the port but cannot forge the Host header. The token comes from a file or
an environment variable, never from the command line, where ``ps`` shows it to everyone.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, HTTPException, Request

TOKEN_ENV = "ADRANK_TOKEN"
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
READ_METHODS = ("GET", "HEAD", "OPTIONS")
OPEN_PATHS = ("/healthz", "/readyz")  # probes are sent by IP by orchestrators; they reveal nothing


@dataclass(frozen=True)
class AccessPolicy:
    """token        the control plane's secret; None leaves every endpoint open (loopback use)
    guard_reads  control-state reads need the token too
    guard_rank   ``POST /v1/rank`` needs the token too
    allowed_hosts the Host names served (any port); ``"*"`` serves every name"""

    token: str | None = None
    guard_reads: bool = False
    guard_rank: bool = False
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES

    def __post_init__(self) -> None:
        if self.token is not None:
            check_token(self.token, "token")
        if (self.guard_reads or self.guard_rank) and self.token is None:
            raise ValueError("guard_reads and guard_rank need a token")
        if not self.allowed_hosts:
            raise ValueError("allowed_hosts must name at least one host (or '*')")
        hosts = tuple(h.strip().lower().strip("[]") for h in self.allowed_hosts)
        if any(not h for h in hosts):
            raise ValueError(f"allowed_hosts must not hold empty names, got {self.allowed_hosts}")
        object.__setattr__(self, "allowed_hosts", hosts)

    def host_allowed(self, host_header: str | None) -> bool:
        if "*" in self.allowed_hosts:
            return True
        return host_header is not None and _host_name(host_header) in self.allowed_hosts

    def authorize(self, request: Request) -> None:
        """Raises 401 without a bearer token, 403 with a wrong one (when a token is set)."""
        if self.token is None:
            return
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise HTTPException(
                401,
                "this endpoint needs Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(
            presented.strip().encode("utf-8", "surrogateescape"), self.token.encode("utf-8")
        ):
            raise HTTPException(403, "the bearer token is not the service's token")

    def dependency(self, guarded: bool) -> list[Any]:
        """Route dependencies: the token check when ``guarded`` and a token is set."""
        if not guarded or self.token is None:
            return []
        return [Depends(self.authorize)]

    def authorize_control(self, request: Request) -> None:
        """The control plane's rule: a write always needs the token, a read when guarded."""
        if request.method not in READ_METHODS or self.guard_reads:
            self.authorize(request)


def check_token(token: str, where: str) -> str:
    if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"{where} must hold a token of at least {MIN_TOKEN_LENGTH} characters")
    if not token.isprintable() or any(c.isspace() for c in token) or not token.isascii():
        raise ValueError(f"{where} must hold printable ASCII characters without spaces")
    return token


def load_token(token_file: str | Path | None, environ: dict[str, str] | None = None) -> str | None:
    """The token from ``token_file`` (its first line) or else the ADRANK_TOKEN variable."""
    environ = os.environ if environ is None else environ
    if token_file is not None:
        path = Path(token_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"token file {str(path)!r} cannot be read: {error}") from None
        lines = text.splitlines()
        return check_token(lines[0].strip() if lines else "", f"token file {str(path)!r}")
    value = environ.get(TOKEN_ENV)
    if value is None or value == "":
        return None
    return check_token(value.strip(), f"${TOKEN_ENV}")


def is_loopback(host: str) -> bool:
    """True for an address or name that only this machine can reach."""
    name = host.strip().lower().strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Loopback names, the bind address when it is a specific one, and ``extra``."""
    hosts = list(LOOPBACK_NAMES)
    name = bind_host.strip().lower().strip("[]")
    if name not in ("0.0.0.0", "::", "") and name not in hosts:
        hosts.append(name)
    return (*hosts, *(h for h in extra if h not in hosts))


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8000
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        return header.partition(":")[0]
    return header  # a bare name, or an IPv6 address without brackets


class HostAllowList:
    """ASGI middleware: 421 for a Host header outside ``policy.allowed_hosts``."""

    def __init__(self, app: Any, policy: AccessPolicy, on_reject: Any) -> None:
        self.app = app
        self.policy = policy
        self.on_reject = on_reject

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        hosts = [v for k, v in scope.get("headers") or [] if k == b"host"]
        host = hosts[0].decode("latin-1") if len(hosts) == 1 else None
        if self.policy.host_allowed(host):
            await self.app(scope, receive, send)
            return
        await self.on_reject(scope, receive, send)


def exposure_warnings(bind_host: str, policy: AccessPolicy, insecure: bool) -> list[str]:
    """What to say when the service starts; raises ValueError for an unguarded public bind.

    A non-loopback bind without a token would let anyone who reaches the port change budgets
    and kill switches: refused unless ``insecure``, and then warned about on every start.
    """
    warnings = []
    if not is_loopback(bind_host):
        if policy.token is None and not insecure:
            raise ValueError(
                f"binding {bind_host} without a token would open the control plane to anyone "
                f"who reaches the port: give --token-file or ${TOKEN_ENV}, or --insecure"
            )
        if policy.token is None:
            warnings.append(
                f"WARNING: --insecure: {bind_host} is served without a token; anyone who "
                "reaches the port can change budgets, spend, kill switches and ad-load caps"
            )
        if set(policy.allowed_hosts) <= set(LOOPBACK_NAMES):
            warnings.append(
                f"note: only Host names {', '.join(policy.allowed_hosts)} are answered "
                "(421 otherwise); add the names clients use with --allowed-host"
            )
    elif policy.token is None:
        warnings.append(
            "note: no token: the control plane is open to every process on this machine "
            f"(give --token-file or ${TOKEN_ENV} to guard it)"
        )
    return warnings
