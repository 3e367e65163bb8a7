"""What the orchestrator's routes depend on: its settings and the user the gateway names."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.orchestrator.settings import OrchestratorSettings
from services.servicekit.errors import ApiError


def settings(request: Request) -> OrchestratorSettings:
    configured: OrchestratorSettings = request.app.state.settings
    return configured


def user_id(request: Request) -> str:
    """The user the gateway authenticated (X-User-Id), whom the request bills; else 400."""
    user = request.headers.get("x-user-id")
    if not user:
        raise ApiError(400, "X-User-Id is required", "invalid_request_error", "no_user")
    return user


Settings = Annotated[OrchestratorSettings, Depends(settings)]
UserId = Annotated[str, Depends(user_id)]
