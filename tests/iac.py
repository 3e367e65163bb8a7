"""Shared facts and helpers of the infrastructure tests: stacks, environments, synthesis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("dev", "prod")
LAYERS = ("network", "registry", "database", "cluster", "inference", "services")
STACKS = tuple(f"{env}-{layer}" for env in ENVIRONMENTS for layer in LAYERS)

DEV = (ROOT / "environments" / "dev.toml").read_text()
# dev with its model on a Cloud Run GPU instead of GKE, as text: the base of the bad-file cases
# that edit it (test_bad_environments). Other tests build it typed: variants.DEV_ON_CLOUD_RUN.
DEV_CLOUD_RUN = (
    DEV[: DEV.index("[inference]")]
    + """[inference]
placement = "cloud_run"

[inference.cloud_run]
model = "google/gemma-3-4b-it"
zonal_redundancy = false
"""
)


def run_main(outdir: Path, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CDKTF_OUTDIR": str(outdir), **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def resources(stack: dict, kind: str) -> dict[str, dict]:
    return stack.get("resource", {}).get(kind, {})


def only(stack: dict, kind: str) -> dict:
    found = list(resources(stack, kind).values())
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
