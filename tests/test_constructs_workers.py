"""The workers tier's constructs alone, in process: the Standard cluster's pools, the Pub/Sub queue,
the batch bucket's grants, and the batch worker's scaling."""

from __future__ import annotations

from dataclasses import replace

from cdktf import TerraformStack

from construct_helpers import CLUSTER, MIRROR, STACK, account, points_at, repository_readers
from hybrid.components.batch_bucket import BatchBucket, BatchBucketProps
from hybrid.components.batch_worker import BatchWorker, BatchWorkerProps
from hybrid.components.control_plane import ControlPlane, ControlPlaneAccess
from hybrid.components.grants import Principal
from hybrid.components.pubsub_queue import PubSubQueue, PubSubQueueProps
from hybrid.components.roles import OBJECT_VIEWER
from hybrid.components.standard_cluster import NodePoolProps, StandardCluster, StandardClusterProps
from hybrid.config import ClusterSettings
from hybrid.config.workers import QueueSettings, WorkerDeploymentSettings
from iac import only, principal, resources, synth_in_process

STANDARD = StandardClusterProps(
    replace(
        CLUSTER,
        name="workers",
        settings=ClusterSettings(release_channel="STABLE", deletion_protection=False),
        control_plane=ControlPlane(ControlPlaneAccess.AUTHORIZED_NETWORKS, ("203.0.113.0/24",)),
    ),
    pools=(
        NodePoolProps(name="cheap", machine_type="e2-standard-2", min_nodes=0, max_nodes=7, spot=True),
        NodePoolProps(name="steady", machine_type="n2-standard-4", min_nodes=2, max_nodes=4, spot=False),
    ),
)


