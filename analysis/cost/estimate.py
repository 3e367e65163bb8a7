"""A monthly cost estimate of one environment, per stack and resource, from its typed settings.

What it reads is what the stacks build (hybrid/config's Environment), priced from the
region's table (analysis/cost/prices/<region>.toml), one function per layer
(analysis/cost/layers.py). What depends on traffic comes from a ``Workload`` (the
environment's [traffic], then defaults), every value printed as an assumption. Things the
table cannot price are listed as "not priced" with the reason, never as a silent $0.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from analysis.cost import layers
from analysis.cost.cloud_run import HOURS_PER_DAY, free_tier
from analysis.cost.ladder import rung_costs
from analysis.cost.lines import Estimate, Lines
from analysis.cost.prices import PriceError, PriceTable, retirement_warning
from analysis.cost.workload import Workload, workload_for
from hybrid.alerting import condition_count
from hybrid.config import Environment
from hybrid.topology import for_environment


def estimate(
    env: Environment,
    prices: PriceTable,
    workload: Workload | None = None,
    source: str = "",
    today: date | None = None,
) -> Estimate:
    if prices.region != env.region:
        raise PriceError(f"region = {env.region!r}: the price table given is for {prices.region!r}")
    w = workload or workload_for(env)
    lines = Lines(env, prices)
    gke = env.inference.placement == "gke"
    replicas = layers.gke_replicas(lines, w) if gke else 0.0
    layers.network(lines, w, replicas)
    layers.registry(lines, w)
    layers.database(lines, w)
    layers.redis(lines)
    if gke:
        layers.cluster(lines, w)
        layers.inference_gke(lines, w, replicas)
    layers.workers(lines)
    layers.services(lines, w, free_tier(lines) if w.free_tier else None)
    layers.edge(lines, w)
    # The scrape targets: each Cloud Run service's instance (at least one while serving) and each model server.
    targets = len(for_environment(env).cloud_run_services()) + round(replicas)
    layers.observability(lines, w, condition_count(env) if env.slo else 0, targets)
    layers.analytics(lines, w)
    for name in (w.vertex_api, w.external_api):
        warning = retirement_warning(name, prices.api(name), today or date.today())
        if warning:
            lines.warnings.append(warning)
    result = Estimate(
        environment=env.name,
        source=source,
        region=env.region,
        prices_checked=prices.table.checked,
        prices_file=str(prices.path.name),
        items=lines.items,
        assumptions=w.assumptions(env),
        warnings=lines.warnings,
        budget_usd=env.budget.amount_usd if env.budget else None,
    )
    result.unit_economics = unit_economics(env, prices, w, result)
    if gke and env.inference.gke_server.obtain:
        gke_server = env.inference.gke_server
        on_demand = layers.gpu_node_usd(lines)
        result.ladder = rung_costs(prices, list(gke_server.obtain), gke_server.gpu_type, on_demand)
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
            "source_kind": price.source_kind,
            "retires": None if price.retires is None else price.retires.isoformat(),
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
