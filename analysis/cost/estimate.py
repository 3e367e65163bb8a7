"""A monthly cost estimate of one environment, per stack and resource, from its typed settings.

What it reads is what the stacks build (hybrid/config's Environment), priced from the
region's table (analysis/cost/prices/<region>.toml). What depends on traffic comes from a
``Workload``, whose every default is printed as an assumption. Things the table cannot
price are listed as "not priced" with the reason, never as a silent $0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from analysis.cost.prices import Machine, PriceError, PriceTable
from hybrid.catalog import MODELS
from hybrid.config import Environment, GpuServiceSettings, ServiceSettings, memory_gib

HOURS_PER_DAY = 24


class Workload(BaseModel):
    """The traffic an estimate assumes. Defaults are assumptions, printed with every estimate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The reference architecture prices its GPU cluster at 50,000 inference requests a day
    # (docs/reference-architecture.md, cost table 2).
    requests_per_day: Annotated[int, Field(ge=0)] = 50_000
    input_tokens: Annotated[int, Field(ge=0)] = 1_000
    output_tokens: Annotated[int, Field(ge=1)] = 500
    # How long the gateway and orchestrator hold a streamed request (the whole reply).
    request_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0
    # Chat-page loads a day (each carries several chat turns); default: one per 5 requests.
    page_loads_per_day: Annotated[int, Field(ge=0)] | None = None
    # The reference architecture's cost table 1: 500 GB of egress a month at ~500K requests a
    # day, about 33 KB a request.
    egress_kb_per_request: Annotated[float, Field(ge=0)] = 33.0
    # Output tokens a second one model-server replica sustains across its batch. NOT
    # measured here: measure your model on your GPUs and pass it.
    replica_tokens_per_second: Annotated[float, Field(gt=0)] = 400.0
    peak_to_average: Annotated[float, Field(ge=1)] = 3.0
    # Tokens a second one stream gets from a Cloud Run L4 model server (placement "cloud_run"). NOT measured.
    stream_tokens_per_second: Annotated[float, Field(gt=0)] = 30.0
    # Through Cloud NAT: images and weights the GPU nodes pull from the internet.
    nat_gb_per_month: Annotated[float, Field(ge=0)] = 50.0
    # Data in the database (backups are about this size); default: half the disk.
    database_used_gb: Annotated[float, Field(ge=0)] | None = None
    registry_gb: Annotated[float, Field(ge=0)] = 3.0
    external_api: str = "openai-gpt-4o-mini"
    vertex_api: str = "vertex-gemini-2_5-flash"
    # Free tiers are per billing account: apply them to this environment alone only if asked.
    free_tier: bool = False

    @property
    def pages_per_day(self) -> int:
        return self.requests_per_day // 5 if self.page_loads_per_day is None else self.page_loads_per_day

    def assumptions(self, env: Environment) -> list[str]:
        used = self.database_used_gb if self.database_used_gb is not None else env.database.disk_size_gb / 2
        out = [
            f"{self.requests_per_day:,} chat requests a day, {self.input_tokens:,} input + {self.output_tokens:,} output tokens each",
            f"each request held {self.request_seconds:g} s by the gateway and the orchestrator (streamed reply)",
            f"{self.pages_per_day:,} chat-page loads a day on the frontend, 0.1 s each",
            f"{self.egress_kb_per_request:g} KB of internet egress per request (reference architecture: 500 GB/month at ~500K requests/day)",
            f"{self.nat_gb_per_month:g} GB/month through Cloud NAT (images, weights pulled from the internet)",
            f"{used:g} GB of data in Cloud SQL; backups the same size",
            f"{self.registry_gb:g} GB of images in Artifact Registry",
            "a month is 730 hours (Google's calculators); list prices, no committed-use discounts, no taxes",
            "free tiers (per billing account) " + ("applied to this environment" if self.free_tier else "not applied"),
            "Cloud Run instances: busy time from Poisson arrivals (1 - e^-C of the first instance, C/concurrency beyond); "
            "instances kept idle after traffic (up to 15 min) are not counted",
        ]
        if env.inference.placement == "gke":
            out.append(
                f"one model-server replica sustains {self.replica_tokens_per_second:g} output tokens/s "
                "(NOT measured: pass --replica-tokens-per-second from a benchmark of your model); replicas billed "
                f"for the average load within [min_replicas, max_replicas], peak = {self.peak_to_average:g} x average"
            )
        else:
            out.append(
                f"a Cloud Run GPU stream produces {self.stream_tokens_per_second:g} output tokens/s "
                "(NOT measured: pass --stream-tokens-per-second); the GPU service is busy for each whole reply"
            )
        return out


