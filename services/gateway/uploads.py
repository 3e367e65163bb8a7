"""The slots of batch file uploads (POST /v1/files) on one gateway instance: at most ``total``
uploads read at once (each holds its file in memory), and at most ``per_user`` of one user's,
so that one user's slow uploads cannot keep every other user out. How slow an upload may be
is RequestContext's to enforce (GatewaySettings.batch_upload_min_bytes_per_second)."""

from __future__ import annotations

from collections import Counter
from typing import Literal


class UploadSlots:
    def __init__(self, total: int, per_user: int) -> None:
        self.total, self.per_user = total, per_user
        # Taken and given back on the event loop alone: no lock is needed.
        self.held: Counter[str] = Counter()

    def take(self, user_id: str) -> Literal["taken", "user_busy", "all_busy"]:
        """A slot for the user's upload, to give back once it is done; or why there is none."""
        if self.held[user_id] >= self.per_user:
            return "user_busy"
        if self.held.total() >= self.total:
            return "all_busy"
        self.held[user_id] += 1
        return "taken"

    def give_back(self, user_id: str) -> None:
        self.held[user_id] -= 1
        if not self.held[user_id]:
            del self.held[user_id]  # the counter does not grow with every user ever seen
