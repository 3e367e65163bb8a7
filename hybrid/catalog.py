"""GPU and model facts, and the capacity check that refuses a model server that cannot start.

A vLLM server needs the model's weights plus the KV cache of at least one
sequence of ``max_model_len`` tokens inside ``gpu_memory_utilization`` of its
GPUs' memory, or it exits at start-up; and GKE Autopilot rejects a Pod that
asks for a GPU count it does not offer, or more CPU or memory than fits beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9


@dataclass(frozen=True)
class Gpu:
    memory_gb: float
    # GPU count -> (machine type, vCPUs, memory GB) of the largest machine with that many.
    machines: dict[int, tuple[str, int, int]]

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(self.machines)


def _per_gpu(
    series: str, vcpus: int, memory_gb: int, counts: tuple[int, ...] = (1, 2, 4, 8)
) -> dict[int, tuple[str, int, int]]:
    """A machine series whose ``<series>-<n>g`` shape has ``n`` times the vCPUs and memory of one GPU's."""
    return {count: (f"{series}-{count}g", vcpus * count, memory_gb * count) for count in counts}


# Allowed counts per Pod: GKE "Deploy GPU workloads in Autopilot"
# (cloud.google.com/kubernetes-engine/docs/how-to/autopilot-gpus). GPU memory and machine
# shapes: cloud.google.com/compute/docs/accelerator-optimized-machines (G2, A2, A3).
# Autopilot's own per-Pod maxima ("Resource requests in Autopilot") sit a little below
# the machine: they leave room for the node's system Pods. The check below uses the
# machine as the bound, so it refuses every request that cannot fit, not every one
# Autopilot would refuse.
GPUS: dict[str, Gpu] = {
    # G2 offers several machines per GPU count, not multiples of one shape: the largest of each.
    "nvidia-l4": Gpu(
        24,
        {
            1: ("g2-standard-32", 32, 128),
            2: ("g2-standard-24", 24, 96),
            4: ("g2-standard-48", 48, 192),
            8: ("g2-standard-96", 96, 384),
        },
    ),
    "nvidia-tesla-a100": Gpu(40, _per_gpu("a2-highgpu", 12, 85) | {16: ("a2-megagpu-16g", 96, 1360)}),
    "nvidia-a100-80gb": Gpu(80, _per_gpu("a2-ultragpu", 12, 170)),
    "nvidia-h100-80gb": Gpu(80, _per_gpu("a3-highgpu", 26, 234)),
    "nvidia-h200-141gb": Gpu(141, _per_gpu("a3-ultragpu", 28, 369, counts=(8,))),
}


@dataclass(frozen=True)
class Model:
    parameters_b: float
    layers: int
    kv_heads: int
    head_dim: int
    bytes_per_parameter: float = 2.0  # bfloat16
    quantization: str | None = None  # what vLLM's --quantization needs, if anything

    @property
    def weights_gb(self) -> float:
        return self.parameters_b * self.bytes_per_parameter

    def kv_cache_gb(self, tokens: int) -> float:
        # Keys and values, per layer and KV head, in bfloat16.
        return 2 * self.layers * self.kv_heads * self.head_dim * 2 * tokens / GB


# Parameter counts and architecture from each model's card and config.json on Hugging Face.
# AWQ checkpoints hold 4-bit weights plus group scales: about 4.25 bits per parameter.
MODELS: dict[str, Model] = {
    "mistralai/Mixtral-8x7B-Instruct-v0.1": Model(46.7, 32, 8, 128),
    "TheBloke/Mixtral-8x7B-Instruct-v0.1-AWQ": Model(46.7, 32, 8, 128, 4.25 / 8, "awq"),
    "mistralai/Mistral-7B-Instruct-v0.3": Model(7.25, 32, 8, 128),
    "meta-llama/Llama-3.1-8B-Instruct": Model(8.03, 32, 8, 128),
    "meta-llama/Llama-3.1-70B-Instruct": Model(70.6, 80, 8, 128),
    "google/gemma-3-27b-it": Model(27.4, 62, 16, 128),
    "Qwen/Qwen2.5-7B-Instruct": Model(7.62, 28, 4, 128),
}


