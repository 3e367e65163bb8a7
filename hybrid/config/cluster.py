"""Typed settings for the GKE Autopilot cluster the model servers run on."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from hybrid.config.validation import Cidr, Settings, invalid


class ClusterSettings(Settings):
    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = "REGULAR"
    deletion_protection: bool
    # "dns": the control plane's DNS endpoint, reached with IAM from anywhere (a CI runner);
    # "authorized_networks": its IP endpoint, reachable only from authorized_networks.
    control_plane_access: Literal["dns", "authorized_networks"] = "dns"
    authorized_networks: list[Cidr] = Field(default_factory=list)
    # The lowest GKE version the control plane may run: the cluster's min_master_version, from which
    # GKE upgrades within the release channel. "1.33" means the channel's highest 1.33 patch. An
    # obtainability ladder ([inference.gke] obtain) needs it: the channel alone bounds no version.
    min_version: Annotated[str, Field(pattern=r"^1\.\d+(\.\d+(-gke\.\d+)?)?$")] | None = None

    @model_validator(mode="after")
    def _access(self) -> ClusterSettings:
        if (self.control_plane_access == "authorized_networks") != bool(self.authorized_networks):
            raise invalid(
                "authorized_networks", "must be given exactly when control_plane_access is 'authorized_networks'"
            )
        return self
