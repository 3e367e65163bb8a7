"""Typed, immutable settings for one environment, loaded from environments/<env>.toml.

Everything GCP would refuse at deploy time is refused here, at synth time, with a
message naming the file, the key and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import typing
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator

from hybrid.cloud_run_settings import ServicesSettings
from hybrid.errors import ConfigError
from hybrid.inference_settings import InferenceSettings
from hybrid.validation import Cidr, Settings, between, invalid, ipv4_network, matching

# cloud.google.com/resource-manager/docs/creating-managing-projects: 6-30 chars,
# lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen.
ProjectId = Annotated[
    str,
    matching(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", "6-30 lowercase letters, digits or hyphens, starting with a letter"),
]
Region = Annotated[str, matching(r"[a-z]+-[a-z]+[0-9]+", "a GCP region like europe-west1 or us-central1")]
# cloud.google.com/storage/docs/buckets#naming (names without dots).
BucketName = Annotated[
    str,
    matching(r"[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]", "a GCS bucket name: 3-63 lowercase letters, digits, '-' or '_'"),
]
# Prefixes every resource name; how long it may be depends on the names (see ResourceNames).
EnvName = Annotated[
    str,
    matching(r"[a-z]([a-z0-9-]{0,28}[a-z0-9])?", "1-30 lowercase letters, digits or hyphens, starting with a letter"),
]
# cloud.google.com/resource-manager/docs/labels-overview#requirements
# GCP allows '-' in keys too, but cdktf rewrites '-' to '_' in provider blocks (measured),
# where these labels go as default_labels: refuse it rather than deploy other keys.
LabelKey = Annotated[str, matching(r"[a-z][a-z0-9_]{0,62}", "a label key: 1-63 lowercase letters, digits or '_'")]
LabelValue = Annotated[str, matching(r"[a-z0-9_-]{0,63}", "a label value: 0-63 lowercase letters, digits, '_' or '-'")]
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


class StateSettings(Settings):
    bucket: BucketName


class NetworkSettings(Settings):
    subnet_cidr: Cidr
    pods_cidr: Cidr
    services_cidr: Cidr
    psa_cidr: Cidr
    inference_port: Annotated[int, between(1, 65535)] = 8000
    # The internal load balancer's address in subnet_cidr: the orchestrator's way to the models.
    inference_address: str
    # The Cloud Run services' own subnet: they send private traffic into the VPC from it
    # with Direct VPC egress (see the README's "Network paths" for why not a connector).
    run_cidr: Cidr

    def ranges(self) -> dict[str, ipaddress.IPv4Network]:
        return {
            "network.subnet_cidr": ipv4_network(self.subnet_cidr),
            "network.pods_cidr": ipv4_network(self.pods_cidr),
            "network.services_cidr": ipv4_network(self.services_cidr),
            "network.psa_cidr": ipv4_network(self.psa_cidr),
            "network.run_cidr": ipv4_network(self.run_cidr),
        }

    @model_validator(mode="after")
    def _sizes(self) -> NetworkSettings:
        # cloud.google.com/vpc/docs/configure-private-services-access: at least a /24.
        if ipv4_network(self.psa_cidr).prefixlen > 24:
            raise invalid("psa_cidr", "must be a /24 or larger for Private Services Access")
        # cloud.google.com/run/docs/configuring/vpc-direct-vpc#direct-vpc-ip-allocation: /26 or larger.
        if ipv4_network(self.run_cidr).prefixlen > 26:
            raise invalid("run_cidr", "must be a /26 or larger for Cloud Run's Direct VPC egress")
        subnet = ipv4_network(self.subnet_cidr)
        # A subnet's first two and last two addresses are reserved
        # (cloud.google.com/vpc/docs/subnets#unusable-ip-addresses-in-every-subnet).
        usable = list(subnet.hosts())[1:-1] if subnet.num_addresses > 4 else []
        try:
            address = ipaddress.IPv4Address(self.inference_address)
        except ValueError:
            raise invalid("inference_address", "must be an IPv4 address") from None
        if not usable or not usable[0] <= address <= usable[-1]:
            raise invalid("inference_address", f"must be a usable address of subnet_cidr ({subnet})")
        return self


class ClusterSettings(Settings):
    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = "REGULAR"
    deletion_protection: bool
    # "dns": the control plane's DNS endpoint, reached with IAM from anywhere (a CI runner);
    # "authorized_networks": its IP endpoint, reachable only from authorized_networks.
    control_plane_access: Literal["dns", "authorized_networks"] = "dns"
    authorized_networks: list[Cidr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _access(self) -> ClusterSettings:
        if (self.control_plane_access == "authorized_networks") != bool(self.authorized_networks):
            raise invalid(
                "authorized_networks", "must be given exactly when control_plane_access is 'authorized_networks'"
            )
        return self


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


# cloud.google.com/billing/docs/how-to/manage-billing-account: a billing account id is three
# groups of six hexadecimal digits.
BillingAccount = Annotated[
    str, matching(r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}", "a billing account id like 012345-6789AB-CDEF01")
]
Email = Annotated[str, matching(r"[^@\s]+@[^@\s]+\.[^@\s]+", "an email address")]


class BudgetSettings(Settings):
    """A Cloud Billing budget on the environment's project, with alerts by email."""

    billing_account: BillingAccount
    amount_usd: Annotated[int, between(1, 10_000_000)]
    # Fractions of the amount that alert, e.g. 0.5 = 50% (the budget API's threshold_percent).
    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.9, 1.0], min_length=1)
    # CURRENT_SPEND alerts on what was spent; FORECASTED_SPEND on what the month is heading to.
    spend_basis: Literal["CURRENT_SPEND", "FORECASTED_SPEND"] = "CURRENT_SPEND"
    notification_emails: list[Email] = Field(min_length=1)

    @model_validator(mode="after")
    def _thresholds(self) -> BudgetSettings:
        if any(not 0 < t <= 10 for t in self.thresholds) or sorted(set(self.thresholds)) != self.thresholds:
            raise invalid("thresholds", "must be distinct fractions of the amount in increasing order, each in (0, 10]")
        return self


