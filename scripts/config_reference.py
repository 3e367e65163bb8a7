"""Write docs/configuration.md, the reference of every key an environment file may hold, from the
settings models themselves (hybrid/config): key, type, default, what is allowed, and why, from
the comment or docstring the model gives the key. tests/test_config_reference.py fails when the
checked-in file differs from what this writes.

    python -m scripts.config_reference          # rewrite docs/configuration.md
    python -m scripts.config_reference --check  # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from hybrid.config import Environment

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "configuration.md"
HEADER = """# Environment file reference

Every key of `environments/<env>.toml`, table by table, generated from the settings models in
`hybrid/config/` by `python -m scripts.config_reference` (do not edit by hand;
`tests/test_config_reference.py` fails when this file is stale). A key without a default must be
set. Checks that span keys (overlapping ranges, capacity, names that must fit GCP's limits) are in
the models' validators and report with the same file-and-key messages.
"""


def render() -> str:
    sections = [HEADER]
    for table, model in _tables(Environment, ()):
        title = f"[{'.'.join(table)}]" if table else "Top level"
        doc = inspect.getdoc(model) if model.__doc__ and model.__doc__ is not BaseModel.__doc__ else ""
        rows = ["| Key | Type | Default | Allowed | Why |", "|---|---|---|---|---|"]
        comments = _comments(model)
        for name, info in model.model_fields.items():
            if _nested(info.annotation) is not None:
                continue
            rows.append(
                "| "
                + " | ".join(
                    _cell(part)
                    for part in (
                        f"`{name}`",
                        _type(info.annotation),
                        _default(info),
                        _allowed(info),
                        comments.get(name, ""),
                    )
                )
                + " |"
            )
        body = [f"## {title}", *([_cell(doc)] if doc else []), ""]
        if len(rows) > 2:
            body += rows
        else:
            body.append("Only tables; see below.")
        sections.append("\n".join(body) + "\n")
    return "\n".join(sections)


def _tables(model: type[BaseModel], table: tuple[str, ...]) -> typing.Iterator[tuple[tuple[str, ...], type[BaseModel]]]:
    yield table, model
    for name, info in model.model_fields.items():
        nested = _nested(info.annotation)
        if nested is not None:
            yield from _tables(nested, (*table, name))


def _nested(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Each field's comment: the lines just above it and any on its own line, from every class
    in the model's hierarchy that declares it."""
    found: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
            if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
                continue
            above: list[str] = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#"):
                above.insert(0, lines[row].strip().lstrip("#").strip())
                row -= 1
            trailing = lines[node.end_lineno - 1].partition("  # ")[2].strip() if node.end_lineno else ""
            text = " ".join(part for part in (*above, trailing) if part and not part.startswith("type: ignore"))
            if text:
                found[node.target.id] = text
    return found


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is Literal:
        kinds = {type(arg).__name__ for arg in args}
        return "string" if kinds == {"str"} else " or ".join(sorted(kinds))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(arg) for arg in args if arg is not type(None)) + " (optional)"
    if origin in (list, tuple):  # a TOML array either way (tuples keep the settings immutable)
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"table of {_type(args[0])} to {_type(args[1])}"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in names:
        return names[annotation]
    return {"IPv4Network": "string (CIDR)", "IPv4Address": "string (IPv4)"}.get(
        getattr(annotation, "__name__", ""), str(annotation)
    )


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value}`"


def _allowed(info: FieldInfo) -> str:
    return "; ".join(_allowed_of(info.annotation, info.metadata))


def _allowed_of(annotation: Any, metadata: list[Any]) -> list[str]:
    found = []
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _allowed_of(args[0], [*args[1:], *metadata])
    if origin is Literal:
        found.append(", ".join(f"`{arg}`" if not isinstance(arg, str) else f'`"{arg}"`' for arg in args))
    elif origin in (typing.Union, types.UnionType, list, tuple):
        for arg in args:
            found += _allowed_of(arg, [])
    elif origin is dict:
        keys, values = (_allowed_of(arg, []) for arg in args)
        found += [f"keys: {text}" for text in keys] + [f"values: {text}" for text in values]
    for meta in metadata:
        text = getattr(getattr(meta, "func", None), "allowed", None)
        if text:
            found.append(text)
        for bound, word in (("min_length", "at least"), ("max_length", "at most")):
            if getattr(meta, bound, None) is not None:
                found.append(f"{word} {getattr(meta, bound)} entries")
    return found


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if REFERENCE.read_text("utf-8") != text:
            print(f"{REFERENCE} is stale: run python -m scripts.config_reference", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text, "utf-8")
    print(f"Wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
