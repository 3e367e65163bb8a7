"""One function per layer: each adds its resources' line items (and any warning) to ``lines``.

The GPU replicas are sized first (``gke_replicas``): the network's Cloud NAT counts the GPU nodes.
"""

from __future__ import annotations

import math

from analysis.cost.cloud_run import HOURS_PER_DAY, cloud_run_service
from analysis.cost.lines import Lines
from analysis.cost.prices import Machine, PriceError, PriceTable
from analysis.cost.workload import Workload
from hybrid.armor import armor_rules
from hybrid.catalog import MODELS
from hybrid.config import GkeModelServerSettings, memory_gib
from hybrid.service_contract import gateway_requests_per_user_minute
from hybrid.topology import for_environment


def gke_replicas(lines: Lines, w: Workload) -> float:
    """Replicas billed for the average load within [min_replicas, max_replicas]; warns if the peak needs more."""
    gke = lines.env.inference.gke_server
    avg_tps = w.requests_per_day * w.output_tokens / 86_400
    needed_avg = math.ceil(avg_tps / w.replica_tokens_per_second) if avg_tps else 0
    needed_peak = math.ceil(avg_tps * w.peak_to_average / w.replica_tokens_per_second)
    if needed_peak > gke.max_replicas:
        lines.warnings.append(
            f"inference.gke.max_replicas = {gke.max_replicas}: the peak ({avg_tps * w.peak_to_average:,.0f} output tokens/s) "
            f"needs {needed_peak} replicas at {w.replica_tokens_per_second:g} tokens/s each; requests will queue"
        )
    return float(min(gke.max_replicas, max(gke.min_replicas, needed_avg)))


def network(lines: Lines, w: Workload, gpu_nodes: float) -> None:
    hours = lines.prices.hours_per_month
    nat_vms = math.ceil(gpu_nodes)  # Autopilot GPU nodes get a NAT assignment; one Pod per GPU node here
    lines.add(
        "network", "Cloud NAT", f"gateway ({nat_vms} VM(s) using it)", nat_vms * hours, "network.nat_gateway_per_vm"
    )
    lines.add("network", "Cloud NAT", "external IP address (AUTO_ONLY, one)", hours, "network.nat_ip")
    lines.add("network", "Cloud NAT", "data processed", w.nat_gb_per_month, "network.nat_data_processed")
    lines.add("network", "Cloud DNS private zone run.app", "managed zone", hours, "network.dns_zone")
    lines.unpriced(
        "network",
        "VPC flow logs (both subnets, 50% sampled)",
        "usage-based: billed as Cloud Logging ingestion; no logging price in the table",
    )
    if lines.env.network.egress == "connector":
        _connector_mode(lines, w)
    else:
        lines.free(
            "network",
            "Cloud Run egress to the VPC",
            "Direct VPC egress",
            "no connector VMs to pay for (Direct VPC egress, not a Serverless VPC Access connector)",
        )


def _connector_mode(lines: Lines, w: Workload) -> None:
    """The connector's instances and the orchestrator's internal Application Load Balancer
    (docs/network-egress.md). A connector never scales back down, so it bills min_instances at
    least (cloud.google.com/vpc/docs/serverless-vpc-access#scaling); the estimate bills that floor."""
    net, hours = lines.env.network, lines.prices.hours_per_month
    lines.add(
        "network",
        "Serverless VPC Access connector",
        f"{net.connector_min_instances} e2-micro instances (min_instances)",
        net.connector_min_instances * hours,
        "network.serverless_connector_e2_micro",
        note=f"it may scale up to {net.connector_max_instances} instances, and never scales back down",
    )
    resource = "internal Application Load Balancer (orchestrator)"
    lines.add("services", resource, "forwarding rule", hours, "network.forwarding_rule")
    # Every chat request and its streamed reply pass it once, gateway to orchestrator.
    month_days = hours / HOURS_PER_DAY
    gib = w.requests_per_day * month_days * (w.input_tokens + w.output_tokens) * 4 / 2**30
    lines.add("services", resource, "data processed (~4 bytes a token)", gib, "network.lb_data_processed")
    lines.unpriced(
        "services",
        f"{resource} proxies",
        "Envoy-based regional load balancers also bill their proxy instances; no verified price in the table",
    )


