"""Bad environment files: exit status 2, one clear message naming file, key and what is allowed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid.config import ConfigError, load_environments
from iac import DEV as DEV_CONNECTOR
from iac import DEV_CLOUD_RUN, DEV_DIRECT, ROOT, run_main
from main import main

# The cases edit dev's file as Direct VPC egress has it (its run_cidr); connector mode's own are CONNECTOR_CASES.
DEV = DEV_DIRECT

# (case, what to change in dev.toml, the message expected after "<file>: ")
CASES = [
    (
        "unknown-key",
        ("[state]", "[state]\nbukket = 'x'"),
        "state.bukket: unknown key (did you mean 'bucket'?): must be one of bucket",
    ),
    (
        "region-typo",
        ('"us-central1"', '"us-centrl1"'),
        "region = 'us-centrl1': must be a region Cloud Run runs in (did you mean 'us-central1'?); "
        "see cloud.google.com/run/docs/locations",
    ),
    (
        "region-without-cloud-run",
        ('"us-central1"', '"us-central2"'),
        "region = 'us-central2': must be a region Cloud Run runs in (did you mean 'us-central1'?)",
    ),
    (
        "gke-gpu-not-in-region",
        ('region = "us-central1"', 'region = "europe-north1"'),
        "inference.gke.gpu_type = 'nvidia-l4': must be a GPU GKE (Compute Engine) offers in europe-north1; "
        "nvidia-l4 is in asia-east1, ",
    ),
    (
        "unknown-section",
        ("[database]", "[databse]"),
        "databse: unknown key (did you mean 'database'?): must be one of name, project_id, region, labels, state, network, database",
    ),
    (
        "project-id",
        ('"replace-me-dev"', '"Replace_Me"'),
        "project_id = 'Replace_Me': must be 6-30 lowercase letters, digits or hyphens, starting with a letter",
    ),
    (
        "region",
        ('"us-central1"', '"us central"'),
        "region = 'us central': must be a GCP region like europe-west1 or us-central1",
    ),
    (
        "cidr-syntax",
        ('"10.10.0.0/20"', '"10.10.0.300/20"'),
        "network.subnet_cidr = '10.10.0.300/20': must be an IPv4 CIDR range with no host bits set, like 10.0.0.0/20",
    ),
    (
        "cidr-host-bits",
        ('"10.8.0.0/24"', '"10.8.0.1/24"'),
        "network.run_cidr = '10.8.0.1/24': must be an IPv4 CIDR range with no host bits set",
    ),
    (
        "cidr-not-a-string",
        ('"10.20.0.0/20"', "10"),
        "network.services_cidr = 10: must be an IPv4 CIDR range with no host bits set, like 10.0.0.0/20",
    ),
    (
        "address-syntax",
        ('"10.10.15.250"', '"10.10.15"'),
        "network.inference_address = '10.10.15': must be an IPv4 address",
    ),
    (
        "cidr-overlap",
        ('"10.32.0.0/16"', '"10.16.0.0/16"'),
        "network.psa_cidr = '10.16.0.0/16': must not overlap network.pods_cidr (10.16.0.0/14); every range must be distinct",
    ),
    (
        "run-subnet-overlap",
        ('"10.8.0.0/24"', '"10.10.1.0/24"'),
        "network.run_cidr = '10.10.1.0/24': must not overlap network.subnet_cidr (10.10.0.0/20)",
    ),
    (
        "run-subnet-too-small",
        ('"10.8.0.0/24"', '"10.8.0.0/27"'),
        "network.run_cidr = '10.8.0.0/27': must be a /26 or larger for Cloud Run's Direct VPC egress",
    ),
    (
        "run-subnet-too-few-addresses",
        ("max_instances = 10\n\n[services.orchestrator]", "max_instances = 120\n\n[services.orchestrator]"),
        "network.run_cidr = '10.8.0.0/24': must have 520 usable addresses, two per instance of the gateway's and orchestrator's max_instances, twice over for a rollout's old and new revisions; it has 252",
    ),
    (
        # 140 addresses in the steady state fit; the 280 of a rollout, both revisions at max scale, do not.
        "run-subnet-too-few-addresses-for-a-rollout",
        ("max_instances = 10\n\n[services.orchestrator]", "max_instances = 60\n\n[services.orchestrator]"),
        "network.run_cidr = '10.8.0.0/24': must have 280 usable addresses, two per instance of the gateway's and orchestrator's max_instances, twice over for a rollout's old and new revisions; it has 252",
    ),
    (
        "name-too-long",
        ('name = "dev"', 'name = "development-environment-blue"'),
        "name = 'development-environment-blue': must make names GCP accepts: the GKE node service account name 'development-environment-blue-gke-nodes' (38 chars) must be 6-30 characters",
    ),
    (
        "tier-unknown",
        ('"db-custom-1-3840"', '"db-n1-standard-2"'),
        "database.tier = 'db-n1-standard-2': must be db-f1-micro or db-g1-small or db-custom-<vCPUs>-<memory MiB>",
    ),
    (
        "tier-memory",
        ('"db-custom-1-3840"', '"db-custom-2-15360"'),
        "database.tier = 'db-custom-2-15360': must have a multiple of 256 MiB, at least 3840 MiB, and 0.9-6.5 GiB per vCPU (1843-13312 MiB for 2 vCPUs)",
    ),
    (
        "version",
        ('"POSTGRES_16"', '"POSTGRES_12"'),
        "database.version = 'POSTGRES_12': must be 'POSTGRES_14', 'POSTGRES_15', 'POSTGRES_16' or 'POSTGRES_17'",
    ),
    (
        "availability",
        ('"ZONAL"', '"MULTI_REGION"'),
        "database.availability = 'MULTI_REGION': must be 'ZONAL' or 'REGIONAL'",
    ),
    ("missing-key", ('tier = "db-custom-1-3840"\n', ""), "database.tier: must be set: the key is required"),
    (
        "wrong-type",
        ("min_instances = 0\nmax_instances = 5", 'min_instances = "two"\nmax_instances = 5'),
        "services.frontend.min_instances = 'two': must be a valid integer",
    ),
    (
        "label-key",
        ("managed_by", "managed-by"),
        "labels: key 'managed-by': must be a label key: 1-63 lowercase letters, digits or '_'",
    ),
    (
        "run-cpu",
        ("[services.gateway]\ncpu = 1", "[services.gateway]\ncpu = 3"),
        "services.gateway.cpu = 3: must be 1, 2, 4, 6 or 8",
    ),
    (
        "run-memory-for-cpu",
        ("[services.gateway]\ncpu = 1", "[services.gateway]\ncpu = 4"),
        "services.gateway.memory = '1Gi': must be 2Gi to 16Gi with 4 CPU",
    ),
    (
        "run-memory-too-big",
        ('memory = "512Mi"', 'memory = "6Gi"'),
        "services.frontend.memory = '6Gi': must be 512Mi to 4Gi with 1 CPU",
    ),
    (
        "run-concurrency",
        ("[services.gateway]\n", "[services.gateway]\nconcurrency = 5000\n"),
        "services.gateway.concurrency = 5000: must be between 1 and 1000",
    ),
    (
        "run-ingress-unknown",
        ('access = "public"', 'access = "public"\ningress = "PUBLIC"'),
        "services.frontend.ingress = 'PUBLIC': must be 'INGRESS_TRAFFIC_ALL', 'INGRESS_TRAFFIC_INTERNAL_ONLY' or 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER'",
    ),
    (
        "run-orchestrator-public",
        ("[services.orchestrator]\n", '[services.orchestrator]\ningress = "INGRESS_TRAFFIC_ALL"\n'),
        "services.orchestrator.ingress = 'INGRESS_TRAFFIC_ALL': must be INGRESS_TRAFFIC_INTERNAL_ONLY: only the gateway may reach the orchestrator",
    ),
    (
        "run-reserved-env",
        ("[services.orchestrator]\n", '[services.orchestrator]\nenv = { PORT = "9000" }\n'),
        "services.orchestrator.env: key 'PORT': must not be one Cloud Run sets itself (PORT, K_SERVICE, K_REVISION, K_CONFIGURATION)",
    ),
    # The service contract: what a service reads, and what only the stack may set.
    (
        "contract-unknown-setting",
        ("[services.gateway]\n", '[services.gateway]\nenv = { RATE_LIMIT = "5" }\n'),
        "services.gateway.env.RATE_LIMIT: unknown setting (did you mean 'RATE_LIMIT_BURST'?): must be one the gateway reads: ",
    ),
    (
        "contract-stack-owned",
        ("[services.gateway]\n", '[services.gateway]\nenv = { ORCHESTRATOR_URL = "https://evil.example" }\n'),
        "services.gateway.env.ORCHESTRATOR_URL: must not be set here: the stack sets it",
    ),
    (
        "contract-bad-value",
        ("[services.gateway]\n", '[services.gateway]\nenv = { RATE_LIMIT_BURST = "0" }\n'),
        "services.gateway.env.RATE_LIMIT_BURST = '0': must be greater than or equal to 1",
    ),
    (
        "contract-unread-secret",
        (
            "[services.orchestrator]\n",
            '[services.orchestrator]\nsecrets = { UPSTREAM_API_KEY = "dev-llm-upstream-api-key" }\n',
        ),
        "services.orchestrator.secrets.UPSTREAM_API_KEY: unknown setting: must be one the orchestrator reads: ",
    ),
    (
        "gateway-issuer",
        ("[services.gateway]\n", '[services.gateway]\njwt_issuer = "securetoken.google.com/x"\n'),
        "services.gateway.jwt_issuer = 'securetoken.google.com/x': must be an https:// issuer URL",
    ),
    (
        "run-iap-without-members",
        ('access = "public"', 'access = "iap"'),
        "services.iap_members: must name who may use the frontend when frontend.access is 'iap'",
    ),
    (
        "spill-to-unknown-model",
        ('placement = "gke"', 'placement = "gke"\nspill_to = "vertex:gpt-4o"'),
        "inference.spill_to = 'vertex:gpt-4o': must be one of vertex:google/gemini-3.5-flash-lite",
    ),
    (
        "toml-syntax",
        ("[state]", "[state"),
        "must be valid TOML: Expected ']' at the end of a table declaration (at line 8, column 7)",
    ),
]


# Cases on DEV_CLOUD_RUN, or on dev's [inference.gke] model server and its capacity check.
GPU_CASES = [
    (
        "cloud-run-gpu-not-in-region",
        ('region = "us-central1"', 'region = "us-east1"'),
        "inference.cloud_run.gpu_type = 'nvidia-l4': must be a GPU Cloud Run offers in us-east1; "
        "nvidia-l4 is in asia-southeast1, europe-west1, europe-west4, us-central1",
    ),
    (
        "gpu-memory",
        ("zonal_redundancy = false", 'zonal_redundancy = false\nmemory = "8Gi"'),
        "inference.cloud_run.memory = '8Gi': must be at least 16Gi with a GPU",
    ),
    (
        "gpu-cpu",
        ("zonal_redundancy = false", 'zonal_redundancy = false\ncpu = 2\nmemory = "8Gi"'),
        "inference.cloud_run.cpu = 2: must be at least 4 with a GPU",
    ),
    (
        "gpu-placement-without-service",
        ('[inference.cloud_run]\nmodel = "google/gemma-3-4b-it"\nzonal_redundancy = false\n', ""),
        "inference.cloud_run: must be set when placement is 'cloud_run'",
    ),
]
GKE_CASES = [
    (
        "gke-reference-mixtral",
        (
            'model = "mistralai/Mistral-7B-Instruct-v0.3"\ngpu_type = "nvidia-l4"\ngpu_count = 1\ntensor_parallel_size = 1\nmax_model_len = 8192',
            'model = "mistralai/Mixtral-8x7B-Instruct-v0.1"\ngpu_type = "nvidia-l4"\ngpu_count = 2\ntensor_parallel_size = 2\nmax_model_len = 32768',
        ),
        "inference.gke.model = 'mistralai/Mixtral-8x7B-Instruct-v0.1': must fit the GPUs' memory: mistralai/Mixtral-8x7B-Instruct-v0.1 needs 97.7 GB (93.4 GB of weights + 4.3 GB of KV cache for 32768 tokens) but 2 x nvidia-l4 at 0.9 utilization offer 43.2 GB; configurations that fit: 2 x nvidia-a100-80gb with mistralai/Mixtral-8x7B-Instruct-v0.1, 2 x nvidia-h100-80gb with mistralai/Mixtral-8x7B-Instruct-v0.1, 1 x nvidia-tesla-a100 with TheBloke/Mixtral-8x7B-Instruct-v0.1-AWQ, 2 x nvidia-l4 with TheBloke/Mixtral-8x7B-Instruct-v0.1-AWQ",
    ),
    (
        "gke-gpu-count",
        ("gpu_count = 1\ntensor_parallel_size = 1", "gpu_count = 3\ntensor_parallel_size = 3"),
        "inference.gke.gpu_count = 3: must be one of [1, 2, 4, 8] for nvidia-l4 on Autopilot",
    ),
    (
        "gke-tensor-parallel",
        ("tensor_parallel_size = 1", "tensor_parallel_size = 2"),
        "inference.gke.tensor_parallel_size = 2: must equal gpu_count (1): one shard per GPU",
    ),
    (
        "gke-cpu-cap",
        ('cpu = 8\nmemory = "32Gi"\nephemeral_storage', 'cpu = 40\nmemory = "32Gi"\nephemeral_storage'),
        "inference.gke.cpu = 40: must be below 32 with 1 x nvidia-l4: the largest such machine, g2-standard-32, has 32 vCPUs",
    ),
    (
        "gke-pvc-replicas",
        ("max_replicas = 1", "max_replicas = 3"),
        "inference.gke.weights = 'pvc': must be 'gcsfuse' or 'streamer' for max_replicas > 1: 'pvc' is a ReadWriteOnce disk for one server",
    ),
    (
        # The registry layer makes the bucket under this name.
        "gke-weights-bucket-name",
        ('weights = "pvc"', 'weights = "gcsfuse"\nweights_bucket = "Model.Weights"'),
        "inference.gke.weights_bucket = 'Model.Weights': must be a GCS bucket name: 3-63 lowercase letters, digits, '-' or '_'",
    ),
    (
        "gke-unknown-key",
        ("gpu_count = 1\n", "gpu_count = 1\ngpus = 2\n"),
        "inference.gke.gpus: unknown key: must be one of image, model, gpu_type, gpu_count, tensor_parallel_size",
    ),
    (
        "gke-unknown-gpu",
        ('gpu_type = "nvidia-l4"', 'gpu_type = "nvidia-t4"'),
        "inference.gke.gpu_type = 'nvidia-t4': must be 'nvidia-l4', 'nvidia-tesla-a100', 'nvidia-a100-80gb', 'nvidia-h100-80gb' or 'nvidia-h200-141gb'",
    ),
    (
        "gke-address-outside-subnet",
        ('inference_address = "10.10.15.250"', 'inference_address = "10.99.0.5"'),
        "network.inference_address = '10.99.0.5': must be a usable address of subnet_cidr (10.10.0.0/20)",
    ),
    (
        "cluster-authorized-networks",
        ('control_plane_access = "dns"', 'control_plane_access = "authorized_networks"'),
        "cluster.authorized_networks: must be given exactly when control_plane_access is 'authorized_networks'",
    ),
]
# The workers tier: dev has it off, prod on.
PROD = (ROOT / "environments" / "prod.toml").read_text()
DEV_WORKERS_CASES = [
    (
        "workers-without-their-ranges",
        ("[workers]\nenabled = false", "[workers]\nenabled = true"),
        "network.workers_cidr: must be set when workers.enabled is true: the workers' GKE cluster needs it",
    ),
]
PROD_WORKERS_CASES = [
    (
        "workers-ranges-while-disabled",
        ("[workers]\nenabled = true", "[workers]\nenabled = false"),
        "network.workers_cidr = '10.12.0.0/22': must not be set while workers.enabled is false: nothing would use it",
    ),
    (
        "workers-pods-overlap",
        ('workers_pods_cidr = "10.24.0.0/16"', 'workers_pods_cidr = "10.16.0.0/16"'),
        "network.workers_pods_cidr = '10.16.0.0/16': must not overlap network.pods_cidr (10.16.0.0/14); every range must be distinct",
    ),
    (
        "workers-delivery-attempts",
        ("max_delivery_attempts = 5", "max_delivery_attempts = 3"),
        "workers.queue.max_delivery_attempts = 3: must be between 5 and 100",
    ),
    (
        "workers-ack-deadline",
        ("ack_deadline_seconds = 600", "ack_deadline_seconds = 900"),
        "workers.queue.ack_deadline_seconds = 900: must be between 10 and 600",
    ),
    (
        "workers-backoff-order",
        ("max_backoff_seconds = 600", "max_backoff_seconds = 5"),
        "workers.queue.min_backoff_seconds = 10: must not exceed max_backoff_seconds (5)",
    ),
    (
        "workers-retention",
        ("\nretention_days = 7", "\nretention_days = 40"),
        "workers.queue.retention_days = 40: must be between 1 and 31",
    ),
    (
        "workers-on-demand-bounds",
        ("min_nodes = 1", "min_nodes = 5"),
        "workers.on_demand_pool.min_nodes = 5: must not exceed max_nodes (3)",
    ),
    (
        "workers-machine-type",
        ('[workers.spot_pool]\nmachine_type = "e2-standard-4"', '[workers.spot_pool]\nmachine_type = "E2 standard"'),
        "workers.spot_pool.machine_type = 'E2 standard': must be a Compute Engine machine type like e2-standard-4",
    ),
    (
        "workers-replicas",
        ("min_replicas = 1\nmax_replicas = 20", "min_replicas = 0\nmax_replicas = 20"),
        "workers.deployment.min_replicas = 0: must be between 1 and 1000",
    ),
    (
        "workers-cpu",
        ('cpu = "1"', 'cpu = "one"'),
        "workers.deployment.cpu = 'one': must be a CPU quantity like 500m or 2",
    ),
    (
        "workers-unknown-setting",
        ("target_undelivered_per_replica = 50", 'target_undelivered_per_replica = 50\nenv = { NOT_A_SETTING = "1" }'),
        "workers.deployment.env.NOT_A_SETTING: unknown setting: must be one the worker reads: ",
    ),
    (
        "workers-stack-set-setting",
        ("target_undelivered_per_replica = 50", 'target_undelivered_per_replica = 50\nenv = { TOPIC = "x" }'),
        "workers.deployment.env.TOPIC: must not be set here: the stack sets it",
    ),
    (
        "workers-lifecycle",
        ("bucket_lifecycle_days = 30", "bucket_lifecycle_days = 0"),
        "workers.bucket_lifecycle_days = 0: must be between 1 and 3650",
    ),
]
# Connector mode's settings, on dev's own file (network.egress = "connector").
CONNECTOR_CASES = [
    (
        "connector-with-run-cidr",
        ('egress = "connector"', 'egress = "connector"\nrun_cidr = "10.7.0.0/24"'),
        'network.run_cidr = \'10.7.0.0/24\': must not be set while network.egress is "connector": it is for "direct"',
    ),
    (
        "connector-without-its-range",
        ('connector_cidr = "10.8.0.0/28"', "# no connector_cidr"),
        'network.connector_cidr: must be set when network.egress is "connector"',
    ),
    (
        "connector-range-not-a-28",
        ('connector_cidr = "10.8.0.0/28"', 'connector_cidr = "10.8.0.0/27"'),
        "network.connector_cidr = '10.8.0.0/27': must be a /28, a Serverless VPC Access connector's subnet size",
    ),
    (
        "connector-instances-out-of-bounds",
        ("connector_max_instances = 10", "connector_max_instances = 11"),
        "network.connector_max_instances = 11: must be between 3 and 10",
    ),
    (
        "connector-min-not-below-max",
        (
            "connector_min_instances = 2\nconnector_max_instances = 10",
            "connector_min_instances = 9\nconnector_max_instances = 9",
        ),
        "network.connector_min_instances = 9: must be below connector_max_instances",
    ),
    (
        "proxy-only-subnet-too-small",
        ('proxy_only_cidr = "10.9.0.0/23"', 'proxy_only_cidr = "10.9.0.0/27"'),
        "network.proxy_only_cidr = '10.9.0.0/27': must be a /26 or larger for the load balancer's proxies",
    ),
    (
        "proxy-only-subnet-overlaps-the-connector",
        ('proxy_only_cidr = "10.9.0.0/23"', 'proxy_only_cidr = "10.8.0.0/23"'),
        "network.proxy_only_cidr = '10.8.0.0/23': must not overlap network.connector_cidr (10.8.0.0/28); "
        "every range must be distinct",
    ),
    (
        "internal-lb-address-outside-the-subnet",
        ('internal_lb_address = "10.10.15.249"', 'internal_lb_address = "10.11.0.5"'),
        "network.internal_lb_address = '10.11.0.5': must be a usable address of subnet_cidr (10.10.0.0/20)",
    ),
    (
        "direct-mode-without-run-cidr",
        ('egress = "connector"', 'egress = "direct"'),
        'network.run_cidr: must be set when network.egress is "direct"',
    ),
    (
        "connector-with-the-model-on-cloud-run",
        ('placement = "gke"', 'placement = "cloud_run"\n\n[inference.cloud_run]\nmodel = "google/gemma-3-4b-it"\n'),
        "network.egress = 'connector': must be \"direct\" while inference runs on Cloud Run and is called through "
        'the VPC: "connector" puts only the orchestrator behind its internal load balancer',
    ),
]
ALL_CASES = (
    [(DEV, *case) for case in CASES + GKE_CASES + DEV_WORKERS_CASES]
    + [(DEV_CONNECTOR, *case) for case in CONNECTOR_CASES]
    + [(DEV_CLOUD_RUN, *case) for case in GPU_CASES]
    + [(PROD, *case) for case in PROD_WORKERS_CASES]
)


@pytest.mark.parametrize("base,case,edit,expected", ALL_CASES, ids=[case[1] for case in ALL_CASES])
def test_bad_environment_is_refused_clearly(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    base: str,
    case: str,
    edit: tuple[str, str],
    expected: str,
) -> None:
    old, new = edit
    assert old in base, f"{case}: the edit no longer applies"
    bad = tmp_path / f"{case}.toml"
    bad.write_text(base.replace(old, new, 1))
    outdir = tmp_path / "out"
    monkeypatch.setenv("CDKTF_OUTDIR", str(outdir))

    # main.py's main() in this process (a process of its own costs a quarter of a second, and there
    # are some eighty cases): a refusal comes before any stack is imported, and an exception (a
    # traceback, from python main.py) fails the test. The tests below run python main.py itself.
    status = main(["--env", str(bad)])
    stdout, stderr = capsys.readouterr()

    assert status == 2
    assert f"{bad}: {expected}" in stderr
    assert stdout == ""
    assert not outdir.exists(), "nothing may be written for a bad environment"
    assert bad.read_text() == base.replace(old, new, 1), "the user's file is left as it was"


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text(DEV.replace('"us-central1"', '"nowhere"').replace('"10.8.0.0/24"', '"10.8.0.0/28"'))
    second.write_text(DEV.replace('"ZONAL"', '"SOMETIMES"'))
    result = run_main(tmp_path / "out", "--env", str(first), "--env", str(second))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{first}: region = 'nowhere': must be a GCP region like europe-west1 or us-central1",
        f"{first}: network.run_cidr = '10.8.0.0/28': must be a /26 or larger for Cloud Run's Direct VPC egress",
        f"{first}: network.run_cidr = '10.8.0.0/28': must have 80 usable addresses, two per instance of the gateway's "
        "and orchestrator's max_instances, twice over for a rollout's old and new revisions; it has 12",
        f"{second}: database.availability = 'SOMETIMES': must be 'ZONAL' or 'REGIONAL'",
    ]


def test_field_and_cross_field_problems_are_reported_in_one_run(tmp_path: Path) -> None:
    """Three mistakes, one of them across fields (an overlap): all three in the first run."""
    bad = tmp_path / "three.toml"
    bad.write_text(
        DEV.replace('"us-central1"', '"us-centrl1"')
        .replace('"replace-me-dev"', '"Replace_Me"')
        .replace('psa_cidr = "10.32.0.0/16"', 'psa_cidr = "10.16.0.0/16"')
    )
    result = run_main(tmp_path / "out", "--env", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{bad}: project_id = 'Replace_Me': must be 6-30 lowercase letters, digits or hyphens, starting with a letter",
        f"{bad}: region = 'us-centrl1': must be a region Cloud Run runs in (did you mean 'us-central1'?); "
        "see cloud.google.com/run/docs/locations",
        f"{bad}: network.psa_cidr = '10.16.0.0/16': must not overlap network.pods_cidr (10.16.0.0/14); "
        "every range must be distinct",
    ]


def test_the_docs_example_is_what_one_run_prints(tmp_path: Path) -> None:
    """docs/deploying.md, "Adding an environment": four edits, five problems, one run ("..." ends a shortened line)."""
    readme = (ROOT / "docs" / "deploying.md").read_text()
    block = readme[readme.index("```\nenvironments/stage.toml: ") + 4 :]
    expected = block[: block.index("```")].splitlines()
    stage = tmp_path / "environments" / "stage.toml"
    stage.parent.mkdir()
    stage.write_text(
        DEV.replace('name = "dev"', 'name = "stage"')
        .replace('"10.8.0.0/24"', '"10.8.0.0/27"')
        .replace('psa_cidr = "10.32.0.0/16"', 'psa_cidr = "10.16.0.0/16"')
        .replace("[services.gateway]\n", '[services.gateway]\nenv = { RATE_LIMIT = "10" }\n')
        .replace('model = "mistralai/Mistral-7B-Instruct-v0.3"', 'model = "mistralai/Mixtral-8x7B-Instruct-v0.1"')
        .replace(
            "gpu_count = 1\ntensor_parallel_size = 1\nmax_model_len = 8192",
            "gpu_count = 2\ntensor_parallel_size = 2\nmax_model_len = 32768",
        )
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--env", "environments/stage.toml"],
        cwd=tmp_path, env={**os.environ, "CDKTF_OUTDIR": str(tmp_path / "out")}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    printed = result.stderr.splitlines()
    assert len(printed) == len(expected), result.stderr
    for line, shown in zip(printed, expected, strict=True):
        assert line.startswith(shown.removesuffix("...")) if shown.endswith("...") else line == shown


def test_a_nested_tables_own_checks_run_beside_a_field_error_in_it(tmp_path: Path) -> None:
    bad = tmp_path / "nested.toml"
    bad.write_text(DEV.replace('"10.8.0.0/24"', '"10.8.0.0/28"').replace('"10.20.0.0/20"', '"not-a-range"'))
    result = run_main(tmp_path / "out", "--env", str(bad))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert f"{bad}: network.services_cidr = 'not-a-range': must be an IPv4 CIDR range" in lines[0]
    # The table's own size check, and the environment's address count, which needs only run_cidr.
    assert lines[1:] == [
        f"{bad}: network.run_cidr = '10.8.0.0/28': must be a /26 or larger for Cloud Run's Direct VPC egress",
        f"{bad}: network.run_cidr = '10.8.0.0/28': must have 80 usable addresses, two per instance of the gateway's "
        "and orchestrator's max_instances, twice over for a rollout's old and new revisions; it has 12",
    ]


@pytest.mark.parametrize("command", [["--env", "environments/dev.toml"], ["--refuse-placeholders", "dev-network"]])
def test_make_up_and_make_deploy_refuse_the_placeholder_project(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.up", *command], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "project_id = 'replace-me-dev' is the shipped placeholder: set your project's id" in result.stderr


def test_make_deploy_lets_other_environments_stacks_through() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.up", "--refuse-placeholders", "staging-network"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_make_deploy_checks_the_stacks_before_anything_else() -> None:
    make = subprocess.run(
        ["make", "-n", "--no-print-directory", "deploy", "STACKS=dev-network"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    commands = [line for line in make.stdout.splitlines() if "scripts.up" in line or "cdktf deploy" in line]
    assert "--refuse-placeholders dev-network" in commands[0], make.stdout
    assert "cdktf deploy" in commands[1]


def test_missing_file_and_duplicate_names(tmp_path: Path) -> None:
    result = run_main(tmp_path / "out", "--env", str(tmp_path / "nope.toml"))
    assert (result.returncode, result.stderr.strip()) == (2, f"{tmp_path / 'nope.toml'}: file not found")

    copy = tmp_path / "dev-copy.toml"
    copy.write_text(DEV)
    result = run_main(tmp_path / "out", "--env", str(ROOT / "environments" / "dev.toml"), "--env", str(copy))
    assert result.returncode == 2
    assert (
        f"{copy}: name = 'dev': must be unique; {ROOT / 'environments' / 'dev.toml'} already uses it" in result.stderr
    )


def test_one_environment_synthesizes_alone(tmp_path: Path) -> None:
    """And a stack of an earlier synth into the same folder (dev's, here) is gone afterwards."""
    (tmp_path / "stacks" / "dev-network").mkdir(parents=True)
    (tmp_path / "stacks" / "dev-network" / "cdk.tf.json").write_text("{}")
    result = run_main(tmp_path, "--env", str(ROOT / "environments" / "prod.toml"))
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"Synthesized 11 stacks to {re.escape(str(tmp_path))} in [0-9.]+ s \(prod: 11 stacks, [1-9][0-9]+ resources\)\n",
        result.stdout,
    )
    assert sorted(p.name for p in (tmp_path / "stacks").iterdir()) == [
        "prod-analytics",
        "prod-cluster",
        "prod-database",
        "prod-edge",
        "prod-inference",
        "prod-network",
        "prod-observability",
        "prod-registry",
        "prod-services",
        "prod-workers",
        "prod-workers-k8s",
    ]


