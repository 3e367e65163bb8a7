"""GET /health: Cloud Run's probe, and how the rate limit is working."""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway.deps import State

router = APIRouter()


@router.get("/health", include_in_schema=False)
async def health(state: State) -> dict[str, str | int]:
    # Whether the rate limit is shared right now, and how many requests were limited by this
    # instance alone because Redis did not answer.
    mode = "shared" if state.limiter.shared else "per-instance"
    return {"status": "ok", "rate_limit": mode, "rate_limit_fallbacks": state.limiter.fallbacks}
