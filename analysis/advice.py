"""`python main.py advise --profile workload.toml`: the reference architecture's decision factors
(docs/reference-architecture.md) as typed input,
a placement per layer with the reason for each, and an environment-file fragment that is
validated (and capacity-checked) exactly as an environment file is.

A profile that asks for a placement its own factors rule out (a request longer than Cloud
Run's 60-minute maximum on Cloud Run, a model that needs more than one GPU on Cloud Run)
is refused, one line per problem naming the file and the key.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from analysis.cost.ladder import ladder_range, rung_costs
from analysis.cost.layers import gpu_machine
from analysis.cost.prices import PriceError, load_prices, retirement_warning
from analysis.cost.workload import Workload
from hybrid import topology
from hybrid.catalog import GPUS, MODELS, RUNG_ORDER, RUNGS, ServerShape, capacity_problems, ladder_version
from hybrid.config import ConfigError, Environment, Settings, describe, read_toml

# cloud.google.com/run/docs/configuring/request-timeout: at most 60 minutes.
CLOUD_RUN_MAX_REQUEST_MINUTES = 60
# cloud.google.com/run/docs/configuring/services/gpu: one L4 (24 GB) per instance.
CLOUD_RUN_GPU = "nvidia-l4"
# The reference architecture's decision factors: team of 1-5 -> Cloud Run; 5+ with DevOps -> GKE; < 1M requests a day
# Cloud Run is cheaper, > 5M a day GKE is.
SMALL_TEAM = 5
GKE_CHEAPER_ABOVE = 5_000_000
# Cheapest first (analysis/cost/prices: an L4 machine costs a fraction of an A100 one).
GPU_ORDER = ("nvidia-l4", "nvidia-tesla-a100", "nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h200-141gb")

Layer = Literal["frontend", "gateway", "orchestration", "models", "workers", "database"]
LAYERS: tuple[str, ...] = ("frontend", "gateway", "orchestration", "models", "workers", "database")
# Where an environment file configures each layer: the stacks build a layer exactly when
# hybrid/config.Environment has its section (stacks/app.py builds from those sections), so
# what advise says the stacks build follows the config models, not a list of its own.
SECTION_OF = {
    "frontend": "services.frontend",
    "gateway": "services.gateway",
    "orchestration": "services.orchestrator",
    "models": "inference",
    "workers": "workers",
    "database": "database",
}
# The workers tier's section builds a GKE Standard cluster (hybrid/config/workers.py's
# StandardClusterSettings): batch workers the profile wants on Cloud Run are not built.
WORKERS_PLATFORM = "gke"


def stacks_build(layer: str) -> bool:
    """Whether the environment file has a section for ``layer``, which the stacks then build."""
    model: Any = Environment
    for key in SECTION_OF[layer].split("."):
        fields = getattr(model, "model_fields", {})
        if key not in fields:
            return False
        model = fields[key].annotation
    return True


class Placements(Settings):
    """Placements the team has already decided; the advice checks them against the factors."""

    frontend: Literal["cloud_run"] | None = None
    gateway: Literal["cloud_run", "gke"] | None = None
    orchestration: Literal["cloud_run", "gke"] | None = None
    models: Literal["cloud_run", "gke", "vertex_ai"] | None = None
    workers: Literal["cloud_run", "gke"] | None = None


class Profile(Settings):
    """The reference architecture's decision factors, one key each."""

    name: Annotated[str, Field(pattern=r"^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$")]
    region: Annotated[str, Field(pattern=r"^[a-z]+-[a-z]+[0-9]+$")] = "us-central1"
    # GPU required: serve an open model yourself (true) or call Vertex AI / an API only (false).
    gpu_required: bool
    model: Literal[tuple(MODELS)] | None = None  # type: ignore[valid-type]  # the catalog's names: see GkeModelServerSettings
    max_model_len: Annotated[int, Field(ge=256, le=1_048_576)] = 8192
    traffic_pattern: Literal["bursty", "sustained"]
    team_size: Annotated[int, Field(ge=1, le=10_000)]
    devops_engineers: Annotated[int, Field(ge=0)] = 0
    # The longest request a user makes (a streamed reply, an upload, a long generation).
    max_request_minutes: Annotated[float, Field(gt=0, le=24 * 60)]
    networking: Literal["simple_http", "service_mesh"] = "simple_http"
    state: Literal["stateless", "stateful"] = "stateless"
    requests_per_day: Annotated[int, Field(ge=0)]
    output_tokens: Annotated[int, Field(ge=1)] = 500
    cold_start_tolerance: Literal["acceptable", "unacceptable"]
    background_workers: bool = False
    database_ha: bool = True
    placement: Placements = Placements()


