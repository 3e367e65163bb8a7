"""A stack uses another stack only through its narrow, typed ``outputs`` (or as a dependency).

Reaching into another stack's resources (``network.vpc.id``) couples a layer to how another is
built; read from the source, so the rule holds for code paths no environment synthesizes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from iac import ROOT

STACK_MODULES = sorted((ROOT / "stacks").glob("*.py"))


def reaches_into_other_stacks(source: str) -> list[str]:
    """``line: expression`` of every use of a parameter typed as a stack other than reading its
    ``outputs`` or depending on it (``self.add_dependency(network)``, or passing it to the base
    constructor, ``super().__init__(scope, env, "services", network)``): keeping the stack itself
    (``self.network = network``) would let a method reach into it later."""
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef):
            continue
        stacks = {
            arg.arg
            for arg in function.args.args + function.args.kwonlyargs
            if isinstance(arg.annotation, ast.Name) and arg.annotation.id.endswith("Stack")
        }
        for parent in ast.walk(function):
            for child in ast.iter_child_nodes(parent):
                if not (isinstance(child, ast.Name) and child.id in stacks):
                    continue
                reads_outputs = isinstance(parent, ast.Attribute) and parent.attr == "outputs"
                depends = (
                    isinstance(parent, ast.Call)
                    and isinstance(parent.func, ast.Attribute)
                    and (parent.func.attr == "add_dependency" or _is_super_init(parent.func))
                )
                if not (reads_outputs or depends):
                    found.append(f"{child.lineno}: {ast.unparse(parent)}")
    return sorted(found, key=lambda entry: int(entry.split(":")[0]))


def _is_super_init(function: ast.Attribute) -> bool:
    call = function.value
    return (
        function.attr == "__init__"
        and isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "super"
    )


@pytest.mark.parametrize("module", STACK_MODULES, ids=lambda path: path.name)
def test_stacks_read_other_stacks_only_through_their_outputs(module: Path) -> None:
    assert reaches_into_other_stacks(module.read_text()) == []


def test_the_check_finds_a_reach_into_another_stack() -> None:
    source = (
        "def __init__(self, scope, network: NetworkStack) -> None:\n"
        "    super().__init__(scope, env, 'services', network)\n"
        "    ok = network.outputs.run_subnet_id\n"
        "    self.add_dependency(network)\n"
        "    bad = network.vpc.id\n"
        "    self.network = network\n"
    )
    assert reaches_into_other_stacks(source) == ["5: network.vpc", "6: self.network = network"]
