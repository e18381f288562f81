"""Rate limits are shared: two server processes on one Redis count one client's requests together."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.edge_fixtures import fresh_redis_url
from tests.procs import running_server
from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(120)
ACCEPT = {"accept": "application/graphql-response+json"}


async def test_requests_split_across_two_instances_are_limited_together(
    tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> None:
    env = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": await fresh_redis_url(redis_server),
        "RATE_LIMIT_PER_MINUTE_IP": "6",
    }
    with running_server(tmp_path, env, "a") as a, running_server(tmp_path, env, "b") as b:
        async with httpx.AsyncClient(timeout=10) as client:
            statuses = []
            for i in range(8):  # A, B, A, B…: each instance alone sees only 4
                server = (a, b)[i % 2]
                response = await client.post(
                    f"{server.url}/graphql", json={"query": "{ __typename }"}, headers=ACCEPT
                )
                statuses.append(response.status_code)
            assert statuses == [200] * 6 + [429, 429], statuses
            refused = await client.get(f"{a.url}/graphql", params={"query": "{ __typename }"}, headers=ACCEPT)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
