"""A provider that approves every top-up without moving money: demos and tests only, so it is the
default in embedded mode alone."""

from __future__ import annotations

import uuid
from typing import Any

from csms.services.payments import TopUpRequest, TopUpStarted


class DevelopmentProvider:
    name = "development"

    def __init__(self, config: dict[str, Any]) -> None:
        pass

    def start_top_up(self, request: TopUpRequest) -> TopUpStarted:
        key = request.idempotency_key or uuid.uuid4()
        return TopUpStarted(reference=f"dev:{request.user_id}:{key}", credited=True)
