"""The hand-written stub python/adrank/_native.pyi names exactly what the extension exports."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import adrank
from adrank import _native

STUB = Path(adrank.__file__).with_name("_native.pyi")


def _stub_names() -> dict[str, set[str]]:
    """Top-level names of the stub, each with its members (for classes)."""
    names: dict[str, set[str]] = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            names[node.name] = set()
        elif isinstance(node, ast.ClassDef):
            names[node.name] = {
                n.name if isinstance(n, ast.FunctionDef) else n.target.id
                for n in node.body
                if isinstance(n, (ast.FunctionDef, ast.AnnAssign))
                and not (n.name if isinstance(n, ast.FunctionDef) else n.target.id).startswith("_")
            }
    return names


def _module_names() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for name, value in vars(_native).items():
        if name.startswith("_"):
            continue
        members = set()
        if inspect.isclass(value):
            members = {m for m in vars(value) if not m.startswith("_")}
        names[name] = members
    return names


def test_stub_matches_module() -> None:
    assert _stub_names() == _module_names()


def test_package_is_typed() -> None:
    assert STUB.with_name("py.typed").exists()
