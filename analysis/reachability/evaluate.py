"""Running every edge that applies to an environment."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from analysis.reachability.apis import (
    orchestrator_to_bucket,
    orchestrator_to_pubsub,
    orchestrator_to_vertex,
    pubsub_to_worker,
    worker_to_bucket,
    worker_to_vertex,
)
from analysis.reachability.cluster import nodes_to_internet, prometheus_to_metrics
from analysis.reachability.core import EnvironmentFacts, Json, Step, Unresolved, Verdict
from analysis.reachability.data import (
    cloud_run_to_database,
    gateway_to_redis,
    job_to_database,
    orchestrator_to_database,
    regional_orchestrator_to_database,
    worker_to_database,
)
from analysis.reachability.edges import Edge, edges_for
from analysis.reachability.loadbalancer import internet_to_load_balancer, load_balancer_to
from analysis.reachability.models import (
    orchestrator_to_inference,
    orchestrator_to_spill,
    regional_orchestrator_to_inference,
    worker_to_inference,
)
from analysis.reachability.synth import Synth
from analysis.reachability.web import (
    browser_to_frontend,
    browser_to_gateway,
    browser_to_identity_platform,
    cloud_run_call,
    gateway_to_orchestrator,
    gateway_to_orchestrator_through_lb,
)

EdgeCheck = Callable[[Synth, EnvironmentFacts], Verdict]
# How each edge is proven, by its name; a new service's call to an internal Cloud Run service or
# to Cloud SQL is proven as the ones here are (proof_for).
PROOFS: dict[str, EdgeCheck] = {
    "browser -> frontend": browser_to_frontend,
    "browser -> Identity Platform": browser_to_identity_platform,
    "browser -> gateway": browser_to_gateway,
    "gateway -> orchestrator": gateway_to_orchestrator,
    "gateway -> orchestrator (internal load balancer)": gateway_to_orchestrator_through_lb,
    "orchestrator -> inference": orchestrator_to_inference,
    "orchestrator -> inference-spill": orchestrator_to_spill,
    "orchestrator -> Cloud SQL": orchestrator_to_database,
    "db-bootstrap job -> Cloud SQL": job_to_database,
    "orchestrator -> Vertex AI": orchestrator_to_vertex,
    "GKE nodes -> internet (NAT)": nodes_to_internet,
    "Managed Prometheus -> vLLM metrics": prometheus_to_metrics,
    "orchestrator -> Pub/Sub (batch lines)": orchestrator_to_pubsub,
    "orchestrator -> GCS (batch files)": orchestrator_to_bucket,
    "Pub/Sub -> worker": pubsub_to_worker,
    "worker -> inference": worker_to_inference,
    "worker -> Cloud SQL": worker_to_database,
    "worker -> GCS (batch files)": worker_to_bucket,
    "worker -> Vertex AI": worker_to_vertex,
    "gateway -> Memorystore (rate limit)": gateway_to_redis,
    "internet -> load balancer": internet_to_load_balancer,
    "load balancer -> frontend": load_balancer_to("frontend"),
    "load balancer -> gateway": load_balancer_to("gateway"),
}


def proof_for(edge: Edge) -> EdgeCheck:
    call = edge.call
    if edge.region is not None:
        regional = {"sql": regional_orchestrator_to_database, "ilb": regional_orchestrator_to_inference}
        return regional[edge.destination](edge.region)
    if edge.name in PROOFS or call is None:
        return PROOFS[edge.name]
    if call.path in ("run.app", "internal_alb"):
        return cloud_run_call(call.source, call.destination, through_lb=call.path == "internal_alb")
    if call.path == "psa" and call.destination == "postgres":
        return cloud_run_to_database(call.source)

    def unproven(s: Synth, facts: EnvironmentFacts) -> Verdict:
        why = f"no proof for a {call.path} edge to {call.destination}: teach analysis/reachability/evaluate.py"
        return Verdict(edge.name, (Step(False, why),))

    return unproven


def evaluate(stacks: Mapping[str, Json], facts: EnvironmentFacts) -> list[Verdict]:
    """Every edge that applies to the environment, each with its verdict and reasons.

    ``stacks`` maps stack ids (``<env>-<layer>``) to their parsed cdk.tf.json; stacks of other
    environments may be present and are ignored."""
    s, verdicts = Synth(facts.name, stacks), []
    edges = [(edge.name, proof_for(edge)) for edge in edges_for(facts)]
    for edge, check in edges:
        try:
            verdicts.append(check(s, facts))
        except Unresolved as err:
            verdicts.append(Verdict(edge, (Step(False, f"cannot evaluate: {err}"),)))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            why = f"cannot evaluate: malformed synth ({type(err).__name__}: {err})"
            verdicts.append(Verdict(edge, (Step(False, why),)))
    return verdicts