@dataclass
class Decision:
    layer: str
    platform: str
    reasons: list[str]
    built_by_stacks: bool = True


@dataclass
class Advice:
    profile: Profile
    source: str
    decisions: list[Decision]
    fragment: str | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.source,
            "placements": {
                d.layer: {"platform": d.platform, "reasons": d.reasons, "built_by_stacks": d.built_by_stacks}
                for d in self.decisions
            },
            "fragment": self.fragment,
            "notes": self.notes,
        }


def load_profile(path: Path) -> Profile:
    try:
        return Profile.model_validate(read_toml(path))
    except ValidationError as err:
        raise ConfigError(path, list(describe(err, Profile))) from None


def _model_shape(model: str, gpu_type: str, count: int, max_model_len: int) -> ServerShape:
    cpu = 4 * count + 2  # fits the smallest machine with that many GPUs, beside its reservations
    return ServerShape(model, gpu_type, count, count, max_model_len, 0.9, cpu, 4 * cpu)


def smallest_fit(model: str, max_model_len: int) -> tuple[str, int] | None:
    for gpu_type in GPU_ORDER:
        for count in GPUS[gpu_type].counts:
            if not capacity_problems(_model_shape(model, gpu_type, count, max_model_len)):
                return gpu_type, count
    return None


def contradictions(p: Profile) -> list[str]:
    out = []
    chosen = p.placement
    for layer in ("frontend", "gateway", "orchestration", "models", "workers"):
        if (
            getattr(chosen, layer) == "cloud_run"
            and p.max_request_minutes > CLOUD_RUN_MAX_REQUEST_MINUTES
            and layer != "workers"
        ):
            out.append(
                f"placement.{layer} = 'cloud_run': max_request_minutes = {p.max_request_minutes:g} exceeds Cloud Run's "
                f"{CLOUD_RUN_MAX_REQUEST_MINUTES}-minute request maximum (cloud.google.com/run/docs/configuring/request-timeout)"
            )
    if chosen.models in ("cloud_run", "gke") and not p.gpu_required:
        out.append(
            f"placement.models = {chosen.models!r}: gpu_required = false says no model is served on your own GPUs"
        )
    if chosen.models == "vertex_ai" and p.gpu_required:
        out.append("placement.models = 'vertex_ai': gpu_required = true says you serve a model on your own GPUs")
    if p.gpu_required and p.model is None:
        out.append("model: required when gpu_required = true (a model of hybrid/catalog.py)")
    if p.gpu_required and p.model:
        fit = smallest_fit(p.model, p.max_model_len)
        if fit is None:
            out.append(
                f"model = {p.model!r}: fits no GPU configuration in the catalog at max_model_len = {p.max_model_len}"
            )
        elif chosen.models == "cloud_run" and fit != (CLOUD_RUN_GPU, 1):
            out.append(
                f"placement.models = 'cloud_run': {p.model} at max_model_len = {p.max_model_len} needs {fit[1]} x {fit[0]}; "
                "Cloud Run offers one L4 per instance (cloud.google.com/run/docs/configuring/services/gpu)"
            )
    return out


def advise(p: Profile, source: Path | str = "", today: date | None = None) -> Advice:
    problems = contradictions(p)
    if problems:
        raise ConfigError(Path(source) if source else None, problems)
    small_team = p.team_size <= SMALL_TEAM or p.devops_engineers == 0
    fit = smallest_fit(p.model, p.max_model_len) if p.gpu_required and p.model else None
    decisions = [
        Decision(
            "frontend",
            "cloud_run",
            [
                "stateless HTTP: Cloud Run deploys a container with TLS and autoscaling, nothing to manage",
                "scales to zero between visits"
                if p.cold_start_tolerance == "acceptable"
                else "one minimum instance: cold starts are unacceptable",
            ],
        ),
        _web_layer(p, "gateway"),
        _web_layer(p, "orchestration"),
        _models(p, fit, small_team),
        _workers(p, small_team),
        Decision(
            "database",
            "cloud_sql",
            [
                "managed PostgreSQL, separate from compute (reference architecture: Cloud SQL / AlloyDB)",
                "REGIONAL (a standby in another zone)" if p.database_ha else "ZONAL: the profile accepts downtime",
            ],
        ),
    ]
    notes = _vertex_model_notes(p.region, today or date.today()) if _models_on(decisions) == "vertex_ai" else []
    if _models_on(decisions) == "gke" and fit is not None:
        notes.append(_ladder_note(p, fit))
    buildable = all(d.built_by_stacks for d in decisions if d.layer in ("gateway", "orchestration"))
    fragment = render_fragment(p, decisions, fit) if buildable else None
    if fragment:
        validate_fragment(fragment, p)
    else:
        notes.append("no fragment: a layer the stacks build on Cloud Run only was placed on GKE")
    return Advice(p, str(source), decisions, fragment, notes)


