"""The runtime freezes the start-up heap, so LiteLLM's ~660k start-up objects stay out of every later
full collection (those blocked the proxy's loop for 300-400 ms every ~10 s under load)."""

from __future__ import annotations

import gc

from gateway_plugins.runtime import Runtime
from gateway_plugins.settings import Settings


async def test_start_freezes_the_heap(tmp_path):
    gc.unfreeze()
    rt = Runtime(Settings(audit_stream="kubegate:t:audit", audit_spool_dir=str(tmp_path)))
    try:
        await rt.start()
        assert gc.get_freeze_count() > 0
    finally:
        await rt.close()
        gc.unfreeze()  # give the test process its normal collector back
