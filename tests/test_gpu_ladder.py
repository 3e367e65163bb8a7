"""The GPU obtainability ladder ([inference.gke] obtain) and fast model loading (weights = "streamer"):
the ComputeClass's rungs, their checks, the disruption handling they need, the startup budget."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import cdktf
import pytest

from analysis.advice import Profile, advise
from analysis.cost.estimate import estimate
from analysis.cost.prices import load_prices
from analysis.cost.report import render
from hybrid.catalog import RUNG_ORDER
from hybrid.components.vllm_server import (
    COMPUTE_CLASS,
    DRAIN_SECONDS,
    SPOT_GRACE_SECONDS,
    STARTUP_PERIOD_SECONDS,
    VllmServer,
    VllmServerProps,
    startup_failures,
)
from hybrid.config import ConfigError, Environment, load_environment
from iac import ROOT, Json, Stacks, resources
from variants import DEV_ENV, variant

LADDER = ["reservation", "on_demand", "flex_start", "spot"]
# prod's: a reservation rung needs a reservation to name.
PROD_LADDER = LADDER[1:]
BUCKET = "dev-model-weights"
STREAMER_IMAGE = "docker.io/vllm/vllm-openai:v0.11.1"


def with_gke(env: Environment = DEV_ENV, **gke: Any) -> Environment:
    """dev with ``gke``'s [inference.gke] settings, and a cluster new enough for any ladder."""
    updates = {f"inference.gke.{key}": value for key, value in gke.items()}
    return variant(env, {"cluster.min_version": "1.33", **updates})


def synthesized(env: Environment) -> tuple[Json, Json | None]:
    """The vLLM server ``env`` describes, synthesized alone: its Pod spec and its ComputeClass, if any."""
    stack = cdktf.TerraformStack(cdktf.Testing.app(), "test")
    VllmServer(
        stack,
        "vllm",
        VllmServerProps(
            project="p",
            namespace="inference",
            service_account="vllm",
            image="vllm/vllm-openai",
            settings=env.inference.gke_server,
            quantization=None,
            port=8000,
            load_balancer_ip="10.0.0.2",
            allowed_sources=("10.8.0.0/22",),
        ),
    )
    synth = json.loads(cdktf.Testing.synth(stack))
    (deployment,) = resources(synth, "kubernetes_deployment_v1").values()
    classes = [m["manifest"] for m in resources(synth, "kubernetes_manifest").values()]
    found = [m for m in classes if m["kind"] == "ComputeClass"]
    return deployment["spec"]["template"]["spec"], found[0] if found else None


def problems(env: Environment, **gke: Any) -> str:
    with pytest.raises(ConfigError) as refused:
        with_gke(env, **gke)
    return str(refused.value)


def prod_class(synth_json: Stacks) -> Json:
    found: Json
    (found,) = [
        m["manifest"]
        for m in resources(synth_json["prod-inference"], "kubernetes_manifest").values()
        if m["manifest"]["kind"] == "ComputeClass"
    ]
    return found


def test_prod_climbs_the_ladder_best_rung_first_and_migrates_back(synth_json: Stacks) -> None:
    compute_class = prod_class(synth_json)
    assert compute_class["apiVersion"] == "cloud.google.com/v1"
    priorities = compute_class["spec"]["priorities"]
    l4 = {"type": "nvidia-l4", "count": 1}
    assert priorities == [
        {"gpu": l4},
        {"gpu": l4, "flexStart": {"enabled": True}},
        {"gpu": l4, "spot": True},
    ]
    assert compute_class["spec"]["activeMigration"] == {"optimizeRulePriority": True}
    assert compute_class["spec"]["whenUnsatisfiable"] == "DoNotScaleUp"
    # The cluster runs a version every rung works on: flex-start's 1.32.2-gke.1652000 or later.
    cluster = next(iter(resources(synth_json["prod-cluster"], "google_container_cluster").values()))
    assert cluster["min_master_version"] == "1.33"


@pytest.mark.parametrize(
    "obtain", [LADDER, ["on_demand", "spot"], ["reservation"], ["flex_start"]], ids=lambda o: "+".join(o)
)
def test_the_class_rungs_and_the_pods_selectors_match(obtain: list[str]) -> None:
    reservation = "l4-serving" if "reservation" in obtain else None
    env = with_gke(obtain=obtain, reservation=reservation, gpu_count=2, tensor_parallel_size=2, cpu=16, memory="64Gi")
    pod, compute_class = synthesized(env)
    assert compute_class is not None
    # The Pod selects the class by name, and only the class: its rungs say which GPUs.
    assert pod["node_selector"] == {"cloud.google.com/compute-class": compute_class["metadata"]["name"]}
    assert compute_class["metadata"]["name"] == COMPUTE_CLASS
    # Every rung offers the GPUs the Pod asks for, and nothing else.
    (server,) = pod["container"]
    wanted = {"type": "nvidia-l4", "count": int(server["resources"]["limits"]["nvidia.com/gpu"])}
    assert [rule["gpu"] for rule in compute_class["spec"]["priorities"]] == [wanted] * len(obtain)


