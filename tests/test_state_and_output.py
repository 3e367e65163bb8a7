"""State backends, stack wiring, and what the output must never contain."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from iac import ROOT, STACKS, Stacks, run_main


def test_every_stack_has_its_own_gcs_prefix(synth_json: Stacks) -> None:
    for stack_id, stack in synth_json.items():
        env, layer = stack_id.split("-", 1)
        assert stack["terraform"]["backend"] == {
            "gcs": {"bucket": f"replace-me-{env}-tfstate", "prefix": f"{env}/{layer}"}
        }


def test_provider_is_pinned_and_labels_every_resource(synth_json: Stacks) -> None:
    for stack_id, stack in synth_json.items():
        env, layer = stack_id.split("-", 1)
        assert stack["terraform"]["required_providers"]["google"] == {"source": "google", "version": "6.50.0"}
        (provider,) = stack["provider"]["google"]
        assert provider["project"] == f"replace-me-{env}"
        assert provider["default_labels"] == {
            "environment": env,
            "managed_by": "cdktf",
            "system": "hybrid-ai-platform",
            "layer": layer,
        }


def test_database_reads_the_network_through_remote_state(synth_json: Stacks) -> None:
    for env in ("dev", "prod"):
        remote = synth_json[f"{env}-database"]["data"]["terraform_remote_state"]
        assert remote == {
            f"cross-stack-reference-input-{env}-network": {
                "backend": "gcs",
                "config": {"bucket": f"replace-me-{env}-tfstate", "prefix": f"{env}/network"},
                "workspace": "${terraform.workspace}",
            }
        }


def test_stack_dependencies_let_deploy_order_layers(synth_dir: Path) -> None:
    manifest = json.loads((synth_dir / "manifest.json").read_text())
    assert sorted(manifest["stacks"]) == sorted(STACKS)
    for env in ("dev", "prod"):
        assert manifest["stacks"][f"{env}-database"]["dependencies"] == [f"{env}-network"]
        assert manifest["stacks"][f"{env}-registry"]["dependencies"] == [f"{env}-network"]
        # The BigQuery API is enabled in the network layer.
        assert manifest["stacks"][f"{env}-analytics"]["dependencies"] == [f"{env}-network"]
        assert sorted(manifest["stacks"][f"{env}-services"]["dependencies"]) == [
            f"{env}-database",
            f"{env}-network",
            f"{env}-registry",
        ] + (["prod-workers"] if env == "prod" else [])
    # The clusters' nodes are granted reads on the registry layer's repositories: after them.
    for env in ("dev", "prod"):
        assert sorted(manifest["stacks"][f"{env}-cluster"]["dependencies"]) == [f"{env}-network", f"{env}-registry"]
    assert sorted(manifest["stacks"]["prod-workers"]["dependencies"]) == [
        "prod-database",
        "prod-network",
        "prod-registry",
    ]
    assert sorted(manifest["stacks"]["prod-workers-k8s"]["dependencies"]) == ["prod-database", "prod-workers"]


def test_output_holds_no_path_of_this_machine(synth_dir: Path, synth_hcl: Path) -> None:
    needles = {str(ROOT), str(Path.home()), os.getcwd()}
    for outdir in (synth_dir, synth_hcl):
        for path in outdir.rglob("*"):
            if path.is_file():
                text = path.read_text()
                for needle in needles:
                    assert needle not in text, f"{path.relative_to(outdir)} contains {needle}"


def test_synth_runs_on_node_22_and_prints_no_warning(tmp_path: Path) -> None:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout
    assert node.startswith("v22."), f"node on PATH is {node.strip()}; expected the pinned Node 22 LTS"
    result = run_main(tmp_path, "--env", str(ROOT / "environments" / "dev.toml"))
    assert result.returncode == 0
    assert result.stderr == "", "synth printed warnings (a Node end-of-life banner?)"
