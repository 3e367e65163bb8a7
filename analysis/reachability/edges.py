"""The edges that must carry traffic: which ones, taken from the platform's topology
(hybrid/topology.py), named by the README diagram's node ids.

Only *which* edges must exist comes from the topology; how each is proven from the synthesized
JSON is the checker's own business (evaluate.py), so the checker stays an independent reader of
what the stacks built. Three edges are Google's managed plumbing rather than a service's call,
and are declared here: the browser's sign-in, the model nodes' way out through NAT, and Managed
Prometheus's scrape of vLLM."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.reachability.core import EnvironmentFacts
from hybrid.topology import Edge as Call
from hybrid.topology import declared, required_edges


@dataclass(frozen=True)
class Edge:
    name: str
    # The README diagram's node ids (its mermaid block), which tests/test_reachability_shipped.py compares.
    source: str
    destination: str
    # The topology's edge it proves (caller, callee, how the call travels); None for the plumbing edges.
    call: Call | None = None
    # A further region of [edge] regions whose orchestrator makes this call; None: the environment's.
    region: str | None = None


# The diagram's node id, and an edge's wording, for a topology name where they differ. A service
# on GKE is reached through its internal load balancer, which the diagram draws.
_NODE = {
    "db-bootstrap": "job",
    "postgres": "sql",
    "vertex-ai": "vertex",
    "batch-lines": "pubsub",
    "batch-bucket": "bucket",
    "inference": "ilb",
}
_LABEL = {
    "db-bootstrap": "db-bootstrap job",
    "postgres": "Cloud SQL",
    "vertex-ai": "Vertex AI",
    "batch-lines": "Pub/Sub (batch lines)",
    "batch-bucket": "GCS (batch files)",
    "redis": "Memorystore (rate limit)",
}

_IDENTITY_PLATFORM = Edge("browser -> Identity Platform", "browser", "idp")
_NAT = Edge("GKE nodes -> internet (NAT)", "gke", "nat")
_METRICS = Edge("Managed Prometheus -> vLLM metrics", "prometheus", "vllm")
# Where [edge] is on: the load balancer's way in, and its way to each public service.
_EDGE = (
    Edge("internet -> load balancer", "internet", "lb"),
    Edge("load balancer -> frontend", "lb", "frontend"),
    Edge("load balancer -> gateway", "lb", "gateway"),
)


def _from_call(call: Call) -> Edge:
    caller, callee = call.source, call.destination
    if (caller, callee) == ("worker", "batch-lines"):
        # The worker pulls its lines; the diagram and the proof follow the messages.
        return Edge("Pub/Sub -> worker", "pubsub", "worker", call)
    name = f"{_LABEL.get(caller, caller)} -> {_LABEL.get(callee, callee)}"
    if call.path == "internal_alb":
        name += " (internal load balancer)"  # connector mode's path, proven apart from run.app's
    return Edge(name, _NODE.get(caller, caller), _NODE.get(callee, callee), call)


def edges_for(facts: EnvironmentFacts) -> tuple[Edge, ...]:
    """Every edge the environment must carry: its topology's, then the plumbing it has."""
    optional = facts.features - {facts.placement}
    edges = required_edges(placement=facts.placement, sections=optional, egress=facts.egress)
    calls = [_from_call(call) for call in edges]
    plumbing = [
        _IDENTITY_PLATFORM,
        *((_NAT, _METRICS) if facts.placement == "gke" else ()),
        *(_EDGE if facts.edge else ()),
    ]
    # Each further region's orchestrator reaches the one database and the one set of model servers,
    # in the environment's region: the calls that cross regions.
    regional = [
        Edge(f"orchestrator ({region}) -> {label}", "orchestrator", node, region=region)
        for region in facts.regions
        for label, node in (("Cloud SQL", "sql"), ("inference", "ilb"))
    ]
    return (*calls, *regional, *plumbing)


def every_edge() -> tuple[Edge, ...]:
    """The edges of an environment with every tier on and the models on GKE: the diagram's."""
    sections = declared().section_order()
    facts = EnvironmentFacts("every", "gke", "", workers="workers" in sections, redis="redis" in sections, edge=True)
    return edges_for(facts)
