"""Value assertions on prod's `<env>-workers` and `<env>-workers-k8s` stacks (dev has neither)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iac import STACKS, Json, Stacks, only, pointee, principal, resources

WORKERS, K8S = "prod-workers", "prod-workers-k8s"
BUCKET = "replace-me-prod-prod-batch"
# The Pub/Sub service agent, created by google_project_service_identity before it is granted.
AGENT = "serviceAgent:pubsub.googleapis.com"
WORKER, ORCHESTRATOR = "serviceAccount:prod-worker", "serviceAccount:prod-orchestrator"


@pytest.fixture
def stack(synth_json: Stacks) -> Json:
    return synth_json[WORKERS]


@pytest.fixture
def k8s(synth_json: Stacks) -> Json:
    return synth_json[K8S]


def by_name(stack: Json, kind: str) -> dict[str, Json]:
    return {r["name"]: r for r in resources(stack, kind).values()}


def bindings(synth_json: Stacks, kind: str) -> set[tuple[str, str, str, str | None]]:
    """(member, role, what it is on: the bound resource's name, condition expression) of each binding."""
    stack = synth_json[WORKERS]
    key = {"google_pubsub_topic_iam_member": "topic", "google_pubsub_subscription_iam_member": "subscription"}
    found = set()
    for binding in resources(stack, kind).values():
        on = binding.get(key.get(kind, "bucket"))
        target = pointee(synth_json, WORKERS, on).config["name"]
        condition = binding.get("condition", {}).get("expression")
        found.add((principal(synth_json, WORKERS, binding["member"]), binding["role"], target, condition))
    return found


def test_only_prod_has_the_workers_tier() -> None:
    assert [s for s in STACKS if "workers" in s] == [WORKERS, K8S]


def test_standard_cluster_private_with_workload_identity_and_no_default_pool(stack: Json, synth_json: Stacks) -> None:
    cluster = only(stack, "google_container_cluster")
    assert cluster["name"] == "prod-workers"
    assert "enable_autopilot" not in cluster
    assert cluster["remove_default_node_pool"] is True
    # The temporary default pool's node runs as the nodes' account, not Compute Engine's default.
    assert pointee(synth_json, WORKERS, cluster["node_config"]["service_account"]).brief[2] == "prod-workers-nodes"
    assert cluster["private_cluster_config"] == {"enable_private_nodes": True}
    assert cluster["workload_identity_config"] == {"workload_pool": "replace-me-prod.svc.id.goog"}
    assert cluster["datapath_provider"] == "ADVANCED_DATAPATH"
    # Reached as the models' cluster is: the DNS endpoint with IAM, no IP endpoint.
    assert cluster["control_plane_endpoints_config"] == {
        "dns_endpoint_config": {"allow_external_traffic": True},
        "ip_endpoints_config": {"enabled": False},
    }
    assert cluster["master_auth"] == {"client_certificate_config": {"issue_client_certificate": False}}
    assert cluster["deletion_protection"] is True
    assert pointee(synth_json, WORKERS, cluster["subnetwork"]).brief == (
        "prod-network",
        "google_compute_subnetwork",
        "prod-workers",
        "id",
    )
    assert cluster["ip_allocation_policy"] == {
        "cluster_secondary_range_name": "workers-pods",
        "services_secondary_range_name": "workers-services",
    }


def test_spot_pool_from_zero_tainted_and_an_on_demand_fallback(stack: Json) -> None:
    pools = by_name(stack, "google_container_node_pool")
    assert set(pools) == {"spot", "on-demand"}
    spot, on_demand = pools["spot"], pools["on-demand"]
    assert spot["node_config"]["spot"] is True
    assert spot["autoscaling"] == {"total_min_node_count": 0, "total_max_node_count": 10, "location_policy": "ANY"}
    assert spot["node_config"]["taint"] == [
        {"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NO_SCHEDULE"}
    ]
    assert on_demand["node_config"]["spot"] is False
    assert "taint" not in on_demand["node_config"]
    assert on_demand["autoscaling"] == {
        "total_min_node_count": 1,
        "total_max_node_count": 3,
        "location_policy": "BALANCED",
    }
    for pool in pools.values():
        config = pool["node_config"]
        assert config["workload_metadata_config"] == {"mode": "GKE_METADATA"}
        assert config["machine_type"] == "e2-standard-4"
        assert config["shielded_instance_config"] == {"enable_secure_boot": True, "enable_integrity_monitoring": True}
        assert pool["management"] == {"auto_repair": True, "auto_upgrade": True}


def test_nodes_run_as_their_own_least_privilege_account(stack: Json, synth_json: Stacks) -> None:
    accounts = {a["account_id"] for a in resources(stack, "google_service_account").values()}
    assert accounts == {"prod-workers-nodes", "prod-workers-metrics"}
    for pool in resources(stack, "google_container_node_pool").values():
        assert pointee(synth_json, WORKERS, pool["node_config"]["service_account"]).brief[2] == "prod-workers-nodes"
    project_roles = {
        (principal(synth_json, WORKERS, g["member"]), g["role"], g.get("condition") is None)
        for g in resources(stack, "google_project_iam_member").values()
    }
    assert project_roles == {
        ("serviceAccount:prod-workers-nodes", "roles/container.defaultNodeServiceAccount", True),
        ("serviceAccount:prod-workers-metrics", "roles/monitoring.viewer", True),
        (WORKER, "roles/aiplatform.user", True),
    }
    # The nodes pull the worker's image from the services' repository, and read only it.
    (reader,) = resources(stack, "google_artifact_registry_repository_iam_member").values()
    assert (reader["location"], reader["repository"], reader["role"]) == (
        "us-central1",
        "prod-services",
        "roles/artifactregistry.reader",
    )
    assert principal(synth_json, WORKERS, reader["member"]) == "serviceAccount:prod-workers-nodes"


def test_bucket_private_uniform_unversioned_and_emptied_by_age(stack: Json) -> None:
    bucket = only(stack, "google_storage_bucket")
    assert bucket["name"] == BUCKET
    assert bucket["location"] == "us-central1"
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"] == {"enabled": False}
    assert bucket["lifecycle_rule"] == [{"condition": {"age": 30}, "action": {"type": "Delete"}}]
    assert bucket["force_destroy"] is False


def test_line_subscription_retries_exponentially_then_dead_letters(stack: Json, synth_json: Stacks) -> None:
    subscriptions = by_name(stack, "google_pubsub_subscription")
    assert set(subscriptions) == {"prod-batch-workers", "prod-batch-dead-letters"}
    lines = subscriptions["prod-batch-workers"]
    assert pointee(synth_json, WORKERS, lines["topic"]).config["name"] == "prod-batch-lines"
    assert lines["ack_deadline_seconds"] == 600
    assert lines["retry_policy"] == {"minimum_backoff": "10s", "maximum_backoff": "600s"}
    assert lines["dead_letter_policy"]["max_delivery_attempts"] == 5
    assert pointee(synth_json, WORKERS, lines["dead_letter_policy"]["dead_letter_topic"]).config["name"] == (
        "prod-batch-dead-letters"
    )
    # Dead letters are kept: the dead-letter topic has its subscription, which the worker pulls.
    dead = subscriptions["prod-batch-dead-letters"]
    assert pointee(synth_json, WORKERS, dead["topic"]).config["name"] == "prod-batch-dead-letters"
    assert "dead_letter_policy" not in dead
    for subscription in subscriptions.values():
        assert subscription["message_retention_duration"] == "604800s"  # 7 days
        assert subscription["expiration_policy"] == {"ttl": ""}  # never deleted for want of pulls
    assert set(by_name(stack, "google_pubsub_topic")) == {"prod-batch-lines", "prod-batch-dead-letters"}


def test_topic_grants_exactly(synth_json: Stacks) -> None:
    assert bindings(synth_json, "google_pubsub_topic_iam_member") == {
        (ORCHESTRATOR, "roles/pubsub.publisher", "prod-batch-lines", None),
        (WORKER, "roles/pubsub.publisher", "prod-batch-lines", None),  # the sweeper's republish
        (WORKER, "roles/pubsub.publisher", "prod-batch-dead-letters", None),
        (AGENT, "roles/pubsub.publisher", "prod-batch-dead-letters", None),
    }


def test_pubsub_agent_is_asked_for_before_its_grants(stack: Json) -> None:
    """hashicorp/google 6.50 has google_project_service_identity in its beta provider only."""
    agent = only(stack, "google_project_service_identity")
    assert (agent["service"], agent["provider"]) == ("pubsub.googleapis.com", "google-beta")
    assert stack["terraform"]["required_providers"]["google-beta"]["version"] == "6.50.0"


def test_subscription_grants_exactly(synth_json: Stacks) -> None:
    assert bindings(synth_json, "google_pubsub_subscription_iam_member") == {
        (WORKER, "roles/pubsub.subscriber", "prod-batch-workers", None),
        (WORKER, "roles/pubsub.subscriber", "prod-batch-dead-letters", None),
        (AGENT, "roles/pubsub.subscriber", "prod-batch-workers", None),
    }


def test_bucket_grants_exactly_with_their_prefixes(synth_json: Stacks) -> None:
    def under(prefix: str) -> str:
        return f'resource.name.startsWith("projects/_/buckets/{BUCKET}/objects/{prefix}")'

    assert bindings(synth_json, "google_storage_bucket_iam_member") == {
        (ORCHESTRATOR, "roles/storage.objectAdmin", BUCKET, under("inputs/")),
        (ORCHESTRATOR, "roles/storage.objectViewer", BUCKET, under("outputs/")),
        (WORKER, "roles/storage.objectCreator", BUCKET, under("outputs/")),
        (WORKER, "roles/storage.objectViewer", BUCKET, under("outputs/")),
    }


def test_worker_identity_through_workload_identity(k8s: Json, synth_json: Stacks) -> None:
    (account,) = [
        a for a in resources(k8s, "kubernetes_service_account_v1").values() if a["metadata"]["name"] == "worker"
    ]
    annotation = account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert pointee(synth_json, K8S, annotation).brief == (
        "prod-database",
        "google_service_account",
        "prod-worker",
        "email",
    )
    (binding,) = [
        b
        for b in resources(k8s, "google_service_account_iam_member").values()
        if b["member"] == "serviceAccount:replace-me-prod.svc.id.goog[batch/worker]"
    ]
    assert binding["role"] == "roles/iam.workloadIdentityUser"
    assert pointee(synth_json, K8S, binding["service_account_id"]).brief[:3] == (
        "prod-database",
        "google_service_account",
        "prod-worker",
    )


def test_workload_identity_bindings_wait_for_the_workers_cluster(synth_json: Stacks, synth_dir: Path) -> None:
    """A binding to PROJECT.svc.id.goog[...] fails until a cluster has created the pool: the
    workers' bindings are made in prod-workers-k8s, which cdktf applies after prod-workers, where
    the cluster is, and nowhere else."""
    pool = "serviceAccount:replace-me-prod.svc.id.goog"
    found = {
        stack: sorted(b["member"] for b in resources(config, "google_service_account_iam_member").values())
        for stack, config in synth_json.items()
        if stack in ("prod-database", WORKERS, K8S)
    }
    assert found == {
        "prod-database": [],
        WORKERS: [],
        K8S: [f"{pool}[batch/worker]", f"{pool}[custom-metrics/custom-metrics-stackdriver-adapter]"],
    }
    manifest = json.loads((synth_dir / "manifest.json").read_text())
    assert WORKERS in manifest["stacks"][K8S]["dependencies"]


@pytest.fixture
def worker(k8s: Json) -> Json:
    deployment: Json
    (deployment,) = [
        d for d in resources(k8s, "kubernetes_deployment_v1").values() if d["metadata"]["name"] == "worker"
    ]
    return deployment


def test_worker_prefers_spot_and_falls_back_to_on_demand(worker: Json) -> None:
    pod = worker["spec"]["template"]["spec"]
    assert pod["toleration"] == [
        {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]
    # Preferred, not required: with no Spot node to be had, the on-demand pool takes the worker.
    affinity = pod["affinity"]["node_affinity"]
    assert "required_during_scheduling_ignored_during_execution" not in affinity
    assert affinity["preferred_during_scheduling_ignored_during_execution"] == [
        {
            "weight": 100,
            "preference": {
                "match_expressions": [{"key": "cloud.google.com/gke-spot", "operator": "In", "values": ["true"]}]
            },
        }
    ]
    assert "node_selector" not in pod
    # Kubernetes waits past the worker's own 25 s drain before it kills it.
    assert pod["termination_grace_period_seconds"] == 30


def test_the_deploy_waits_until_the_workers_run(worker: Json) -> None:
    # Without the wait an image that cannot be pulled passes the deploy and leaves the Pods in
    # ImagePullBackOff; with it the apply fails, and it allows for a Spot pool scaling up from zero.
    # The wait means something only because at least one worker starts with the Deployment.
    assert worker["wait_for_rollout"] is True
    assert worker["timeouts"] == {"create": "20m", "update": "20m"}
    assert int(worker["spec"]["replicas"]) >= 1


def test_worker_runs_locked_down_from_the_registry(worker: Json) -> None:
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["container"]
    assert container["image"] == "us-central1-docker.pkg.dev/replace-me-prod/prod-services/worker:0.1.0"
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert container["security_context"] == {
        "allow_privilege_escalation": False,
        "read_only_root_filesystem": True,
        "run_as_non_root": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # The one writable place, in memory: where the worker writes the database's server CA for libpq.
    assert container["volume_mount"] == [{"name": "tmp", "mount_path": "/tmp"}]
    assert pod["volume"] == [{"name": "tmp", "empty_dir": {"medium": "Memory", "size_limit": "1Mi"}}]
    assert container["port"] == [
        {"name": "health", "container_port": 8080},
        {"name": "metrics", "container_port": 9464},
    ]
    assert container["readiness_probe"]["http_get"] == {"path": "/health", "port": "health"}
    assert container["liveness_probe"]["http_get"] == {"path": "/health", "port": "health"}


def test_autoscaler_on_the_subscriptions_backlog(k8s: Json, worker: Json) -> None:
    hpa = only(k8s, "kubernetes_horizontal_pod_autoscaler_v2")["spec"]
    assert hpa["scale_target_ref"] == {"api_version": "apps/v1", "kind": "Deployment", "name": "worker"}
    assert (hpa["min_replicas"], hpa["max_replicas"]) == (1, 20)
    (metric,) = hpa["metric"]
    assert metric["type"] == "External"
    assert metric["external"] == {
        "metric": {
            "name": "pubsub.googleapis.com|subscription|num_undelivered_messages",
            "selector": [{"match_labels": {"resource.labels.subscription_id": "prod-batch-workers"}}],
        },
        "target": {"type": "AverageValue", "average_value": "50"},
    }
    # Terraform starts the Deployment at the minimum and leaves the count to the autoscaler after.
    assert worker["spec"]["replicas"] == "1"
    assert worker["lifecycle"] == {"ignore_changes": ["spec[0].replicas"]}
    # The workers cluster has its own adapter, which serves the external metrics API the HPA asks.
    services = {a["metadata"]["name"] for a in resources(k8s, "kubernetes_api_service_v1").values()}
    assert "v1beta1.external.metrics.k8s.io" in services


def test_one_worker_at_a_time_may_be_disrupted(k8s: Json) -> None:
    budget = only(k8s, "kubernetes_pod_disruption_budget_v1")
    assert budget["metadata"]["name"] == "worker"
    assert budget["spec"] == {"max_unavailable": "1", "selector": {"match_labels": {"app": "worker"}}}


def test_worker_namespace_enforces_the_restricted_pod_security_standard(k8s: Json) -> None:
    namespaces = {n["metadata"]["name"]: n for n in resources(k8s, "kubernetes_namespace_v1").values()}
    assert namespaces["batch"]["metadata"]["labels"] == {"pod-security.kubernetes.io/enforce": "restricted"}


def test_managed_prometheus_scrapes_the_workers_metrics_port(k8s: Json, worker: Json) -> None:
    (container,) = worker["spec"]["template"]["spec"]["container"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["METRICS_ADDRESS"] == "0.0.0.0:9464"
    (monitoring,) = [
        m["manifest"]
        for m in resources(k8s, "kubernetes_manifest").values()
        if m["manifest"]["kind"] == "PodMonitoring" and m["manifest"]["metadata"]["name"] == "worker"
    ]
    assert monitoring["apiVersion"] == "monitoring.googleapis.com/v1"
    assert monitoring["spec"]["selector"]["matchLabels"] == worker["spec"]["template"]["metadata"]["labels"]
    assert monitoring["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