def registry(lines: Lines, w: Workload) -> None:
    lines.add("registry", "Artifact Registry", "image storage", w.registry_gb, "storage.artifact_registry")


def database(lines: Lines, w: Workload) -> None:
    db, hours = lines.env.database, lines.prices.hours_per_month
    ha = db.availability == "REGIONAL"
    factor = 2 if ha else 1  # a regional instance pays for its standby (cloud.google.com/sql/pricing)
    label = "HA (REGIONAL, x2)" if ha else "ZONAL"
    resource = f"Cloud SQL {db.tier}"
    _instance(lines, resource, label, factor)
    used = w.database_used_gb if w.database_used_gb is not None else db.disk_size_gb / 2
    # Backups are not doubled for HA (cloud.google.com/sql/pricing).
    lines.add(
        "database",
        resource,
        f"backups ({db.retained_backups} retained, incremental) + PITR logs",
        used * hours,
        "cloud_sql.backup_storage",
        note="about the data's size; grows with churn and log_retention_days",
    )
    if db.replica_region:
        # A read replica is billed as an instance of its own, at its region's prices, with no backups
        # of its own (cloud.google.com/sql/pricing); ours is zonal (hybrid/components/postgres.py).
        elsewhere = (
            f"priced at {lines.env.region}'s rates: the table has no {db.replica_region} prices, which may differ"
        )
        _instance(lines, f"Cloud SQL replica in {db.replica_region}", "ZONAL read replica", 1, note=elsewhere)
        lines.unpriced(
            "database",
            f"replication traffic to {db.replica_region}",
            "inter-region network egress per GiB of WAL; not in the table (cloud.google.com/sql/pricing#network-pricing)",
        )


def _instance(lines: Lines, resource: str, label: str, factor: int, note: str = "") -> None:
    """One Cloud SQL instance's vCPUs and memory (or shared core) and SSD, ``factor`` times over."""
    db, hours = lines.env.database, lines.prices.hours_per_month
    if db.tier in ("db-f1-micro", "db-g1-small"):
        key = "cloud_sql.shared_f1_micro" if db.tier == "db-f1-micro" else "cloud_sql.shared_g1_small"
        lines.add("database", resource, f"shared-core instance, {label}", hours * factor, key, note)
    else:
        cpus, mib = db.tier.split("-")[-2:]
        lines.add("database", resource, f"{cpus} vCPU, {label}", int(cpus) * hours * factor, "cloud_sql.vcpu", note)
        gib = int(mib) / 1024
        lines.add("database", resource, f"{gib:g} GiB memory, {label}", gib * hours * factor, "cloud_sql.memory", note)
    ssd = f"{db.disk_size_gb} GiB SSD, {label}"
    lines.add("database", resource, ssd, db.disk_size_gb * hours * factor, "cloud_sql.ssd_storage", note)


def redis(lines: Lines) -> None:
    """Memorystore for Redis, billed per provisioned GB-hour by tier and capacity tier."""
    r = lines.env.redis
    if not r.enabled:
        return
    # cloud.google.com/memorystore/docs/redis/pricing: capacity tier M1 is 1-4 GB; larger
    # instances have lower rates, which the table does not hold.
    if r.memory_size_gb > 4:
        lines.unpriced(
            "database",
            f"Memorystore {lines.env.names.redis_instance}",
            "only capacity tier M1 (1-4 GB) is in the table",
        )
        return
    key = "redis.standard_m1" if r.tier == "STANDARD_HA" else "redis.basic_m1"
    quantity = r.memory_size_gb * lines.prices.hours_per_month
    lines.add(
        "database", f"Memorystore {lines.env.names.redis_instance}", f"{r.memory_size_gb} GB, {r.tier}", quantity, key
    )


