"""HCL of every stack, as the real `cdktf synth --hcl` writes it, against reviewed snapshots.

A snapshot records whatever came out; the value assertions in the other test
files are what prove the values. Update with `make test ARGS=--snapshot-update`
and read the diff line by line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from iac import STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_stack_hcl_matches_snapshot(synth_hcl: Path, stack: str, snapshot: SnapshotAssertion) -> None:
    assert (synth_hcl / "stacks" / stack / "cdk.tf").read_text() == snapshot


def test_hcl_is_real_hcl_not_json(synth_hcl: Path) -> None:
    for stack in STACKS:
        text = (synth_hcl / "stacks" / stack / "cdk.tf").read_text()
        assert text.startswith("terraform {")
        assert 'backend "gcs" {' in text