@dataclass(frozen=True)
class ServerShape:
    model: str
    gpu_type: str
    gpu_count: int
    tensor_parallel_size: int
    max_model_len: int
    gpu_memory_utilization: float
    cpu: float
    memory_gib: float


def capacity_problems(shape: ServerShape) -> list[tuple[str, str]]:
    """(setting, why) for each reason the server cannot run; empty when it fits."""
    gpu, model = GPUS[shape.gpu_type], MODELS[shape.model]
    problems = []
    if shape.gpu_count not in gpu.counts:
        problems.append(("gpu_count", f"must be one of {list(gpu.counts)} for {shape.gpu_type} on Autopilot"))
        return problems
    if shape.tensor_parallel_size != shape.gpu_count:
        problems.append(("tensor_parallel_size", f"must equal gpu_count ({shape.gpu_count}): one shard per GPU"))
    needed = model.weights_gb + model.kv_cache_gb(shape.max_model_len)
    offered = shape.gpu_count * gpu.memory_gb * shape.gpu_memory_utilization
    if needed > offered:
        fits = ", ".join(fitting(shape)) or "none in the catalog"
        problems.append(
            (
                "model",
                f"must fit the GPUs' memory: {shape.model} needs {needed:.1f} GB ({model.weights_gb:.1f} GB of weights + "
                f"{model.kv_cache_gb(shape.max_model_len):.1f} GB of KV cache for {shape.max_model_len} tokens) "
                f"but {shape.gpu_count} x {shape.gpu_type} at {shape.gpu_memory_utilization} utilization offer "
                f"{offered:.1f} GB; configurations that fit: {fits}",
            )
        )
    machine, max_cpu, max_memory_gb = gpu.machines[shape.gpu_count]
    where = f"with {shape.gpu_count} x {shape.gpu_type}: the largest such machine, {machine}, has"
    if shape.cpu > max_cpu:
        problems.append(("cpu", f"must be below {max_cpu} {where} {max_cpu} vCPUs"))
    if shape.memory_gib * 1.073741824 > max_memory_gb:
        problems.append(("memory", f"must be below {max_memory_gb} GB {where} {max_memory_gb} GB"))
    return problems


def fitting(shape: ServerShape, per_model: int = 2) -> list[str]:
    """The smallest GPU configurations that hold the model, and those for its quantized siblings."""
    family = shape.model.split("/")[-1].removesuffix("-AWQ")
    labels = []
    for name, model in MODELS.items():
        if name.split("/")[-1].removesuffix("-AWQ") != family:
            continue
        needed = model.weights_gb + model.kv_cache_gb(shape.max_model_len)
        options = sorted(
            (count * gpu.memory_gb, f"{count} x {gpu_type} with {name}")
            for gpu_type, gpu in GPUS.items()
            for count in gpu.counts
            if needed <= count * gpu.memory_gb * shape.gpu_memory_utilization
        )
        labels += [label for _, label in options[:per_model]]
    return labels


# The Gemini models a self-hosted model may spill to ([inference] spill_to), by the names Vertex
# AI's OpenAI-compatible endpoint takes; current ones only, as Google retires each version on a
# date (docs.cloud.google.com/gemini-enterprise-agent-platform/models/model-versions).
VERTEX_MODELS: tuple[str, ...] = ("google/gemini-3.5-flash-lite",)