def test_without_a_ladder_the_pod_names_its_gpus() -> None:
    pod, compute_class = synthesized(DEV_ENV)
    assert compute_class is None
    assert pod["node_selector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4",
        "cloud.google.com/gke-accelerator-count": "1",
    }


def test_a_named_reservation_is_consumed_specifically() -> None:
    _, compute_class = synthesized(with_gke(obtain=["reservation", "on_demand"], reservation="l4-serving"))
    assert compute_class is not None
    first, second = compute_class["spec"]["priorities"]
    assert first["reservations"] == {"affinity": "Specific", "specific": [{"name": "l4-serving"}]}
    assert "reservations" not in second


@pytest.mark.parametrize(
    "gke,expected",
    [
        (
            {"obtain": ["spot", "on_demand"]},
            f"inference.gke.obtain = ['spot', 'on_demand']: must list each rung once, in the order {list(RUNG_ORDER)}",
        ),
        ({"obtain": ["on_demand", "on_demand"]}, "must list each rung once"),
        (
            {"reservation": "l4-serving", "obtain": ["on_demand"]},
            "inference.gke.reservation = 'l4-serving': names the reservation rung's",
        ),
        (
            {"obtain": ["reservation", "on_demand"]},
            "inference.gke.reservation: must name the reservation for obtain's 'reservation' rung: Autopilot "
            "consumes specific reservations only",
        ),
        (
            {
                "obtain": ["on_demand", "spot"],
                "gpu_type": "nvidia-h200-141gb",
                "gpu_count": 8,
                "tensor_parallel_size": 8,
            },
            "'on_demand' cannot obtain nvidia-h200-141gb (cloud.google.com/compute/docs/accelerator-optimized-machines)",
        ),
        ({"obtain": ["lottery"]}, "inference.gke.obtain.0 = 'lottery'"),
        (
            {"weights": "streamer", "weights_bucket": BUCKET},
            "inference.gke.image = 'docker.io/vllm/vllm-openai:v0.10.1': must be vLLM v0.11.1 or later",
        ),
    ],
    ids=[
        "order",
        "twice",
        "reservation-without-rung",
        "rung-without-reservation",
        "h200-on-demand",
        "unknown-rung",
        "streamer-old-vllm",
    ],
)
def test_a_bad_ladder_is_refused_naming_the_key(gke: dict[str, Any], expected: str) -> None:
    assert expected in problems(DEV_ENV, **gke)


def test_a_rung_newer_than_the_cluster_is_refused() -> None:
    ladder = {"inference.gke.obtain": ["on_demand", "flex_start"]}
    with pytest.raises(ConfigError) as refused:
        variant(DEV_ENV, {"cluster.min_version": "1.32.1", **ladder})
    assert "cluster.min_version = '1.32.1': must be at least 1.32.2-gke.1652000" in str(refused.value)
    # Without a floor the release channel could run any version: a ladder needs one.
    with pytest.raises(ConfigError) as refused:
        variant(DEV_ENV, {"inference.gke.obtain": ["on_demand"]})
    assert "cluster.min_version: must be at least 1.30.3-gke.1451000" in str(refused.value)
    # On-demand and Spot work on 1.30.3-gke.1451000 and later.
    variant(DEV_ENV, {"cluster.min_version": "1.32.1", "inference.gke.obtain": ["on_demand", "spot"]})


def test_spot_gets_a_grace_under_its_notice_and_a_drain_before_sigterm(synth_json: Stacks) -> None:
    (pod,) = [
        d["spec"]["template"]["spec"]
        for d in resources(synth_json["prod-inference"], "kubernetes_deployment_v1").values()
        if d["metadata"]["name"] == "vllm"
    ]
    (server,) = pod["container"]
    assert pod["termination_grace_period_seconds"] == SPOT_GRACE_SECONDS == 15
    (pre_stop,) = server["lifecycle"]["pre_stop"]
    assert pre_stop["exec"]["command"] == ["sleep", str(DRAIN_SECONDS)]
    # The drain leaves vLLM most of the grace to finish what it is serving.
    assert SPOT_GRACE_SECONDS - DRAIN_SECONDS >= 10
    (budget,) = resources(synth_json["prod-inference"], "kubernetes_pod_disruption_budget_v1").values()
    assert budget["spec"]["max_unavailable"] == "1"
    # Without Spot, nothing cuts a server's shutdown short: it keeps a minute.
    pod, _ = synthesized(with_gke(obtain=["on_demand", "flex_start"]))
    assert pod["termination_grace_period_seconds"] == 60


def test_the_streamer_reads_the_bucket_by_path_and_serves_the_model_by_name() -> None:
    env = with_gke(
        weights="streamer",
        weights_bucket=BUCKET,
        image=STREAMER_IMAGE,
        gpu_count=2,
        tensor_parallel_size=2,
        cpu=16,
        memory="64Gi",
    )
    pod, _ = synthesized(env)
    (server,) = pod["container"]
    args = server["args"]
    model = env.inference.gke_server.model
    assert args[args.index("--model") + 1] == f"gs://{BUCKET}/{model}"
    assert args[args.index("--load-format") + 1] == "runai_streamer"
    assert args[args.index("--served-model-name") + 1] == model
    # With tensor parallelism each shard streams its own part.
    assert json.loads(args[args.index("--model-loader-extra-config") + 1]) == {"distributed": True}