class Environment(Settings):
    name: EnvName
    project_id: ProjectId
    region: Region
    # A resource holds at most 64 labels (cloud.google.com/resource-manager/docs/labels-overview);
    # the stacks add "layer" and the provider adds "goog-terraform-provisioned".
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=62)
    state: StateSettings
    network: NetworkSettings
    database: DatabaseSettings
    cluster: ClusterSettings
    services: ServicesSettings
    inference: InferenceSettings
    # Optional: a budget with alerts, made in the network layer (deployed first).
    budget: BudgetSettings | None = None

    @model_validator(mode="after")
    def _no_overlaps(self) -> Environment:
        ranges = list(self.network.ranges().items())
        for i, (key_a, net_a) in enumerate(ranges):
            for key_b, net_b in ranges[i + 1 :]:
                if net_a.overlaps(net_b):
                    raise invalid(key_b, f"overlaps {key_a} ({net_a}); every range must be distinct")
        return self

    @model_validator(mode="after")
    def _run_subnet_fits(self) -> Environment:
        # Direct VPC egress holds about two addresses per instance in the steady state
        # (cloud.google.com/run/docs/configuring/vpc-direct-vpc#direct-vpc-ip-allocation); the
        # gateway and the orchestrator are the services in the VPC.
        needed = 2 * (self.services.gateway.max_instances + self.services.orchestrator.max_instances)
        subnet = ipv4_network(self.network.run_cidr)
        usable = subnet.num_addresses - 4  # cloud.google.com/vpc/docs/subnets#unusable-ip-addresses-in-every-subnet
        if usable < needed:
            raise invalid(
                "network.run_cidr",
                f"has {usable} usable addresses; the gateway's and orchestrator's max_instances need {needed} (two per instance)",
            )
        return self

    @model_validator(mode="after")
    def _names_fit(self) -> Environment:
        names = self.names
        for key, (value, pattern, rule) in names.rules().items():
            if not re.fullmatch(pattern, value):
                raise invalid("name", f"makes the {key} name {value!r} ({len(value)} chars); GCP allows {rule}")
        # cloud.google.com/sql/docs/postgres/create-instance: project-ID:instance-ID <= 98 chars.
        if len(self.project_id) + 1 + len(names.sql_instance) > 98:
            raise invalid("project_id", "with the instance name it exceeds Cloud SQL's 98 characters")
        return self

    @cached_property
    def names(self) -> ResourceNames:
        return ResourceNames(self.name)

    def stack_id(self, layer: str) -> str:
        return f"{self.name}-{layer}"


_RFC1035 = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"