def cluster(lines: Lines, w: Workload) -> None:
    fee = lines.add(
        "cluster", "GKE Autopilot cluster", "cluster management fee", lines.prices.hours_per_month, "gke.cluster_fee"
    )
    if w.free_tier:
        price = lines.prices.price("gke.free_tier_credit")
        credit = min(fee, price.usd)
        lines.add_usd(
            "cluster",
            "GKE Autopilot cluster",
            "free tier credit (one cluster per billing account)",
            1,
            "credit",
            -credit,
            "gke.free_tier_credit",
            price,
        )


def gpu_machine(prices: PriceTable, gpu_type: str, gpus: int, cpu: float, memory: str) -> tuple[str, Machine]:
    """The smallest priced machine with the Pod's GPUs whose vCPUs and memory exceed its requests.

    Strictly exceed: every node keeps part of its CPU and memory for the kubelet and system
    Pods, so a Pod asking for a whole machine's vCPUs or memory cannot be placed on it.
    Compute Engine counts machine memory in GiB (cloud.google.com/compute/vm-instance-pricing).
    """
    candidates = prices.machines_for(gpu_type, gpus)
    if not candidates:
        raise PriceError(f"{prices.path.name}: no priced machine with {gpus} x {gpu_type}")
    for name, machine in candidates:
        if cpu < machine.vcpus and memory_gib(memory) < machine.memory_gb:
            return name, machine
    largest = candidates[-1][0]
    raise PriceError(
        f"{prices.path.name}: no priced machine with {gpus} x {gpu_type} has more than {cpu} vCPUs and {memory}; "
        f"largest priced: {largest}"
    )


def gpu_node_usd(lines: Lines) -> float:
    """The inference layer's GPU nodes' monthly on-demand cost: the machines' price, without Autopilot's premium."""
    return sum(
        item.monthly_usd or 0
        for item in lines.items
        if item.layer == "inference" and (item.price_key or "").startswith("machines.")
    )


def inference_gke(lines: Lines, w: Workload, replicas: float) -> None:
    """GPU nodes with Autopilot's premium, the weights' storage, the internal load balancer."""
    gke = lines.env.inference.gke_server
    try:
        machine_name, machine = gpu_machine(lines.prices, gke.gpu_type, gke.gpu_count, gke.cpu, gke.memory)
    except PriceError as err:
        raise PriceError(
            str(err), key=f"inference.gke.gpu_type = {gke.gpu_type!r}, gpu_count = {gke.gpu_count}"
        ) from None
    if machine_name != lines.prices.machines_for(gke.gpu_type, gke.gpu_count)[0][0]:
        lines.warnings.append(
            f"inference.gke.cpu = {gke.cpu}, memory = {gke.memory!r}: Autopilot places each replica on a "
            f"{machine_name} (the Pod asks for more than a smaller machine can give after the node's own reservations)"
        )
    resource = f"vLLM {gke.model.split('/')[-1]}"
    node_hours = replicas * lines.prices.hours_per_month
    # Autopilot bills a GPU Pod by the node it runs on (the Accelerator compute class), not by
    # its requests: "GKE Autopilot Pods are priced based on the nodes where the Pods are
    # scheduled" (cloud.google.com/kubernetes-engine/docs/concepts/autopilot-compute-classes#pricing),
    # the Compute Engine price plus an Autopilot premium on the node's GPUs, vCPUs and memory
    # (cloud.google.com/kubernetes-engine/docs/how-to/autopilot-gpus#pricing).
    lines.add_usd(
        "inference",
        resource,
        f"GPU node {machine_name} ({machine.gpus} x {gke.gpu_type}) x {replicas:g} replica(s)",
        node_hours,
        "hour",
        machine.usd,
        f"machines.{machine_name}",
        machine,
        note="Autopilot Accelerator class: billed by node",
    )
    _autopilot_premium(lines, resource, machine, node_hours)
    _weights(lines, gke)
    _internal_load_balancer(lines, w)


