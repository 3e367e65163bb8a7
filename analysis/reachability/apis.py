"""The edges to Google's APIs: Vertex AI, and the batch path through Pub/Sub and Cloud Storage.

The orchestrator calls them from Cloud Run, the batch workers from the Pods of a cluster whose
subnet has no NAT: for them Private Google Access, the default route and the egress rule on 443
are the only way out (see googleapis.py). Each edge then needs the caller's IAM on the resource
its environment names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from analysis.reachability.cloudrun import google_api_path, identity, run_service
from analysis.reachability.core import Chain, EnvironmentFacts, Json, Verdict, env_json
from analysis.reachability.iam import holds, project_holders, resource_holders
from analysis.reachability.kubernetes import batch_worker, pods_google_api_path
from analysis.reachability.synth import Synth

# Who may do what (cloud.google.com/pubsub/docs/access-control#roles,
# cloud.google.com/storage/docs/access-control/iam-roles): the predefined roles granting it.
PUBLISH = frozenset({"roles/pubsub.publisher", "roles/pubsub.editor", "roles/pubsub.admin"})
SUBSCRIBE = frozenset({"roles/pubsub.subscriber", "roles/pubsub.editor", "roles/pubsub.admin"})
CREATE_OBJECTS = frozenset({"roles/storage.objectCreator", "roles/storage.objectUser", "roles/storage.objectAdmin"})
READ_OBJECTS = frozenset({"roles/storage.objectViewer", "roles/storage.objectUser", "roles/storage.objectAdmin"})
Found = tuple[str, str, Json]  # (stack id, key, config) of a resource
Need = tuple[str, frozenset[str]]  # (what the caller does, the roles that let it)


@dataclass(frozen=True)
class Kind:
    """A resource type an edge uses: its API's host, and the field its IAM members name it by."""

    type: str
    member_field: str
    api: str

    @property
    def member_type(self) -> str:
        return f"{self.type}_iam_member"


TOPIC = Kind("google_pubsub_topic", "topic", "pubsub.googleapis.com.")
SUBSCRIPTION = Kind("google_pubsub_subscription", "subscription", "pubsub.googleapis.com.")
BUCKET = Kind("google_storage_bucket", "bucket", "storage.googleapis.com.")


@dataclass(frozen=True)
class ApiCaller:
    name: str
    identity: str
    env: Mapping[str, Any]
    path: Callable[[str], None]  # checks its way to an API's host name


def _orchestrator(s: Synth, c: Chain) -> ApiCaller | None:
    orchestrator = run_service(s, "orchestrator")
    if not c.present(orchestrator, "the orchestrator service exists"):
        return None
    return ApiCaller(
        orchestrator.name,
        identity(s, orchestrator),
        orchestrator.env,
        lambda hostname: google_api_path(s, c, orchestrator, hostname),
    )


def _worker(s: Synth, c: Chain) -> ApiCaller | None:
    worker = batch_worker(s, c)
    if worker is None:
        return None
    return ApiCaller(
        worker.name,
        worker.identity,
        worker.env,
        lambda hostname: pods_google_api_path(s, c, worker, hostname),
    )


def _named(s: Synth, c: Chain, kind: Kind, variable: str, value: object) -> Found | None:
    """The resource a caller's variable names by its last path segment (projects/p/topics/NAME)."""
    name = str(value or "").rsplit("/", 1)[-1]
    found = s.named(kind.type, name)
    where = f"{kind.type} {name} in {found[0]}" if found else f"no {kind.type} named {name!r}"
    return found if c.check(found is not None, f"{variable} = {value}: {where}") else None


def _granted(s: Synth, c: Chain, who: str, kind: Kind, found: Found, need: Need) -> None:
    """``who`` holds one of ``need``'s roles on the resource ``found``, or on the project."""
    what, roles = need
    holders = resource_holders(s, kind.member_type, kind.member_field, (found[0], kind.type, found[1]), set(roles))
    on_project = any(who in project_holders(s, role) for role in roles)
    c.check(
        holds(who, holders) or on_project,
        f"{who} may {what} {found[2].get('name')} (granted to {', '.join(sorted(holders)) or 'nobody'})",
    )


def _uses(s: Synth, c: Chain, caller: ApiCaller | None, kind: Kind, variable: str, *needs: Need) -> Found | None:
    """``caller`` reaches the API of the resource its ``variable`` names and may do what it ``needs``."""
    found = caller and _named(s, c, kind, variable, caller.env.get(variable))
    if caller is None or not found:
        return None
    caller.path(kind.api)
    for need in needs:
        _granted(s, c, caller.identity, kind, found, need)
    return found


