"""The guard against silently dropped fields, proven on a deliberately broken fixture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from iac import ROOT, Stacks
from output_guard import dict_in_list_literals, empty_blocks

FIXTURE = ROOT / "tests" / "fixtures" / "dict_in_list_stack.py"


def test_no_synthesized_block_is_empty_or_null(synth_json: Stacks) -> None:
    for stack_id, stack in synth_json.items():
        assert list(empty_blocks(stack)) == [], stack_id


def test_guard_catches_the_broken_fixture(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(FIXTURE), str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    stack = json.loads((tmp_path / "stacks" / "broken" / "cdk.tf.json").read_text())
    assert list(empty_blocks(stack)) == ["google_cloud_run_v2_service.service.template.containers[0].ports"]


def test_guard_sees_nulls_and_empty_lists() -> None:
    stack = {"resource": {"t": {"n": {"a": {"b": None}, "c": [], "//": {}, "ok": [{"x": 1}]}}}}
    assert sorted(empty_blocks(stack)) == ["t.n.a.b", "t.n.c"]


def test_no_dict_literal_inside_a_list_in_the_app_code() -> None:
    sources = [ROOT / "main.py", *sorted((ROOT / "hybrid").rglob("*.py")), *sorted((ROOT / "stacks").rglob("*.py"))]
    assert [hit for source in sources for hit in dict_in_list_literals(source)] == []


def test_source_lint_catches_the_broken_fixture() -> None:
    (line,) = [n for n, text in enumerate(FIXTURE.read_text().splitlines(), 1) if "containers=[{" in text]
    assert list(dict_in_list_literals(FIXTURE)) == [f"{FIXTURE}:{line}"]