def _autopilot_premium(lines: Lines, resource: str, machine: Machine, node_hours: float) -> None:
    gpu_key = f"gke.autopilot_premium_gpu_{machine.gpu_type}"
    if gpu_key.partition(".")[2] not in lines.prices.table.gke:
        lines.unpriced("inference", f"Autopilot premium on {machine.gpu_type} nodes", f"no {gpu_key} in the table")
        return
    for what, count, key in (
        (f"{machine.gpus} x {machine.gpu_type}", machine.gpus, gpu_key),
        (f"{machine.vcpus} vCPU", machine.vcpus, "gke.autopilot_premium_vcpu"),
        (f"{machine.memory_gb:g} GiB", machine.memory_gb, "gke.autopilot_premium_memory"),
    ):
        lines.add("inference", resource, f"Autopilot premium on the node: {what}", node_hours * count, key)


def _weights(lines: Lines, gke: GkeModelServerSettings) -> None:
    if gke.weights == "pvc":
        size = memory_gib(gke.weights_volume_size)
        lines.add(
            "inference", "model cache PVC (premium-rwo)", f"{gke.weights_volume_size} SSD PD", size, "storage.pd_ssd"
        )
        return
    weights = MODELS[gke.model].weights_gb / 1.073741824
    lines.add(
        "inference",
        f"weights bucket gs://{gke.weights_bucket}",
        f"{weights:.1f} GiB of weights (staged by you)",
        weights,
        "storage.gcs_standard_regional",
        note="the bucket is not created by the stacks",
    )


def _internal_load_balancer(lines: Lines, w: Workload) -> None:
    hours = lines.prices.hours_per_month
    lines.add("inference", "internal passthrough load balancer", "forwarding rule", hours, "network.forwarding_rule")
    month_days = hours / HOURS_PER_DAY
    lb_gib = w.requests_per_day * month_days * (w.input_tokens + w.output_tokens) * 4 / 2**30
    lines.add(
        "inference",
        "internal passthrough load balancer",
        "data processed (~4 bytes a token)",
        lb_gib,
        "network.lb_data_processed",
    )
    lines.unpriced(
        "inference",
        "custom metrics adapter Pod (general-purpose Autopilot)",
        "no Autopilot general-purpose Pod price in the table; small (a fraction of a vCPU)",
    )
    lines.unpriced(
        "inference", "Managed Service for Prometheus samples", "usage-based; no monitoring price in the table"
    )


def workers(lines: Lines) -> None:
    """The batch workers' Standard cluster: its fee, the always-on node(s); Spot and Pub/Sub are usage."""
    workers = lines.env.workers
    if not workers.enabled:
        return
    hours = lines.prices.hours_per_month
    # A Standard cluster pays the same management fee as an Autopilot one; the free tier's
    # credit covers one cluster per billing account, already counted in the cluster layer.
    lines.add("workers", "GKE Standard cluster (workers)", "cluster management fee", hours, "gke.cluster_fee")
    pool = workers.on_demand_pool
    machine = lines.prices.machine(pool.machine_type)
    lines.add_usd(
        "workers",
        f"on-demand pool: {pool.min_nodes} to {pool.max_nodes} x {pool.machine_type}",
        f"{pool.min_nodes} node(s) always on",
        pool.min_nodes * hours,
        "hour",
        machine.usd,
        f"machines.{pool.machine_type}",
        machine,
        note="nodes above min_nodes run only while batches wait",
    )
    lines.unpriced(
        "workers",
        f"Spot pool: 0 to {workers.spot_pool.max_nodes} x {workers.spot_pool.machine_type}",
        "Spot prices change and the table has none; nodes run only while batches wait",
    )
    lines.unpriced(
        "workers",
        "Pub/Sub batch topic and subscriptions",
        "throughput-based (per TiB published and delivered, first 10 GiB free), plus storage for messages left "
        "unacknowledged over 24 hours; no Pub/Sub price in the table",
    )
    lines.unpriced(
        "workers",
        f"batch files bucket gs://{lines.env.names.batch_bucket}",
        f"usage-based: the batch files' volume, each kept {workers.bucket_lifecycle_days} days "
        "(storage.gcs_standard_regional per GiB-month)",
    )


