"""Session fixtures: the app is synthesized once per test session, per output format.

- ``synth_json``: ``python main.py`` (what ``cdktf synth`` runs), JSON output, for
  value assertions and the empty-block guard.
- ``synth_hcl``: the real ``cdktf synth --hcl`` CLI, as users' CI runs it, for
  snapshots and checkov.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("dev", "prod")
LAYERS = ("network", "database", "cluster", "inference", "services")
STACKS = tuple(f"{env}-{layer}" for env in ENVIRONMENTS for layer in LAYERS)

DEV = (ROOT / "environments" / "dev.toml").read_text()
# dev with its model on a Cloud Run GPU instead of GKE.
DEV_CLOUD_RUN = DEV[: DEV.index("[inference]")] + """[inference]
placement = "cloud_run"

[inference.cloud_run]
model = "google/gemma-3-4b-it"
zonal_redundancy = false
"""


def run_main(outdir: Path, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CDKTF_OUTDIR": str(outdir), **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


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


def resources(stack: dict, kind: str) -> dict[str, dict]:
    return stack.get("resource", {}).get(kind, {})


def only(stack: dict, kind: str) -> dict:
    found = list(resources(stack, kind).values())
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
