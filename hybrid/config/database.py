"""Typed settings for the Cloud SQL for PostgreSQL instance the orchestrator keeps its state in."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator

from hybrid.config.regions import Region
from hybrid.config.validation import Settings, between, matching

PgIdentifier = Annotated[str, matching(r"[a-z_][a-z0-9_]{0,62}", "a PostgreSQL identifier: lowercase, digits, '_'")]
ClockTime = Annotated[str, matching(r"([01][0-9]|2[0-3]):[0-5][0-9]", "a UTC time HH:MM")]

# cloud.google.com/sql/docs/postgres/instance-settings#machine-type-2ndgen:
# shared-core tiers, or db-custom-<vCPUs>-<MiB> with 1 or an even number of vCPUs up
# to 96, 0.9-6.5 GiB per vCPU, in multiples of 256 MiB, at least 3.75 GiB.
_SHARED_CORE_TIERS = ("db-f1-micro", "db-g1-small")
_CUSTOM_TIER = re.compile(r"db-custom-(\d+)-(\d+)")


def _check_tier(tier: str) -> str:
    if tier in _SHARED_CORE_TIERS:
        return tier
    match = _CUSTOM_TIER.fullmatch(tier)
    if not match:
        raise ValueError(f"must be {' or '.join(_SHARED_CORE_TIERS)} or db-custom-<vCPUs>-<memory MiB>")
    cpus, mib = int(match[1]), int(match[2])
    if cpus != 1 and (cpus % 2 or not 2 <= cpus <= 96):
        raise ValueError("must have 1 or an even number of vCPUs up to 96")
    if mib % 256 or mib < 3840 or not 0.9 * 1024 * cpus <= mib <= 6.5 * 1024 * cpus:
        raise ValueError(
            f"must have a multiple of 256 MiB, at least 3840 MiB, and 0.9-6.5 GiB per vCPU "
            f"({int(0.9 * 1024 * cpus)}-{int(6.5 * 1024 * cpus)} MiB for {cpus} vCPUs)"
        )
    return tier


class DatabaseSettings(Settings):
    version: Literal["POSTGRES_14", "POSTGRES_15", "POSTGRES_16", "POSTGRES_17"] = "POSTGRES_16"
    tier: Annotated[str, AfterValidator(_check_tier)]
    availability: Literal["ZONAL", "REGIONAL"]
    # cloud.google.com/sql/docs/postgres/instance-settings: 10 GB to 64 TB.
    disk_size_gb: Annotated[int, between(10, 65536)] = 20
    deletion_protection: bool
    backup_start_time: ClockTime = "03:00"
    # cloud.google.com/sql/docs/postgres/backup-recovery/backups: 1-365 retained backups.
    retained_backups: Annotated[int, between(1, 365)] = 7
    # Enterprise edition keeps 1-7 days of transaction logs for point-in-time recovery
    # (cloud.google.com/sql/docs/postgres/backup-recovery/pitr).
    log_retention_days: Annotated[int, between(1, 7)] = 7
    # Day 1 (Monday) to 7 (Sunday), hour 0-23 UTC (cloud.google.com/sql/docs/postgres/set-maintenance-window).
    maintenance_day: Annotated[int, between(1, 7)] = 7
    maintenance_hour: Annotated[int, between(0, 23)] = 3
    database_name: PgIdentifier = "orchestrator"
    # A cross-region read replica for disaster recovery, promoted by hand if the primary's region
    # fails (docs/disaster-recovery.md; cloud.google.com/sql/docs/postgres/replication/cross-region-replicas).
    replica_region: Region | None = None
