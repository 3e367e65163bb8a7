"""[inference] spill_to = "cloud_run": the GKE pool spills to the same model on a Cloud Run GPU
(docs/routing.md, "Spill to a Cloud Run GPU"). dev's variant (tests/variants.py
DEV_SPILL_TO_CLOUD_RUN), synthesized: the service, who may invoke it, how the orchestrator is
told of it, the checker's edge to it and its cost; and the files that cannot have it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from analysis.cost.estimate import estimate
from analysis.cost.prices import load_prices
from analysis.reachability import EnvironmentFacts
from hybrid.config import ConfigError
from iac import Stacks, pointees
from reachability_helpers import BASE_EDGES, GKE_PLUMBING, PLUMBING, by_edge, edit_json_env, explain
from test_services_stack import container, env_vars, invokers, services
from variants import DEV_ENV, DEV_SPILL_TO_CLOUD_RUN, synthesize, variant

MODEL = "mistralai/Mistral-7B-Instruct-v0.3"


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Stacks:
    spill = variant(DEV_SPILL_TO_CLOUD_RUN, {"name": "spill"})
    return synthesize(spill, tmp_path_factory.mktemp("cloud-run-spill"))


def orchestrator_setting(stacks: Stacks, name: str) -> Any:
    """The orchestrator's setting ``name``, a JSON document (BACKENDS, ROUTES), parsed."""
    return json.loads(env_vars(services(stacks["spill-services"])["orchestrator"])[name])


def test_the_spill_target_is_the_same_model_on_an_internal_cloud_run_l4(stacks: Stacks) -> None:
    assert "spill-inference" in stacks and "spill-cluster" in stacks  # the GKE pool stays
    spill = services(stacks["spill-services"])["inference-spill"]
    template, box = spill["template"], container(spill)
    assert template["node_selector"] == {"accelerator": "nvidia-l4"}
    assert box["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert box["args"] == ["--model", MODEL, "--port", "8000"]
    assert template["scaling"] == {"min_instance_count": 0, "max_instance_count": 5}
    assert spill["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert "vpc_access" not in template  # it calls nothing private
    # Only the orchestrator may call it: batch lines wait for the pool.
    assert invokers(stacks, "spill-services")["inference-spill"] == {"serviceAccount:spill-orchestrator"}


def test_the_orchestrator_spills_there_with_an_id_token(stacks: Stacks) -> None:
    backends = orchestrator_setting(stacks, "BACKENDS")
    target = backends["self-hosted-spill"]
    assert (target["kind"], target["auth"]) == ("openai", "google-id-token")
    assert [p.brief for p in pointees(stacks, "spill-services", target["url"])] == [
        ("spill-services", "google_cloud_run_v2_service", "spill-inference-spill", "uri")
    ]
    assert target["url"].endswith("}/v1")
    route = orchestrator_setting(stacks, "ROUTES")[0]
    assert route["match"] == MODEL and route["backends"] == ["self-hosted"]
    assert (route["spill_to"], route["spill_model"]) == ("self-hosted-spill", MODEL)
    assert backends["self-hosted"]["auth"] == "none"  # the GKE pool, behind its internal load balancer


def test_the_checker_follows_the_orchestrator_to_the_spill_target(stacks: Stacks) -> None:
    facts = EnvironmentFacts.from_toml(variant(DEV_SPILL_TO_CLOUD_RUN, {"name": "spill"}).model_dump(mode="json"))
    assert facts.spill
    verdicts = by_edge(stacks, facts)
    assert list(verdicts) == [
        *BASE_EDGES[:4],
        "orchestrator -> inference-spill",
        *BASE_EDGES[4:],
        *PLUMBING,
        *GKE_PLUMBING,
    ]
    assert all(v.ok for v in verdicts.values()), explain(verdicts.values())


def test_cost_prices_the_spill_targets_floor_and_says_what_spilling_costs() -> None:
    est = estimate(DEV_SPILL_TO_CLOUD_RUN, load_prices("us-central1"))
    spill = [i for i in est.items if "dev-inference-spill" in i.resource]
    priced = [i for i in spill if i.monthly_usd is not None]
    assert priced and all(i.monthly_usd == 0 for i in priced)  # min_instances 0: nothing while idle
    (said,) = [i for i in spill if i.monthly_usd is None]
    assert "billed per second while it runs" in said.note


@pytest.mark.parametrize(
    "updates,key,message",
    [
        (
            {"inference.spill_to": "cloud_run"},
            "inference.cloud_run",
            "must be set when spill_to is 'cloud_run'",
        ),
        (
            {"inference.spill_to": "cloud_run", "inference.cloud_run": {"model": MODEL}, "inference.batch_spill": True},
            "inference.batch_spill",
            "must be false when spill_to is 'cloud_run'",
        ),
        (
            {"inference.spill_to": "cloud_run", "inference.cloud_run": {"model": MODEL}},
            "inference.spill_to",
            "'cloud_run' needs network.egress = 'direct'",
        ),
        ({"inference.spill_to": "cloud-run"}, "inference.spill_to", "must be one of vertex:"),
        (
            {
                "network.egress": "direct",
                "network.run_cidr": "10.8.0.0/24",
                "network.connector_cidr": None,
                "network.proxy_only_cidr": None,
                "network.internal_lb_address": None,
                "inference.placement": "cloud_run",
                "inference.gke": None,
                "inference.spill_to": "cloud_run",
                "inference.cloud_run": {"model": MODEL},
            },
            "inference.spill_to",
            "'cloud_run' spills a GKE pool to a Cloud Run GPU: placement must be 'gke'",
        ),
    ],
    ids=["no-cloud-run-table", "batch-spill", "connector-mode", "misspelt", "placed-on-cloud-run"],
)
def test_a_spill_target_that_cannot_be_is_refused_clearly(updates: dict[str, object], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        variant(DEV_ENV, updates)  # dev runs connector mode
    assert any(problem.startswith(key) and message in problem for problem in str(refused.value).splitlines()), (
        refused.value
    )


def test_the_checker_blocks_a_spill_target_the_orchestrator_cannot_use(stacks: Stacks) -> None:
    facts = EnvironmentFacts.from_toml(variant(DEV_SPILL_TO_CLOUD_RUN, {"name": "spill"}).model_dump(mode="json"))
    no_spill = copy.deepcopy(stacks)
    orchestrator = services(no_spill["spill-services"])["orchestrator"]
    edit_json_env(orchestrator, "ROUTES", lambda routes: [{**routes[0], "spill_to": None}, *routes[1:]])
    verdict = by_edge(no_spill, facts)["orchestrator -> inference-spill"]
    assert not verdict.ok and "spills to None, not the spill target 'self-hosted-spill'" in explain([verdict])

    no_invoker = copy.deepcopy(stacks)
    grants = no_invoker["spill-services"]["resource"]["google_cloud_run_v2_service_iam_member"]
    for key in [k for k, g in grants.items() if "inference-spill" in json.dumps(g)]:
        del grants[key]
    verdict = by_edge(no_invoker, facts)["orchestrator -> inference-spill"]
    assert not verdict.ok and "run.invoker" in explain([verdict])


def test_a_region_without_cloud_run_l4s_refuses_the_spill_target() -> None:
    # us-east4 has GKE L4s but no Cloud Run L4 (hybrid/config/regions.py cites both lists).
    with pytest.raises(ConfigError) as refused:
        variant(DEV_SPILL_TO_CLOUD_RUN, {"region": "us-east4"})
    assert "inference.cloud_run.gpu_type = 'nvidia-l4': must be a GPU Cloud Run offers in us-east4" in str(
        refused.value
    )
