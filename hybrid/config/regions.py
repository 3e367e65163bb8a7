"""Where GCP offers what the platform deploys: the regions a file may name, and the GPUs each
region has, checked at synth time so that a typo or an unavailable GPU fails here, with a
suggestion, rather than halfway through a deploy."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from hybrid.config.errors import did_you_mean
from hybrid.config.validation import allows, matching

# Every service and job runs on Cloud Run in the environment's region, so the region must be one
# of Cloud Run's: cloud.google.com/run/docs/locations (tier 1 and tier 2 pricing lists).
CLOUD_RUN_REGIONS = frozenset(
    {
        "africa-south1",
        "asia-east1",
        "asia-east2",
        "asia-northeast1",
        "asia-northeast2",
        "asia-northeast3",
        "asia-south1",
        "asia-south2",
        "asia-southeast1",
        "asia-southeast2",
        "australia-southeast1",
        "australia-southeast2",
        "europe-central2",
        "europe-north1",
        "europe-southwest1",
        "europe-west1",
        "europe-west10",
        "europe-west12",
        "europe-west2",
        "europe-west3",
        "europe-west4",
        "europe-west6",
        "europe-west8",
        "europe-west9",
        "me-central1",
        "me-central2",
        "me-west1",
        "northamerica-northeast1",
        "northamerica-northeast2",
        "southamerica-east1",
        "southamerica-west1",
        "us-central1",
        "us-east1",
        "us-east4",
        "us-east5",
        "us-south1",
        "us-west1",
        "us-west2",
        "us-west3",
        "us-west4",
    }
)

# Cloud Run GPUs (one nvidia-l4 per instance): cloud.google.com/run/docs/configuring/services/gpu
# and cloud.google.com/run/docs/configuring/services/gpu-zonal-redundancy ("Supported regions";
# asia-south1 is by invitation, so it is left out here).
CLOUD_RUN_GPU_REGIONS = {"nvidia-l4": frozenset({"us-central1", "asia-southeast1", "europe-west1", "europe-west4"})}

# GKE Autopilot places GPU Pods on Compute Engine's accelerator-optimized machines, so a GPU type
# exists in the regions where Compute Engine has it in at least one zone:
# cloud.google.com/compute/docs/gpus/gpu-regions-zones. The model servers' cluster is regional, and
# Autopilot picks the zone, so the region is what a file can get wrong.
# NOT CONFIRMED on a stored copy of that page (searched 2026-12-04: the copies found stop before its
# table); written from the page as last read. A region missing here is refused, so check the page
# before adding one, and report one it wrongly refuses.
GKE_GPU_REGIONS = {
    "nvidia-l4": frozenset(
        {
            "asia-east1",
            "asia-northeast1",
            "asia-northeast3",
            "asia-south1",
            "asia-southeast1",
            "europe-west1",
            "europe-west2",
            "europe-west3",
            "europe-west4",
            "europe-west6",
            "northamerica-northeast2",
            "us-central1",
            "us-east1",
            "us-east4",
            "us-west1",
            "us-west4",
        }
    ),
    "nvidia-tesla-a100": frozenset(
        {
            "asia-northeast1",
            "asia-northeast3",
            "asia-southeast1",
            "europe-west4",
            "me-west1",
            "us-central1",
            "us-east1",
            "us-west1",
            "us-west3",
            "us-west4",
        }
    ),
    "nvidia-a100-80gb": frozenset({"asia-southeast1", "europe-west4", "us-central1", "us-east4", "us-east5"}),
    "nvidia-h100-80gb": frozenset(
        {
            "asia-northeast1",
            "asia-southeast1",
            "europe-west1",
            "europe-west4",
            "us-central1",
            "us-east4",
            "us-east5",
            "us-south1",
            "us-west1",
            "us-west4",
        }
    ),
    "nvidia-h200-141gb": frozenset(
        {"asia-south1", "asia-southeast1", "europe-west1", "europe-west4", "us-central1", "us-east4", "us-east5"}
    ),
}


@allows("one of Cloud Run's regions (cloud.google.com/run/docs/locations)")
def check_region(region: str) -> str:
    if region not in CLOUD_RUN_REGIONS:
        raise ValueError(
            f"must be a region Cloud Run runs in{did_you_mean(region, CLOUD_RUN_REGIONS)}; "
            "see cloud.google.com/run/docs/locations"
        )
    return region


def gpu_region_problem(placement: str, gpu_type: str, region: str) -> str | None:
    """Why ``gpu_type`` cannot be had in ``region`` with ``placement`` ("gke" or "cloud_run"), or None."""
    table = GKE_GPU_REGIONS if placement == "gke" else CLOUD_RUN_GPU_REGIONS
    offered = table.get(gpu_type, frozenset())
    if region in offered:
        return None
    where = "GKE (Compute Engine)" if placement == "gke" else "Cloud Run"
    return f"must be a GPU {where} offers in {region}; {gpu_type} is in {', '.join(sorted(offered))}"


Region = Annotated[
    str, matching(r"[a-z]+-[a-z]+[0-9]+", "a GCP region like europe-west1 or us-central1"), AfterValidator(check_region)
]
