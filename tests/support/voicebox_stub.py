"""A small Voicebox-like FastAPI app for client and bridge tests.

Why a stub and not ``backend.app``: the client tests are about the RunPod transport and the
envelope, and must run in seconds without models or the volume database. The stub answers the routes
the client and the desktop app use, with the same shapes (VoiceProfileResponse,
ProfileSampleResponse, GenerationResponse, HistoryListResponse), and has knobs for slow and queued
generations.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from tests.support.audio import wav_bytes


def create_stub_app(volume: Path) -> FastAPI:
    """``app.state`` knobs: ``generate_delay`` (seconds), ``pending_polls`` (history reads before a
    queued generation completes; 0 = POST /generate blocks and completes), ``pending_final`` (the status a
    queued generation ends in: ``completed``, ``failed``/``cancelled`` with an error, None = never ends),
    ``audio_seconds_per_char``.
    """
    app = FastAPI()
    app.state.generate_delay = 0.0
    app.state.pending_polls = 0
    app.state.pending_final = "completed"
    app.state.audio_seconds_per_char = 0.01
    app.state.export_padding = b""
    profiles: dict[str, dict[str, Any]] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    sample_audio: dict[str, bytes] = {}
    generations: dict[str, dict[str, Any]] = {}
    audio: dict[str, bytes] = {}
    polls: dict[str, int] = {}
    app.state.seen = []  # (method, path, content-type) of each request

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        app.state.seen.append(
            (request.method, request.url.path, request.headers.get("content-type"))
        )
        return await call_next(request)

    def profile_or_404(profile_id: str) -> dict[str, Any]:
        if profile_id not in profiles:
            raise HTTPException(404, "Profile not found")
        return profiles[profile_id]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "healthy", "model_loaded": True, "gpu_available": False}

    @app.post("/profiles")
    async def create_profile(request: Request) -> dict[str, Any]:
        body = await request.json()
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise HTTPException(422, [{"loc": ["body", "name"], "msg": "Field required"}])
        if any(p["name"] == name for p in profiles.values()):
            raise HTTPException(400, f"A profile named {name!r} already exists")
        profile = {
            "id": str(uuid.uuid4()),
            "name": name,
            "description": body.get("description"),
            "language": body.get("language", "en"),
            "avatar_path": None,
            "created_at": "2026-01-01T00:00:00",
            "updated_at": "2026-01-01T00:00:00",
        }
        profiles[profile["id"]] = profile
        samples[profile["id"]] = []
        return profile

    @app.get("/profiles")
    async def list_profiles() -> list[dict[str, Any]]:
        return list(profiles.values())

    @app.get("/profiles/{profile_id}")
    async def get_profile(profile_id: str) -> dict[str, Any]:
        return profile_or_404(profile_id)

    @app.post("/profiles/{profile_id}/samples")
    async def add_sample(
        profile_id: str, file: UploadFile = File(...), reference_text: str = Form(...)
    ) -> dict[str, Any]:
        profile_or_404(profile_id)
        data = await file.read()
        if not data.startswith(b"RIFF"):
            raise HTTPException(400, "Invalid audio file: not a WAV")
        sample = {
            "id": str(uuid.uuid4()),
            "profile_id": profile_id,
            "audio_path": f"profiles/{profile_id}/{file.filename}",
            "reference_text": reference_text,
        }
        samples[profile_id].append(sample)
        sample_audio[sample["id"]] = data
        return sample

    @app.get("/profiles/{profile_id}/samples")
    async def list_samples(profile_id: str) -> list[dict[str, Any]]:
        profile_or_404(profile_id)
        return samples[profile_id]

    @app.get("/profiles/{profile_id}/export")
    async def export_profile(profile_id: str) -> Response:
        profile = profile_or_404(profile_id)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as bundle:
            bundle.writestr("profile.json", json.dumps(profile))
            bundle.writestr("samples.json", json.dumps(samples[profile_id]))
            for sample in samples[profile_id]:
                bundle.writestr(f"samples/{sample['id']}.wav", sample_audio[sample["id"]])
            # incompressible padding so tests can push a bundle past the result budget
            bundle.writestr("padding.bin", app.state.export_padding)
        return Response(
            buffer.getvalue(),
            media_type="application/zip",
            headers={"content-disposition": f'attachment; filename="{profile["name"]}.zip"'},
        )

    @app.post("/profiles/import")
    async def import_profile(
        file: UploadFile | None = File(None), volume_name: str | None = Form(None)
    ) -> dict[str, Any]:
        if volume_name is not None:
            path = volume / "voicebox" / "imports" / volume_name
            if "/" in volume_name or not path.is_file():
                raise HTTPException(404, f"voicebox/imports/{volume_name} not found on the volume")
            data = path.read_bytes()
        elif file is not None:
            data = await file.read()
        else:
            raise HTTPException(400, "send a file or a volume_name")
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as bundle:
                source = json.loads(bundle.read("profile.json"))
        except (zipfile.BadZipFile, KeyError) as exc:
            raise HTTPException(400, f"Invalid profile bundle: {exc}") from None
        name = source["name"]
        while any(p["name"] == name for p in profiles.values()):
            name += " (imported)"
        profile = {**source, "id": str(uuid.uuid4()), "name": name}
        profiles[profile["id"]] = profile
        samples[profile["id"]] = []
        return profile

    @app.post("/generate")
    async def generate(request: Request) -> dict[str, Any]:
        body = await request.json()
        profile_or_404(str(body.get("profile_id")))
        text = body.get("text") or ""
        if not text:
            raise HTTPException(422, [{"loc": ["body", "text"], "msg": "Field required"}])
        if app.state.generate_delay:
            await asyncio.sleep(app.state.generate_delay)
        generation_id = str(uuid.uuid4())
        seconds = max(0.05, len(text) * app.state.audio_seconds_per_char)
        audio[generation_id] = wav_bytes(seconds, amp=0.0)
        pending = app.state.pending_polls > 0
        record = {
            "id": generation_id,
            "profile_id": body["profile_id"],
            "text": text,
            "language": body.get("language", "en"),
            "audio_path": None if pending else f"generations/{generation_id}.wav",
            "duration": None if pending else seconds,
            "seed": body.get("seed"),
            "instruct": None,
            "created_at": "2026-01-01T00:00:00",
            "status": "generating" if pending else "completed",
            "error": None,
        }
        generations[generation_id] = record
        polls[generation_id] = app.state.pending_polls
        return record

    def history_item(generation_id: str) -> dict[str, Any]:
        record = generations[generation_id]
        if record["status"] == "generating":
            polls[generation_id] -= 1
            final = app.state.pending_final
            if polls[generation_id] <= 0 and final not in (None, "completed"):
                record.update(status=final, error="Generation cancelled")
            elif polls[generation_id] <= 0 and final is not None:
                seconds = max(0.05, len(record["text"]) * app.state.audio_seconds_per_char)
                record.update(
                    status="completed",
                    duration=seconds,
                    audio_path=f"generations/{generation_id}.wav",
                )
        name = profiles.get(record["profile_id"], {}).get("name")
        return {**record, "profile_name": name}

    @app.get("/history")
    async def history(
        profile_id: str | None = None, limit: int = 50, offset: int = 0, search: str | None = None
    ) -> dict[str, Any]:
        items = [
            history_item(g)
            for g, r in generations.items()
            if (profile_id is None or r["profile_id"] == profile_id)
            and (search is None or search in r["text"])
        ]
        return {"items": items[offset : offset + limit], "total": len(items)}

    @app.get("/history/{generation_id}")
    async def history_one(generation_id: str) -> dict[str, Any]:
        if generation_id not in generations:
            raise HTTPException(404, "Generation not found")
        return history_item(generation_id)

    @app.get("/audio/{generation_id}")
    async def get_audio(generation_id: str) -> Response:
        if generation_id not in audio or generations[generation_id]["status"] != "completed":
            raise HTTPException(404, "Audio not found")
        return Response(audio[generation_id], media_type="audio/wav")

    @app.get("/exports/{name}")
    async def get_export(name: str) -> Response:
        """What backend/api serves for spilled answers: a file from voicebox/exports/."""
        path = volume / "voicebox" / "exports" / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise HTTPException(404, f"voicebox/exports/{name} not found")
        return Response(path.read_bytes(), media_type="application/octet-stream")

    @app.post("/transcribe")
    async def transcribe(
        file: UploadFile = File(...), language: str | None = Form(None)
    ) -> JSONResponse:
        data = await file.read()
        return JSONResponse(
            {"text": f"stub transcript ({language or 'auto'})", "duration": len(data) / 48000}
        )

    return app
