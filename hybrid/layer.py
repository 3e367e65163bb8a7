"""The base of every stack: one layer of one environment, with its provider and state."""

from __future__ import annotations

from cdktf import GcsBackend, TerraformStack
from cdktf_cdktf_provider_google.provider import GoogleProvider
from constructs import Construct

from hybrid.config import Environment


class LayerStack(TerraformStack):
    """Stack ``<env>-<layer>``; its state lives in the environment's bucket under ``<env>/<layer>``.
    It is deployed after each stack of ``after``, whose outputs it reads."""

    def __init__(self, scope: Construct, env: Environment, layer: str, *after: TerraformStack) -> None:
        super().__init__(scope, env.stack_id(layer))
        for earlier in after:
            self.add_dependency(earlier)
        self.env = env
        self.layer = layer
        GcsBackend(self, bucket=env.state.bucket, prefix=f"{env.name}/{layer}")
        GoogleProvider(
            self,
            "google",
            project=env.project_id,
            region=env.region,
            default_labels={**env.labels, "layer": layer},
        )