# --- The obtainability ladder -------------------------------------------------------------------
# Ways to obtain a GPU node, each a priority of the model servers' custom ComputeClass
# (cloud.google.com/kubernetes-engine/docs/concepts/about-custom-compute-classes), best first:
# a reservation holds capacity that is paid for whether used or not, so it goes first; on-demand
# starts at once when there is capacity; flex-start (Dynamic Workload Scheduler) waits for
# capacity but keeps it up to seven days; Spot is cheapest but preempted on 30 seconds' notice
# (the four consumption options: cloud.google.com/kubernetes-engine/docs/concepts/consumption-option).
RUNG_ORDER = ("reservation", "on_demand", "flex_start", "spot")

# Custom ComputeClasses: GKE 1.30.3-gke.1451000 and later, Autopilot and Standard
# (cloud.google.com/kubernetes-engine/docs/concepts/about-custom-compute-classes).
COMPUTE_CLASS_VERSION = "1.30.3-gke.1451000"


@dataclass(frozen=True)
class Rung:
    gke_version: str  # the lowest GKE version this rung works on
    gpus: frozenset[str]  # the catalog's GPU types obtainable this way
    why: str  # the documentation both facts come from


_ALL_GPUS = frozenset(GPUS)
RUNGS: dict[str, Rung] = {
    "reservation": Rung(
        COMPUTE_CLASS_VERSION,
        _ALL_GPUS,
        "cloud.google.com/kubernetes-engine/docs/concepts/about-custom-compute-classes",
    ),
    # A3 Ultra (H200) is sold only through reservations, flex-start and Spot: no on-demand
    # (cloud.google.com/compute/docs/accelerator-optimized-machines, consumption options).
    "on_demand": Rung(
        COMPUTE_CLASS_VERSION,
        _ALL_GPUS - {"nvidia-h200-141gb"},
        "cloud.google.com/compute/docs/accelerator-optimized-machines",
    ),
    # Flex-start for GPUs needs GKE 1.32.2-gke.1652000 (cloud.google.com/kubernetes-engine/docs/concepts/dws);
    # it covers every accelerator-optimized machine type but A4X and G4
    # (cloud.google.com/compute/docs/instances/about-flex-start-vms): all the catalog's GPUs.
    "flex_start": Rung("1.32.2-gke.1652000", _ALL_GPUS, "cloud.google.com/kubernetes-engine/docs/concepts/dws"),
    # Spot VMs offer the same machine types as standard ones (cloud.google.com/kubernetes-engine/docs/concepts/spot-vms).
    "spot": Rung(COMPUTE_CLASS_VERSION, _ALL_GPUS, "cloud.google.com/kubernetes-engine/docs/concepts/spot-vms"),
}


def gke_version(text: str) -> tuple[int, ...]:
    """``1.32.2-gke.1652000`` as (1, 32, 2, 1652000); a prefix such as ``1.33`` counts its missing parts as 0,
    the lowest version it may resolve to."""
    release, _, build = text.partition("-gke.")
    parts = [int(part) for part in release.split(".")] + [0] * (3 - len(release.split(".")))
    return (*parts, int(build or 0))


def ladder_problems(obtain: list[str], gpu_type: str) -> list[tuple[str, str]]:
    """(setting, why) for each rung of ``obtain`` out of order or unable to give ``gpu_type``; empty when none.
    The GPU count and machine shapes are the same on every rung (capacity_problems checks them)."""
    problems = []
    if len(set(obtain)) != len(obtain) or obtain != sorted(obtain, key=RUNG_ORDER.index):
        problems.append(("obtain", f"must list each rung once, in the order {list(RUNG_ORDER)} (best first)"))
    for rung in obtain:
        offered = RUNGS[rung].gpus
        if gpu_type not in offered:
            problems.append(
                ("obtain", f"{rung!r} cannot obtain {gpu_type} ({RUNGS[rung].why}); it offers {sorted(offered)}")
            )
    return problems


def ladder_version(obtain: list[str]) -> str:
    """The lowest GKE version every rung of ``obtain`` works on."""
    return max((RUNGS[rung].gke_version for rung in obtain), key=gke_version, default=COMPUTE_CLASS_VERSION)
