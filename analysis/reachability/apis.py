"""The edges to Google's APIs: Vertex AI, and the batch path through Pub/Sub and Cloud Storage.

The orchestrator calls them from Cloud Run, the batch workers from the Pods of a cluster whose
subnet has no NAT: for them Private Google Access, the default route and the egress rule on 443
are the only way out (see googleapis.py). Each edge then needs the caller's IAM on the resource
its environment names."""

from __future__ import annotations

from collections.abc import Callable

from analysis.reachability.cloudrun import RunService, google_api_path, identity, run_service
from analysis.reachability.core import Chain, EnvironmentFacts, Json, Verdict
from analysis.reachability.iam import holds, project_holders, resource_holders
from analysis.reachability.kubernetes import PodCaller, batch_worker, pods_google_api_path
from analysis.reachability.routing import orchestrator_json
from analysis.reachability.synth import Synth

# Who may do what (cloud.google.com/pubsub/docs/access-control#roles,
# cloud.google.com/storage/docs/access-control/iam-roles): the predefined roles granting it.
PUBLISH = {"roles/pubsub.publisher", "roles/pubsub.editor", "roles/pubsub.admin"}
SUBSCRIBE = {"roles/pubsub.subscriber", "roles/pubsub.editor", "roles/pubsub.admin"}
CREATE_OBJECTS = {"roles/storage.objectCreator", "roles/storage.objectUser", "roles/storage.objectAdmin"}
READ_OBJECTS = {"roles/storage.objectViewer", "roles/storage.objectUser", "roles/storage.objectAdmin"}
PUBSUB_API = "pubsub.googleapis.com."
STORAGE_API = "storage.googleapis.com."
Path = Callable[[str], None]  # checks the caller's way to an API's host name


def _orchestrator(s: Synth, c: Chain) -> tuple[RunService, Path] | None:
    orchestrator = run_service(s, "orchestrator")
    if not c.present(orchestrator, "the orchestrator service exists"):
        return None
    return orchestrator, lambda hostname: google_api_path(s, c, orchestrator, hostname)


def _worker(s: Synth, c: Chain) -> tuple[PodCaller, Path] | None:
    worker = batch_worker(s, c)
    if worker is None:
        return None
    return worker, lambda hostname: pods_google_api_path(s, c, worker, hostname)


def _named(s: Synth, c: Chain, kind: str, variable: str, value: object) -> tuple[str, str, Json] | None:
    """The resource a caller's variable names by its last path segment (projects/p/topics/NAME)."""
    name = str(value or "").rsplit("/", 1)[-1]
    found = s.named(kind, name)
    where = f"{kind} {name} in {found[0]}" if found else f"no {kind} named {name!r}"
    return found if c.check(found is not None, f"{variable} = {value}: {where}") else None


def _granted(
    s: Synth, c: Chain, who: str, grant: tuple[str, str, str], found: tuple[str, str, Json], roles: set[str]
) -> None:
    """``who`` holds one of ``roles`` on the resource ``found``, through ``grant`` = (IAM member
    type, its field naming the resource, what the roles let it do), or on the project."""
    grant_kind, field, what = grant
    target = (found[0], grant_kind.removesuffix("_iam_member"), found[1])
    holders = resource_holders(s, grant_kind, field, target, roles)
    on_project = any(who in project_holders(s, role) for role in roles)
    c.check(
        holds(who, holders) or on_project,
        f"{who} may {what} {found[2].get('name')} (granted to {', '.join(sorted(holders)) or 'nobody'})",
    )


def _vertex(s: Synth, c: Chain, backends: Json | None, who: str, path: Path) -> Verdict:
    if backends is None:
        return c.verdict()
    vertex = [b for b in backends.values() if (b or {}).get("kind") == "vertex"]
    if not c.check(bool(vertex), "BACKENDS: a vertex backend"):
        return c.verdict()
    path(f"{vertex[0].get('location')}-aiplatform.googleapis.com.")
    # cloud.google.com/vertex-ai/generative-ai/docs/access-control: prompt requests need
    # aiplatform.endpoints.predict, which roles/aiplatform.user grants.
    c.check(who in project_holders(s, "roles/aiplatform.user"), f"{who} holds roles/aiplatform.user on the project")
    return c.verdict()


