"""Typed settings for the Cloud Run tier: the three services and a Cloud Run GPU model server.

Another Cloud Run service of the topology (hybrid/topology.py) has no field of its own: its
``[services.<name>]`` table, if any, is a CloudRunSizing, and without one it runs with
CloudRunSizing's defaults (CloudRunServices.sizing).

Defaults are the reference architecture's production values (docs/reference-architecture.md);
each service overrides what it needs.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from hybrid import topology
from hybrid.config.validation import Settings, between, invalid, matching

# cloud.google.com/run/docs/configuring/services/cpu: whole CPUs 1, 2, 4, 6 or 8, and the
# memory each allows (4 CPUs need >= 2 GiB, 6 and 8 need >= 4 GiB; at most 4 GiB per CPU).
CPU_MEMORY_GIB = {1: (0.5, 4), 2: (0.5, 8), 4: (2, 16), 6: (4, 24), 8: (4, 32)}
# cloud.google.com/run/docs/configuring/services/gpu: an L4 instance needs >= 4 CPUs, >= 16 GiB.
GPU_MIN_CPU, GPU_MIN_MEMORY_GIB = 4, 16

_MEMORY = re.compile(r"(\d+)(Mi|Gi)")


def memory_gib(value: str) -> float:
    match = _MEMORY.fullmatch(value)
    if match is None:
        raise ValueError(f"memory {value!r}: must be a whole number of Mi or Gi, like 512Mi or 2Gi")
    number, unit = match.groups()
    return int(number) / (1024 if unit == "Mi" else 1)


Memory = Annotated[str, matching(r"\d+(Mi|Gi)", "a memory size like 512Mi or 8Gi")]
ImageRef = Annotated[
    str,
    matching(
        r"[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]{1,128}|@sha256:[a-f0-9]{64})",
        "a container image with a tag or digest, like REGION-docker.pkg.dev/PROJECT/REPO/NAME:TAG",
    ),
]
ImageTag = Annotated[str, matching(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", "a Docker tag (1-128 characters)")]


# Set by Cloud Run itself (cloud.google.com/run/docs/container-contract#env-vars).
CLOUD_RUN_SETS = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")


def _not_reserved(name: str) -> str:
    if name in CLOUD_RUN_SETS:
        raise ValueError(f"must not be one Cloud Run sets itself ({', '.join(CLOUD_RUN_SETS)})")
    return name


EnvVarName = Annotated[
    str, matching(r"[A-Z_][A-Z0-9_]*", "an environment variable name in upper case"), AfterValidator(_not_reserved)
]
# cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/create: secret ids.
SecretId = Annotated[str, matching(r"[A-Za-z0-9_-]{1,255}", "a Secret Manager secret id")]
IamPrincipal = Annotated[
    str, matching(r"(user|group|serviceAccount|domain):\S+", "an IAM principal like group:team@example.com")
]
Ingress = Literal["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"]


class CloudRunSizing(Settings):
    image: ImageRef | None = None  # default: <env registry>/<service>:<services.image_tag>
    cpu: Literal[1, 2, 4, 6, 8] = 4
    memory: Memory = "8Gi"
    min_instances: Annotated[int, between(0, 1000)] = 1
    max_instances: Annotated[int, between(1, 1000)] = 100
    # cloud.google.com/run/docs/about-concurrency: at most 1000 requests per instance.
    concurrency: Annotated[int, between(1, 1000)] = 80
    # cloud.google.com/run/docs/configuring/request-timeout: at most 60 minutes.
    timeout_seconds: Annotated[int, between(1, 3600)] = 300
    cpu_always_allocated: bool = True
    startup_cpu_boost: bool = True
    ingress: Ingress = "INGRESS_TRAFFIC_ALL"
    env: dict[EnvVarName, str] = Field(default_factory=dict)
    # Environment variable -> existing Secret Manager secret id; the value never enters config.
    secrets: dict[EnvVarName, SecretId] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> CloudRunSizing:
        low, high = CPU_MEMORY_GIB[self.cpu]
        if not low <= memory_gib(self.memory) <= high:
            raise invalid("memory", f"must be {_gib(low)} to {_gib(high)} with {self.cpu} CPU")
        if self.min_instances > self.max_instances:
            raise invalid("min_instances", f"must not exceed max_instances ({self.max_instances})")
        if clash := sorted(set(self.env) & set(self.secrets)):
            raise invalid("secrets", f"must not repeat variables of env ({clash}): a variable comes from one place")
        return self


def _gib(value: float) -> str:
    return f"{int(value * 1024)}Mi" if value < 1 else f"{int(value)}Gi"


class FrontendSizing(CloudRunSizing):
    # "public": anyone may invoke (allUsers); "iap": only principals in iap_members, via IAP.
    access: Literal["public", "iap"] = "public"
    # The model the chat page asks for; by default the self-hosted one.
    default_model: (
        Annotated[str, matching(r"[\w.-]+(/[\w.:-]+)?", "a model name like google/gemini-2.5-flash")] | None
    ) = None


# Identity Platform (Firebase Auth) ID tokens are signed by these keys
# (firebase.google.com/docs/auth/admin/verify-id-tokens#verify_id_tokens_using_a_third-party_jwt_library).
SECURETOKEN_JWKS = "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"


class GatewaySizing(CloudRunSizing):
    """Whose sign-ins the gateway accepts: by default Identity Platform of the environment's project."""

    jwks_url: Annotated[str, matching(r"https://\S+", "an https:// URL of a JSON Web Key Set")] = SECURETOKEN_JWKS
    jwt_issuer: Annotated[str, matching(r"https://\S+", "an https:// issuer URL")] | None = None
    jwt_audience: Annotated[str, matching(r"\S+", "a non-empty audience")] | None = None


