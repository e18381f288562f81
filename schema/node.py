"""The Relay `Node` interface every refetchable type implements."""

from __future__ import annotations

import strawberry


@strawberry.interface(description="An object with a stable global ID, refetchable with `node(id:)`.")
class Node:
    id: strawberry.ID = strawberry.field(
        description="Global ID (base64 of `Type:databaseId`): stable, use it as the client cache key."
    )