def _vertex(s: Synth, c: Chain, caller: ApiCaller | None) -> Verdict:
    backends = env_json(c, caller.name, caller.env, "BACKENDS") if caller else None
    if caller is None or backends is None:
        return c.verdict()
    vertex = [b for b in backends.values() if (b or {}).get("kind") == "vertex"]
    if not c.check(bool(vertex), "BACKENDS: a vertex backend"):
        return c.verdict()
    caller.path(f"{vertex[0].get('location')}-aiplatform.googleapis.com.")
    # cloud.google.com/vertex-ai/generative-ai/docs/access-control: prompt requests need
    # aiplatform.endpoints.predict, which roles/aiplatform.user grants.
    who = caller.identity
    c.check(who in project_holders(s, "roles/aiplatform.user"), f"{who} holds roles/aiplatform.user on the project")
    return c.verdict()


def orchestrator_to_vertex(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("orchestrator -> Vertex AI")
    return _vertex(s, c, _orchestrator(s, c))


def worker_to_vertex(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("worker -> Vertex AI")
    return _vertex(s, c, _worker(s, c))


def _use_edge(
    edge: str, caller: Callable[[Synth, Chain], ApiCaller | None], kind: Kind, variable: str, *needs: Need
) -> Callable[[Synth, EnvironmentFacts], Verdict]:
    """The check of an edge that only uses a resource: reach its API, hold the roles it needs."""

    def check(s: Synth, facts: EnvironmentFacts) -> Verdict:
        c = Chain(edge)
        _uses(s, c, caller(s, c), kind, variable, *needs)
        return c.verdict()

    return check


orchestrator_to_pubsub = _use_edge(
    "orchestrator -> Pub/Sub (batch lines)", _orchestrator, TOPIC, "BATCH_TOPIC", ("publish to", PUBLISH)
)
# The orchestrator writes the inputs and reads the workers' outputs (services/orchestrator/batch).
orchestrator_to_bucket = _use_edge(
    "orchestrator -> GCS (batch files)",
    _orchestrator,
    BUCKET,
    "BATCH_BUCKET",
    ("create objects in", CREATE_OBJECTS),
    ("read objects of", READ_OBJECTS),
)
worker_to_bucket = _use_edge(
    "worker -> GCS (batch files)", _worker, BUCKET, "BATCH_BUCKET", ("create objects in", CREATE_OBJECTS)
)


def pubsub_to_worker(s: Synth, facts: EnvironmentFacts) -> Verdict:
    """The worker pulls the subscription of the topic the orchestrator publishes to."""
    c = Chain("Pub/Sub -> worker")
    orchestrator = run_service(s, "orchestrator")
    subscription = _uses(s, c, _worker(s, c), SUBSCRIPTION, "SUBSCRIPTION", ("pull from", SUBSCRIBE))
    if not subscription or not c.present(orchestrator, "the orchestrator service exists"):
        return c.verdict()
    stack_id, _, config = subscription
    published = str(orchestrator.env.get("BATCH_TOPIC") or "").rsplit("/", 1)[-1]
    topic = s.named(TOPIC.type, published)
    c.check(
        topic is not None and s.refers_to(stack_id, config.get("topic"), (topic[0], TOPIC.type, topic[1])),
        f"{config.get('name')} subscribes to {s.show(stack_id, config.get('topic'))}, the orchestrator's {published}",
    )
    # cloud.google.com/pubsub/docs/pull: a subscription without a push endpoint is pulled.
    c.check(not config.get("push_config"), f"{config.get('name')} is a pull subscription")
    _dead_letters(s, c, subscription)
    return c.verdict()


def _dead_letters(s: Synth, c: Chain, subscription: Found) -> None:
    """cloud.google.com/pubsub/docs/handling-failures#grant_forwarding_permissions: the Pub/Sub
    service agent forwards undeliverable messages only with publisher on the dead-letter topic
    and subscriber on the source subscription."""
    stack_id, _, config = subscription
    dead_letter = (config.get("dead_letter_policy") or {}).get("dead_letter_topic")
    if not dead_letter:
        c.ok(f"{config.get('name')} has no dead-letter topic")
        return
    topic_ref = s.ref(stack_id, dead_letter)
    if not c.present(topic_ref, f"the dead-letter topic {s.show(stack_id, dead_letter)}"):
        return
    agent = "serviceAgent:pubsub.googleapis.com"
    topic = (topic_ref.stack, topic_ref.name, s.config(topic_ref))
    _granted(s, c, agent, TOPIC, topic, ("forward dead letters to", PUBLISH))
    _granted(s, c, agent, SUBSCRIPTION, subscription, ("acknowledge forwarded messages of", SUBSCRIBE))
