"""One Cloud Run service's monthly cost from its settings and the requests it serves."""

from __future__ import annotations

import math
from typing import Literal

from analysis.cost.lines import Lines
from hybrid.config import CloudRunSizing, GpuServiceSizing, memory_gib

HOURS_PER_DAY = 24
FREE_TIER_KEYS = ("request_cpu", "request_memory", "instance_cpu", "instance_memory", "requests")


def busy_instances(arrivals_per_second: float, seconds_each: float, concurrency: int) -> float:
    """Average number of busy Cloud Run instances.

    C = arrivals x duration requests are in flight on average (Little's law); with Poisson
    arrivals the first instance is busy 1 - e^-C of the time, and beyond one instance about
    C / concurrency instances are needed.
    """
    in_flight = arrivals_per_second * seconds_each
    return max(1 - math.exp(-in_flight), in_flight / concurrency)


def free_tier(lines: Lines) -> dict[str, float]:
    """The Cloud Run free tier, shared by the environment's services as they take from it."""
    return {key: lines.prices.free_tier(f"cloud_run_{key}").amount for key in FREE_TIER_KEYS}


def cloud_run_service(
    lines: Lines,
    layer: str,
    resource: str,
    settings: CloudRunSizing,
    arrivals_per_day: float,
    seconds_each: float,
    free: dict[str, float] | None = None,
) -> float:
    """CPU, memory (and requests, idle minimum instances) of one Cloud Run service."""
    busy = busy_instances(arrivals_per_day / 86_400, seconds_each, settings.concurrency)
    if settings.cpu_always_allocated:
        return _instance_based(lines, layer, resource, settings, busy, free)
    return _request_based(lines, layer, resource, settings, busy, arrivals_per_day, free)


def _instance_based(
    lines: Lines, layer: str, resource: str, settings: CloudRunSizing, busy: float, free: dict[str, float] | None
) -> float:
    """Every second of each instance's life, no request fee."""
    instances = max(settings.min_instances, busy)
    seconds = instances * lines.prices.seconds_per_month
    total = _cpu_and_memory(lines, layer, resource, settings, seconds, f"{instances:.2f}", "instance", free)
    if isinstance(settings, GpuServiceSizing):
        key = "cloud_run.gpu_l4_zonal_redundancy" if settings.zonal_redundancy else "cloud_run.gpu_l4"
        total += lines.add(
            layer, resource, f"GPU ({instances:.2f} x {settings.gpu_type})", seconds * settings.gpus, key
        )
    return total


def _request_based(
    lines: Lines,
    layer: str,
    resource: str,
    settings: CloudRunSizing,
    busy: float,
    arrivals_per_day: float,
    free: dict[str, float] | None,
) -> float:
    """Busy time at the active rate, idle minimum instances at the idle rate, and a fee per request."""
    month_s = lines.prices.seconds_per_month
    total = _cpu_and_memory(lines, layer, resource, settings, busy * month_s, f"{busy:.3f}", "request", free)
    requests_m = arrivals_per_day * lines.prices.hours_per_month / HOURS_PER_DAY / 1e6
    total += lines.add(layer, resource, "requests", _after_free(requests_m, free, "requests"), "cloud_run.requests")
    idle = max(0.0, settings.min_instances - busy) * month_s
    if idle:
        cpu, mem = settings.cpu, memory_gib(settings.memory)
        label = f"idle minimum instances ({settings.min_instances} x"
        total += lines.add(layer, resource, f"{label} {cpu} vCPU)", idle * cpu, "cloud_run.request_idle_cpu")
        total += lines.add(layer, resource, f"{label} {settings.memory})", idle * mem, "cloud_run.request_idle_memory")
    return total


def _cpu_and_memory(
    lines: Lines,
    layer: str,
    resource: str,
    settings: CloudRunSizing,
    seconds: float,
    count: str,
    billing: Literal["instance", "request"],
    free: dict[str, float] | None,
) -> float:
    """CPU and memory for ``seconds`` of instance time (``count`` instances, as the lines say),
    billed ``billing``-based: "instance" (all of each instance's life) or "request" (busy time)."""
    cpu, mem = settings.cpu, memory_gib(settings.memory)
    busy = "busy " if billing == "request" else ""
    total = lines.add(
        layer,
        resource,
        f"CPU ({count} {busy}instance(s) x {cpu} vCPU, {billing}-based)",
        _after_free(seconds * cpu, free, f"{billing}_cpu"),
        f"cloud_run.{billing}_cpu",
    )
    total += lines.add(
        layer,
        resource,
        f"memory ({count} x {settings.memory})",
        _after_free(seconds * mem, free, f"{billing}_memory"),
        f"cloud_run.{billing}_memory",
    )
    return total


def _after_free(quantity: float, free: dict[str, float] | None, key: str) -> float:
    """Take the free tier (shared by the environment's services) off a quantity, if asked."""
    if free is None or key not in free:
        return quantity
    used = min(quantity, free[key])
    free[key] -= used
    return quantity - used
