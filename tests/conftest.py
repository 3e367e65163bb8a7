"""Session fixtures: the app is synthesized once per test session, per output format.

- ``synth_json``: ``python main.py`` (what ``cdktf synth`` runs), JSON output, for
  value assertions and the empty-block guard.
- ``synth_hcl``: the real ``cdktf synth --hcl`` CLI, as users' CI runs it, for
  snapshots and checkov.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hybrid.lazy_providers import activate
from iac import ENVIRONMENTS, ROOT, STACKS, run_main


def pytest_configure(config: pytest.Config) -> None:
    # As main.py does, before collection imports any stack or provider package.
    activate()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("synth-json")
    result = run_main(outdir)
    assert result.returncode == 0, result.stderr
    return outdir


@pytest.fixture(scope="session")
def synth_json(synth_dir) -> dict[str, dict]:
    return {stack: json.loads((synth_dir / "stacks" / stack / "cdk.tf.json").read_text()) for stack in STACKS}


@pytest.fixture(scope="session")
def synth_hcl(tmp_path_factory) -> Path:
    cdktf = shutil.which("cdktf")
    assert cdktf, "the cdktf CLI is not on PATH; run the tests through `make test`"
    outdir = tmp_path_factory.mktemp("synth-hcl")
    result = subprocess.run(
        [cdktf, "synth", "--hcl", "--output", str(outdir)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return outdir


@pytest.fixture(params=ENVIRONMENTS)
def env(request) -> str:
    """Run a test once per shipped environment."""
    return request.param
