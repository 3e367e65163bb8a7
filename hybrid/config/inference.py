"""Typed settings for where and how models are served, capacity-checked at synth time."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Annotated, Literal

from pydantic import Field, model_validator

from hybrid.catalog import GPUS, MODELS, VERTEX_MODELS, ServerShape, capacity_problems, ladder_problems
from hybrid.config.services import GpuServiceSizing, ImageRef, Memory, SecretId, memory_gib
from hybrid.config.validation import Bounded, BucketName, Settings, between, invalid

Replicas = Annotated[int, between(1, 100)]
# The Run:ai streamer authenticates to Cloud Storage itself from vLLM 0.11.1
# (cloud.google.com/kubernetes-engine/docs/how-to/persistent-volumes/run-ai-model-streamer).
STREAMER_VLLM = (0, 11, 1)
# A rung of the obtainability ladder (hybrid.catalog.RUNGS): how a GPU node may be obtained.
Rung = Literal["reservation", "on_demand", "flex_start", "spot"]


class GkeModelServerSettings(Bounded):
    """vLLM's OpenAI-compatible server on GKE Autopilot GPUs."""

    bounds = ("min_replicas", "max_replicas")

    # A docker.io image is pulled through the registry layer's Docker Hub mirror (stacks.registry).
    image: ImageRef = "docker.io/vllm/vllm-openai:v0.10.1"
    # A Literal of the catalog's names, so the catalog alone lists them; a type checker cannot
    # evaluate it (mypy reads Any), pydantic checks it at run time.
    model: Literal[tuple(MODELS)]  # type: ignore[valid-type]
    gpu_type: Literal[tuple(GPUS)]  # type: ignore[valid-type]  # the catalog's GPUs, as model above
    gpu_count: Annotated[int, between(1, 16)] = 1
    tensor_parallel_size: Annotated[int, between(1, 16)] = 1
    max_model_len: Annotated[int, between(256, 1_048_576)] = 8192
    gpu_memory_utilization: Annotated[float, between(0.5, 0.98)] = 0.90
    # Requests equal limits; Autopilot sizes the node from them.
    cpu: Annotated[int, between(1, 207)] = 8
    memory: Memory = "32Gi"
    # Room for the image, compile caches and, with gcsfuse, the file cache (the 1Gi default breaks vLLM).
    ephemeral_storage: Memory = "100Gi"
    # "pvc": a premium-rwo disk per server (the reference architecture: 100Gi), so one replica at most;
    # "gcsfuse": weights read from weights_bucket through the GCS FUSE CSI driver, shared;
    # "streamer": vLLM streams the safetensors from gs://<weights_bucket>/<model> into GPU memory with
    # the Run:ai model streamer (docs/gpu-capacity.md compares the three).
    weights: Literal["pvc", "gcsfuse", "streamer"] = "pvc"
    weights_volume_size: Memory = "100Gi"
    weights_bucket: BucketName | None = None  # made by the registry layer
    hf_token_secret: SecretId | None = None
    min_replicas: Replicas = 1
    max_replicas: Replicas = 1
    # Scale out when more than this many requests wait in each server's queue on average.
    queue_target: Annotated[int, between(1, 1000)] = 10
    # The obtainability ladder, best rung first (docs/gpu-capacity.md): a custom ComputeClass whose
    # priorities are these rungs. Empty: today's single on-demand shape, chosen by node selectors.
    obtain: list[Rung] = Field(default_factory=list)
    # The reservation rung's reservation, which the rung needs: Autopilot consumes specific
    # reservations only (cloud.google.com/kubernetes-engine/docs/how-to/consuming-reservations).
    reservation: Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")] | None = None

    @model_validator(mode="after")
    def _fits(self) -> GkeModelServerSettings:
        if self.weights == "pvc" and self.max_replicas > 1:
            raise invalid(
                "weights",
                "must be 'gcsfuse' or 'streamer' for max_replicas > 1: 'pvc' is a ReadWriteOnce disk for one server",
            )
        if self.weights != "pvc" and not self.weights_bucket:
            raise invalid("weights_bucket", f"must be set when weights is {self.weights!r}")
        if self.weights == "streamer" and _vllm_version(self.image) < STREAMER_VLLM:
            raise invalid(
                "image",
                "must be vLLM v0.11.1 or later, its tag saying so, for weights = 'streamer': its Run:ai streamer "
                "reads gs:// with the Pod's identity from then on",
            )
        if self.reservation and "reservation" not in self.obtain:
            raise invalid("reservation", "names the reservation rung's reservation: add 'reservation' to obtain")
        if "reservation" in self.obtain and not self.reservation:
            raise invalid(
                "reservation",
                "must name the reservation for obtain's 'reservation' rung: Autopilot consumes specific "
                "reservations only, never any matching one "
                "(cloud.google.com/kubernetes-engine/docs/how-to/consuming-reservations)",
            )
        for key, why in ladder_problems(list(self.obtain), self.gpu_type):
            raise invalid(key, why)
        # The shape's fields are these settings' of the same names, but memory, which it counts in GiB.
        same = {field.name: getattr(self, field.name) for field in fields(ServerShape) if field.name != "memory_gib"}
        shape = ServerShape(**same, memory_gib=memory_gib(self.memory))
        for key, why in capacity_problems(shape):
            raise invalid(key, why)
        return self


