"""The frontend's configuration: environment variables only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FrontendSettings(BaseSettings):
    # FrontendSettings() reads each field from the environment variable of its name in upper case.
    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    gateway_url: str
    default_model: str
    # "identity-platform": email and password against Google Identity Platform (production);
    # "dev": a user name, signed by the development issuer (local runs only).
    auth_mode: Literal["identity-platform", "dev"] = "identity-platform"
    identity_platform_api_key: str = ""  # a browser key, public by design
    # Where the page signs users in (cloud.google.com/identity-platform/docs/use-rest-api).
    identity_platform_url: str = "https://identitytoolkit.googleapis.com"
    dev_issuer_dir: Path | None = None
    dev_token_seconds: int = Field(3600, ge=1)