class ResourceNames:
    """GCP resource names derived from the environment name, and the rules GCP holds them to."""

    def __init__(self, env: str) -> None:
        self.network = f"{env}-vpc"
        self.subnet = f"{env}-workloads"
        self.run_subnet = f"{env}-cloud-run"
        # A network tag per workload on the Cloud Run subnet, for egress firewall rules: only the
        # orchestrator may send to the model servers, only it and the bootstrap job to Cloud SQL.
        self.run_tag = {role: f"{env}-run-{role}" for role in ("gateway", "orchestrator", "db-bootstrap")}
        self.psa_range = f"{env}-psa"
        self.router = f"{env}-router"
        self.nat = f"{env}-nat"
        self.sql_instance = f"{env}-postgres"
        self.cluster = f"{env}-models"
        self.inference_address = f"{env}-inference-lb"
        self.node_account = f"{env}-gke-nodes"
        self.model_server_account = f"{env}-vllm"
        self.metrics_adapter_account = f"{env}-metrics-adapter"
        self.run_app_zone = f"{env}-run-app"
        self.registry = f"{env}-services"
        self.database_bootstrap = f"{env}-db-bootstrap"
        # The built-in admin's password, set and stored by the operator once (README).
        self.database_admin_secret = f"{env}-postgres-admin-password"
        self.service = {role: f"{env}-{role}" for role in ("frontend", "gateway", "orchestrator", "inference")}
        self.orchestrator_account = self.service["orchestrator"]

    def rules(self) -> dict[str, tuple[str, str, str]]:
        rfc = "1-63 lowercase letters, digits and hyphens, starting with a letter"
        return {
            "VPC network": (self.network, _RFC1035, rfc),
            "subnet": (self.subnet, _RFC1035, rfc),
            "Cloud Run subnet": (self.run_subnet, _RFC1035, rfc),
            **{f"{role} network tag": (tag, _RFC1035, rfc) for role, tag in self.run_tag.items()},
            "Cloud Router": (self.router, _RFC1035, rfc),
            "Cloud NAT": (self.nat, _RFC1035, rfc),
            "Cloud SQL instance": (self.sql_instance, _RFC1035, rfc),
            "Cloud DNS zone": (self.run_app_zone, _RFC1035, rfc),
            # cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters: 40 chars.
            "GKE cluster": (self.cluster, r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", "at most 40 characters"),
            "internal address": (self.inference_address, _RFC1035, rfc),
            **{
                f"{role} service account": (name, r"[a-z][-a-z0-9]{4,28}[a-z0-9]", "6-30 characters")
                for role, name in (
                    ("GKE node", self.node_account),
                    ("model server", self.model_server_account),
                    ("metrics adapter", self.metrics_adapter_account),
                )
            },
            "Artifact Registry repository": (self.registry, _RFC1035, rfc),
            "database bootstrap job and service account": (
                self.database_bootstrap,
                r"[a-z][-a-z0-9]{4,28}[a-z0-9]",
                "6-30 characters",
            ),
            # cloud.google.com/run/docs/deploying#service: at most 49 characters.
            **{
                f"Cloud Run service {role}": (name, r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?", "at most 49 characters")
                for role, name in self.service.items()
            },
            # cloud.google.com/iam/docs/service-accounts-create: 6-30 characters.
            **{
                f"{role} service account": (name, r"[a-z][-a-z0-9]{4,28}[a-z0-9]", "6-30 characters")
                for role, name in self.service.items()
            },
        }


def load_environment(path: Path) -> Environment:
    """Read and validate one environment file; raise ConfigError listing every problem."""
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise ConfigError(path, [f"cannot be read: {err}"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, [f"not valid TOML: {err}"]) from None
    try:
        env = Environment.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(path, list(_describe(err))) from None
    from hybrid.service_contract import ContractError, Wiring, service_settings  # builds on this module

    try:
        service_settings(env, Wiring.placeholder(env))
    except ContractError as err:
        raise ConfigError(path, err.problems) from None
    return env


def _describe(err: ValidationError) -> Iterator[str]:
    for problem in err.errors():
        inner = (problem.get("ctx") or {}).get("key")
        loc = tuple(str(part) for part in problem["loc"]) + (tuple(inner.split(".")) if inner else ())
        key = ".".join(loc)
        if loc[-1:] == ("[key]",):  # a bad key of a table such as labels
            yield f"{'.'.join(loc[:-2])}: key {loc[-2]!r}: {problem['msg'].removeprefix('Value error, ')}"
        elif problem["type"] == "extra_forbidden":
            yield f"{key}: unknown key; allowed here: {', '.join(_allowed_keys(loc[:-1]))}"
        elif problem["type"] == "missing":
            yield f"{key}: required key is missing"
        else:
            value = _lookup(problem["input"], inner.split(".")) if inner else problem["input"]
            shown = "" if value is None else f" = {value!r}"
            yield f"{key}{shown}: {problem['msg'].removeprefix('Value error, ')}"


def _lookup(data: Any, path: list[str]) -> Any:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = Environment
    for part in loc:
        field = model.model_fields.get(part)
        # The settings model of this table, also when it is optional (``X | None``).
        candidates = (field.annotation, *typing.get_args(field.annotation)) if field else ()
        nested = [t for t in candidates if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def load_environments(paths: list[Path]) -> list[Environment]:
    """Load every file; report all broken files together, and clashing environment names."""
    loaded, problems = [], []
    for path in paths:
        try:
            loaded.append((path, load_environment(path)))
        except ConfigError as err:
            problems.append(err)
    if problems:
        raise ConfigError.combine(problems)
    seen: dict[str, Path] = {}
    for path, env in loaded:
        if env.name in seen:
            raise ConfigError(path, [f"name = {env.name!r}: already used by {seen[env.name]}; names must be unique"])
        seen[env.name] = path
    return [env for _, env in loaded]
