"""The GraphQL schema: strawberry types over the resolvers."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from schema.chat import ChatRoom, Message
from schema.executor import BffExecutor
from schema.feed import Post
from schema.games import Game
from schema.mutation import Mutation
from schema.names import CachedNameConverter
from schema.query import Query
from schema.subscription import Subscription
from schema.users import User


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[User, Post, Game, ChatRoom, Message],
        config=StrawberryConfig(auto_camel_case=True, name_converter=CachedNameConverter()),
        execution_context_class=BffExecutor,
    )


schema = build_schema()