def test_prod_grants_the_server_read_on_the_streamed_bucket(synth_json: Stacks) -> None:
    (grant,) = resources(synth_json["prod-inference"], "google_storage_bucket_iam_member").values()
    assert (grant["bucket"], grant["role"]) == ("replace-me-prod-model-weights", "roles/storage.objectViewer")
    assert grant["//"]["metadata"]["path"].endswith("/weights-access")


def test_gcsfuse_keeps_its_mount() -> None:
    pod, _ = synthesized(with_gke(weights="gcsfuse", weights_bucket=BUCKET))
    (volume,) = [v for v in pod["volume"] if v["name"] == "model-cache"]
    assert volume["csi"]["volume_attributes"]["bucketName"] == BUCKET


def test_the_startup_budget_grows_with_the_model_and_shrinks_with_a_faster_path() -> None:
    big: dict[str, Any] = dict(
        model="meta-llama/Llama-3.1-70B-Instruct",
        gpu_type="nvidia-h100-80gb",
        gpu_count=2,
        tensor_parallel_size=2,
        cpu=16,
        memory="64Gi",
    )
    small_pvc = startup_failures(DEV_ENV.inference.gke_server)
    big_pvc = startup_failures(with_gke(**big).inference.gke_server)
    big_fuse, big_streamed = (
        startup_failures(
            with_gke(**big, weights=path, weights_bucket=BUCKET, image=STREAMER_IMAGE).inference.gke_server
        )
        for path in ("gcsfuse", "streamer")
    )
    assert small_pvc * STARTUP_PERIOD_SECONDS == 1800  # a 7B model stays on the 30-minute floor
    # 141 GB from Hugging Face at 50 MB/s plus 5 minutes' warm-up, twice over: about 2.1 hours.
    assert big_pvc * STARTUP_PERIOD_SECONDS == pytest.approx(2 * (141.2 / 0.05 + 300), abs=STARTUP_PERIOD_SECONDS)
    # At 0.5 GB/s the streamer loads even 141 GB inside the floor; GCS FUSE at 0.2 GB/s does not.
    assert small_pvc == big_streamed < big_fuse < big_pvc
    pod, _ = synthesized(with_gke(**big))
    (server,) = pod["container"]
    assert server["startup_probe"]["failure_threshold"] == big_pvc


def test_cost_prices_each_rung_of_prods_ladder() -> None:
    prod = load_environment(ROOT / "environments" / "prod.toml")
    est = estimate(prod, load_prices("us-central1"))
    on_demand = sum(
        i.monthly_usd or 0 for i in est.items if i.layer == "inference" and (i.price_key or "").startswith("machines.")
    )
    by_rung = {rung["rung"]: rung for rung in est.ladder}
    assert list(by_rung) == PROD_LADDER
    # L4 flex-start bills the on-demand rate; Spot is 60 to 91% off it.
    for rung in ("on_demand", "flex_start"):
        assert by_rung[rung]["low_usd"] == by_rung[rung]["high_usd"] == pytest.approx(on_demand)
    assert by_rung["flex_start"]["price_key"] == "rungs.flex_start_nvidia-l4"
    assert (by_rung["spot"]["low_usd"], by_rung["spot"]["high_usd"]) == pytest.approx(
        (0.09 * on_demand, 0.40 * on_demand)
    )
    # The one figure read from memory (a reservation's rate) is marked so.
    held = variant(prod, {"inference.gke.obtain": LADDER, "inference.gke.reservation": "l4-serving"})
    assert [r["rung"] for r in estimate(held, load_prices("us-central1")).ladder if not r["confirmed"]] == [
        "reservation"
    ]
    assert "The GPU ladder's rungs" in render(est)


def test_an_environment_without_a_ladder_prices_none() -> None:
    assert estimate(DEV_ENV, load_prices("us-central1")).ladder == []


def test_advise_prices_the_ladder_at_the_users_traffic_against_on_demand() -> None:
    raw = tomllib.loads((ROOT / "examples" / "workload.toml").read_text())
    (note,) = advise(Profile.model_validate(raw)).notes
    prices = load_prices("us-central1")
    on_demand = 2 * prices.machine("g2-standard-8").usd * prices.hours_per_month
    assert note.startswith("GPU ladder ['on_demand', 'flex_start', 'spot'] for 2 x g2-standard-8")
    assert note.endswith("put 'reservation' first and name it in [inference.gke] reservation")
    assert f"${0.09 * on_demand:,.0f} to ${on_demand:,.0f} a month, against ${on_demand:,.0f} on-demand only" in note
    assert "min_version to 1.32.2-gke.1652000 or later" in note
