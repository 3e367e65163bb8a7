"""The reachability check's command line (scripts/check_reachability.py), and the analysis tools
running without cdktf."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from iac import ROOT
from reachability_helpers import EDGES_OF
from variants import DEV_ON_CLOUD_RUN, write_environment


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.check_reachability", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_passes_on_the_shipped_environments() -> None:
    result = run_cli()
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # One line per edge, a header and a summary per environment: no reasons unless --verbose.
    assert [line.split("  ")[0] for line in lines if line.startswith(("dev  ", "prod  "))] == ["dev"] * len(
        EDGES_OF["dev"]
    ) + ["prod"] * len(EDGES_OF["prod"])
    assert "dev  gateway -> orchestrator" in result.stdout and "prod  Pub/Sub -> worker" in result.stdout
    assert "dev: 10 of 10 edges OK" in lines and "prod: 23 of 23 edges OK" in lines
    assert len([line for line in lines if line]) == 2 * 2 + 10 + 23
    assert "BLOCKED" not in result.stdout


def test_cli_fails_with_a_readable_table_on_a_broken_synth_dir(synth_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "synth"
    shutil.copytree(synth_dir, broken)
    path = broken / "stacks" / "dev-inference" / "cdk.tf.json"
    stack = json.loads(path.read_text())
    policy = next(iter(stack["resource"]["kubernetes_network_policy_v1"].values()))
    policy["spec"]["ingress"][0]["from"][-1]["namespace_selector"]["match_labels"]["kubernetes.io/metadata.name"] = (
        "gmp-system"
    )
    path.write_text(json.dumps(stack))

    result = run_cli("--synth-dir", str(broken))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert any(re.fullmatch(r"dev  Managed Prometheus -> vLLM metrics +BLOCKED", line) for line in lines), result.stdout
    # The blocked edge shows what blocks it, and no other reason.
    reasons = [line.strip() for line in lines if line.startswith("    ")]
    assert reasons and all(reason.startswith("NO  ") for reason in reasons), result.stdout
    assert "dev: 9 of 10 edges OK; BLOCKED: Managed Prometheus -> vLLM metrics" in lines
    assert "prod: 23 of 23 edges OK" in lines

    verbose = run_cli("--synth-dir", str(broken), "--env", str(ROOT / "environments" / "dev.toml"), "--verbose")
    assert "    ok  a GKE cluster" in verbose.stdout.splitlines()


def test_cli_reports_what_it_cannot_check_without_a_traceback(tmp_path: Path) -> None:
    missing = run_cli("--synth-dir", str(tmp_path / "nowhere"))
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr.startswith("check_reachability: ") and "Traceback" not in missing.stderr

    (tmp_path / "stacks" / "dev-network").mkdir(parents=True)
    (tmp_path / "stacks" / "dev-network" / "cdk.tf.json").write_text("{not json")
    corrupt = run_cli("--synth-dir", str(tmp_path), "--env", str(ROOT / "environments" / "dev.toml"))
    assert corrupt.returncode == 2 and "not readable JSON" in corrupt.stderr and "Traceback" not in corrupt.stderr


def test_cli_checks_one_environment_file(tmp_path: Path) -> None:
    config = write_environment(DEV_ON_CLOUD_RUN, tmp_path / "dev-cloud-run.toml")
    result = run_cli("--env", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dev: inference on cloud_run, self-hosted model google/gemma-3-4b-it" in result.stdout
    assert "dev: 8 of 8 edges OK" in result.stdout


def test_the_analysis_tools_import_no_cdktf() -> None:
    # The checker, the cost tool and the advice read config and synthesized JSON only, so they
    # must run without loading cdktf, jsii or a provider package (issue 21).
    probe = textwrap.dedent(
        """
        import pkgutil, sys
        from importlib.abc import MetaPathFinder
        class NoCdktf(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in {"cdktf", "constructs", "jsii"} or name.startswith("cdktf_"):
                    raise ModuleNotFoundError(f"{name} imported by an analysis tool", name=name)
                return None
        sys.meta_path.insert(0, NoCdktf())
        import analysis
        for module in pkgutil.walk_packages(analysis.__path__, "analysis."):
            __import__(module.name)
        import scripts.check_reachability
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
