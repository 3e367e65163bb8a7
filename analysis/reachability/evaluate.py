"""Running every edge that applies to an environment."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from analysis.reachability.cluster import nodes_to_internet, prometheus_to_metrics
from analysis.reachability.core import EnvironmentFacts, Json, Step, Unresolved, Verdict
from analysis.reachability.data import gateway_to_redis, orchestrator_to_database, worker_to_database
from analysis.reachability.models import orchestrator_to_inference, orchestrator_to_vertex, worker_to_inference
from analysis.reachability.synth import Synth
from analysis.reachability.web import browser_to_frontend, browser_to_gateway, gateway_to_orchestrator

EdgeCheck = Callable[[Synth, EnvironmentFacts], Verdict]
# (edge, check, placements it applies to)
EDGES: tuple[tuple[str, EdgeCheck, tuple[str, ...]], ...] = (
    ("browser -> frontend", browser_to_frontend, ("gke", "cloud_run")),
    ("browser -> gateway", browser_to_gateway, ("gke", "cloud_run")),
    ("gateway -> orchestrator", gateway_to_orchestrator, ("gke", "cloud_run")),
    ("orchestrator -> inference", orchestrator_to_inference, ("gke", "cloud_run")),
    ("orchestrator -> Cloud SQL", orchestrator_to_database, ("gke", "cloud_run")),
    ("orchestrator -> Vertex AI", orchestrator_to_vertex, ("gke", "cloud_run")),
    ("GKE nodes -> internet (NAT)", nodes_to_internet, ("gke",)),
    ("Managed Prometheus -> vLLM metrics", prometheus_to_metrics, ("gke",)),
)
# The workers tier's edges, where it is enabled.
WORKER_EDGES: tuple[tuple[str, EdgeCheck], ...] = (
    ("worker -> inference", worker_to_inference),
    ("worker -> Cloud SQL", worker_to_database),
)


def evaluate(stacks: Mapping[str, Json], facts: EnvironmentFacts) -> list[Verdict]:
    """Every edge that applies to the environment, each with its verdict and reasons.

    ``stacks`` maps stack ids (``<env>-<layer>``) to their parsed cdk.tf.json; stacks of other
    environments may be present and are ignored."""
    s, verdicts = Synth(facts.name, stacks), []
    edges = [(edge, check) for edge, check, placements in EDGES if facts.placement in placements]
    edges += list(WORKER_EDGES) if facts.workers else []
    edges += [("gateway -> Memorystore (rate limit)", gateway_to_redis)] if facts.redis else []
    for edge, check in edges:
        try:
            verdicts.append(check(s, facts))
        except Unresolved as err:
            verdicts.append(Verdict(edge, (Step(False, f"cannot evaluate: {err}"),)))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            why = f"cannot evaluate: malformed synth ({type(err).__name__}: {err})"
            verdicts.append(Verdict(edge, (Step(False, why),)))
    return verdicts
