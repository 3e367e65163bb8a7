"""The apply-order check (scripts/check_apply_order.py).

The shipped environments meet every precondition before the deploy applies each resource (prod
but for the weights bucket, which no stack creates); broken copies of the synthesized JSON, or of
the deploy steps, each with one ordering mistake, are caught on the resource they break, for the
reason they break it.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from iac import ROOT, Json
from scripts.check_apply_order import Plan, evaluate, load_plan
from scripts.deploy_steps import DEPLOY_STEPS, Step

# The shipped environments meet every precondition (prod's weights bucket, once made by no stack,
# is now the registry layer's).
KNOWN: dict[str, set[tuple[str, str]]] = {"dev": set(), "prod": set()}


def violations(plan: Plan) -> set[tuple[str, str]]:
    return {(row.resource, row.precondition) for row in evaluate(plan) if not row.ok}


def reasons(plan: Plan) -> dict[tuple[str, str], str]:
    return {(row.resource, row.precondition): row.why for row in evaluate(plan) if not row.ok}


def edited(plan: Plan, steps: tuple[Step, ...] | None = None) -> Plan:
    """A copy of ``plan`` to break: its stacks are deep copies, edited by the caller before ``rebuilt``."""
    return Plan(plan.env, copy.deepcopy(plan.stacks), plan.dependencies, steps or plan.steps)


def rebuilt(plan: Plan) -> Plan:
    return Plan(plan.env, plan.stacks, plan.dependencies, plan.steps)


def find(stacks: dict[str, Json], kind: str, test: Callable[[Json], bool]) -> tuple[str, str, Json]:
    found: tuple[str, str, Json]
    (found,) = [
        (stack, name, body)
        for stack, config in stacks.items()
        for name, body in config.get("resource", {}).get(kind, {}).items()
        if test(body)
    ]
    return found


def account_name(stack: Json, account_id: str) -> str:
    """``${...name}`` of the stack's own Google service account ``account_id``: a binding moved into
    that stack refers to it there, as one written there would."""
    (name,) = [n for n, a in stack["resource"]["google_service_account"].items() if a["account_id"] == account_id]
    return f"${{google_service_account.{name}.name}}"


@pytest.fixture(scope="module")
def prod(synth_dir: Path) -> Plan:
    return load_plan(synth_dir, "prod")


def test_shipped_environments_meet_every_precondition(synth_dir: Path, env: str) -> None:
    assert violations(load_plan(synth_dir, env)) == KNOWN[env]


def test_make_check_prints_the_table_and_fails_on_a_violation(synth_dir: Path, tmp_path: Path) -> None:
    def run(env: str, directory: Path = synth_dir) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "scripts.check_apply_order", "--synth-dir", str(directory)]
        return subprocess.run([*command, "--env", f"environments/{env}.toml"], cwd=ROOT, capture_output=True, text=True)

    for env in ("dev", "prod"):
        result = run(env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(rf"^{env}: (\d+) of \1 preconditions met$", result.stdout, re.M)
        # Green: its title and summary alone; the table comes with --verbose.
        lines = [line for line in result.stdout.splitlines() if line]
        assert lines[0] == f"{env}: apply order" and len(lines) == 2, result.stdout
    verbose = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.check_apply_order",
            "--synth-dir",
            str(synth_dir),
            "--env",
            "environments/dev.toml",
            "--verbose",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "MET BY" in verbose.stdout and len(verbose.stdout.splitlines()) > 10
    # The bucket the weights grant names, taken out of the registry layer: made by no stack again.
    broken = tmp_path / "synth"
    shutil.copytree(synth_dir, broken)
    registry = broken / "stacks" / "prod-registry" / "cdk.tf.json"
    config = json.loads(registry.read_text())
    del config["resource"]["google_storage_bucket"]
    registry.write_text(json.dumps(config))
    prod = run("prod", broken)
    assert prod.returncode == 1
    assert re.search(
        r"weights-access +bucket replace-me-prod-model-weights exists +VIOLATION: created by no stack", prod.stdout
    )
    make = subprocess.run(
        # --no-print-directory: under `make test` this is a sub-make, which would name its directory.
        ["make", "--no-print-directory", "-n", "-o", ".venv/.synced", "-o", "node_modules/.installed", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert make.stdout.splitlines()[-1].endswith("python -m scripts.check_apply_order")


def test_the_readmes_images_loop_builds_the_images_step() -> None:
    (loop,) = re.findall(r"^for service in ([\w ]+); do$", (ROOT / "docs" / "deploying.md").read_text(), re.M)
    (images,) = [step for step in DEPLOY_STEPS if step.kind == "images"]
    assert tuple(loop.split()) == images.images


# ------------------------------------------------------------------------------------------
# Broken copies, each caught for its reason


def test_a_workload_identity_binding_before_any_cluster(prod: Plan) -> None:
    broken = edited(prod)

    def is_worker(binding: Json) -> bool:
        return binding.get("member") == "serviceAccount:replace-me-prod.svc.id.goog[batch/worker]"

    stack, name, binding = find(broken.stacks, "google_service_account_iam_member", is_worker)
    del broken.stacks[stack]["resource"]["google_service_account_iam_member"][name]
    binding["//"]["metadata"]["path"] = "prod-database/worker/workload-identity-batch-worker"
    binding["service_account_id"] = account_name(broken.stacks["prod-database"], "prod-worker")
    broken.stacks["prod-database"]["resource"].setdefault("google_service_account_iam_member", {})[name] = binding
    found = reasons(rebuilt(broken))
    key = (
        "google_service_account_iam_member prod-database/worker/workload-identity-batch-worker",
        "workload pool replace-me-prod.svc.id.goog exists (a cluster with Workload Identity)",
    )
    assert found == {key: "no cluster is created before it"}


def test_a_workload_identity_binding_racing_its_cluster(prod: Plan) -> None:
    broken = edited(prod)

    def is_adapter(binding: Json) -> bool:
        return "[custom-metrics/" in binding.get("member", "") and binding["//"]["metadata"]["path"].startswith(
            "prod-workers"
        )

    stack, name, binding = find(broken.stacks, "google_service_account_iam_member", is_adapter)
    del broken.stacks[stack]["resource"]["google_service_account_iam_member"][name]
    binding.pop("depends_on", None)
    binding["//"]["metadata"]["path"] = "prod-workers/metrics-adapter-binding"
    binding["service_account_id"] = account_name(broken.stacks["prod-workers"], "prod-workers-metrics")
    broken.stacks["prod-workers"]["resource"].setdefault("google_service_account_iam_member", {})[name] = binding
    found = violations(rebuilt(broken)) - KNOWN["prod"]
    assert found == {
        (
            "google_service_account_iam_member prod-workers/metrics-adapter-binding",
            "workload pool replace-me-prod.svc.id.goog exists (a cluster with Workload Identity)",
        )
    }


def disable(plan: Plan, *apis: str) -> Plan:
    broken = edited(plan)
    services = broken.stacks[f"{plan.env}-network"]["resource"]["google_project_service"]
    for name in [n for n, s in services.items() if s["service"] in apis]:
        del services[name]
    return rebuilt(broken)


def test_binary_authorization_without_its_api(prod: Plan) -> None:
    found = violations(disable(prod, "binaryauthorization.googleapis.com")) - KNOWN["prod"]
    assert found == {
        (
            f"google_container_cluster prod-{path}/cluster",
            "binaryauthorization.googleapis.com enabled (for binary_authorization)",
        )
        for path in ("cluster/models", "workers/workers")
    }


@pytest.mark.parametrize(
    ("api", "some_resource"),
    [
        ("pubsub.googleapis.com", "google_pubsub_topic prod-workers/batch-queue/topic"),
        ("cloudresourcemanager.googleapis.com", "google_project_iam_member prod-workers/worker-vertex-ai"),
        ("iamcredentials.googleapis.com", "google_container_cluster prod-workers/workers/cluster"),
    ],
)
def test_an_api_not_enabled(prod: Plan, api: str, some_resource: str) -> None:
    found = reasons(disable(prod, api))
    assert {resource for resource, precondition in found if precondition.startswith(f"{api} enabled")} >= {
        some_resource
    }
    assert set(found.values()) == {"no google_project_service for it is applied before"}


def test_a_service_agent_named_by_a_string(prod: Plan) -> None:
    broken = edited(prod)
    agent = "serviceAccount:service-${data.google_project.project.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    for kind in ("google_pubsub_topic_iam_member", "google_pubsub_subscription_iam_member"):
        for grant in broken.stacks["prod-workers"]["resource"][kind].values():
            if "agent" in grant["//"]["metadata"]["path"]:
                grant["member"] = agent
    found = reasons(rebuilt(broken))
    assert {resource: why for (resource, _), why in found.items() if "agent" in resource} == {
        "google_pubsub_subscription_iam_member prod-workers/batch-queue/agent-subscribes-source": (
            "the agent's address is built as a string: nothing creates it first (use google_project_service_identity)"
        ),
        "google_pubsub_topic_iam_member prod-workers/batch-queue/agent-publishes-dead-letters": (
            "the agent's address is built as a string: nothing creates it first (use google_project_service_identity)"
        ),
    }


def with_step(number: int, **changes: Any) -> tuple[Step, ...]:
    return tuple(replace(step, **changes) if step.number == number else step for step in DEPLOY_STEPS)


def test_the_readmes_old_images_loop_misses_the_worker(synth_dir: Path) -> None:
    old_loop = with_step(2, images=("frontend", "gateway", "orchestrator"))
    found = reasons(load_plan(synth_dir, "prod", old_loop))
    image = "image us-central1-docker.pkg.dev/replace-me-prod/prod-services/worker:0.1.0 exists"
    assert found == {
        ("kubernetes_deployment_v1 prod-workers-k8s/worker/deployment", image): (
            "step 2 builds frontend, gateway, orchestrator, not worker"
        ),
    }


def test_the_registry_created_in_the_apply_that_pulls_from_it(synth_dir: Path) -> None:
    registry_late = with_step(1, layers=("network", "database"))
    found = reasons(load_plan(synth_dir, "dev", registry_late))
    assert {resource for resource, _ in found} == {
        "google_cloud_run_v2_job dev-services/database-bootstrap/job",
        *(
            f"google_cloud_run_v2_service dev-services/{role}/service"
            for role in ("frontend", "gateway", "orchestrator")
        ),
    }
    assert set(found.values()) == {
        "step 2 pushes it to google_artifact_registry_repository.registry, which dev-registry creates later (step 4)"
    }


def test_a_secret_accessor_grant_racing_its_reader(synth_dir: Path) -> None:
    broken = edited(load_plan(synth_dir, "dev"))
    (job,) = broken.stacks["dev-services"]["resource"]["google_cloud_run_v2_job"].values()
    del job["depends_on"]
    assert reasons(rebuilt(broken)) == {
        (
            "google_cloud_run_v2_job dev-services/database-bootstrap/job",
            "serviceAccount:dev-db-bootstrap may read dev-postgres-admin-password (roles/secretmanager.secretAccessor)",
        ): "granted in parallel with it (no reference or depends_on orders them)"
    }


def test_a_google_resource_of_a_type_it_does_not_know_is_reported_not_skipped(synth_dir: Path) -> None:
    broken = edited(load_plan(synth_dir, "dev"))
    broken.stacks["dev-services"]["resource"]["google_made_up_thing"] = {
        "thing": {"//": {"metadata": {"path": "dev-services/thing"}}}
    }
    assert reasons(rebuilt(broken)) == {
        ("google_made_up_thing dev-services/thing", "the API it calls is enabled"): (
            "no API known for google_made_up_thing: add it to API_OF_TYPE"
        )
    }


@pytest.fixture(scope="module")
def dev(synth_dir: Path) -> Plan:
    return load_plan(synth_dir, "dev")


def test_the_connector_without_its_api(dev: Plan) -> None:
    found = reasons(disable(dev, "vpcaccess.googleapis.com"))
    assert found == {
        ("google_vpc_access_connector dev-network/connector", "vpcaccess.googleapis.com enabled"): (
            "no google_project_service for it is applied before"
        )
    }


def test_the_internal_load_balancer_without_its_proxy_only_subnet(dev: Plan) -> None:
    broken = edited(dev)
    del broken.stacks["dev-network"]["resource"]["google_compute_subnetwork"]["proxy-only-subnet"]
    assert reasons(rebuilt(broken)) == {
        (
            "google_compute_forwarding_rule dev-services/orchestrator-lb/forwarding-rule",
            "a proxy-only subnet in us-central1 exists",
        ): "created by no stack"
    }


def test_the_proxy_only_subnet_racing_the_forwarding_rule(dev: Plan) -> None:
    # Moved into the services stack with nothing ordering it before the rule: applied in parallel.
    broken = edited(dev)
    subnet = broken.stacks["dev-network"]["resource"]["google_compute_subnetwork"].pop("proxy-only-subnet")
    broken.stacks["dev-services"]["resource"].setdefault("google_compute_subnetwork", {})["proxy-only-subnet"] = subnet
    key = (
        "google_compute_forwarding_rule dev-services/orchestrator-lb/forwarding-rule",
        "a proxy-only subnet in us-central1 exists",
    )
    assert reasons(rebuilt(broken))[key] == "created in parallel with it"