def orchestrator_to_vertex(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("orchestrator -> Vertex AI")
    found = _orchestrator(s, c)
    if found is None:
        return c.verdict()
    orchestrator, path = found
    return _vertex(s, c, orchestrator_json(c, orchestrator, "BACKENDS"), identity(s, orchestrator), path)


def worker_to_vertex(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("worker -> Vertex AI")
    found = _worker(s, c)
    if found is None:
        return c.verdict()
    worker, path = found
    return _vertex(s, c, worker.json(c, "BACKENDS"), worker.identity, path)


def orchestrator_to_pubsub(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("orchestrator -> Pub/Sub (batch lines)")
    found = _orchestrator(s, c)
    topic = found and _named(s, c, "google_pubsub_topic", "BATCH_TOPIC", found[0].env.get("BATCH_TOPIC"))
    if found is None or not topic:
        return c.verdict()
    orchestrator, path = found
    path(PUBSUB_API)
    _granted(s, c, identity(s, orchestrator), ("google_pubsub_topic_iam_member", "topic", "publish to"), topic, PUBLISH)
    return c.verdict()


def orchestrator_to_bucket(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("orchestrator -> GCS (batch files)")
    found = _orchestrator(s, c)
    bucket = found and _named(s, c, "google_storage_bucket", "BATCH_BUCKET", found[0].env.get("BATCH_BUCKET"))
    if found is None or not bucket:
        return c.verdict()
    orchestrator, path = found
    path(STORAGE_API)
    who, grant = identity(s, orchestrator), "google_storage_bucket_iam_member"
    # It writes the inputs and reads the workers' outputs (services/orchestrator/batch).
    _granted(s, c, who, (grant, "bucket", "create objects in"), bucket, CREATE_OBJECTS)
    _granted(s, c, who, (grant, "bucket", "read objects of"), bucket, READ_OBJECTS)
    return c.verdict()


def pubsub_to_worker(s: Synth, facts: EnvironmentFacts) -> Verdict:
    """The worker pulls the subscription of the topic the orchestrator publishes to."""
    c = Chain("Pub/Sub -> worker")
    found, orchestrator = _worker(s, c), run_service(s, "orchestrator")
    subscription = found and _named(
        s, c, "google_pubsub_subscription", "SUBSCRIPTION", found[0].env.get("SUBSCRIPTION")
    )
    if found is None or not subscription or not c.present(orchestrator, "the orchestrator service exists"):
        return c.verdict()
    worker, path = found
    stack_id, _, config = subscription
    published = str(orchestrator.env.get("BATCH_TOPIC") or "").rsplit("/", 1)[-1]
    topic = s.named("google_pubsub_topic", published)
    c.check(
        topic is not None and s.refers_to(stack_id, config.get("topic"), (topic[0], "google_pubsub_topic", topic[1])),
        f"{config.get('name')} subscribes to {s.show(stack_id, config.get('topic'))}, the orchestrator's {published}",
    )
    # cloud.google.com/pubsub/docs/pull: a subscription without a push endpoint is pulled.
    c.check(not config.get("push_config"), f"{config.get('name')} is a pull subscription")
    path(PUBSUB_API)
    member = ("google_pubsub_subscription_iam_member", "subscription", "pull from")
    _granted(s, c, worker.identity, member, subscription, SUBSCRIBE)
    _dead_letters(s, c, subscription)
    return c.verdict()


def _dead_letters(s: Synth, c: Chain, subscription: tuple[str, str, Json]) -> None:
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
    _granted(s, c, agent, ("google_pubsub_topic_iam_member", "topic", "forward dead letters to"), topic, PUBLISH)
    member = ("google_pubsub_subscription_iam_member", "subscription", "acknowledge forwarded messages of")
    _granted(s, c, agent, member, subscription, SUBSCRIBE)


def worker_to_bucket(s: Synth, facts: EnvironmentFacts) -> Verdict:
    c = Chain("worker -> GCS (batch files)")
    found = _worker(s, c)
    bucket = found and _named(s, c, "google_storage_bucket", "BATCH_BUCKET", found[0].env.get("BATCH_BUCKET"))
    if found is None or not bucket:
        return c.verdict()
    worker, path = found
    path(STORAGE_API)
    _granted(
        s,
        c,
        worker.identity,
        ("google_storage_bucket_iam_member", "bucket", "create objects in"),
        bucket,
        CREATE_OBJECTS,
    )
    return c.verdict()
