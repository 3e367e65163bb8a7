"""`make up`: the deploy steps in the checked order, with recording stand-ins for gcloud and cdktf
(devtools/standins/recording_cli.py) on PATH, against a real synth of prod on a project of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iac import ROOT, run_main
from scripts.check_apply_order import load_plan
from scripts.up import images_to_build

HF_TOKEN = "hf_standin_value_never_logged"


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """prod.toml on a real project id, edge domain and alert address (the placeholders are refused), synthesized once."""
    base = tmp_path_factory.mktemp("up")
    env_file = base / "prod.toml"
    shipped = (ROOT / "environments" / "prod.toml").read_text()
    real = shipped.replace("replace-me-prod", "acme-prod").replace("chat.replace-me.", "chat.acme.")
    env_file.write_text(real.replace("ops@example.com", "ops@acme.test"))
    synth_dir = base / "synth"
    result = run_main(synth_dir, "--env", str(env_file))
    assert result.returncode == 0, result.stderr
    return env_file, synth_dir


def up(
    tmp_path: Path, env_file: Path, synth_dir: Path | None, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("gcloud", "cdktf"):
        wrapper = bin_dir / tool
        wrapper.write_text(
            f'#!/bin/sh\nSTANDIN_TOOL={tool} exec "{sys.executable}" "{ROOT / "devtools/standins/recording_cli.py"}" "$@"\n'
        )
        wrapper.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "PGADMIN_PASSWORD")}
    args = ["--env", str(env_file)] + (["--synth-dir", str(synth_dir)] if synth_dir else [])
    result = subprocess.run(
        [sys.executable, "-m", "scripts.up", *args],
        cwd=ROOT,
        env={
            **base,
            "PATH": f"{bin_dir}:{base['PATH']}",
            "STANDIN_LOG": str(log),
            "STANDIN_STATE": str(tmp_path / "state.json"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def index(calls: list[dict[str, Any]], predicate: Callable[[dict[str, Any]], bool]) -> list[int]:
    return [i for i, call in enumerate(calls) if predicate(call)]


def deploy_of(calls: list[dict[str, Any]], stack: str) -> int:
    (found,) = index(calls, lambda c: c["tool"] == "cdktf" and c["args"][0] == "deploy" and stack in c["args"])
    return found


def test_a_first_run_goes_in_the_checked_order(prod: tuple[Path, Path], tmp_path: Path) -> None:
    env_file, synth_dir = prod
    result, calls = up(tmp_path, env_file, synth_dir, HF_TOKEN=HF_TOKEN)
    assert result.returncode == 0, result.stderr
    builds = index(calls, lambda c: c["args"][:2] == ["builds", "submit"])
    built = {next(a for a in calls[i]["args"] if a.startswith("--substitutions=")).split(",")[0] for i in builds}
    # Every service the environment runs, the batch worker's included (the README's old loop missed it).
    assert built == {f"--substitutions=_SERVICE={s}" for s in ("frontend", "gateway", "orchestrator", "worker")}
    # Images after the registry exists and before anything that pulls them.
    assert deploy_of(calls, "prod-registry") < min(builds)
    assert max(builds) < min(deploy_of(calls, s) for s in ("prod-services", "prod-workers-k8s", "prod-inference"))
    # A cluster before the Workload Identity bindings that need its identity pool.
    assert deploy_of(calls, "prod-workers") < deploy_of(calls, "prod-workers-k8s")
    assert deploy_of(calls, "prod-cluster") < deploy_of(calls, "prod-inference")
    # Secrets after the database (the admin's password is set on its instance), before their readers.
    (set_password,) = index(calls, lambda c: c["args"][:3] == ["sql", "users", "set-password"])
    created = {calls[i]["args"][2]: i for i in index(calls, lambda c: c["args"][:2] == ["secrets", "create"])}
    assert set(created) == {"prod-postgres-admin-password", "prod-hf-token"}
    assert deploy_of(calls, "prod-database") < set_password < created["prod-postgres-admin-password"]
    assert max(created.values()) < min(deploy_of(calls, s) for s in ("prod-services", "prod-inference"))
    assert calls[created["prod-hf-token"]]["stdin_chars"] == len(HF_TOKEN)
    # The bootstrap job after the database and the services stack that defines it.
    (job,) = index(calls, lambda c: c["args"][:3] == ["run", "jobs", "execute"])
    assert calls[job]["args"][3] == "prod-db-bootstrap"
    assert job > deploy_of(calls, "prod-services") > deploy_of(calls, "prod-database")
    assert job == len(calls) - 1
    # Each stack deployed once, and secrets never on a command line or in the output.
    deployed = [s for c in calls if c["tool"] == "cdktf" for s in c["args"] if s.startswith("prod-")]
    assert sorted(deployed) == sorted(json.loads((synth_dir / "manifest.json").read_text())["stacks"])
    assert HF_TOKEN not in json.dumps(calls) + result.stdout + result.stderr
    assert "The chat page: https://prod-frontend-123.us-central1.run.app" in result.stdout

    again, calls = up(tmp_path, env_file, synth_dir, HF_TOKEN=HF_TOKEN)
    assert again.returncode == 0, again.stderr
    changing = [c["args"][:3] for c in calls if c["args"][:2] in (["builds", "submit"], ["secrets", "create"])]
    assert changing == [] and not index(calls, lambda c: c["args"][:2] == ["sql", "users"])


def test_a_missing_secret_stops_before_anything_is_deployed(prod: tuple[Path, Path], tmp_path: Path) -> None:
    env_file, synth_dir = prod
    result, calls = up(tmp_path, env_file, synth_dir)
    assert result.returncode == 2
    assert "secret prod-hf-token has no version: give its value as HF_TOKEN" in result.stderr
    assert "gcloud secrets create prod-hf-token --project=acme-prod --data-file=-" in result.stderr
    assert "Traceback" not in result.stderr
    assert [c for c in calls if c["tool"] == "cdktf" or c["args"][:2] == ["builds", "submit"]] == []


def test_the_shipped_placeholder_project_is_refused(tmp_path: Path) -> None:
    result, calls = up(tmp_path, ROOT / "environments" / "prod.toml", None)
    assert result.returncode == 2
    assert "project_id = 'replace-me-prod' is the shipped placeholder" in result.stderr
    assert calls == []


def test_the_shipped_placeholder_alert_address_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / "prod.toml"
    shipped = (ROOT / "environments" / "prod.toml").read_text()
    env_file.write_text(shipped.replace("replace-me-prod", "acme-prod").replace("chat.replace-me.", "chat.acme."))
    result, calls = up(tmp_path, env_file, None)
    assert result.returncode == 2
    assert "slo.notify.emails = ['ops@example.com'] is the shipped placeholder" in result.stderr
    assert calls == []


def test_the_images_are_what_the_stacks_pull_from_the_environments_registry(synth_dir: Path) -> None:
    dev = {image.service: image.uri for image in images_to_build(load_plan(synth_dir, "dev"))}
    # dev runs no workers; vLLM's image comes from its own publisher and is not built here.
    assert dev == {
        s: f"us-central1-docker.pkg.dev/replace-me-dev/dev-services/{s}:0.1.0"
        for s in ("frontend", "gateway", "orchestrator")
    }
