"""The traffic an estimate assumes: the environment's [traffic] table, then command-line values,
then defaults, every one printed as an assumption."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from hybrid.config import Environment


class Workload(BaseModel):
    """The traffic an estimate assumes. Defaults are assumptions, printed with every estimate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The reference architecture prices its GPU cluster at 50,000 inference requests a day
    # (docs/reference-architecture.md, cost table 2).
    requests_per_day: Annotated[int, Field(ge=0)] = 50_000
    input_tokens: Annotated[int, Field(ge=0)] = 1_000
    output_tokens: Annotated[int, Field(ge=1)] = 500
    # How long the gateway and orchestrator hold a streamed request (the whole reply).
    request_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0
    # Chat-page loads a day (each carries several chat turns); default: one per 5 requests.
    page_loads_per_day: Annotated[int, Field(ge=0)] | None = None
    # The reference architecture's cost table 1: 500 GB of egress a month at ~500K requests a
    # day, about 33 KB a request.
    egress_kb_per_request: Annotated[float, Field(ge=0)] = 33.0
    # Output tokens a second one model-server replica sustains across its batch. NOT
    # measured here: measure your model on your GPUs and pass it.
    replica_tokens_per_second: Annotated[float, Field(gt=0)] = 400.0
    peak_to_average: Annotated[float, Field(ge=1)] = 3.0
    # Tokens a second one stream gets from a Cloud Run L4 model server (placement "cloud_run"). NOT measured.
    stream_tokens_per_second: Annotated[float, Field(gt=0)] = 30.0
    # Through Cloud NAT: images and weights the GPU nodes pull from the internet.
    nat_gb_per_month: Annotated[float, Field(ge=0)] = 50.0
    # Data in the database (backups are about this size); default: half the disk.
    database_used_gb: Annotated[float, Field(ge=0)] | None = None
    registry_gb: Annotated[float, Field(ge=0)] = 3.0
    external_api: str = "openai-gpt-4o-mini"
    vertex_api: str = "vertex-gemini-3_5-flash-lite"
    # Free tiers are per billing account: apply them to this environment alone only if asked.
    free_tier: bool = False

    @property
    def pages_per_day(self) -> int:
        return self.requests_per_day // 5 if self.page_loads_per_day is None else self.page_loads_per_day

    def assumptions(self, env: Environment) -> list[str]:
        used = self.database_used_gb if self.database_used_gb is not None else env.database.disk_size_gb / 2
        out = [
            f"{self.requests_per_day:,} chat requests a day, {self.input_tokens:,} input + {self.output_tokens:,} output tokens each",
            f"each request held {self.request_seconds:g} s by the gateway and the orchestrator (streamed reply)",
            f"{self.pages_per_day:,} chat-page loads a day on the frontend, 0.1 s each",
            f"{self.egress_kb_per_request:g} KB of internet egress per request (reference architecture: 500 GB/month at ~500K requests/day)",
            f"{self.nat_gb_per_month:g} GB/month through Cloud NAT (images, weights pulled from the internet)",
            f"{used:g} GB of data in Cloud SQL; backups the same size",
            f"{self.registry_gb:g} GB of images in Artifact Registry",
            "a month is 730 hours (Google's calculators); list prices, no committed-use discounts, no taxes",
            "free tiers (per billing account) " + ("applied to this environment" if self.free_tier else "not applied"),
            "traffic: the environment's [traffic] ("
            + (", ".join(env.traffic.model_dump(exclude_none=True)) or "no keys")
            + "), then command-line options, then defaults",
            "Cloud Run instances: busy time from Poisson arrivals (1 - e^-C of the first instance, C/concurrency beyond); "
            "instances kept idle after traffic (up to 15 min) are not counted",
        ]
        if env.inference.placement == "gke":
            out.append(
                f"one model-server replica sustains {self.replica_tokens_per_second:g} output tokens/s "
                "(NOT measured: pass --replica-tokens-per-second from a benchmark of your model); replicas billed "
                f"for the average load within [min_replicas, max_replicas], peak = {self.peak_to_average:g} x average"
            )
        else:
            out.append(
                f"a Cloud Run GPU stream produces {self.stream_tokens_per_second:g} output tokens/s "
                "(NOT measured: pass --stream-tokens-per-second); the GPU service is busy for each whole reply"
            )
        return out


def workload_for(env: Environment, given: dict[str, Any] | None = None) -> Workload:
    """The environment's expected traffic, overridden by what the command line gives."""
    return Workload(**(env.traffic.model_dump(exclude_none=True) | (given or {})))
