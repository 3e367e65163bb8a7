"""The capacity check as a table: which model servers fit their GPUs on Autopilot, and why not."""

from __future__ import annotations

from typing import Any

import pytest

from hybrid.catalog import GPUS, MODELS, ServerShape, capacity_problems, gke_version, ladder_problems, ladder_version

MIXTRAL, MIXTRAL_AWQ = "mistralai/Mixtral-8x7B-Instruct-v0.1", "TheBloke/Mixtral-8x7B-Instruct-v0.1-AWQ"

# model, gpu type, count, tensor parallel, max model len, utilization, cpu, memory GiB -> problem keys, reason text
CASES = [
    # The reference architecture's example: Mixtral-8x7B in bf16 (~93 GB of weights) on 2 x L4 (24 GB each).
    ((MIXTRAL, "nvidia-l4", 2, 2, 32768, 0.90, 8, 32), ["model"], "needs 97.7 GB"),
    ((MIXTRAL_AWQ, "nvidia-l4", 2, 2, 32768, 0.90, 8, 32), [], ""),  # what the 2 x L4 samples serve
    ((MIXTRAL, "nvidia-a100-80gb", 2, 2, 32768, 0.90, 16, 64), [], ""),
    ((MIXTRAL, "nvidia-l4", 4, 4, 32768, 0.90, 16, 64), ["model"], "offer 86.4 GB"),
    ((MIXTRAL, "nvidia-l4", 8, 8, 32768, 0.90, 32, 128), [], ""),
    (("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4", 1, 1, 16384, 0.90, 8, 32), [], ""),
    (("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4", 1, 1, 131072, 0.90, 8, 32), ["model"], "KV cache"),
    (("meta-llama/Llama-3.1-70B-Instruct", "nvidia-l4", 4, 4, 8192, 0.90, 16, 64), ["model"], "141.2 GB of weights"),
    (("meta-llama/Llama-3.1-70B-Instruct", "nvidia-h100-80gb", 2, 2, 8192, 0.90, 16, 64), [], ""),
    (("mistralai/Mistral-7B-Instruct-v0.3", "nvidia-l4", 3, 3, 8192, 0.90, 8, 32), ["gpu_count"], "[1, 2, 4, 8]"),
    (("mistralai/Mistral-7B-Instruct-v0.3", "nvidia-h200-141gb", 1, 1, 8192, 0.90, 8, 32), ["gpu_count"], "[8]"),
    (("mistralai/Mistral-7B-Instruct-v0.3", "nvidia-l4", 2, 1, 8192, 0.90, 8, 32), ["tensor_parallel_size"], "equal"),
    (("mistralai/Mistral-7B-Instruct-v0.3", "nvidia-l4", 1, 1, 8192, 0.90, 40, 32), ["cpu"], "g2-standard-32"),
    (
        ("mistralai/Mistral-7B-Instruct-v0.3", "nvidia-tesla-a100", 1, 1, 8192, 0.90, 8, 100),
        ["memory"],
        "a2-highgpu-1g",
    ),
]


@pytest.mark.parametrize(
    "shape,keys,reason", CASES, ids=[f"{c[0][0].split('/')[-1]}-{c[0][2]}x{c[0][1]}" for c in CASES]
)
def test_capacity(shape: tuple[Any, ...], keys: list[str], reason: str) -> None:
    problems = capacity_problems(ServerShape(*shape))
    assert [key for key, _ in problems] == keys
    assert reason in " ".join(why for _, why in problems)


def test_a_refusal_names_configurations_that_fit() -> None:
    ((_, why),) = capacity_problems(ServerShape(MIXTRAL, "nvidia-l4", 2, 2, 32768, 0.90, 8, 32))
    suggestions = why.split("configurations that fit: ")[1].split(", ")
    assert f"2 x nvidia-l4 with {MIXTRAL_AWQ}" in suggestions
    for suggestion in suggestions:
        count, _, gpu, _, model = suggestion.split(" ")
        assert capacity_problems(ServerShape(model, gpu, int(count), int(count), 32768, 0.90, 8, 32)) == []


def test_catalog_facts() -> None:
    assert GPUS["nvidia-l4"].memory_gb == 24 and GPUS["nvidia-l4"].counts == (1, 2, 4, 8)
    assert GPUS["nvidia-tesla-a100"].counts == (1, 2, 4, 8, 16)
    assert GPUS["nvidia-h200-141gb"].counts == (8,)
    assert round(MODELS[MIXTRAL].weights_gb, 1) == 93.4  # ~46.7B parameters x 2 bytes


# A ladder's rungs (hybrid.catalog.RUNGS): which GPUs each obtains, and the order they go in.
LADDER_CASES = [
    (["reservation", "on_demand", "flex_start", "spot"], "nvidia-l4", []),
    (["on_demand", "spot"], "nvidia-h100-80gb", []),
    (["reservation", "flex_start", "spot"], "nvidia-h200-141gb", []),  # A3 Ultra: no on-demand
    (["on_demand"], "nvidia-h200-141gb", ["'on_demand' cannot obtain nvidia-h200-141gb"]),
    (["spot", "on_demand"], "nvidia-l4", ["in the order"]),
    (["spot", "spot"], "nvidia-l4", ["in the order"]),
]


@pytest.mark.parametrize("obtain,gpu,reasons", LADDER_CASES, ids=["+".join(c[0]) + f"-{c[1]}" for c in LADDER_CASES])
def test_ladder_rungs(obtain: list[str], gpu: str, reasons: list[str]) -> None:
    problems = ladder_problems(obtain, gpu)
    assert [key for key, _ in problems] == ["obtain"] * len(reasons)
    for (_, why), reason in zip(problems, reasons, strict=True):
        assert reason in why


def test_a_ladder_needs_its_newest_rungs_version() -> None:
    assert ladder_version(["on_demand", "spot"]) == "1.30.3-gke.1451000"
    assert ladder_version(["on_demand", "flex_start", "spot"]) == "1.32.2-gke.1652000"
    # A prefix counts as its lowest patch: 1.32 may resolve below flex-start's 1.32.2-gke.1652000.
    assert gke_version("1.32") < gke_version("1.32.2-gke.1652000") < gke_version("1.33")
