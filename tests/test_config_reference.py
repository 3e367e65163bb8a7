"""docs/configuration.md is what scripts/config_reference.py writes from the settings models today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from iac import ROOT
from scripts.config_reference import REFERENCE, render


def test_the_checked_in_reference_is_current() -> None:
    assert REFERENCE.read_text("utf-8") == render(), "stale: run python -m scripts.config_reference"


def test_the_check_command_fails_on_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts import config_reference

    stale = tmp_path / "configuration.md"
    stale.write_text(render().replace("| `run_cidr` |", "| `run_cidrs` |"))
    monkeypatch.setattr(config_reference, "REFERENCE", stale)
    assert config_reference.main(["--check"]) == 1
    assert config_reference.main([]) == 0
    assert config_reference.main(["--check"]) == 0


def test_every_table_and_key_is_listed_with_what_it_allows() -> None:
    text = render()
    for table in ("## Top level", "## [network]", "## [inference.gke]", "## [workers.queue]", "## [redis]"):
        assert table in text
    # A bound, a pattern, a choice and a reason, each from the model.
    assert (
        "| `max_delivery_attempts` | integer | `5` | 5 to 100 | cloud.google.com/pubsub/docs/handling-failures" in text
    )
    assert '| `tier` | string | `"STANDARD_HA"` | `"BASIC"`, `"STANDARD_HA"` | BASIC has no replica' in text
    assert "| `bucket` | string | required | a GCS bucket name" in text


def test_the_script_runs_from_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.config_reference", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")
