"""Finds what the dict-in-a-list trap leaves behind in synthesized output.

A nested block that came out empty (``ports {}``) or with a null value lost
something that was configured: nothing this app writes is legitimately empty.
The cause, a dict literal inside a list literal in the code, is found by
``dict_in_list_literals``, which also catches the cases where only some keys are lost.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def empty_blocks(stack: dict[str, Any]) -> Iterator[str]:
    """``<type>.<name>.<path>`` of every empty or null value inside a resource or data source."""
    for section in ("resource", "data"):
        for kind, items in stack.get(section, {}).items():
            for name, body in items.items():
                yield from _walk(body, f"{kind}.{name}")


def _walk(value: Any, path: str) -> Iterator[str]:
    if value is None or value == {} or value == []:
        yield path
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key != "//":
                yield from _walk(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _walk(inner, f"{path}[{index}]")


def dict_in_list_literals(path: Path) -> Iterator[str]:
    """``file:line`` of every dict literal directly inside a list literal.

    A raw Kubernetes manifest (``manifest=...``) and a JSON document a ``json()`` method
    builds (for ``json.dumps``, as a dashboard's body is) are free-form maps, not provider
    structs, so they are left out.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    raw = {
        id(node)
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        for kw in call.keywords
        if kw.arg == "manifest"
        for node in ast.walk(kw.value)
    } | {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef) and function.name == "json"
        for node in ast.walk(function)
    }
    for node in ast.walk(tree):
        if id(node) in raw:
            continue
        if isinstance(node, (ast.List, ast.Tuple)):
            for element in node.elts:
                if isinstance(element, ast.Dict):
                    yield f"{path}:{element.lineno}"
        elif isinstance(node, ast.ListComp) and isinstance(node.elt, ast.Dict):
            yield f"{path}:{node.elt.lineno}"
