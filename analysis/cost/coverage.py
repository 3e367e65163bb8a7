"""Which Terraform resource types the estimate prices, and which cost nothing by themselves.

tests/test_cost_coverage.py walks the synthesized stacks: a resource type in neither map fails
it, so a new kind of resource cannot slip into the platform unpriced and unexplained.
"""

from __future__ import annotations

# Resource type -> the price keys its line items use (each must be in the price table).
PRICED: dict[str, tuple[str, ...]] = {
    "google_compute_router_nat": (
        "network.nat_gateway_per_vm",
        "network.nat_ip",
        "network.nat_data_processed",
    ),
    "google_dns_managed_zone": ("network.dns_zone",),
    "google_artifact_registry_repository": ("storage.artifact_registry",),
    "google_sql_database_instance": (
        "cloud_sql.vcpu",
        "cloud_sql.memory",
        "cloud_sql.shared_f1_micro",
        "cloud_sql.shared_g1_small",
        "cloud_sql.ssd_storage",
        "cloud_sql.backup_storage",
    ),
    "google_redis_instance": ("redis.basic_m1", "redis.standard_m1"),
    "google_container_cluster": ("gke.cluster_fee", "gke.free_tier_credit"),
    # The workers' on-demand pool: its always-on node(s) at the machine's price.
    "google_container_node_pool": ("machines.e2-standard-4",),
    "google_cloud_run_v2_service": (
        "cloud_run.request_cpu",
        "cloud_run.request_memory",
        "cloud_run.requests",
        "cloud_run.instance_cpu",
        "cloud_run.instance_memory",
        "cloud_run.gpu_l4",
        "network.internet_egress",
    ),
    # The vLLM Deployment's GPU nodes (Autopilot bills them by node, with its premium).
    "kubernetes_deployment_v1": (
        "machines.g2-standard-8",
        "gke.autopilot_premium_gpu_nvidia-l4",
        "gke.autopilot_premium_vcpu",
        "gke.autopilot_premium_memory",
    ),
    "kubernetes_persistent_volume_claim_v1": ("storage.pd_ssd",),
    # The internal passthrough load balancer in front of vLLM.
    "kubernetes_service_v1": ("network.forwarding_rule", "network.lb_data_processed"),
    # The edge ([edge]): its two forwarding rules (443, and 80's redirect) and the data through it;
    # Cloud Armor by policy, rule and request.
    "google_compute_global_forwarding_rule": ("network.forwarding_rule", "network.lb_data_processed"),
    "google_compute_security_policy": ("network.armor_policy", "network.armor_rule", "network.armor_requests"),
    # Connector mode (docs/network-egress.md): the connector's instances, and the orchestrator's
    # internal Application Load Balancer by its forwarding rule and the data it processes.
    "google_vpc_access_connector": ("network.serverless_connector_e2_micro",),
    "google_compute_forwarding_rule": ("network.forwarding_rule", "network.lb_data_processed"),
    "google_monitoring_alert_policy": ("monitoring.alert_condition",),
    # Samples our services' metrics add; the custom service the SLOs hang on is where they show.
    "google_monitoring_custom_service": ("monitoring.prometheus_samples",),
    # The usage dataset: the sink's streamed rows and the storage they take.
    "google_bigquery_dataset": (
        "storage.bigquery_streaming_insert",
        "storage.bigquery_active_logical",
        "storage.bigquery_long_term_logical",
    ),
}

