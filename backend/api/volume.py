"""``POST /volume/probe``: the volume probe as a job, so it can run on real RunPod workers.

Why a route: on a serverless endpoint there is no shell; sending this job to two workers at once (two
``/run`` requests with ``peer_wait``) is how a user learns whether the volume keeps the guarantees the database
relies on. It only writes inside ``voicebox/.probe/`` and removes what it wrote.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from backend.api.admin import ADMIN
from backend.api.deps import get_services
from backend.services.container import Services

router = APIRouter(tags=["volume"])


class ProbeRequest(BaseModel):
    quick: bool = Field(default=True, description="fewer rounds and a 1 MB publish only")
    peer_wait: float = Field(default=0.0, ge=0, le=120, description="seconds to wait for a peer")


@router.post("/volume/probe", openapi_extra=ADMIN)
def volume_probe(
    body: ProbeRequest | None = None, services: Services = Depends(get_services)
) -> dict[str, Any]:
    from backend.storage.probe import run_probe

    request = body or ProbeRequest()
    return run_probe(services.settings, quick=request.quick, peer_wait=request.peer_wait).as_dict()
