"""The graphql-core executor strawberry runs, with one fix for long-lived subscriptions."""

from __future__ import annotations

from typing import Any

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class BffExecutor(StrawberryGraphQLCoreExecutionContext):
    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        # graphql-core 3.3 shares this memo between all per-event copies of a subscription's
        # executor and keys it by the identity of lists built per event: it would grow by about
        # 1 KB per event for as long as the subscription lives. A fresh memo per event is cheap.
        executor._relevant_sub_fields = {}
        return executor