def _web_layer(p: Profile, layer: str) -> Decision:
    long_requests = p.max_request_minutes > CLOUD_RUN_MAX_REQUEST_MINUTES
    if long_requests or p.placement.__dict__[layer] == "gke" or p.networking == "service_mesh":
        why = []
        if long_requests:
            why.append(f"requests of {p.max_request_minutes:g} min exceed Cloud Run's 60-minute maximum")
        if p.networking == "service_mesh":
            why.append("a service mesh with mTLS between services is GKE's ground (reference architecture)")
        if p.placement.__dict__[layer] == "gke":
            why.append("placed on GKE by the profile")
        return Decision(layer, "gke", [*why, "the stacks build this layer on Cloud Run only"], built_by_stacks=False)
    why = [
        "a lightweight proxy: JWT validation, rate limits, streaming (reference architecture: Cloud Run)"
        if layer == "gateway"
        else "calls model backends and Vertex AI; I/O-bound, no GPU (reference architecture: Cloud Run)",
        f"requests of at most {p.max_request_minutes:g} min fit Cloud Run's 60-minute maximum",
    ]
    if p.requests_per_day > GKE_CHEAPER_ABOVE:
        why.append(
            f"{p.requests_per_day:,} requests/day: the reference architecture finds GKE cheaper above 5M/day; compare with `main.py cost`"
        )
    if p.traffic_pattern == "sustained":
        why.append(
            "sustained traffic keeps instances busy: instance-based billing (CPU always allocated) is the cheaper mode"
        )
    return Decision(layer, "cloud_run", why)


def _models_on(decisions: list[Decision]) -> str:
    return next(d.platform for d in decisions if d.layer == "models")


def _vertex_model_notes(region: str, today: date) -> list[str]:
    """Models on Vertex AI: say so when the model the cost estimate assumes is past, or near, the
    retirement date its price table entry cites (Google retires each Gemini version on a date)."""
    try:
        api = Workload().vertex_api
        warning = retirement_warning(api, load_prices(region).api(api), today)
    except PriceError:
        return [f"no price table for {region}: the Vertex AI model's retirement date is not checked"]
    return [warning] if warning else []


def _models(p: Profile, fit: tuple[str, int] | None, small_team: bool) -> Decision:
    if not p.gpu_required:
        return Decision(
            "models",
            "vertex_ai",
            [
                "no GPU required: the orchestrator routes google/* models to Vertex AI",
                "the stacks always deploy a model server: a Cloud Run L4 with min_instances = 0 costs nothing while idle",
            ],
        )
    assert fit is not None, "contradictions() refuses a GPU profile without a model that fits"
    on_cloud_run = (
        fit == (CLOUD_RUN_GPU, 1)
        and p.placement.models != "gke"
        and (
            p.placement.models == "cloud_run"
            or (p.traffic_pattern == "bursty" and p.cold_start_tolerance == "acceptable")
        )
    )
    if on_cloud_run:
        return Decision(
            "models",
            "cloud_run",
            [
                f"{p.model} fits one L4; Cloud Run serves on L4 GPUs (the reference architecture's guide is out of date here)",
                "bursty traffic and cold starts acceptable: scale to zero, pay per second of instance life",
            ],
        )
    why = [f"{p.model} needs {fit[1]} x {fit[0]} at max_model_len = {p.max_model_len}"]
    if fit != (CLOUD_RUN_GPU, 1):
        why.append("Cloud Run offers one L4 per instance; more (or larger) GPUs need GKE")
    if p.traffic_pattern == "sustained":
        why.append("sustained traffic keeps GPUs busy: provisioned replicas are cheaper per request")
    if p.cold_start_tolerance == "unacceptable":
        why.append("cold starts unacceptable: replicas stay warm (min_replicas)")
    if small_team:
        why.append("Autopilot manages the nodes, which matters for a small team without DevOps")
    return Decision("models", "gke", why)


def _workers(p: Profile, small_team: bool) -> Decision:
    if not p.background_workers:
        return Decision("workers", "none", ["no background workers in the profile"], built_by_stacks=False)
    if p.state == "stateful" or (not small_team) or p.placement.workers == "gke":
        platform = "gke"
        why = "long-running, stateful or queue-driven workers: the reference architecture puts them on GKE Standard"
    else:
        platform = "cloud_run"
        why = "stateless background work: Cloud Run jobs, nothing to operate"
    built = stacks_build("workers") and platform == WORKERS_PLATFORM
    how = (
        "the stacks build them: [workers] enabled = true (GKE Standard, Spot nodes first, Pub/Sub and a bucket)"
        if built
        else "the stacks build workers on GKE Standard only ([workers]), not as Cloud Run jobs"
    )
    return Decision("workers", platform, [why, how], built_by_stacks=built)


