"""Generation progress posted to RunPod while a ``/generate`` job runs (``runpod.serverless.progress_update``).

Why: a job answers only when its audio is durable, so without this a caller polling RunPod's ``/status`` sees
IN_PROGRESS and nothing else for the whole synthesis. The bridge shows the desktop app the chunks done so far.
The generation's id is known up front when the caller chose it (``X-Generation-Id``, as the bridge does) or
retries one (``/generate/{id}/retry``); the watcher reads ``GET /generate/{id}/status?stream=false`` on loopback
and reports each change. Best effort: a failure here never fails the job.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from backend.api.admin import decoded_route
from backend.serverless.envelope import Envelope

log = logging.getLogger("voicebox.serverless")

#: ``report(job, output)``: what ``runpod.serverless.progress_update`` is
ProgressReporter = Callable[[dict[str, Any], Any], None]
_RETRY = re.compile(r"/generate/([^/]+)/retry")


def generation_id_of(env: Envelope) -> str | None:
    """The id of the generation a ``/generate`` or retry envelope will run, when it is known before it runs."""
    if not env.is_generate():
        return None
    found = _RETRY.fullmatch(decoded_route(env.route_path))
    if found:
        return found.group(1)
    for name, value in env.headers.items():
        if name.lower() == "x-generation-id" and value.strip():
            return value.strip()
    return None


async def watch_progress(
    http: httpx.AsyncClient,
    url: Callable[[str], httpx.URL],
    generation_id: str,
    job: dict[str, Any],
    report: ProgressReporter,
    interval: float,
) -> None:
    """Report ``{generation_id, status, chunks_done, chunks_total}`` on each change until cancelled."""
    last: dict[str, Any] | None = None
    path = f"/generate/{quote(generation_id, safe='')}/status"
    while True:
        await asyncio.sleep(interval)
        try:
            response = await http.get(url(path), params={"stream": "false"})
            if response.status_code != 200:
                continue
            status = response.json()
            current = {
                "generation_id": generation_id,
                "status": status.get("status"),
                "chunks_done": status.get("chunks_done"),
                "chunks_total": status.get("chunks_total"),
            }
            if current != last and current["chunks_total"]:
                await asyncio.to_thread(report, job, current)
                last = current
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - progress is best effort; the job goes on
            log.debug("progress report for %s failed", generation_id, exc_info=True)