class OrchestratorSizing(CloudRunSizing):
    ingress: Ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"

    @model_validator(mode="after")
    def _internal(self) -> OrchestratorSizing:
        if self.ingress != "INGRESS_TRAFFIC_INTERNAL_ONLY":
            raise invalid(
                "ingress", "must be INGRESS_TRAFFIC_INTERNAL_ONLY: only the gateway may reach the orchestrator"
            )
        return self


class GpuServiceSizing(CloudRunSizing):
    """An OpenAI-compatible model server on a Cloud Run L4 GPU (the reference architecture: 0 to 5 instances)."""

    cpu: Literal[1, 2, 4, 6, 8] = 8
    memory: Memory = "32Gi"
    min_instances: Annotated[int, between(0, 1000)] = 0
    max_instances: Annotated[int, between(1, 1000)] = 5
    concurrency: Annotated[int, between(1, 1000)] = 16
    ingress: Ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"
    gpu_type: Literal["nvidia-l4"] = "nvidia-l4"
    gpus: Literal[1] = 1
    # Zonal redundancy reserves failover capacity in other zones, at a higher price.
    zonal_redundancy: bool = True
    model: Annotated[str, matching(r"[\w.-]+/[\w.-]+", "a model id like google/gemma-3-4b-it")]
    port: Annotated[int, between(1, 65535)] = 8000

    @model_validator(mode="after")
    def _gpu_needs(self) -> GpuServiceSizing:
        if self.cpu < GPU_MIN_CPU:
            raise invalid("cpu", f"must be at least {GPU_MIN_CPU} with a GPU")
        if memory_gib(self.memory) < GPU_MIN_MEMORY_GIB:
            raise invalid("memory", f"must be at least {GPU_MIN_MEMORY_GIB}Gi with a GPU")
        if not self.cpu_always_allocated:
            raise invalid("cpu_always_allocated", "must be true with a GPU")
        if self.ingress != "INGRESS_TRAFFIC_INTERNAL_ONLY":
            raise invalid("ingress", "must be INGRESS_TRAFFIC_INTERNAL_ONLY: only the orchestrator may call it")
        return self


class CloudRunServices(Settings):
    # The tables of the topology's other Cloud Run services, each a CloudRunSizing; any other
    # unknown key is refused (_known_tables).
    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, CloudRunSizing] = Field(init=False)

    image_tag: ImageTag = "0.1.0"
    deletion_protection: bool
    iap_members: list[IamPrincipal] = Field(default_factory=list)
    frontend: FrontendSizing = FrontendSizing()
    gateway: GatewaySizing = GatewaySizing()
    orchestrator: OrchestratorSizing = OrchestratorSizing()

    @classmethod
    def allowed_keys(cls) -> list[str]:
        """The keys of [services]: the fields, then the tables of the topology's other Cloud Run services."""
        return [
            *cls.model_fields,
            *(name for name in topology.declared().run_services() if name not in cls.model_fields),
        ]

    @model_validator(mode="before")
    @classmethod
    def _known_tables(cls, data: object) -> object:
        """Refuses an unknown key; an internal service's table is internal unless it says otherwise."""
        if not isinstance(data, dict):
            return data
        allowed = cls.allowed_keys()
        for key in data:
            if key not in allowed:
                # Reported as pydantic reports an unknown field: the loader names the file and key.
                raise PydanticCustomError("extra_forbidden", "Extra inputs are not permitted", {"key": key})
        return {
            key: {**_internal(key), **value} if key not in cls.model_fields and isinstance(value, dict) else value
            for key, value in data.items()
        }

    def sizing(self, service: str) -> CloudRunSizing:
        """The sizing of the Cloud Run service ``service``: its table, or CloudRunSizing's defaults."""
        if service in type(self).model_fields:
            table = getattr(self, service)
            assert isinstance(table, CloudRunSizing)
            return table
        return (self.model_extra or {}).get(service) or CloudRunSizing.model_validate(_internal(service))

    @model_validator(mode="after")
    def _iap_has_members(self) -> CloudRunServices:
        if self.frontend.access == "iap" and not self.iap_members:
            raise invalid("iap_members", "must name who may use the frontend when frontend.access is 'iap'")
        return self


def _internal(service: str) -> dict[str, str]:
    """The ingress of a service the topology does not make public: internal (its callers reach it
    through the VPC, cloud.google.com/run/docs/securing/ingress)."""
    declared = topology.declared().services.get(service)
    return {} if declared and declared.public else {"ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY"}
