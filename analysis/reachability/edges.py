"""The edges that must carry traffic, as data: what talks to what, and where the edge exists.

Sources and destinations are the node ids of the README's architecture diagram (its mermaid
block), so the diagram's arrows and this list can be compared (tests/test_reachability.py).
How each edge is proven from the synthesized JSON is the checker's business (evaluate.PROOFS)."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.reachability.core import EnvironmentFacts


@dataclass(frozen=True)
class Edge:
    name: str
    source: str
    destination: str
    # What the environment must have for the edge to exist: its inference placement ("gke",
    # "cloud_run") and the optional tiers it enables ("workers", "redis"); empty: always.
    needs: frozenset[str] = frozenset()

    def applies(self, facts: EnvironmentFacts) -> bool:
        return self.needs <= facts.features


GKE, WORKERS, REDIS = frozenset({"gke"}), frozenset({"workers"}), frozenset({"redis"})

EDGES: tuple[Edge, ...] = (
    Edge("browser -> frontend", "browser", "frontend"),
    Edge("browser -> Identity Platform", "browser", "idp"),
    Edge("browser -> gateway", "browser", "gateway"),
    Edge("gateway -> orchestrator", "gateway", "orchestrator"),
    Edge("orchestrator -> inference", "orchestrator", "ilb"),
    Edge("orchestrator -> Cloud SQL", "orchestrator", "sql"),
    Edge("db-bootstrap job -> Cloud SQL", "job", "sql"),
    Edge("orchestrator -> Vertex AI", "orchestrator", "vertex"),
    Edge("GKE nodes -> internet (NAT)", "gke", "nat", GKE),
    Edge("Managed Prometheus -> vLLM metrics", "prometheus", "vllm", GKE),
    Edge("orchestrator -> Pub/Sub (batch lines)", "orchestrator", "pubsub", WORKERS),
    Edge("orchestrator -> GCS (batch files)", "orchestrator", "bucket", WORKERS),
    Edge("Pub/Sub -> worker", "pubsub", "worker", WORKERS),
    Edge("worker -> inference", "worker", "ilb", WORKERS),
    Edge("worker -> Cloud SQL", "worker", "sql", WORKERS),
    Edge("worker -> GCS (batch files)", "worker", "bucket", WORKERS),
    Edge("worker -> Vertex AI", "worker", "vertex", WORKERS),
    Edge("gateway -> Memorystore (rate limit)", "gateway", "redis", REDIS),
)
