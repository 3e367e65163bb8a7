"""GET /v1/usage: the calling user's tokens today against the daily quota, from the ledger. The
user is the one the gateway authenticated (X-User-Id): no parameter names another."""

from __future__ import annotations

import datetime
import logging
from typing import Any

from fastapi import APIRouter, Request

from services.modelcalls.ledger import Ledger, LedgerUnavailable, today
from services.orchestrator.deps import Settings, UserId
from services.orchestrator.routes.chat import ledger_unavailable
from services.servicekit import logs

log = logging.getLogger("orchestrator")
router = APIRouter()


@router.get("/v1/usage")
async def usage(request: Request, settings: Settings, user_id: UserId) -> dict[str, Any]:
    ledger: Ledger = request.app.state.ledger
    try:
        used, reserved = await ledger.run(lambda conn: today(conn, user_id))
    except LedgerUnavailable as err:
        logs.event(log, "ledger unavailable", logging.ERROR, error=str(err))
        raise ledger_unavailable() from None
    # The quota's day is the ledger's: UTC (ledger.TODAY).
    now = datetime.datetime.now(datetime.UTC)
    midnight = datetime.datetime.combine(now.date() + datetime.timedelta(days=1), datetime.time(), datetime.UTC)
    return {
        "object": "usage",
        "date": now.date().isoformat(),
        "used_tokens": used,
        "reserved_tokens": reserved,
        "quota_tokens": settings.daily_token_quota,
        "resets_at": int(midnight.timestamp()),
    }
