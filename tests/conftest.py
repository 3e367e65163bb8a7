"""Session fixtures: the app is synthesized once per test session, per output format.

- ``synth_json``: ``python main.py`` (what ``cdktf synth`` runs), JSON output, for
  value assertions and the empty-block guard.
- ``synth_hcl``: the real ``cdktf synth --hcl`` CLI, as users' CI runs it, for
  snapshots and checkov.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from devtools.browser import launch
from devtools.deployed_spec import SYNTHESIZED_VARIABLE, source_digest
from hybrid.lazy_providers import activate
from iac import ENVIRONMENTS, ROOT, STACKS, run_main

if TYPE_CHECKING:
    from devtools.local_chain import LocalChain, LocalChains

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
# A test that calls one of these itself starts a process: python main.py (a synth, or a refusal),
# the CLIs, a probe. Names the test function's code uses, so a new such test is marked too.
PROCESS_STARTERS = {"run_main", "synthesize", "subprocess"}
# This worker's local chains, once a test has asked for one (``chains``).
CHAINS = pytest.StashKey["LocalChains"]()


def pytest_configure(config: pytest.Config) -> None:
    # As main.py does, before collection imports any stack or provider package.
    activate()
    # Each xdist worker's local chains (and the run-local processes the quick start starts) put
    # Cloud SQL's stand-in on a loopback address of their own: gw0 127.0.0.2, gw1 127.0.0.3, ...
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    os.environ["LOCAL_CHAIN_DATABASE_HOST"] = f"127.0.0.{2 + int(worker.removeprefix('gw'))}"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = {
            *(m for fixture in getattr(item, "fixturenames", ()) for m in FIXTURE_MARKERS.get(fixture, ())),
            *(m for folder, marks in FOLDER_MARKERS.items() if item.path.is_relative_to(folder) for m in marks),
        }
        function = getattr(item, "function", None)
        if function is not None and PROCESS_STARTERS & set(function.__code__.co_names):
            names |= {"subprocess", "slow"}
        for name in sorted(names - {m.name for m in item.iter_markers()}):
            item.add_marker(name)
        # Under xdist, a module's tests share a worker, so its module fixtures (servers, a whole
        # chain) start once; so do the modules that run on the same local chain (``chain``), which
        # starts once for all of them. Two workers' chains do not collide: each has its own
        # database address (pytest_configure).
        group = _chain_options(item)
        item.add_marker(pytest.mark.xdist_group(f"chain {group}" if group else str(item.path.relative_to(TESTS))))
    # The groups that start servers go out to the workers first and the in-process ones fill in
    # behind them, so that neither worker is left running one long group at the end.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _chain_options(item: pytest.Item) -> str | None:
    """The options of the local chain ``item`` runs on (its module's CHAIN), or None if none."""
    if "chains" not in getattr(item, "fixturenames", ()):
        return None
    module = item.getparent(pytest.Module)
    assert module is not None, item
    return json.dumps(module.obj.CHAIN, sort_keys=True)


@pytest.hookimpl(trylast=True)  # after the test's own fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # A chain outlives a test only for the next one on the same chain: no chain holds this
    # worker's database address while another test (the quick start's run-local) may want it.
    chains = item.config.stash.get(CHAINS, None)
    if chains is not None and (nextitem is None or _chain_options(nextitem) != _chain_options(item)):
        chains.stop()


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder ``make`` filled, made once per test run: pytest-xdist's workers share the
    first one's, in the temporary folder they have in common, each waiting on a file lock
    until it is there (as pytest-xdist's documentation suggests for session fixtures)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        outdir = tmp_path_factory.mktemp(name)
        make(outdir)
        return outdir
    shared = tmp_path_factory.getbasetemp().parent
    outdir, done = shared / name, shared / f"{name}.done"
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(outdir, ignore_errors=True)
            outdir.mkdir()
            make(outdir)
            done.touch()
    return outdir


def _synthesize_json(outdir: Path) -> None:
    # Read before main.py reads them: a file edited meanwhile no longer matches, and is synthesized anew.
    sources = {str(path.resolve()): source_digest(path) for path in sorted((ROOT / "environments").glob("*.toml"))}
    result = run_main(outdir)
    assert result.returncode == 0, result.stderr
    _synthesis_manifest(outdir).write_text(json.dumps({"outdir": str(outdir), "sources": sources}))


def _synthesis_manifest(outdir: Path) -> Path:
    """Where the synthesis in ``outdir`` is described for SynthesizedEnvironment: beside it, not in
    it, which holds exactly what main.py wrote."""
    return outdir.with_name(f"{outdir.name}.json")


def _synthesize_hcl(outdir: Path) -> None:
    cdktf = shutil.which("cdktf")
    assert cdktf, "the cdktf CLI is not on PATH; run the tests through `make test`"
    result = subprocess.run(
        [cdktf, "synth", "--hcl", "--output", str(outdir)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """main.py's JSON of every shipped environment. From here on, SynthesizedEnvironment (the
    local chains', in this process and in the processes it starts) reads it rather than
    synthesize a shipped file again (devtools/deployed_spec.py)."""
    outdir = once_per_run(tmp_path_factory, "synth-json", _synthesize_json)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SYNTHESIZED_VARIABLE, str(_synthesis_manifest(outdir)))
        yield outdir


@pytest.fixture(scope="session")
def synth_json(synth_dir: Path) -> dict[str, dict[str, Any]]:
    return {stack: json.loads((synth_dir / "stacks" / stack / "cdk.tf.json").read_text()) for stack in STACKS}


@pytest.fixture(scope="session")
def synth_hcl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return once_per_run(tmp_path_factory, "synth-hcl", _synthesize_hcl)


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest) -> str:
    """Run a test once per shipped environment."""
    environment: str = request.param
    return environment


@pytest.fixture
def stack(request: pytest.FixtureRequest, env: str, synth_json: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The synthesized stack of the test module's layer (its ``LAYER``) in ``env``."""
    layer: str = request.module.LAYER
    return synth_json[f"{env}-{layer}"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, one per test module (the page tests in tests/e2e)."""
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def chains(request: pytest.FixtureRequest, synth_dir: Path) -> Iterator[LocalChains]:
    """This worker's local chains (one at a time), each on the run's synthesis of its environment."""
    from devtools.local_chain import LocalChains  # the services' packages: only where a chain runs

    running = request.config.stash[CHAINS] = LocalChains()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def chain(request: pytest.FixtureRequest, chains: LocalChains) -> LocalChain:
    """The local chain (devtools/local_chain.py) started with the test module's ``CHAIN`` (its
    keyword arguments). Modules with the same CHAIN run on one worker, on one chain: their tests
    sign in as users of their own."""
    return chains.get(**request.module.CHAIN)
