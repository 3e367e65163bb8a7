"""What the reachability tests share: each environment's edges in the checker's order, the
checker's verdicts by edge, and the pieces of a synth a test breaks (analysis/reachability/)."""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Callable, Iterable
from typing import Any

from analysis.reachability import EnvironmentFacts, Verdict, evaluate
from iac import ROOT, Json, Stacks

# Each environment's edges, in the checker's order: the topology's calls (hybrid/topology.py),
# then the managed plumbing the checker declares itself.
BASE_EDGES = [
    "browser -> frontend",
    "browser -> gateway",
    "gateway -> orchestrator",
    "orchestrator -> inference",
    "orchestrator -> Cloud SQL",
    "db-bootstrap job -> Cloud SQL",
    "orchestrator -> Vertex AI",
]
PLUMBING = ["browser -> Identity Platform"]
GKE_PLUMBING = ["GKE nodes -> internet (NAT)", "Managed Prometheus -> vLLM metrics"]
ALL_EDGES = BASE_EDGES + PLUMBING + GKE_PLUMBING
CLOUD_RUN_EDGES = BASE_EDGES + PLUMBING  # no cluster, so no NAT or metrics edge
WORKER_EDGES = [  # where [workers] is enabled: prod
    "orchestrator -> Pub/Sub (batch lines)",
    "orchestrator -> GCS (batch files)",
    "worker -> Vertex AI",
    "Pub/Sub -> worker",
    "worker -> GCS (batch files)",
    "worker -> inference",
    "worker -> Cloud SQL",
]
REDIS_EDGE = "gateway -> Memorystore (rate limit)"  # where [redis] is enabled: prod
EDGE_EDGES = ["internet -> load balancer", "load balancer -> frontend", "load balancer -> gateway"]  # [edge]: prod
# dev's connector mode reaches the orchestrator through its internal load balancer (docs/network-egress.md).
CONNECTOR_EDGES = [
    edge + " (internal load balancer)" if edge == "gateway -> orchestrator" else edge for edge in ALL_EDGES
]
# Where [edge] regions adds a region: prod's us-east4 orchestrator, across regions to the one database and models.
REGIONAL_EDGES = ["orchestrator (us-east4) -> Cloud SQL", "orchestrator (us-east4) -> inference"]
EDGES_OF = {
    "dev": CONNECTOR_EDGES,
    "prod": [
        *BASE_EDGES[:3],
        REDIS_EDGE,
        *BASE_EDGES[3:],
        *WORKER_EDGES,
        *REGIONAL_EDGES,
        *PLUMBING,
        *GKE_PLUMBING,
        *EDGE_EDGES,
    ],
}
REMOTE_NETWORK = "${data.terraform_remote_state.cross-stack-reference-input-dev-network.outputs.%s}"


def facts_for(env: str) -> EnvironmentFacts:
    return EnvironmentFacts.from_toml(tomllib.loads((ROOT / "environments" / f"{env}.toml").read_text()))


def by_edge(stacks: Stacks, facts: EnvironmentFacts) -> dict[str, Verdict]:
    return {verdict.edge: verdict for verdict in evaluate(stacks, facts)}


def explain(verdicts: Iterable[Verdict]) -> str:
    return "\n".join(
        f"{v.edge}: {'OK' if v.ok else 'BLOCKED'}\n"
        + "\n".join(f"  {'ok' if s.ok else 'NO'} {s.text}" for s in v.steps)
        for v in verdicts
    )


def failures(verdict: Verdict) -> list[str]:
    return [step.text for step in verdict.steps if not step.ok]


def only_env(synth_json: Stacks, env: str = "dev") -> Stacks:
    return copy.deepcopy({stack: config for stack, config in synth_json.items() if stack.startswith(f"{env}-")})


def service(stacks: Stacks, role: str, env: str = "dev") -> Json:
    """The service ``role`` in the environment's own region (a further region runs it by the same name)."""
    services: dict[str, Json] = stacks[f"{env}-services"]["resource"]["google_cloud_run_v2_service"]
    (region,) = {p["region"] for p in stacks[f"{env}-services"]["provider"]["google"]}
    return next(s for s in services.values() if s["name"] == f"{env}-{role}" and s["location"] == region)


def container_env(config: Json) -> dict[str, Json]:
    return {e["name"]: e for e in config["template"]["containers"][0]["env"]}


def edit_json_env(config: Json, name: str, edit: Callable[[Any], Any]) -> None:
    entry = container_env(config)[name]
    value = json.loads(entry["value"])
    entry["value"] = json.dumps(edit(value), separators=(",", ":"))


def add_rule(stacks: Stacks, name: str, **rule: object) -> None:
    stacks["dev-network"]["resource"]["google_compute_firewall"][name] = {
        "name": name,
        "network": "${google_compute_network.vpc.id}",
        **rule,
    }


def resources(stacks: Stacks, stack: str, kind: str) -> dict[str, Json]:
    found: dict[str, Json] = stacks[stack]["resource"][kind]
    return found