# Series a scrape target exports (our services' histograms have about 15 buckets a label set),
# scraped once a minute: Managed Prometheus bills each sample.
_SERIES_PER_TARGET = 400
_SCRAPES_PER_MONTH = 60 * 730


def observability(lines: Lines, w: Workload, conditions: int, targets: int) -> None:
    """The observability layer: alerting conditions and Prometheus samples (the usage dataset is
    the analytics layer's)."""
    if lines.env.slo is None:
        return
    lines.add(
        "observability", "alerting policies", f"{conditions} conditions", conditions, "monitoring.alert_condition"
    )
    samples = targets * _SERIES_PER_TARGET * _SCRAPES_PER_MONTH / 1e6
    lines.add(
        "observability",
        "Managed Service for Prometheus",
        f"{targets} scrape targets x {_SERIES_PER_TARGET} series, each minute",
        samples,
        "monitoring.prometheus_samples",
        note="series per target assumed; dashboards and Google's own metrics are free",
    )


def services(lines: Lines, w: Workload, free: dict[str, float] | None) -> None:
    """The Cloud Run services (and the Cloud Run GPU model server), their internet egress."""
    env, s = lines.env, lines.env.services
    names = env.names.service
    # With [edge] regions, the frontend, the gateway and the orchestrator run in each region, the load
    # balancer sharing the traffic among them: each region serves its share, and keeps its own
    # minimum instances. Each region is priced at the table's us-central1 rates: right for a region
    # with tier 1 pricing as us-central1 has, us-east4 among them (cloud.google.com/run/docs/locations),
    # an underestimate for a tier 2 region.
    regions = env.service_regions
    for region in regions:
        where = "" if region == env.region else f" ({region})"
        share = 1 / len(regions)
        cloud_run_service(
            lines, "services", f"Cloud Run {names['frontend']}{where}", s.frontend, w.pages_per_day * share, 0.1, free
        )
        # Every other Cloud Run service of the topology is in an API request's path, held as long;
        # only the hand-built three run in further regions.
        for role in for_environment(env).run_services():
            if role == "frontend" or (where and role not in ("gateway", "orchestrator")):
                continue
            per_day = w.requests_per_day * (share if role in ("gateway", "orchestrator") else 1)
            resource = f"Cloud Run {names[role]}{where}"
            cloud_run_service(lines, "services", resource, s.sizing(role), per_day, w.request_seconds, free)
    if env.inference.placement == "cloud_run":
        seconds_each = w.output_tokens / w.stream_tokens_per_second
        gpu = env.inference.cloud_run_server
        cloud_run_service(
            lines, "services", f"Cloud Run {names['inference']} (L4)", gpu, w.requests_per_day, seconds_each
        )
    if env.inference.spills_to_cloud_run:
        # Only what overflows the GKE pool reaches it, a share no setting states: its minimum
        # instances are priced, and each spilled request's GPU seconds are said.
        gpu = env.inference.cloud_run_server
        resource = f"Cloud Run {names['inference-spill']} (L4, spill target)"
        cloud_run_service(lines, "services", resource, gpu, 0, 0)
        seconds_each = w.output_tokens / w.stream_tokens_per_second
        lines.unpriced(
            "services",
            f"{resource}: spilled requests",
            f"each streams about {seconds_each:.0f} s on an instance serving up to {gpu.concurrency} at once, "
            "billed per second while it runs; how much spills is the GKE pool's overflow, which no setting states",
        )
    month_days = lines.prices.hours_per_month / HOURS_PER_DAY
    egress_gb = w.requests_per_day * month_days * w.egress_kb_per_request / 1e6
    lines.add(
        "services",
        "internet egress (replies, pages)",
        "Premium Tier, North America",
        egress_gb,
        "network.internet_egress",
    )
    lines.free(
        "services", f"Cloud Run job {env.names.database_bootstrap}", "runs once", "a few seconds once per deploy"
    )
    lines.unpriced(
        "services",
        "Secret Manager secrets, Identity Platform sign-ins",
        "usage-based; not in the table (Identity Platform's first 50K MAU are free)",
    )
    lines.unpriced("services", "Vertex AI calls routed by the orchestrator", "per token; see the unit economics below")


