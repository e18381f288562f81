"""What startup built is exempt from the cyclic collector while the app serves (bff/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import Callable

from asgi_lifespan import LifespanManager

from bff import heap
from bff.app import create_app
from bff.config import Settings


async def test_startup_objects_are_frozen_while_serving_and_thawed_at_shutdown(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings())
    schema = app.state.services.schema
    assert gc.get_freeze_count() == 0
    before = gc.get_threshold()
    async with LifespanManager(app):
        assert gc.get_threshold() == heap.THRESHOLDS
        frozen = gc.get_freeze_count()
        # The schema and the rest of startup: tens of thousands of objects, none left in a generation.
        assert frozen > 10_000
        assert not any(o is schema for g in range(3) for o in gc.get_objects(g))
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
