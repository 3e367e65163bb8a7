"""The reachability check (analysis/reachability/, scripts/check_reachability.py) on what we ship.

Every edge of the shipped synth, and of dev with its model on Cloud Run, is reachable; every edge
the checker declares is drawn in the README's diagram and has a proof of its own."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from analysis.reachability import (
    EnvironmentFacts,
    evaluate,
)
from analysis.reachability.edges import Edge, edges_for, every_edge
from analysis.reachability.evaluate import PROOFS, proof_for
from hybrid.config import load_environment
from hybrid.topology import Edge as Call
from iac import ROOT, Json, Stacks
from reachability_helpers import (
    CLOUD_RUN_EDGES,
    EDGES_OF,
    by_edge,
    container_env,
    edit_json_env,
    explain,
    facts_for,
    failures,
    service,
)
from variants import DEV_ENV, DEV_ON_CLOUD_RUN, synthesize, variant


def test_every_edge_of_the_shipped_environments_is_ok(env: str, synth_json: Stacks) -> None:
    verdicts = evaluate(synth_json, facts_for(env))
    assert [v.edge for v in verdicts] == EDGES_OF[env]
    assert all(v.ok for v in verdicts), explain(verdicts)


def test_facts_agree_with_the_typed_settings(env: str) -> None:
    typed, facts = load_environment(ROOT / "environments" / f"{env}.toml"), facts_for(env)
    inference = typed.inference
    assert (facts.name, facts.placement) == (typed.name, inference.placement)
    assert facts.self_hosted_model == getattr(inference, inference.placement).model
    assert facts.workers is typed.workers.enabled
    assert facts.redis is typed.redis.enabled


@pytest.fixture(scope="module")
def cloud_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Stacks, EnvironmentFacts]:
    """dev with its model on a Cloud Run GPU (tests/variants.py DEV_ON_CLOUD_RUN), synthesized."""
    stacks = synthesize(DEV_ON_CLOUD_RUN, tmp_path_factory.mktemp("reachability-cloud-run"))
    return stacks, EnvironmentFacts.from_toml(DEV_ON_CLOUD_RUN.model_dump(mode="json"))


def test_every_edge_of_the_cloud_run_placement_is_ok(cloud_run: tuple[Stacks, EnvironmentFacts]) -> None:
    stacks, facts = cloud_run
    assert facts.placement == "cloud_run" and facts.self_hosted_model == "google/gemma-3-4b-it"
    verdicts = evaluate(stacks, facts)
    assert [v.edge for v in verdicts] == CLOUD_RUN_EDGES
    assert all(v.ok for v in verdicts), explain(verdicts)


def test_frontend_behind_iap_is_reachable_by_its_members(tmp_path: Path) -> None:
    iap = variant(DEV_ENV, {"services.iap_members": ["group:ai-team@example.com"], "services.frontend.access": "iap"})
    verdicts = by_edge(synthesize(iap, tmp_path), EnvironmentFacts.from_toml(iap.model_dump(mode="json")))
    frontend = verdicts["browser -> frontend"]
    assert frontend.ok, explain([frontend])
    assert [s.text for s in frontend.steps][-2:] == [
        "dev-frontend: IAP admits group:ai-team@example.com",
        "dev-frontend: the IAP service agent holds roles/run.invoker",
    ]
    assert all(v.ok for v in verdicts.values()), explain(verdicts.values())


def test_cloud_run_model_without_id_token_is_blocked(cloud_run: tuple[Stacks, EnvironmentFacts]) -> None:
    stacks, facts = copy.deepcopy(cloud_run[0]), cloud_run[1]

    def no_auth(backends: dict[str, Json]) -> dict[str, Json]:
        backends["self-hosted"]["auth"] = "none"
        return backends

    edit_json_env(service(stacks, "orchestrator"), "BACKENDS", no_auth)
    verdict = by_edge(stacks, facts)["orchestrator -> inference"]
    assert failures(verdict) == ["BACKENDS.self-hosted: auth 'none': no ID token, so Cloud Run answers 403"]


def test_google_star_route_ahead_of_a_self_hosted_gemma_is_blocked(cloud_run: tuple[Stacks, EnvironmentFacts]) -> None:
    stacks, facts = copy.deepcopy(cloud_run[0]), cloud_run[1]
    edit_json_env(service(stacks, "orchestrator"), "ROUTES", lambda routes: list(reversed(routes)))
    assert json.loads(container_env(service(stacks, "orchestrator"))["ROUTES"]["value"])[0]["match"] == "google/*"
    verdict = by_edge(stacks, facts)["orchestrator -> inference"]
    assert failures(verdict) == [
        "ROUTES: google/gemma-3-4b-it takes the first matching route 'google/*' -> ['vertex'],"
        " not the self-hosted backend 'self-hosted'"
    ]


def diagram_arrows() -> tuple[set[str], set[tuple[str, str]]]:
    """The node ids and the arrows of the README's mermaid architecture diagram."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert block, "README.md has no mermaid diagram"
    label = r"(?:\[[^\]]*\]|\(\([^)]*\)\)|\(\[[^\]]*\]\))?"
    arrow = re.compile(rf"^\s*(\w+){label}\s*(?:--\s*\"[^\"]*\"\s*)?-->\s*(\w+)")
    node = re.compile(r"^\s*(?:subgraph\s+)?(\w+)[\[(]")
    lines = block[1].splitlines()
    arrows = {(m[1], m[2]) for line in lines if (m := arrow.match(line))}
    nodes = {m[1] for line in lines if (m := node.match(line))} | {n for pair in arrows for n in pair}
    return nodes, arrows


