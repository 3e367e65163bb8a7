"""Shared facts and helpers of the infrastructure tests: stacks, environments, synthesis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from cdktf import TerraformStack, Testing

from analysis.reachability import Synth

ROOT = Path(__file__).resolve().parent.parent
Json = dict[str, Any]  # a synthesized stack, or a block of one
Stacks = dict[str, Json]  # synthesized stacks by id (the synth_json fixture)
ENVIRONMENTS = ("dev", "prod")
LAYERS = ("network", "registry", "database", "cluster", "inference", "services", "analytics")
# The workers tier's layers, made where [workers] is enabled: prod, not dev.
WORKERS_LAYERS = ("workers", "workers-k8s")
# The edge's layer, made where [edge] is enabled: prod, not dev.
EDGE_LAYERS = ("edge",)
# The observability layer, made where [slo] is set: both shipped environments.
OBSERVABILITY_LAYER = "observability"
STACKS = (
    tuple(f"{env}-{layer}" for env in ENVIRONMENTS for layer in LAYERS)
    + tuple(f"prod-{layer}" for layer in (*WORKERS_LAYERS, *EDGE_LAYERS))
    + tuple(f"{env}-{OBSERVABILITY_LAYER}" for env in ENVIRONMENTS)
)

DEV = (ROOT / "environments" / "dev.toml").read_text()
# dev's file in Direct VPC egress mode, as prod runs (dev itself uses the connector:
# docs/network-egress.md): the base of the bad-file cases that edit its run_cidr.
_CONNECTOR_LINES = DEV[DEV.index("# dev exercises the design card") : DEV.index("\n\n[database]")]
DEV_DIRECT = DEV.replace(
    _CONNECTOR_LINES, 'run_cidr = "10.8.0.0/24"        # the Cloud Run services\' Direct VPC egress'
)
# dev with its model on a Cloud Run GPU instead of GKE, as text: the base of the bad-file cases
# that edit it (test_bad_environments). Other tests build it typed: variants.DEV_ON_CLOUD_RUN.
# Direct VPC egress: connector mode fronts only the orchestrator.
DEV_CLOUD_RUN = (
    DEV_DIRECT[: DEV_DIRECT.index("[inference]")]
    + """[inference]
placement = "cloud_run"

[inference.cloud_run]
model = "google/gemma-3-4b-it"
zonal_redundancy = false

"""
    + DEV_DIRECT[DEV_DIRECT.index("\n[workers]") + 1 :]
)


def run_main(outdir: Path, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDKTF_OUTDIR": str(outdir), **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def synth_in_process(build: Callable[[TerraformStack], object]) -> Json:
    """The Terraform JSON of stack ``test`` after ``build`` fills it: a construct under test,
    synthesized in this process (``Testing.synth_scope`` does not work in Python)."""
    stack = TerraformStack(Testing.app(), "test")
    build(stack)
    synthesized: Json = json.loads(Testing.synth(stack))
    return synthesized


def resources(stack: Json, kind: str) -> dict[str, Json]:
    found: dict[str, Json] = stack.get("resource", {}).get(kind, {})
    return found


def only(stack: Json, kind: str) -> Json:
    found = list(resources(stack, kind).values())
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


class Pointee(NamedTuple):
    """What a Terraform reference points at, followed across stacks through remote state."""

    stack: str
    kind: str  # the resource type; data.<type> for a data source
    config: dict[str, Any]
    attr: str

    @property
    def brief(self) -> tuple[str, str, Any, str]:
        """(stack, kind, the resource's own name or account id, attribute): what a test states."""
        return (self.stack, self.kind, self.config.get("name", self.config.get("account_id")), self.attr)


def pointees(stacks: dict[str, Json], stack_id: str, value: Any) -> list[Pointee]:
    """Everything ``value`` (in ``stack_id``) refers to. Tests state what a value points at with
    these, never with cdktf's generated names (``<path>_<hash>``, ``cross-stack-output-...``)."""
    synth = Synth(stack_id.split("-", 1)[0], stacks)
    return [Pointee(ref.stack, ref.type, synth.config(ref), ref.attr) for ref in synth.refs(stack_id, value)]


def pointee(stacks: dict[str, Json], stack_id: str, value: Any) -> Pointee:
    """The one thing ``value``, a bare reference ``${...}``, refers to."""
    synth = Synth(stack_id.split("-", 1)[0], stacks)
    ref = synth.ref(stack_id, value)
    assert ref is not None, f"{value!r} is not a single reference"
    return Pointee(ref.stack, ref.type, synth.config(ref), ref.attr)


def principal(stacks: dict[str, Json], stack_id: str, member: Any) -> str:
    """An IAM member as ``allUsers``, ``serviceAccount:<account id>`` or ``serviceAgent:<api>``."""
    return Synth(stack_id.split("-", 1)[0], stacks).principal(stack_id, member)