def edge(lines: Lines, w: Workload) -> None:
    """The global external Application Load Balancer ([edge]): two forwarding rules (HTTPS, and
    HTTP's redirect), the data it processes, and Cloud Armor's policy, rules and requests."""
    env = lines.env
    if not env.edge.enabled:
        return
    hours = lines.prices.hours_per_month
    month_days = hours / HOURS_PER_DAY
    lines.add(
        "edge",
        "global external Application Load Balancer",
        "forwarding rules (443, 80)",
        2 * hours,
        "network.forwarding_rule",
    )
    # Every chat request and page load passes it: the reply's egress and the prompt (~4 bytes a token).
    requests = (w.requests_per_day + w.pages_per_day) * month_days
    gib = (w.requests_per_day * month_days) * (w.egress_kb_per_request * 1024 + w.input_tokens * 4) / 2**30
    lines.add("edge", "global external Application Load Balancer", "data processed", gib, "network.lb_data_processed")
    # One policy on both backends, its rules as the edge layer makes them (the default counts).
    rules = len(armor_rules(env.edge.armor, gateway_requests_per_user_minute(env)))
    lines.add("edge", "Cloud Armor", "security policy", 1, "network.armor_policy")
    lines.add("edge", "Cloud Armor", f"rules ({rules})", rules, "network.armor_rule")
    lines.add("edge", "Cloud Armor", "requests evaluated", requests / 1e6, "network.armor_requests")


def analytics(lines: Lines, w: Workload) -> None:
    """The usage dataset: one record a request or batch line, streamed in by the log sink and kept
    ``retention_days``. BigQuery bills a partition as long-term storage once unchanged for 90
    days (cloud.google.com/bigquery/pricing#storage); queries run on demand and are not estimated."""
    a = lines.env.analytics
    if not a.enabled:
        return
    resource = f"BigQuery dataset {a.dataset_id}"
    records_per_month = w.requests_per_day * lines.prices.hours_per_month / HOURS_PER_DAY
    # Streaming inserts bill each row as at least 1 KB (cloud.google.com/bigquery/pricing#data_ingestion_pricing).
    streamed_mb = records_per_month * max(a.bytes_per_record, 1000) / 1e6
    lines.add(
        "analytics",
        resource,
        f"log sink writes: {records_per_month:,.0f} records of {a.bytes_per_record:,} bytes",
        streamed_mb / 200,
        "storage.bigquery_streaming_insert",
        note="Cloud Logging's Log Router charges nothing for routing (cloud.google.com/stackdriver/pricing)",
    )
    gib_per_day = w.requests_per_day * a.bytes_per_record / 2**30
    active_days = min(a.retention_days, 90)
    lines.add(
        "analytics",
        resource,
        f"active storage: {active_days} days of records",
        gib_per_day * active_days,
        "storage.bigquery_active_logical",
        note="the first 10 GiB a month are free (not deducted)",
    )
    if a.retention_days > 90:
        lines.add(
            "analytics",
            resource,
            f"long-term storage: {a.retention_days - 90} days of records",
            gib_per_day * (a.retention_days - 90),
            "storage.bigquery_long_term_logical",
        )