def render_fragment(p: Profile, decisions: list[Decision], fit: tuple[str, int] | None) -> str:
    models = next(d.platform for d in decisions if d.layer == "models")
    warm = p.cold_start_tolerance == "unacceptable"
    sustained = p.traffic_pattern == "sustained"
    timeout = min(3600, max(300, math.ceil(p.max_request_minutes * 60)))
    # Heuristic database sizes, to be measured: small below 100K requests/day, then 2 and 4 vCPUs.
    tier = (
        "db-custom-1-3840"
        if p.requests_per_day < 100_000
        else ("db-custom-2-7680" if p.requests_per_day < 2_000_000 else "db-custom-4-16384")
    )
    in_flight = p.requests_per_day / 86_400 * 3 * p.max_request_minutes * 60  # 3 x average at peak
    max_instances = max(10, min(100, 2 * math.ceil(in_flight / 80)))
    lines = [
        f"# advise --profile: {p.name} ({p.traffic_pattern}, {p.requests_per_day:,} requests/day)",
        "[database]",
        'version = "POSTGRES_16"',
        f'tier = "{tier}"   # a starting size: measure and adjust',
        f'availability = "{"REGIONAL" if p.database_ha else "ZONAL"}"',
        "deletion_protection = true",
        "",
        "[services]",
        'image_tag = "0.1.0"',
        "deletion_protection = true",
        "",
        "[services.frontend]",
        "cpu = 1",
        'memory = "512Mi"',
        f"min_instances = {1 if warm else 0}",
        "max_instances = 20",
        "cpu_always_allocated = false   # serves a page and waits",
    ]
    # The topology's other Cloud Run services are in an API request's path, sized alike.
    for role in (name for name in topology.declared().run_services() if name != "frontend"):
        lines += [
            "",
            f"[services.{role}]",
            "cpu = 2",
            'memory = "2Gi"',
            f"min_instances = {1 if warm else 0}",
            f"max_instances = {max_instances}",
            "concurrency = 80",
            f"timeout_seconds = {timeout}",
            f"cpu_always_allocated = {'true' if sustained else 'false'}",
        ]
    lines += _inference_fragment(p, models, fit)
    if any(d.layer == "workers" and d.built_by_stacks for d in decisions):
        lines += [
            "",
            "[workers]",
            "enabled = true   # [network] needs workers_cidr, workers_pods_cidr, workers_services_cidr",
        ]
    return "\n".join(lines) + "\n"


def _replicas(p: Profile) -> tuple[int, int]:
    """min_replicas and max_replicas for the peak at 400 output tokens/s each (analysis/cost: an assumption, not measured)."""
    warm, sustained = p.cold_start_tolerance == "unacceptable", p.traffic_pattern == "sustained"
    peak = p.requests_per_day * p.output_tokens / 86_400 * 3
    max_replicas = max(2, min(100, math.ceil(peak / 400)))
    return min(2 if (sustained or warm) else 1, max_replicas), max_replicas


def _server_size(count: int) -> tuple[int, str]:
    """The fragment's vCPUs and memory for a server of ``count`` GPUs."""
    cpu = 4 * count + 2
    return cpu, f"{4 * cpu}Gi"


def _ladder_note(p: Profile, fit: tuple[str, int]) -> str:
    """What Google's recommended ladder would cost for the GPU nodes at the profile's traffic, against on-demand only."""
    gpu_type, count = fit
    # No reservation rung: it must name a reservation the user holds (the note says how to add one).
    obtain = [rung for rung in RUNG_ORDER if rung != "reservation" and gpu_type in RUNGS[rung].gpus]
    min_replicas, max_replicas = _replicas(p)
    replicas = max(min_replicas, min(max_replicas, math.ceil(p.requests_per_day * p.output_tokens / 86_400 / 400)))
    try:
        prices = load_prices(p.region)
        machine_name, machine = gpu_machine(prices, gpu_type, count, *_server_size(count))
    except PriceError as err:
        return f"GPU ladder not priced: {err}"
    on_demand = machine.usd * prices.hours_per_month * replicas
    span = ladder_range(rung_costs(prices, obtain, gpu_type, on_demand))
    where = f"{replicas} x {machine_name} at {p.requests_per_day:,} requests/day"
    add = (
        f"to use it, set [inference.gke] obtain = {obtain} and [cluster] min_version to "
        f"{ladder_version(obtain)} or later (docs/gpu-capacity.md); holding a reservation of these GPUs, put "
        "'reservation' first and name it in [inference.gke] reservation"
    )
    if span is None:
        return f"GPU ladder {obtain} for {where}: a rung is not priced in {prices.path.name}; {add}"
    low, high = span
    return (
        f"GPU ladder {obtain} for {where}: the nodes cost ${low:,.0f} to ${high:,.0f} a month, against "
        f"${on_demand:,.0f} on-demand only (each rung as if every replica ran on it; Autopilot's premium aside); {add}"
    )


