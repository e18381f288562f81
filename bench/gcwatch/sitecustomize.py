"""Count the cyclic collector's work in a process started with this directory on PYTHONPATH.

    PYTHONPATH=bench/gcwatch GCWATCH=/tmp/gc.txt .venv/bin/uvicorn bff.app:create_app --factory …

Every 2 s it writes to `$GCWATCH.<pid>`, per generation: collections, their total and longest
time, and how many objects each generation and the frozen set hold. The figures of bff/heap.py
and docs/benchmarks.md were counted this way over one bench-query run. Not used by the server.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from typing import Any

if os.environ.get("GCWATCH"):
    _started = [0.0]
    _durations: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def _record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _started[0] = time.perf_counter()
        else:
            _durations[info["generation"]].append(time.perf_counter() - _started[0])

    def _write() -> None:
        while True:
            time.sleep(2)
            lines = []
            for generation, durations in list(_durations.items()):
                if durations:
                    lines.append(
                        f"gen{generation}: n={len(durations)} total={sum(durations) * 1000:.0f}ms"
                        f" max={max(durations) * 1000:.1f}ms\n"
                    )
            lines.append(f"objects per gen: {[len(gc.get_objects(g)) for g in range(3)]}")
            lines.append(f" frozen {gc.get_freeze_count()}\n")
            with open(f"{os.environ['GCWATCH']}.{os.getpid()}", "w") as out:
                out.writelines(lines)

    gc.callbacks.append(_record)
    threading.Thread(target=_write, daemon=True).start()
