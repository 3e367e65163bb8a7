"""`python main.py advise`: the reference architecture's decision factors in, a placement per layer and a valid fragment out."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from analysis.advice import LAYERS, SECTION_OF, Advice, Profile, advise, skeleton, stacks_build
from analysis.cost.prices import load_prices
from analysis.cost.workload import Workload
from hybrid.config import load_environment
from iac import ROOT

EXAMPLE = ROOT / "examples" / "workload.toml"


def profile(**changes: Any) -> Profile:
    raw = tomllib.loads(EXAMPLE.read_text())
    raw.update(changes)
    return Profile.model_validate(raw)


def run_advise(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", "advise", "--profile", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "workload.toml"
    path.write_text(text)
    return path


def placements(advice: Advice) -> dict[str, str]:
    return {d.layer: d.platform for d in advice.decisions}


def fragment(advice: Advice) -> str:
    assert advice.fragment is not None, advice.notes
    return advice.fragment


def paste(tmp_path: Path, advice: Advice) -> Path:
    """The environment file a user makes of the advice: the skeleton, then the fragment pasted in."""
    path = tmp_path / "acme-chat.toml"
    path.write_text(skeleton(advice.profile, fragment(advice)) + fragment(advice))
    return path


def test_example_profile_places_each_layer_with_reasons() -> None:
    advice = advise(profile())
    assert placements(advice) == {
        "frontend": "cloud_run",
        "gateway": "cloud_run",
        "orchestration": "cloud_run",
        "models": "gke",
        "workers": "none",
        "database": "cloud_sql",
    }
    assert all(d.reasons for d in advice.decisions)


def test_fragment_pastes_into_an_environment_file_that_validates(tmp_path: Path) -> None:
    advice = advise(profile())
    path = paste(tmp_path, advice)
    env = load_environment(path)  # the same checks as environments/*.toml, capacity check included
    gke = env.inference.gke
    assert gke is not None
    assert gke.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert gke.min_replicas == 2  # cold starts unacceptable: warm replicas
    assert env.services.gateway.cpu_always_allocated  # sustained traffic
    assert env.services.gateway.timeout_seconds == 300


def test_bursty_tolerant_workload_puts_a_one_l4_model_on_cloud_run(tmp_path: Path) -> None:
    advice = advise(profile(traffic_pattern="bursty", cold_start_tolerance="acceptable"))
    assert placements(advice)["models"] == "cloud_run"
    path = paste(tmp_path, advice)
    env = load_environment(path)
    cloud_run = env.inference.cloud_run
    assert env.inference.placement == "cloud_run" and cloud_run is not None and cloud_run.min_instances == 0
    assert not env.services.gateway.cpu_always_allocated and env.services.gateway.min_instances == 0


def test_a_model_larger_than_one_l4_goes_to_gke_on_the_gpus_it_needs(tmp_path: Path) -> None:
    advice = advise(
        profile(model="meta-llama/Llama-3.1-70B-Instruct", traffic_pattern="bursty", cold_start_tolerance="acceptable")
    )
    assert placements(advice)["models"] == "gke"
    path = paste(tmp_path, advice)
    gke = load_environment(path).inference.gke
    assert gke is not None
    # The cheapest GPU type that holds it, in the fewest of those GPUs: 8 x L4 (a g2-standard-96).
    assert (gke.gpu_type, gke.gpu_count) == ("nvidia-l4", 8)


def test_no_gpu_routes_models_to_vertex_ai(tmp_path: Path) -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    raw.pop("model")
    advice = advise(Profile.model_validate({**raw, "gpu_required": False}))
    assert placements(advice)["models"] == "vertex_ai"
    path = paste(tmp_path, advice)
    cloud_run = load_environment(path).inference.cloud_run
    assert cloud_run is not None and cloud_run.min_instances == 0


def test_requests_longer_than_an_hour_take_the_gateway_off_cloud_run() -> None:
    advice = advise(profile(max_request_minutes=90))
    assert placements(advice)["gateway"] == "gke"
    assert advice.fragment is None and advice.notes


def test_refuses_long_requests_placed_on_cloud_run(tmp_path: Path) -> None:
    text = (
        EXAMPLE.read_text()
        .replace("max_request_minutes = 5 ", "max_request_minutes = 90")
        .replace('# models = "cloud_run"', 'gateway = "cloud_run"')
    )
    path = write(tmp_path, text)
    result = run_advise(path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"{path}: placement.gateway = 'cloud_run': max_request_minutes = 90 exceeds Cloud Run's 60-minute "
        "request maximum (cloud.google.com/run/docs/configuring/request-timeout)"
    )


def test_refuses_a_multi_gpu_model_on_cloud_run(tmp_path: Path) -> None:
    text = (
        EXAMPLE.read_text()
        .replace('"meta-llama/Llama-3.1-8B-Instruct"', '"mistralai/Mixtral-8x7B-Instruct-v0.1"')
        .replace('# models = "cloud_run"', 'models = "cloud_run"')
    )
    result = run_advise(write(tmp_path, text))
    assert result.returncode == 2
    assert (
        "placement.models = 'cloud_run': mistralai/Mixtral-8x7B-Instruct-v0.1 at max_model_len = 8192 needs 8 x nvidia-l4"
        in result.stderr
    )
    assert "Cloud Run offers one L4 per instance" in result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("team_size = 4", "team_sise = 4"),
            "team_sise: unknown key (did you mean 'team_size'?): must be one of name, region, gpu_required",
        ),
        (
            ('traffic_pattern = "sustained"', 'traffic_pattern = "spiky"'),
            "traffic_pattern = 'spiky': must be 'bursty' or 'sustained'",
        ),
        (("requests_per_day = 50000\n", ""), "requests_per_day: must be set: the key is required"),
        (
            ('# models = "cloud_run"', 'models = "lambda"'),
            "placement.models = 'lambda': must be 'cloud_run', 'gke' or 'vertex_ai'",
        ),
    ],
)
def test_profile_mistakes_are_one_clear_line(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = write(tmp_path, EXAMPLE.read_text().replace(*change))
    result = run_advise(path)
    assert result.returncode == 2
    assert f"{path}: {message}" in result.stderr


def test_json_output() -> None:
    result = run_advise(EXAMPLE.relative_to(ROOT))
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [sys.executable, "main.py", "advise", "--profile", "examples/workload.toml", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    data = json.loads(result.stdout)
    assert data["placements"]["models"]["platform"] == "gke"
    assert "[inference.gke]" in data["fragment"]


def test_advise_knows_every_layer_the_stacks_build_from_the_config_models(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each layer maps to a section of hybrid/config.Environment, which the stacks build from.
    assert all(stacks_build(layer) for layer in LAYERS)
    # A section the config models lack is a layer the stacks do not build, and advise says so.
    monkeypatch.setitem(SECTION_OF, "workers", "services.worker_pool")
    advice = advise(profile(background_workers=True, state="stateful"))
    (workers,) = [d for d in advice.decisions if d.layer == "workers"]
    assert not workers.built_by_stacks and "[workers]" not in fragment(advice)


def test_queue_driven_workers_are_built_by_the_stacks_and_the_fragment_enables_them(tmp_path: Path) -> None:
    advice = advise(profile(background_workers=True, state="stateful"))
    (workers,) = [d for d in advice.decisions if d.layer == "workers"]
    assert (workers.platform, workers.built_by_stacks) == ("gke", True)
    assert not any("do not build" in reason for reason in workers.reasons)
    assert "[workers]\nenabled = true" in fragment(advice)
    path = paste(tmp_path, advice)
    env = load_environment(path)
    assert env.workers.enabled and env.network.workers_cidr is not None


def test_stateless_workers_on_cloud_run_are_not_built_and_say_why() -> None:
    advice = advise(profile(background_workers=True, state="stateless", team_size=2))
    (workers,) = [d for d in advice.decisions if d.layer == "workers"]
    assert (workers.platform, workers.built_by_stacks) == ("cloud_run", False)
    assert workers.reasons[-1] == "the stacks build workers on GKE Standard only ([workers]), not as Cloud Run jobs"
    assert "[workers]" not in fragment(advice)


def test_a_vertex_model_near_or_past_retirement_is_noted() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    raw.pop("model")
    no_gpu = Profile.model_validate({**raw, "gpu_required": False})
    retires = load_prices(no_gpu.region).api(Workload().vertex_api).retires
    assert retires is not None, "the default Vertex model's entry cites its retirement date"
    assert advise(no_gpu, today=retires - timedelta(days=365)).notes == []
    (near,) = advise(no_gpu, today=retires - timedelta(days=30)).notes
    assert f"retires on {retires}" in near
    (past,) = advise(no_gpu, today=retires + timedelta(days=1)).notes
    assert f"retired on {retires}" in past
    # Self-hosted models: no Vertex model to warn about (the one note prices their GPU ladder).
    (ladder,) = advise(profile(), today=retires + timedelta(days=1)).notes
    assert ladder.startswith("GPU ladder")