def test_under_the_cdktf_cli_the_summary_counts_hcl_and_leaves_stale_stacks_to_it(tmp_path: Path) -> None:
    """`cdktf synth --hcl` has the app write HCL and removes stale stack folders itself afterwards
    (it fails on one the app removed first): the same summary, nothing removed here."""
    (tmp_path / "stacks" / "dev-network").mkdir(parents=True)
    json_run = run_main(tmp_path / "json", "--env", str(ROOT / "environments" / "prod.toml"))
    hcl_run = run_main(
        tmp_path,
        "--env",
        str(ROOT / "environments" / "prod.toml"),
        extra_env={"CDKTF_CONTEXT_JSON": "{}", "SYNTH_HCL_OUTPUT": "true"},
    )
    assert hcl_run.returncode == 0, hcl_run.stderr
    assert (tmp_path / "stacks" / "prod-network" / "cdk.tf").exists()
    assert (tmp_path / "stacks" / "dev-network").exists()
    counts = re.compile(r"\(prod: 11 stacks, \d+ resources\)")
    hcl_counts, json_counts = counts.search(hcl_run.stdout), counts.search(json_run.stdout)
    assert hcl_counts and json_counts, (hcl_run.stdout, json_run.stdout)
    assert hcl_counts[0] == json_counts[0]


def test_every_overlapping_range_is_named_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "dev.toml"
    path.write_text(
        DEV.replace('psa_cidr = "10.32.0.0/16"', 'psa_cidr = "10.16.0.0/16"').replace(
            'run_cidr = "10.8.0.0/24"', 'run_cidr = "10.10.0.0/24"'
        )
    )
    with pytest.raises(ConfigError) as refused:
        load_environments([path])
    (line,) = [line for line in refused.value.lines if "overlap" in line]
    assert "network.run_cidr = '10.10.0.0/24': must not overlap network.subnet_cidr (10.10.0.0/20)" in line
    assert "network.psa_cidr (10.16.0.0/16) also overlaps network.pods_cidr (10.16.0.0/14)" in line