# Resource type -> why it has no price line of its own.
FREE_OR_USAGE: dict[str, str] = {
    "google_monitoring_dashboard": "dashboards are free",
    "google_monitoring_notification_channel": "notification channels are free",
    "google_monitoring_slo": "SLOs are free; the burn-rate policies on them are priced per condition",
    "google_pubsub_topic_iam_member": "IAM is free",
    "google_bigquery_dataset_iam_member": "IAM bindings are free",
    # cloud.google.com/stackdriver/pricing: the Log Router is free; what the sink writes is billed
    # by BigQuery, on the dataset's line.
    "google_logging_project_sink": "routing is free; its writes are priced on the dataset (streaming inserts)",
    "google_apikeys_key": "API keys are free; the calls they make are billed by the API called",
    "google_cloud_run_v2_job": "the database bootstrap job runs a few seconds per deploy (listed at $0)",
    "google_compute_address": "the NAT's reserved address is priced as network.nat_ip; an internal address is free",
    "google_compute_firewall": "firewall rules are free (Cloud NGFW Essentials)",
    # The edge's parts but its forwarding rules: configuration the forwarding rules' and data
    # processing's prices cover (cloud.google.com/load-balancing/pricing).
    **dict.fromkeys(
        [
            "google_compute_backend_service",
            "google_compute_url_map",
            "google_compute_target_https_proxy",
            "google_compute_target_http_proxy",
            "google_compute_region_network_endpoint_group",
        ],
        "a part of the edge's load balancer: billed through its forwarding rules and data processed",
    ),
    "google_compute_managed_ssl_certificate": "Google-managed certificates have no charge",
    "google_iap_web_backend_service_iam_member": "IAM is free; IAP on a backend service has no charge of its own",
    "google_compute_global_address": "a Private Services Access range reserves addresses; no charge",
    "google_compute_network": "VPC networks are free",
    "google_compute_router": "a Cloud Router used only by Cloud NAT has no charge of its own",
    "google_compute_subnetwork": "subnets are free; their flow logs are usage (Cloud Logging), listed as not priced",
    # The internal Application Load Balancer's parts behind its priced forwarding rule.
    **dict.fromkeys(
        [
            "google_compute_region_network_endpoint_group",
            "google_compute_region_backend_service",
            "google_compute_region_url_map",
            "google_compute_region_target_http_proxy",
        ],
        "a part of the internal load balancer priced by its forwarding rule; its proxies are listed as not priced",
    ),
    "google_dns_record_set": "records are free; queries are usage (per million), not in the table",
    "google_identity_platform_config": "usage: billed per monthly active user beyond the free tier; listed as not priced",
    "google_logging_metric": "log-based metrics are free to define; ingestion is usage",
    "google_project_iam_member": "IAM is free",
    "google_project_service": "enabling an API is free",
    "google_project_service_identity": "service agents are free",
    "google_pubsub_subscription": "usage: throughput and retained messages; listed as not priced",
    "google_pubsub_topic": "usage: throughput; listed as not priced",
    "google_secret_manager_secret": "usage: per active secret version and access; listed as not priced",
    "google_secret_manager_secret_version": "usage: per active secret version; listed as not priced",
    "google_service_account": "service accounts are free",
    "google_service_networking_connection": "Private Services Access peering is free; traffic is usage",
    "google_sql_database": "a database inside the priced instance",
    "google_sql_user": "a user of the priced instance",
    "google_storage_bucket": "usage: storage and operations by volume; listed as not priced",
    "kubernetes_horizontal_pod_autoscaler_v2": "a Kubernetes API object; the replicas it adds are priced with the Deployment",
    # Kubernetes API objects that make no Google Cloud resource of their own.
    **dict.fromkeys(
        [
            "kubernetes_api_service_v1",
            "kubernetes_cluster_role_binding_v1",
            "kubernetes_cluster_role_v1",
            "kubernetes_manifest",
            "kubernetes_namespace_v1",
            "kubernetes_network_policy_v1",
            "kubernetes_pod_disruption_budget_v1",
            "kubernetes_role_binding_v1",
            "kubernetes_service_account_v1",
        ],
        "a Kubernetes API object: no Google Cloud resource",
    ),
}

# IAM bindings on any resource are free: "IAM is offered at no additional charge" (cloud.google.com/iam/docs/overview).
IAM_BINDING_SUFFIX = "_iam_member"


def accounted_for(resource_type: str) -> bool:
    return resource_type in PRICED or resource_type in FREE_OR_USAGE or resource_type.endswith(IAM_BINDING_SUFFIX)