def test_the_checker_follows_every_arrow_of_the_readmes_diagram() -> None:
    nodes, arrows = diagram_arrows()
    assert ("orchestrator", "pubsub") in arrows and ("worker", "vertex") in arrows  # the parse works
    # The load balancer's way to vLLM is inside the GKE box: each "-> inference" edge proves it.
    drawn = arrows - {("ilb", "vllm")}
    edges = every_edge()
    assert {e.source for e in edges} | {e.destination for e in edges} <= nodes, "an edge the diagram does not draw"
    checked = {(e.source, e.destination) for e in edges}
    assert checked == drawn


def test_every_declared_edge_has_a_proof() -> None:
    # Each shipped edge has a proof of its own; none is left to a generic one. Connector mode's
    # way to the orchestrator, and the way to a Cloud Run spill target (tests/test_cloud_run_spill.py),
    # are the edges the diagram (Direct VPC egress, the models on GKE, spill to Vertex AI) does not draw.
    connector, spill = "gateway -> orchestrator (internal load balancer)", "orchestrator -> inference-spill"
    assert sorted(e.name for e in every_edge()) == sorted(set(PROOFS) - {connector, spill})
    assert connector in {e.name for e in edges_for(facts_for("dev"))}


def test_a_new_services_calls_are_proven_like_the_shipped_ones() -> None:
    # A call the topology gains (tests/test_topology.py adds a reranker) is checked as the
    # gateway's call to the orchestrator is, or the orchestrator's to Cloud SQL; another kind
    # of call is reported as unproven, never passed.
    run_app = proof_for(
        Edge(
            "orchestrator -> reranker", "orchestrator", "reranker", Call("orchestrator", "reranker", "https", "run.app")
        )
    )
    database = proof_for(
        Edge("reranker -> Cloud SQL", "reranker", "sql", Call("reranker", "postgres", "postgres", "psa"))
    )
    other = proof_for(Edge("reranker -> x", "reranker", "x", Call("reranker", "x", "https", "google_api")))
    assert run_app.__qualname__.startswith("cloud_run_call") and database.__qualname__.startswith(
        "cloud_run_to_database"
    )
    verdict = other(None, facts_for("dev"))  # type: ignore[arg-type]
    assert verdict.ok is False and "no proof" in verdict.steps[0].text
