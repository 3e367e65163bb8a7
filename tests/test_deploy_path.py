"""The deploy path is unambiguous: the reviewed HCL and the deployed JSON live in folders of
their own, so Terraform never loads both formats of a stack, and a deploy starts from fresh JSON."""

from __future__ import annotations

import subprocess
from pathlib import Path

from iac import ROOT, STACKS

# Run the recipes' commands only; treat the install stamps as done.
DRY_RUN = ["make", "--no-print-directory", "-n", "-o", ".venv/.synced", "-o", "node_modules/.installed"]


def recipe(*args: str) -> list[str]:
    result = subprocess.run([*DRY_RUN, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_review_hcl_and_deployed_json_go_to_different_folders() -> None:
    (synth,) = [line for line in recipe("synth") if line.startswith("cdktf ")]
    deploy = [
        line for line in recipe("deploy", "STACKS=prod-network prod-registry") if line.startswith(("rm ", "cdktf "))
    ]
    assert synth == "cdktf synth --hcl --output cdktf.out.review"
    assert deploy == ["rm -rf cdktf.out", "cdktf deploy --output cdktf.out prod-network prod-registry"]


def test_deploy_names_its_stacks() -> None:
    result = subprocess.run(
        ["make", "-o", ".venv/.synced", "-o", "node_modules/.installed", "deploy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert 'name the stacks, e.g. STACKS="prod-network prod-registry"' in result.stderr


def test_no_stack_folder_holds_both_formats(synth_hcl: Path, synth_dir: Path) -> None:
    for outdir, kept in ((synth_hcl, "cdk.tf"), (synth_dir, "cdk.tf.json")):
        for stack in STACKS:
            files = {p.name for p in (outdir / "stacks" / stack).iterdir() if p.name.startswith("cdk.tf")}
            assert files == {kept}, f"{outdir.name}/{stack}: {sorted(files)}"
