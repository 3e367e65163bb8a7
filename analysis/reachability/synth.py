"""The synthesized stacks of one environment, and Terraform references across them.

Values that are Terraform references in one stack (``${data.terraform_remote_state...}``)
are followed to the stack that produces them, through its ``output`` blocks, down to the
resource and, when the attribute is in the configuration (a CIDR, an address), its value."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from analysis.reachability.core import LAYERS, Json, Unresolved

# ------------------------------------------------------------------------------------------
# Terraform references across the synthesized stacks

_INTERPOLATION = re.compile(r"\$\{([^{}]*)\}")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_REFERENCE = re.compile(r"((?:data\.)?[a-z_][a-z0-9_]*)\.([A-Za-z0-9_-]+)((?:\.[A-Za-z0-9_-]+|\[\d+\])+)")
_REMOTE_PREFIX = "cross-stack-reference-input-"


def expressions(text: str) -> list[str]:
    """The ``${...}`` expressions in ``text``, their quoted strings emptied (so no name in one counts)."""
    return [_QUOTED.sub('""', expression) for expression in _INTERPOLATION.findall(text)]


@dataclass(frozen=True)
class Ref:
    """``type.name.attr`` in ``stack`` (``type`` is ``data.<kind>`` for a data source)."""

    stack: str
    type: str
    name: str
    attr: str

    @property
    def target(self) -> tuple[str, str, str]:
        return (self.stack, self.type, self.name)

    def __str__(self) -> str:
        return f"{self.type}.{self.name}.{self.attr}"


def _walk(value: Any, path: str) -> Any:
    for part in re.findall(r"[A-Za-z0-9_-]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            if isinstance(value, list):
                value = value[index] if index < len(value) else None
            # cdktf writes a single nested block as an object: metadata[0] is the object itself.
            continue
        if isinstance(value, list):
            value = value[0] if value else None
        value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


class Synth:
    """One environment's synthesized stacks, keyed by stack id (``<env>-<layer>``)."""

    def __init__(self, env: str, stacks: Mapping[str, Json]) -> None:
        self.env, self.stacks = env, stacks
        self.own = [self.stack_id(layer) for layer in LAYERS if self.stack_id(layer) in stacks]

    def stack_id(self, layer: str) -> str:
        return f"{self.env}-{layer}"

    def has(self, layer: str) -> bool:
        return self.stack_id(layer) in self.stacks

    def stack(self, stack_id: str) -> Json:
        try:
            return self.stacks[stack_id]
        except KeyError:
            raise Unresolved(f"stack {stack_id} is not in the synthesized output") from None

    def resources(self, layer: str, kind: str) -> dict[str, Json]:
        if not self.has(layer):
            return {}
        found: dict[str, Json] = self.stacks[self.stack_id(layer)].get("resource", {}).get(kind, {})
        return found

    def all_resources(self, kind: str) -> Iterable[tuple[str, str, Json]]:
        """(stack id, name, config) of every ``kind`` resource in this environment's stacks."""
        for stack_id in self.own:
            for name, config in self.stacks[stack_id].get("resource", {}).get(kind, {}).items():
                yield stack_id, name, config

    def named(self, kind: str, name: str) -> tuple[str, str, Json] | None:
        """(stack id, key, config) of the ``kind`` resource whose ``name`` is ``name``."""
        return next(((st, key, conf) for st, key, conf in self.all_resources(kind) if conf.get("name") == name), None)

    def config(self, ref: Ref) -> Json:
        block = "data" if ref.type.startswith("data.") else "resource"
        kind = ref.type.removeprefix("data.")
        found: Json | None = self.stack(ref.stack).get(block, {}).get(kind, {}).get(ref.name)
        if found is None:
            raise Unresolved(f"{ref.type}.{ref.name} is not in {ref.stack}")
        return found

    def refs(self, stack_id: str, text: Any) -> list[Ref]:
        """Every reference in ``text``'s interpolations, remote-state reads followed to their producer."""
        if not isinstance(text, str):
            return []
        found = []
        for expression in expressions(text):
            for match in _REFERENCE.finditer(expression):
                kind, name, attr = match[1], match[2], match[3].lstrip(".")
                if kind == "data":  # data.<kind>.<name>.<attr>
                    kind, (name, _, attr) = f"data.{name}", attr.partition(".")
                found.append(self._follow(Ref(stack_id, kind, name, attr)))
        return found

    def ref(self, stack_id: str, text: Any) -> Ref | None:
        """The one reference ``text`` is (``${a.b.c}``), or None if it is a literal or an expression."""
        if not isinstance(text, str):
            return None
        match = _INTERPOLATION.fullmatch(text.strip())
        if not match:
            return None
        refs = self.refs(stack_id, text)
        bare = _REFERENCE.fullmatch(match[1].strip())
        return refs[0] if bare and len(refs) == 1 else None

    def _follow(self, ref: Ref) -> Ref:
        if ref.type != "data.terraform_remote_state":
            return ref
        producer = ref.name.removeprefix(_REMOTE_PREFIX)
        output = ref.attr.removeprefix("outputs.")
        value = self.stack(producer).get("output", {}).get(output, {}).get("value")
        if value is None:
            raise Unresolved(f"{producer} has no output {output}")
        inner = self.ref(producer, value)
        if inner is None:
            raise Unresolved(f"output {output} of {producer} is not a reference: {value!r}")
        return inner

    def value(self, stack_id: str, item: Any) -> Any:
        """A literal when ``item`` is (or refers to) one set in the configuration; else its Ref."""
        ref = self.ref(stack_id, item)
        if ref is None:
            return item
        attribute = _walk(self.config(ref), ref.attr)
        return ref if attribute is None else self.value(ref.stack, attribute)

    def render(self, stack_id: str, text: str) -> str:
        """``text`` with each plain reference to a literal replaced by that literal."""

        def literal(match: re.Match[str]) -> str:
            resolved = self.value(stack_id, match[0])
            return str(resolved) if isinstance(resolved, (str, int)) else match[0]

        return _INTERPOLATION.sub(literal, text)

    def show(self, stack_id: str, text: Any) -> str:
        """``text`` with each interpolation shown as the resource it resolves to."""
        if not isinstance(text, str):
            return repr(text)

        def shown(match: re.Match[str]) -> str:
            try:
                refs = self.refs(stack_id, match[0])
            except Unresolved:
                return match[0]
            return ", ".join(f"{r.type}.{r.name}.{r.attr} ({r.stack})" for r in refs) or match[0]

        return _INTERPOLATION.sub(shown, text)

    def name_of(self, ref: Ref) -> str:
        return str(self.config(ref).get("name", ref.name))

    def refers_to(self, stack_id: str, text: Any, target: tuple[str, str, str], attr: str | None = None) -> bool:
        return any(r.target == target and (attr is None or r.attr == attr) for r in self.refs(stack_id, text))

    # Principals in IAM bindings, comparable across stacks.

    def principal(self, stack_id: str, member: Any) -> str:
        """``allUsers``, ``serviceAccount:<account_id>``, ``serviceAgent:<api>``, or the literal member."""
        for ref in self.refs(stack_id, member):
            if ref.type == "google_service_account":
                return f"serviceAccount:{self.config(ref).get('account_id', ref.name)}"
            if ref.type == "google_project_service_identity":
                return f"serviceAgent:{self.config(ref).get('service', ref.name)}"
        return str(member)