def _vllm_version(image: str) -> tuple[int, ...]:
    """The version an image's tag names (``...:v0.11.1`` -> (0, 11, 1)); (0,) when the tag names none."""
    found = re.search(r":v?(\d+)\.(\d+)\.(\d+)$", image)
    return tuple(int(part) for part in found.groups()) if found else (0,)


# [inference] spill_to's value for the Cloud Run GPU model server beside the GKE pool.
CLOUD_RUN_SPILL = "cloud_run"


class InferenceSettings(Settings):
    # "gke": vLLM on GKE Autopilot ([inference.gke]) behind an internal load balancer;
    # "cloud_run": the [inference.cloud_run] service on a Cloud Run GPU.
    placement: Literal["gke", "cloud_run"] = "gke"
    gke: GkeModelServerSettings | None = None
    cloud_run: GpuServiceSizing | None = None

    # Where the self-hosted model's requests go when its servers are unavailable or saturated
    # (docs/routing.md, "Choosing a spill threshold"): "vertex:<model>", a Gemini model of the
    # catalog's VERTEX_MODELS on Vertex AI; or "cloud_run", the [inference.cloud_run] model
    # server on a Cloud Run GPU beside the GKE pool (docs/routing.md, "Spill to a Cloud Run GPU");
    # unset, they wait in vLLM's queue.
    spill_to: str | None = None
    # Saturated: vllm:num_requests_waiting at spill_waiting or more on the replica the load
    # balancer sends the poll to, or vllm:kv_cache_usage_perc at spill_kv_cache (1 = full).
    spill_waiting: Annotated[int, between(1, 10_000)] = 8
    spill_kv_cache: Annotated[float, Field(gt=0, le=1)] = 0.95
    # Batch lines back off at batch_share of those thresholds, and wait rather than spill
    # unless batch_spill (a batch's 24 hours can wait; Vertex AI's tokens cost more).
    batch_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    batch_spill: bool = False

    @model_validator(mode="after")
    def _spill_known(self) -> InferenceSettings:
        if self.spill_to is None:
            return self
        if self.spill_to == CLOUD_RUN_SPILL:
            if self.placement != "gke":
                raise invalid("spill_to", "'cloud_run' spills a GKE pool to a Cloud Run GPU: placement must be 'gke'")
            if self.cloud_run is None:
                raise invalid("cloud_run", "must be set when spill_to is 'cloud_run': the spill target's model server")
            if self.batch_spill:
                raise invalid(
                    "batch_spill", "must be false when spill_to is 'cloud_run': batch lines wait for the GKE pool"
                )
            return self
        kind, _, model = self.spill_to.partition(":")
        if kind != "vertex" or model not in VERTEX_MODELS:
            allowed = ", ".join([f"vertex:{name}" for name in VERTEX_MODELS] + [CLOUD_RUN_SPILL])
            raise invalid("spill_to", f"must be one of {allowed}")
        return self

    @property
    def spills_to_cloud_run(self) -> bool:
        """Whether the GKE pool spills to the [inference.cloud_run] model server."""
        return self.spill_to == CLOUD_RUN_SPILL

    @property
    def spill_model(self) -> str | None:
        """The model the spill target is asked for: the Vertex AI model spill_to names, or the
        Cloud Run GPU server's; None without a spill target."""
        if self.spills_to_cloud_run:
            return self.cloud_run_server.model
        return self.spill_to.partition(":")[2] if self.spill_to else None

    @model_validator(mode="after")
    def _placed(self) -> InferenceSettings:
        if self.placement == "gke" and self.gke is None:
            raise invalid("gke", "must be set when placement is 'gke'")
        if self.placement == "cloud_run" and self.cloud_run is None:
            raise invalid("cloud_run", "must be set when placement is 'cloud_run'")
        return self

    @property
    def gke_server(self) -> GkeModelServerSettings:
        """``[inference.gke]``, which the validator requires when placement is "gke"."""
        if self.gke is None:
            raise ValueError(f"inference.gke is not set: placement is {self.placement!r}")
        return self.gke

    @property
    def cloud_run_server(self) -> GpuServiceSizing:
        """``[inference.cloud_run]``, which the validator requires when placement is "cloud_run"."""
        if self.cloud_run is None:
            raise ValueError(f"inference.cloud_run is not set: placement is {self.placement!r}")
        return self.cloud_run