def _inference_fragment(p: Profile, models: str, fit: tuple[str, int] | None) -> list[str]:
    warm = p.cold_start_tolerance == "unacceptable"
    lines = ["", "[inference]"]
    if models == "gke":
        assert fit is not None, "models are placed on GKE only for a GPU profile, whose model fits"
        gpu_type, count = fit
        cpu, memory = _server_size(count)
        min_replicas, max_replicas = _replicas(p)
        lines += [
            'placement = "gke"',
            "",
            "[inference.gke]",
            f'model = "{p.model}"',
            f'gpu_type = "{gpu_type}"',
            f"gpu_count = {count}",
            f"tensor_parallel_size = {count}",
            f"max_model_len = {p.max_model_len}",
            f"cpu = {cpu}",
            f'memory = "{memory}"',
            'weights = "gcsfuse"   # shared by every replica',
            f'weights_bucket = "replace-me-{p.name}-model-weights"',
            f'hf_token_secret = "{p.name}-hf-token"',
            f"min_replicas = {min_replicas}",
            f"max_replicas = {max_replicas}",
        ]
    else:
        model = p.model if (models == "cloud_run" and p.model) else "google/gemma-3-4b-it"
        lines += [
            'placement = "cloud_run"',
            "",
            "[inference.cloud_run]",
            f'model = "{model}"',
            f"min_instances = {1 if (warm and models == 'cloud_run') else 0}",
            "zonal_redundancy = false   # no reserved failover capacity: cheaper, less available",
        ]
    return lines


# What an environment file needs besides the fragment: the profile's identity and placeholders.
_SKELETON = """name = "{name}"
project_id = "replace-me-{name}"
region = "{region}"

[state]
bucket = "replace-me-{name}-tfstate"

[network]
subnet_cidr = "10.10.0.0/20"
pods_cidr = "10.16.0.0/14"
services_cidr = "10.20.0.0/20"
psa_cidr = "10.32.0.0/16"
inference_address = "10.10.15.250"
run_cidr = "10.8.0.0/22"
{workers_ranges}
[cluster]
deletion_protection = true

"""


# The workers tier's ranges, as environments/prod.toml sets them.
_WORKERS_RANGES = """workers_cidr = "10.12.0.0/22"
workers_pods_cidr = "10.24.0.0/16"
workers_services_cidr = "10.21.0.0/20"
"""


def skeleton(p: Profile, fragment: str = "") -> str:
    """The rest of an environment file around ``fragment``, with the workers' ranges if it enables them."""
    workers = "[workers]" in fragment
    return _SKELETON.format(name=p.name[:20], region=p.region, workers_ranges=_WORKERS_RANGES if workers else "")


def validate_fragment(fragment: str, p: Profile) -> None:
    """Load skeleton + fragment as an environment file (the same checks, capacity included)."""
    from hybrid.config import load_environment

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{p.name}.toml"
        path.write_text(skeleton(p, fragment) + fragment)
        try:
            load_environment(path)
        except ConfigError as err:  # a bug in the advice, not in the profile
            raise AssertionError(f"advise produced an invalid fragment: {err}") from None


def render_advice(a: Advice) -> str:
    out = [f"Advice for {a.profile.name}" + (f" ({a.source})" if a.source else ""), ""]
    out.append(f" {'layer':<15} {'platform':<11} reasons")
    for d in a.decisions:
        built = "" if d.built_by_stacks else "  [not built by these stacks]"
        out.append(f" {d.layer:<15} {d.platform:<11} {d.reasons[0]}{built}")
        out += [f" {'':<15} {'':<11} {r}" for r in d.reasons[1:]]
    out.append("")
    if a.fragment:
        out += [
            " Environment-file fragment (validated and capacity-checked as environments/*.toml are);",
            " add name, project_id, region, [state], [network] and [cluster]:",
            "",
            a.fragment,
        ]
    out += [f" note: {n}" for n in a.notes]
    return "\n".join(out)
