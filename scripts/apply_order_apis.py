"""The Google API each resource type calls, for the apply-order check (scripts/check_apply_order.py):
most must be enabled in the project before a resource that calls them is applied."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The API each resource type calls. Most Google APIs must be enabled in the project before they
# are used (cloud.google.com/service-usage/docs/overview), so before a resource that calls one.

API_OF_TYPE: dict[str, tuple[str, ...]] = {
    # The API that enables APIs, itself on by default (below).
    "google_project_service": ("serviceusage.googleapis.com",),
    # google-beta's service identity calls Service Usage's generateServiceIdentity
    # (cloud.google.com/service-usage/docs/reference/rest/v1beta1/services/generateServiceIdentity).
    "google_project_service_identity": ("serviceusage.googleapis.com",),
    "google_compute_network": ("compute.googleapis.com",),
    "google_compute_subnetwork": ("compute.googleapis.com",),
    "google_compute_address": ("compute.googleapis.com",),
    "google_compute_global_address": ("compute.googleapis.com",),
    "google_compute_router": ("compute.googleapis.com",),
    "google_compute_router_nat": ("compute.googleapis.com",),
    "google_compute_firewall": ("compute.googleapis.com",),
    # cloud.google.com/service-infrastructure/docs/service-networking/getting-started.
    "google_service_networking_connection": ("servicenetworking.googleapis.com",),
    "google_dns_managed_zone": ("dns.googleapis.com",),
    "google_dns_record_set": ("dns.googleapis.com",),
    "google_artifact_registry_repository": ("artifactregistry.googleapis.com",),
    "google_artifact_registry_repository_iam_member": ("artifactregistry.googleapis.com",),
    "google_sql_database_instance": ("sqladmin.googleapis.com",),
    "google_sql_database": ("sqladmin.googleapis.com",),
    "google_sql_user": ("sqladmin.googleapis.com",),
    "google_container_cluster": ("container.googleapis.com",),
    "google_container_node_pool": ("container.googleapis.com",),
    "data.google_container_cluster": ("container.googleapis.com",),
    "google_service_account": ("iam.googleapis.com",),
    "google_service_account_iam_member": ("iam.googleapis.com",),
    # A project's allow policy is read and written through the Resource Manager API
    # (cloud.google.com/iam/docs/write-policy-client-libraries#before-you-begin), and the project
    # itself, its number included, is read from it.
    "google_project_iam_member": ("cloudresourcemanager.googleapis.com",),
    "data.google_project": ("cloudresourcemanager.googleapis.com",),
    "google_pubsub_topic": ("pubsub.googleapis.com",),
    "google_pubsub_subscription": ("pubsub.googleapis.com",),
    "google_pubsub_topic_iam_member": ("pubsub.googleapis.com",),
    "google_pubsub_subscription_iam_member": ("pubsub.googleapis.com",),
    "google_storage_bucket": ("storage.googleapis.com",),
    "google_storage_bucket_iam_member": ("storage.googleapis.com",),
    # A prerequisite of every Secret Manager task (cloud.google.com/secret-manager/docs/configuring-secret-manager).
    "google_secret_manager_secret_iam_member": ("secretmanager.googleapis.com",),
    "google_secret_manager_secret": ("secretmanager.googleapis.com",),
    "google_secret_manager_secret_version": ("secretmanager.googleapis.com",),
    # cloud.google.com/memorystore/docs/redis/create-instance-gcloud#before_you_begin: the
    # Memorystore for Redis API, enabled first.
    "google_redis_instance": ("redis.googleapis.com",),
    "google_logging_metric": ("logging.googleapis.com",),
    "google_logging_project_sink": ("logging.googleapis.com",),
    "google_bigquery_dataset": ("bigquery.googleapis.com",),
    "google_bigquery_dataset_iam_member": ("bigquery.googleapis.com",),
    "google_cloud_run_v2_service": ("run.googleapis.com",),
    "google_cloud_run_v2_job": ("run.googleapis.com",),
    "google_cloud_run_v2_service_iam_member": ("run.googleapis.com",),
    "google_iap_web_cloud_run_service_iam_member": ("iap.googleapis.com",),
    "google_apikeys_key": ("apikeys.googleapis.com",),
    "google_identity_platform_config": ("identitytoolkit.googleapis.com",),
    "google_billing_budget": ("billingbudgets.googleapis.com",),
    # cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.notificationChannels/create.
    "google_monitoring_notification_channel": ("monitoring.googleapis.com",),
    # Reads the provider's own configuration and token: no API call.
    "data.google_client_config": (),
}

# Settings of a resource that call one more API.
#  - A cluster that enforces Binary Authorization needs its API enabled first
#    (cloud.google.com/binary-authorization/docs/creating-cluster#before_you_begin).
#  - Workload Identity: a Kubernetes service account acts as a Google one by impersonation, with
#    short-lived credentials from the IAM Service Account Credentials API
#    (cloud.google.com/iam/docs/create-short-lived-credentials-direct#before-you-begin).
#  - The Secret Manager add-on reads secrets for the Pods, from Secret Manager, whose API every
#    use of it needs (cloud.google.com/secret-manager/docs/configuring-secret-manager).
API_OF_SETTING: dict[str, tuple[tuple[str, Callable[[dict[str, Any]], bool], str], ...]] = {
    "google_container_cluster": (
        (
            "binary_authorization",
            lambda c: (c.get("binary_authorization") or {}).get("evaluation_mode", "DISABLED") != "DISABLED",
            "binaryauthorization.googleapis.com",
        ),
        (
            "workload_identity_config",
            lambda c: bool((c.get("workload_identity_config") or {}).get("workload_pool")),
            "iamcredentials.googleapis.com",
        ),
        (
            "secret_manager_config",
            lambda c: bool((c.get("secret_manager_config") or {}).get("enabled")),
            "secretmanager.googleapis.com",
        ),
    ),
}

# On in every project created with the console or gcloud
# (cloud.google.com/service-usage/docs/enabled-service#default).
DEFAULT_APIS = frozenset(
    {"logging.googleapis.com", "monitoring.googleapis.com", "serviceusage.googleapis.com", "storage.googleapis.com"}
)
