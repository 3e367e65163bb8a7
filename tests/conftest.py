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
import sys
from pathlib import Path

import pytest

from hybrid.lazy_providers import activate
from iac import ENVIRONMENTS, ROOT, STACKS, run_main

TESTS = Path(__file__).resolve().parent
# A test that uses one of these fixtures (directly or through another) gets its markers
# (pytest.ini says what each means), so that `-m "not slow"` needs no mark in the test files.
FIXTURE_MARKERS = {
    "postgres": ("postgres", "slow"),
    "pubsub": ("pubsub", "slow"),
    "redis_server": ("redis", "slow"),
    "synth_hcl": ("synth_cli", "slow"),
    "browser": ("browser", "slow"),
}
# Every test in these folders starts servers, a database, an emulator or processes of the images.
FOLDER_MARKERS = {TESTS / "services": ("slow",), TESTS / "e2e": ("e2e", "slow")}


def pytest_configure(config: pytest.Config) -> None:
    # As main.py does, before collection imports any stack or provider package.
    activate()


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = {
            *(m for fixture in item.fixturenames for m in FIXTURE_MARKERS.get(fixture, ())),
            *(m for folder, marks in FOLDER_MARKERS.items() if item.path.is_relative_to(folder) for m in marks),
        }
        for name in sorted(names - {m.name for m in item.iter_markers()}):
            item.add_marker(name)
        # Under xdist, a module's tests share a worker, so its module fixtures (servers, a whole
        # chain) start once; the modules that run the local chain share one, as it listens on
        # Cloud SQL's fixed address (devtools.local_chain.DATABASE_PORT).
        chain = sys.modules.get("devtools.local_chain")  # imported by the test modules that use it
        uses_chain = (
            chain is not None and getattr(getattr(item, "module", None), "local_chain", None) is chain.local_chain
        )
        item.add_marker(pytest.mark.xdist_group("local-chain" if uses_chain else str(item.path.relative_to(TESTS))))


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