def test_standard_cluster_has_only_its_own_pools_and_taints_the_spot_one() -> None:
    out = synth_in_process(
        lambda stack: StandardCluster(
            stack, "workers", STANDARD, node_account=account(stack, account_id="nodes"), pulls_from=(MIRROR,)
        )
    )
    cluster = only(out, "google_container_cluster")
    assert (cluster["remove_default_node_pool"], cluster["initial_node_count"]) == (True, 1)
    # The default pool lives until Terraform deletes it: its node runs as the nodes' account too.
    assert points_at(out, cluster["node_config"]["service_account"]) == ("google_service_account", "nodes", "email")
    assert cluster["node_config"]["oauth_scopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
    assert cluster["node_config"]["workload_metadata_config"] == {"mode": "GKE_METADATA"}
    assert cluster["node_config"]["shielded_instance_config"] == {
        "enable_secure_boot": True,
        "enable_integrity_monitoring": True,
    }
    assert cluster["private_cluster_config"] == {"enable_private_nodes": True}
    assert cluster["workload_identity_config"] == {"workload_pool": "p.svc.id.goog"}
    # The control plane as the props say, by the same rules as the Autopilot cluster.
    assert cluster["control_plane_endpoints_config"]["ip_endpoints_config"] == {"enabled": True}
    assert cluster["master_authorized_networks_config"]["cidr_blocks"] == [
        {"cidr_block": "203.0.113.0/24", "display_name": "203.0.113.0/24"}
    ]
    pools = {p["name"]: p for p in resources(out, "google_container_node_pool").values()}
    assert set(pools) == {"cheap", "steady"}
    cheap, steady = pools["cheap"], pools["steady"]
    assert (cheap["node_config"]["spot"], steady["node_config"]["spot"]) == (True, False)
    assert cheap["node_config"]["taint"] == [
        {"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NO_SCHEDULE"}
    ]
    assert "taint" not in steady["node_config"]
    assert (cheap["autoscaling"]["total_min_node_count"], cheap["autoscaling"]["total_max_node_count"]) == (0, 7)
    assert (steady["autoscaling"]["total_min_node_count"], steady["autoscaling"]["total_max_node_count"]) == (2, 4)
    assert steady["node_config"]["machine_type"] == "n2-standard-4"
    for pool in pools.values():
        assert points_at(out, pool["cluster"]) == ("google_container_cluster", "workers", "id")
        assert points_at(out, pool["node_config"]["service_account"]) == ("google_service_account", "nodes", "email")
        assert pool["node_config"]["workload_metadata_config"] == {"mode": "GKE_METADATA"}
    roles = {g["role"] for g in resources(out, "google_project_iam_member").values()}
    assert roles == {"roles/container.defaultNodeServiceAccount"}
    assert repository_readers(out) == {
        ("us-central1", "mirror", "roles/artifactregistry.reader", "serviceAccount:nodes")
    }


AGENT = Principal("serviceAccount:service-123@gcp-sa-pubsub.iam.gserviceaccount.com")
QUEUE = PubSubQueueProps(
    topic="t",
    subscription="s",
    dead_letter_topic="dt",
    dead_letter_subscription="ds",
    settings=QueueSettings(
        ack_deadline_seconds=120,
        min_backoff_seconds=5,
        max_backoff_seconds=300,
        max_delivery_attempts=9,
        retention_days=2,
    ),
)


def test_queue_dead_letters_after_max_attempts_and_lets_pubsub_move_them() -> None:
    out = synth_in_process(lambda stack: PubSubQueue(stack, "queue", QUEUE, messages="lines", dead_letter_agent=AGENT))
    subscriptions = {s["name"]: s for s in resources(out, "google_pubsub_subscription").values()}
    source = subscriptions["s"]
    assert points_at(out, source["topic"]) == ("google_pubsub_topic", "t", "id")
    assert source["ack_deadline_seconds"] == 120
    assert source["retry_policy"] == {"minimum_backoff": "5s", "maximum_backoff": "300s"}
    assert source["dead_letter_policy"]["max_delivery_attempts"] == 9
    assert points_at(out, source["dead_letter_policy"]["dead_letter_topic"]) == ("google_pubsub_topic", "dt", "id")
    assert points_at(out, subscriptions["ds"]["topic"]) == ("google_pubsub_topic", "dt", "id")
    assert all(sub["message_retention_duration"] == "172800s" for sub in subscriptions.values())
    agent = AGENT.member
    (publisher,) = resources(out, "google_pubsub_topic_iam_member").values()
    (subscriber,) = resources(out, "google_pubsub_subscription_iam_member").values()
    assert (publisher["member"], publisher["role"]) == (agent, "roles/pubsub.publisher")
    assert points_at(out, publisher["topic"]) == ("google_pubsub_topic", "dt", "id")
    assert (subscriber["member"], subscriber["role"]) == (agent, "roles/pubsub.subscriber")
    assert points_at(out, subscriber["subscription"]) == ("google_pubsub_subscription", "s", "id")


def test_bucket_grants_on_a_prefix_carry_the_literal_condition() -> None:
    def build(stack: TerraformStack) -> None:
        bucket = BatchBucket(stack, "files", BatchBucketProps(name="b-batch", location="r", delete_after_days=3))
        bucket.grant_read(account(stack), prefix="out/")

    out = synth_in_process(build)
    bucket = only(out, "google_storage_bucket")
    assert bucket["lifecycle_rule"] == [{"condition": {"age": 3}, "action": {"type": "Delete"}}]
    assert (bucket["uniform_bucket_level_access"], bucket["public_access_prevention"]) == (True, "enforced")
    ((key, binding),) = resources(out, "google_storage_bucket_iam_member").items()
    assert key.startswith("identity-reads-out")  # <grantee>-<intent>-<prefix>, at the stack's top level
    assert (binding["role"], principal({STACK: out}, STACK, binding["member"])) == (OBJECT_VIEWER, "serviceAccount:svc")
    assert points_at(out, binding["bucket"]) == ("google_storage_bucket", "b-batch", "name")
    assert binding["condition"] == {
        "title": "only out/",
        "expression": 'resource.name.startsWith("projects/_/buckets/b-batch/objects/out/")',
    }


WORKER = BatchWorkerProps(
    namespace="jobs",
    service_account="runner",
    image="registry.example/worker:1",
    settings=WorkerDeploymentSettings(
        cpu="500m", memory="512Mi", min_replicas=2, max_replicas=6, target_undelivered_per_replica=7
    ),
    env=(("TOPIC", "projects/p/topics/t"),),
    port=9000,
    shutdown_seconds=40,
    subscription="s",
)


def test_batch_worker_scales_on_its_subscription_and_drains_before_it_is_killed() -> None:
    out = synth_in_process(lambda stack: BatchWorker(stack, "worker", WORKER))
    deployment = only(out, "kubernetes_deployment_v1")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["container"]
    assert pod["service_account_name"] == "runner"
    assert pod["termination_grace_period_seconds"] == 45
    assert container["env"] == [
        {"name": "TOPIC", "value": "projects/p/topics/t"},
        {"name": "METRICS_ADDRESS", "value": "0.0.0.0:9464"},
    ]
    assert container["port"] == [
        {"name": "health", "container_port": 9000},
        {"name": "metrics", "container_port": 9464},
    ]
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    hpa = only(out, "kubernetes_horizontal_pod_autoscaler_v2")["spec"]
    assert (hpa["min_replicas"], hpa["max_replicas"]) == (2, 6)
    (metric,) = hpa["metric"]
    assert metric["external"]["metric"]["selector"] == [{"match_labels": {"resource.labels.subscription_id": "s"}}]
    assert metric["external"]["target"] == {"type": "AverageValue", "average_value": "7"}
    budget = only(out, "kubernetes_pod_disruption_budget_v1")
    assert budget["spec"]["selector"] == {"match_labels": deployment["spec"]["selector"]["match_labels"]}


def test_a_queue_s_consumer_and_publisher_are_granted_by_intent_and_named_for_it() -> None:
    def build(stack: TerraformStack) -> None:
        queue = PubSubQueue(stack, "queue", QUEUE, messages="lines", dead_letter_agent=AGENT)
        queue.grant_consume(account(stack, "worker", "worker"))
        queue.grant_publish(account(stack, "sender", "sender"))

    out = synth_in_process(build)
    held = {
        key: (
            b["role"],
            principal({STACK: out}, STACK, b["member"]),
            points_at(out, b.get("topic") or b["subscription"])[1],
        )
        for kind in ("google_pubsub_topic_iam_member", "google_pubsub_subscription_iam_member")
        for key, b in resources(out, kind).items()
        if not key.startswith("queue")  # the agent's, inside the queue
    }
    assert held == {
        "worker-pulls-lines": ("roles/pubsub.subscriber", "serviceAccount:worker", "s"),
        "worker-pulls-dead-letters": ("roles/pubsub.subscriber", "serviceAccount:worker", "ds"),
        "worker-republishes-lines": ("roles/pubsub.publisher", "serviceAccount:worker", "t"),
        "worker-publishes-dead-letters": ("roles/pubsub.publisher", "serviceAccount:worker", "dt"),
        "sender-publishes-lines": ("roles/pubsub.publisher", "serviceAccount:sender", "t"),
    }