@dataclass
class LineItem:
    stack: str
    resource: str
    component: str
    quantity: float | None
    unit: str
    monthly_usd: float | None  # None: not priced (see note)
    price_key: str | None = None
    unit_usd: float | None = None
    confirmed: bool | None = None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "resource": self.resource,
            "component": self.component,
            "quantity": None if self.quantity is None else round(self.quantity, 4),
            "unit": self.unit,
            "unit_usd": self.unit_usd,
            "monthly_usd": None if self.monthly_usd is None else round(self.monthly_usd, 2),
            "price_key": self.price_key,
            "price_confirmed": self.confirmed,
            "note": self.note,
        }


@dataclass
class Estimate:
    environment: str
    source: str
    region: str
    prices_checked: str
    prices_file: str
    items: list[LineItem]
    assumptions: list[str]
    warnings: list[str] = field(default_factory=list)
    unit_economics: dict[str, Any] | None = None
    budget_usd: float | None = None

    @property
    def total(self) -> float:
        return round(sum(item.monthly_usd or 0 for item in self.items), 2)

    def stack_totals(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for item in self.items:
            totals[item.stack] = totals.get(item.stack, 0.0) + (item.monthly_usd or 0)
        return {stack: round(total, 2) for stack, total in totals.items()}

    def subtotal(self, stacks: tuple[str, ...]) -> float:
        return round(sum(item.monthly_usd or 0 for item in self.items if item.stack in stacks), 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "source": self.source,
            "region": self.region,
            "currency": "USD",
            "prices": {"file": self.prices_file, "checked": self.prices_checked},
            "monthly_total_usd": self.total,
            "stacks": self.stack_totals(),
            "items": [item.as_json() for item in self.items],
            "not_priced": [f"{i.stack}: {i.resource}: {i.note}" for i in self.items if i.monthly_usd is None],
            "assumptions": self.assumptions,
            "warnings": self.warnings,
            "unit_economics": self.unit_economics,
            "budget_usd": self.budget_usd,
        }


class _Lines:
    """Collects line items, each priced from the table by key."""

    def __init__(self, env: Environment, prices: PriceTable) -> None:
        self.env, self.prices = env, prices
        self.items: list[LineItem] = []

    def add(self, layer: str, resource: str, component: str, quantity: float, key: str, note: str = "") -> float:
        price = self.prices.price(key)
        monthly = quantity * price.usd
        self.items.append(
            LineItem(
                self.env.stack_id(layer),
                resource,
                component,
                quantity,
                price.unit,
                monthly,
                key,
                price.usd,
                price.confirmed,
                note,
            )
        )
        return monthly

    def add_usd(
        self,
        layer: str,
        resource: str,
        component: str,
        quantity: float,
        unit: str,
        unit_usd: float,
        key: str,
        confirmed: bool,
        note: str = "",
    ) -> float:
        monthly = quantity * unit_usd
        self.items.append(
            LineItem(
                self.env.stack_id(layer), resource, component, quantity, unit, monthly, key, unit_usd, confirmed, note
            )
        )
        return monthly

    def unpriced(self, layer: str, resource: str, why: str) -> None:
        self.items.append(LineItem(self.env.stack_id(layer), resource, "", None, "", None, note=why))


def busy_instances(arrivals_per_second: float, seconds_each: float, concurrency: int) -> float:
    """Average number of busy Cloud Run instances.

    C = arrivals x duration requests are in flight on average (Little's law); with Poisson
    arrivals the first instance is busy 1 - e^-C of the time, and beyond one instance about
    C / concurrency instances are needed.
    """
    in_flight = arrivals_per_second * seconds_each
    return max(1 - math.exp(-in_flight), in_flight / concurrency)


def cloud_run_service(
    lines: _Lines,
    layer: str,
    resource: str,
    settings: ServiceSettings,
    arrivals_per_day: float,
    seconds_each: float,
    free: dict[str, float] | None = None,
) -> float:
    """CPU, memory (and requests, idle minimum instances) of one Cloud Run service."""
    month_s = lines.prices.seconds_per_month
    busy = busy_instances(arrivals_per_day / 86_400, seconds_each, settings.concurrency)
    cpu, mem = settings.cpu, memory_gib(settings.memory)
    total = 0.0
    if settings.cpu_always_allocated:
        # Instance-based billing: every second of each instance's life, no request fee.
        instances = max(settings.min_instances, busy)
        seconds = instances * month_s
        what = f"{instances:.2f} instance(s) x {cpu} vCPU, instance-based"
        total += lines.add(
            layer, resource, f"CPU ({what})", _after_free(seconds * cpu, free, "instance_cpu"), "cloud_run.instance_cpu"
        )
        total += lines.add(
            layer,
            resource,
            f"memory ({instances:.2f} x {settings.memory})",
            _after_free(seconds * mem, free, "instance_memory"),
            "cloud_run.instance_memory",
        )
        if isinstance(settings, GpuServiceSettings):
            key = "cloud_run.gpu_l4_zonal_redundancy" if settings.zonal_redundancy else "cloud_run.gpu_l4"
            total += lines.add(
                layer, resource, f"GPU ({instances:.2f} x {settings.gpu_type})", seconds * settings.gpus, key
            )
        return total
    # Request-based billing: busy time at the active rate, idle minimum instances at the idle rate.
    active = busy * month_s
    total += lines.add(
        layer,
        resource,
        f"CPU ({busy:.3f} busy instance(s) x {cpu} vCPU, request-based)",
        _after_free(active * cpu, free, "request_cpu"),
        "cloud_run.request_cpu",
    )
    total += lines.add(
        layer,
        resource,
        f"memory ({busy:.3f} x {settings.memory})",
        _after_free(active * mem, free, "request_memory"),
        "cloud_run.request_memory",
    )
    requests_m = arrivals_per_day * lines.prices.hours_per_month / HOURS_PER_DAY / 1e6
    total += lines.add(layer, resource, "requests", _after_free(requests_m, free, "requests"), "cloud_run.requests")
    idle = max(0.0, settings.min_instances - busy) * month_s
    if idle:
        total += lines.add(
            layer,
            resource,
            f"idle minimum instances ({settings.min_instances} x {cpu} vCPU)",
            idle * cpu,
            "cloud_run.request_idle_cpu",
        )
        total += lines.add(
            layer,
            resource,
            f"idle minimum instances ({settings.min_instances} x {settings.memory})",
            idle * mem,
            "cloud_run.request_idle_memory",
        )
    return total


def _after_free(quantity: float, free: dict[str, float] | None, key: str) -> float:
    """Take the free tier (shared by the environment's services) off a quantity, if asked."""
    if free is None or key not in free:
        return quantity
    used = min(quantity, free[key])
    free[key] -= used
    return quantity - used


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


def estimate(env: Environment, prices: PriceTable, workload: Workload | None = None, source: str = "") -> Estimate:
    if prices.region != env.region:
        raise PriceError(f"region = {env.region!r}: the price table given is for {prices.region!r}")
    w = workload or Workload()
    lines = _Lines(env, prices)
    warnings: list[str] = []
    hours, month_days = prices.hours_per_month, prices.hours_per_month / HOURS_PER_DAY
    free = (
        {
            key: prices.usd(f"cloud_run.free_{key}")
            for key in ("request_cpu", "request_memory", "instance_cpu", "instance_memory")
        }
        | {"requests": prices.usd("cloud_run.free_requests")}
        if w.free_tier
        else None
    )

    # --- inference sizing first: the network's NAT counts the GPU nodes -------------------------
    gke = env.inference.gke if env.inference.placement == "gke" else None
    replicas = 0.0
    avg_tps = w.requests_per_day * w.output_tokens / 86_400
    if gke:
        needed_avg = math.ceil(avg_tps / w.replica_tokens_per_second) if avg_tps else 0
        replicas = float(min(gke.max_replicas, max(gke.min_replicas, needed_avg)))
        needed_peak = math.ceil(avg_tps * w.peak_to_average / w.replica_tokens_per_second)
        if needed_peak > gke.max_replicas:
            warnings.append(
                f"inference.gke.max_replicas = {gke.max_replicas}: the peak ({avg_tps * w.peak_to_average:,.0f} output tokens/s) "
                f"needs {needed_peak} replicas at {w.replica_tokens_per_second:g} tokens/s each; requests will queue"
            )

    # --- network --------------------------------------------------------------------------------
    nat_vms = math.ceil(replicas)  # Autopilot GPU nodes get a NAT assignment; one Pod per GPU node here
    lines.add(
        "network", "Cloud NAT", f"gateway ({nat_vms} VM(s) using it)", nat_vms * hours, "network.nat_gateway_per_vm"
    )
    lines.add("network", "Cloud NAT", "external IP address (AUTO_ONLY, one)", hours, "network.nat_ip")
    lines.add("network", "Cloud NAT", "data processed", w.nat_gb_per_month, "network.nat_data_processed")
    lines.add("network", "Cloud DNS private zone run.app", "managed zone", 1, "network.dns_zone")
    lines.unpriced(
        "network",
        "VPC flow logs (both subnets, 50% sampled)",
        "usage-based: billed as Cloud Logging ingestion; no logging price in the table",
    )
    lines.items.append(
        LineItem(
            env.stack_id("network"),
            "Cloud Run egress to the VPC",
            "Direct VPC egress",
            None,
            "",
            0.0,
            note="no connector VMs to pay for (Direct VPC egress, not a Serverless VPC Access connector)",
        )
    )

    # --- registry -------------------------------------------------------------------------------
    lines.add("registry", "Artifact Registry", "image storage", w.registry_gb, "storage.artifact_registry")

    # --- database -------------------------------------------------------------------------------
    db = env.database
    ha = db.availability == "REGIONAL"
    factor = 2 if ha else 1  # a regional instance pays for its standby (cloud.google.com/sql/pricing)
    label = "HA (REGIONAL, x2)" if ha else "ZONAL"
    if db.tier in ("db-f1-micro", "db-g1-small"):
        key = "cloud_sql.shared_f1_micro" if db.tier == "db-f1-micro" else "cloud_sql.shared_g1_small"
        lines.add("database", f"Cloud SQL {db.tier}", f"shared-core instance, {label}", hours * factor, key)
    else:
        cpus, mib = db.tier.split("-")[-2:]
        lines.add(
            "database", f"Cloud SQL {db.tier}", f"{cpus} vCPU, {label}", int(cpus) * hours * factor, "cloud_sql.vcpu"
        )
        lines.add(
            "database",
            f"Cloud SQL {db.tier}",
            f"{int(mib) / 1024:g} GB memory, {label}",
            int(mib) / 1024 * hours * factor,
            "cloud_sql.memory",
        )
    lines.add(
        "database",
        f"Cloud SQL {db.tier}",
        f"{db.disk_size_gb} GB SSD, {label}",
        db.disk_size_gb * factor,
        "cloud_sql.ssd_storage",
    )
    used = w.database_used_gb if w.database_used_gb is not None else db.disk_size_gb / 2
    lines.add(
        "database",
        f"Cloud SQL {db.tier}",
        f"backups ({db.retained_backups} retained, incremental) + PITR logs",
        used,
        "cloud_sql.backup_storage",
        note="about the data's size; grows with churn and log_retention_days",
    )

    # --- cluster and inference (GKE) ---------------------------------------------------------------
    if gke:
        fee = lines.add("cluster", "GKE Autopilot cluster", "cluster management fee", hours, "gke.cluster_fee")
        if w.free_tier:
            credit = min(fee, prices.usd("gke.free_tier_credit"))
            lines.add_usd(
                "cluster",
                "GKE Autopilot cluster",
                "free tier credit (one cluster per billing account)",
                1,
                "credit",
                -credit,
                "gke.free_tier_credit",
                prices.price("gke.free_tier_credit").confirmed,
            )
        # Autopilot bills a GPU Pod by the node it runs on (the Accelerator compute class), not by
        # its requests: "GKE Autopilot Pods are priced based on the nodes where the Pods are
        # scheduled" (cloud.google.com/kubernetes-engine/docs/concepts/autopilot-compute-classes#pricing);
        # only clusters before 1.28.9-gke.1069000 bill GPU Pods "for the resource requests"
        # (cloud.google.com/kubernetes-engine/docs/how-to/autopilot-gpus#pricing). So each replica
        # costs the whole machine it needs, plus a premium whose figure is unconfirmed (the table's
        # gke.autopilot_gpu_premium).
        try:
            machine_name, machine = gpu_machine(prices, gke.gpu_type, gke.gpu_count, gke.cpu, gke.memory)
        except PriceError as err:
            raise PriceError(
                str(err), key=f"inference.gke.gpu_type = {gke.gpu_type!r}, gpu_count = {gke.gpu_count}"
            ) from None
        smallest = prices.machines_for(gke.gpu_type, gke.gpu_count)[0][0]
        if machine_name != smallest:
            warnings.append(
                f"inference.gke.cpu = {gke.cpu}, memory = {gke.memory!r}: Autopilot places each replica on a "
                f"{machine_name} (the Pod asks for more than a smaller machine can give after the node's own reservations)"
            )
        lines.add_usd(
            "inference",
            f"vLLM {gke.model.split('/')[-1]}",
            f"GPU node {machine_name} ({machine.gpus} x {gke.gpu_type}) x {replicas:g} replica(s)",
            replicas * hours,
            "hour",
            machine.usd,
            f"machines.{machine_name}",
            machine.confirmed,
            note="Autopilot Accelerator class: billed by node; any Autopilot premium not included",
        )
        premium = prices.usd("gke.autopilot_gpu_premium")
        if not premium:
            warnings.append(
                "gke.autopilot_gpu_premium is 0 in the price table (no figure could be confirmed): the GPU nodes "
                "are priced at Compute Engine rates, without Autopilot's premium on them"
            )
        else:
            lines.add(
                "inference",
                f"vLLM {gke.model.split('/')[-1]}",
                "Autopilot premium on GPU nodes",
                replicas * hours * machine.usd,
                "gke.autopilot_gpu_premium",
            )
        if gke.weights == "pvc":
            lines.add(
                "inference",
                "model cache PVC (premium-rwo)",
                f"{gke.weights_volume_size} SSD PD",
                memory_gib(gke.weights_volume_size),
                "storage.pd_ssd",
            )
        else:
            weights = MODELS[gke.model].weights_gb / 1.073741824
            lines.add(
                "inference",
                f"weights bucket gs://{gke.weights_bucket}",
                f"{weights:.1f} GiB of weights (staged by you)",
                weights,
                "storage.gcs_standard_regional",
                note="the bucket is not created by the stacks",
            )
        lines.add(
            "inference", "internal passthrough load balancer", "forwarding rule", hours, "network.forwarding_rule"
        )
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

    # --- workers (batch jobs), when enabled -------------------------------------------------------
    if env.workers.enabled:
        workers = env.workers
        # A Standard cluster pays the same management fee as an Autopilot one; the free tier's
        # credit covers one cluster per billing account, already counted above.
        lines.add("workers", "GKE Standard cluster (workers)", "cluster management fee", hours, "gke.cluster_fee")
        pool = workers.on_demand_pool
        lines.unpriced(
            "workers",
            f"on-demand pool: {pool.min_nodes} to {pool.max_nodes} x {pool.machine_type}",
            f"no {pool.machine_type} price in the table; at least {pool.min_nodes} node(s) run all month",
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
            f"batch files bucket gs://{env.names.batch_bucket}",
            f"usage-based: the batch files' volume, each kept {workers.bucket_lifecycle_days} days "
            "(storage.gcs_standard_regional per GiB-month)",
        )

    # --- services ---------------------------------------------------------------------------------
    s = env.services
    cloud_run_service(
        lines, "services", f"Cloud Run {env.names.service['frontend']}", s.frontend, w.pages_per_day, 0.1, free
    )
    for role in ("gateway", "orchestrator"):
        cloud_run_service(
            lines,
            "services",
            f"Cloud Run {env.names.service[role]}",
            getattr(s, role),
            w.requests_per_day,
            w.request_seconds,
            free,
        )
    if env.inference.placement == "cloud_run":
        gpu = env.inference.cloud_run_server
        seconds_each = w.output_tokens / w.stream_tokens_per_second
        cloud_run_service(
            lines, "services", f"Cloud Run {env.names.service['inference']} (L4)", gpu, w.requests_per_day, seconds_each
        )
    egress_gb = w.requests_per_day * month_days * w.egress_kb_per_request / 1e6
    lines.add(
        "services",
        "internet egress (replies, pages)",
        "Premium Tier, North America",
        egress_gb,
        "network.internet_egress",
    )
    lines.items.append(
        LineItem(
            env.stack_id("services"),
            f"Cloud Run job {env.names.database_bootstrap}",
            "runs once",
            None,
            "",
            0.0,
            note="a few seconds once per deploy",
        )
    )
    lines.unpriced(
        "services",
        "Secret Manager secrets, Identity Platform sign-ins",
        "usage-based; not in the table (Identity Platform's first 50K MAU are free)",
    )
    lines.unpriced("services", "Vertex AI calls routed by the orchestrator", "per token; see the unit economics below")

    result = Estimate(
        environment=env.name,
        source=source,
        region=env.region,
        prices_checked=prices.table.checked,
        prices_file=str(prices.path.name),
        items=lines.items,
        assumptions=w.assumptions(env),
        warnings=warnings,
        budget_usd=env.budget.amount_usd if env.budget else None,
    )
    result.unit_economics = unit_economics(env, prices, w, result)
    return result


def unit_economics(env: Environment, prices: PriceTable, w: Workload, est: Estimate) -> dict[str, Any]:
    """Self-hosted serving beside Vertex AI and an external API: per request, per 1K tokens, break-even."""
    month_days = prices.hours_per_month / HOURS_PER_DAY
    monthly_requests = w.requests_per_day * month_days
    tokens = w.input_tokens + w.output_tokens
    if env.inference.placement == "gke":
        serving = est.subtotal((env.stack_id("cluster"), env.stack_id("inference")))
        what = "GKE cluster + inference stacks"
    else:
        serving = round(sum(i.monthly_usd or 0 for i in est.items if "(L4)" in i.resource), 2)
        what = "the Cloud Run GPU service"

    def api(name: str) -> dict[str, Any]:
        price = prices.api(name)
        per_request = (w.input_tokens * price.input_usd + w.output_tokens * price.output_usd) / 1e6
        return {
            "name": name,
            "per_request_usd": per_request,
            "per_1k_tokens_usd": per_request / tokens * 1000,
            "monthly_usd": per_request * monthly_requests,
            # The volume at which the self-hosted monthly cost equals this API's bill.
            "break_even_requests_per_day": serving / (per_request * month_days) if per_request else None,
            "source": price.source,
            "confirmed": price.confirmed,
        }

    out: dict[str, Any] = {
        "self_hosted": {
            "covers": what,
            "monthly_usd": serving,
            "per_request_usd": serving / monthly_requests if monthly_requests else None,
            "per_1k_tokens_usd": serving / (monthly_requests * tokens) * 1000 if monthly_requests else None,
        },
        "vertex": api(w.vertex_api),
        "external": api(w.external_api),
        "requests_per_day": w.requests_per_day,
        "tokens_per_request": tokens,
    }
    if env.inference.placement == "gke":
        gke = env.inference.gke_server
        capacity = gke.max_replicas * w.replica_tokens_per_second * 86_400 / w.peak_to_average / w.output_tokens
        out["self_hosted"]["max_requests_per_day"] = capacity
    return out
