"""Python client for a deployed voicebox-worker RunPod endpoint: Voicebox-shaped methods.

Why this exists: every request to the worker is a RunPod job wrapping one Voicebox HTTP request in
an envelope (`docs/serverless.md`). Doing that by hand means base64 for uploads and audio, choosing
``/runsync`` or ``/run``, polling ``/status`` and telling RunPod's failure states apart. The parts:
``runpod.py`` (RunPod's REST API: jobs), ``codec.py`` (the envelope and the answer), ``config.py``
(endpoint and key), ``exchange.py`` (one request as a job, a spilled answer fetched back); this
module is the facade on top (``VoiceboxClient``).

Blocking by design (the SDK is ``requests``-based); the bridge runs calls in worker threads.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.client.codec import Answer as Answer
from backend.client.codec import detail_message as detail_message
from backend.client.config import LOCAL_ENDPOINT_ID as LOCAL_ENDPOINT_ID
from backend.client.config import resolve_config as resolve_config
from backend.client.errors import (
    ConfigError,
    JobTimedOut,
    PayloadTooLarge,
    ProtocolError,
    RemoteError,
)
from backend.client.exchange import DEFAULT_FETCH_LIMIT, VoiceboxExchange, s3_upload_hint
from backend.client.runpod import RUN_PAYLOAD_LIMIT, RUNSYNC_PAYLOAD_LIMIT, ProgressCallback
from backend.client.runpod import JobProgress as JobProgress
from backend.statuses import ACTIVE

if TYPE_CHECKING:
    from backend.client.stream import RemoteStream

# Texts longer than this are generated with /run + polling: /runsync holds an HTTP request open for
# up to 90 s and keeps its result only a minute, which a long generation behind a cold start can
# outlast.
DEFAULT_ASYNC_THRESHOLD = 400
#: still running: the server's active statuses plus words other Voicebox servers have used
PENDING_GENERATION = frozenset({*ACTIVE, "pending", "running"})

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class VoiceboxClient(VoiceboxExchange):
    """Talk to a voicebox-worker endpoint as if it were a Voicebox server.

    ``async_threshold``: texts longer than this generate with ``/run`` + polling; ``fetch_limit``: the
    largest spilled answer fetched back through a job (``VoiceboxExchange``). The rest is
    ``RunPodEndpoint``'s.
    """

    def __init__(
        self,
        endpoint_id: str | None = None,
        api_key: str | None = None,
        *,
        api_base: str | None = None,
        env: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = None,
        local_url: str | None = None,
        timeout: float = 900.0,
        runsync_wait: float = 60.0,
        poll_initial: float = 0.5,
        poll_max: float = 5.0,
        async_threshold: int = DEFAULT_ASYNC_THRESHOLD,
        fetch_limit: int = DEFAULT_FETCH_LIMIT,
        runsync_payload_limit: int = RUNSYNC_PAYLOAD_LIMIT,
        run_payload_limit: int = RUN_PAYLOAD_LIMIT,
        request_timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            endpoint_id,
            api_key,
            api_base=api_base,
            env=env,
            env_file=env_file,
            local_url=local_url,
            timeout=timeout,
            runsync_wait=runsync_wait,
            poll_initial=poll_initial,
            poll_max=poll_max,
            runsync_payload_limit=runsync_payload_limit,
            run_payload_limit=run_payload_limit,
            request_timeout=request_timeout,
            sleep=sleep,
        )
        self.async_threshold = async_threshold
        self.fetch_limit = fetch_limit

    def health(self) -> dict[str, Any]:
        """``GET /health`` — also wakes a worker, so the first call pays the cold start."""
        return self._json("GET", "/health")

    def list_profiles(self) -> list[dict[str, Any]]:
        return self._json("GET", "/profiles")

    def get_profile(self, profile: str) -> dict[str, Any]:
        """Find a profile by id, exact name, or unique case-insensitive name."""
        profiles = self.list_profiles()
        for match in (
            lambda p: p.get("id") == profile,
            lambda p: p.get("name") == profile,
            lambda p: str(p.get("name", "")).casefold() == profile.casefold(),
        ):
            found = [p for p in profiles if match(p)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise RemoteError(409, f"{len(found)} profiles match {profile!r}; use the id")
        names = ", ".join(sorted(str(p.get("name")) for p in profiles)) or "none"
        raise RemoteError(404, f"no profile named {profile!r} (profiles: {names})")

    def _profile_id(self, profile: str | Mapping[str, Any]) -> str:
        if isinstance(profile, Mapping):
            return str(profile["id"])
        if _UUID_RE.fullmatch(profile):
            return profile  # an id already: skip the lookup job
        return str(self.get_profile(profile)["id"])

    def create_profile(
        self, name: str, *, description: str | None = None, language: str = "en", **fields: Any
    ) -> dict[str, Any]:
        body = {"name": name, "language": language, **fields}
        if description is not None:
            body["description"] = description
        return self._json("POST", "/profiles", body=body)

    def delete_profile(self, profile: str | Mapping[str, Any]) -> Any:
        return self._json("DELETE", f"/profiles/{self._profile_id(profile)}")

    def add_sample(
        self, profile: str | Mapping[str, Any], path: str | os.PathLike[str], reference_text: str
    ) -> dict[str, Any]:
        """Upload a reference recording and its transcript to a profile (multipart through the
        envelope).
        """
        profile_id = self._profile_id(profile)
        return self._json(
            "POST",
            f"/profiles/{profile_id}/samples",
            files={"file": path},
            form={"reference_text": reference_text},
        )

    def list_samples(self, profile: str | Mapping[str, Any]) -> list[dict[str, Any]]:
        return self._json("GET", f"/profiles/{self._profile_id(profile)}/samples")

    def export_profile(
        self, profile: str | Mapping[str, Any], dest: str | os.PathLike[str]
    ) -> Path:
        """Download a profile bundle (zip) to ``dest``; a bundle past the result budget comes via
        the volume.
        """
        profile_id = self._profile_id(profile)
        answer = self.request("GET", f"/profiles/{profile_id}/export", mode="async")
        if answer.content is None:
            raise ProtocolError(f"export of {profile_id}: expected a zip, got JSON")
        target = Path(dest)
        target.write_bytes(answer.content)
        return target

    def import_profile(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        volume_name: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Import a profile bundle, inline when it fits a job, else from ``voicebox/imports/`` on
        the volume.

        A bundle past RunPod's payload cap cannot travel in a job: upload it to
        ``voicebox/imports/<name>`` with RunPod's S3 API first, then call with
        ``volume_name=<name>`` (the error says exactly how).
        """
        if volume_name is not None:
            if "/" in volume_name or "\\" in volume_name or volume_name in {"", ".", ".."}:
                raise ConfigError("volume_name is a file name inside voicebox/imports/, not a path")
            return self._json(
                "POST",
                "/profiles/import",
                form={"volume_name": volume_name},
                mode="async",
                progress=progress,
            )
        if path is None:
            raise ConfigError("import_profile needs a file path or volume_name")
        source = Path(path)
        size = source.stat().st_size
        # base64 grows by 4/3; keep 64 KiB for the rest of the envelope.
        if size * 4 // 3 + 65536 > self.runsync_payload_limit:
            raise PayloadTooLarge(
                f"{source.name} is {size / 1e6:.1f} MB, past what a RunPod job can carry "
                f"({self.runsync_payload_limit / 1e6:.0f} MB after base64). Upload it to the network "
                f"volume first — {s3_upload_hint(str(source), source.name)} — then run: "
                f"voicebox-worker remote import --volume-name {source.name}",
                size=size,
                limit=self.runsync_payload_limit,
            )
        return self._json(
            "POST", "/profiles/import", files={"file": source}, mode="async", progress=progress
        )

    def generate(
        self,
        text: str,
        *,
        profile: str | Mapping[str, Any],
        output: str | os.PathLike[str] | None = None,
        language: str | None = None,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
        timeout: float | None = None,
        mode: str | None = None,
        **options: Any,
    ) -> bytes | Path:
        """Speak ``text`` in a profile's voice; return the audio bytes, or write ``output`` and
        return its path.

        Texts longer than ``async_threshold`` go through ``/run`` and are polled with backoff
        (``progress`` gets each poll). The job asks for the audio inline; if the worker answers with
        a generation record instead, the client waits for it to finish (``GET /history/{id}``) and
        fetches ``GET /audio/{id}``. The handler attaches the audio as ``output["audio"]`` (an
        inline or spilled answer), fetched back when spilled.
        """
        profile_id = self._profile_id(profile)
        body: dict[str, Any] = {"profile_id": profile_id, "text": text, **options}
        if language is not None:
            body["language"] = language
        if seed is not None:
            body["seed"] = seed
        chosen = mode or ("async" if len(text) > self.async_threshold else "sync")
        started = time.monotonic()
        total = self.timeout if timeout is None else timeout

        def remaining() -> float:
            return max(1.0, total - (time.monotonic() - started))

        answer = self.request(
            "POST",
            "/generate",
            body=body,
            inline_audio=True,
            mode=chosen,
            progress=progress,
            timeout=total,
        )
        audio = answer.content
        attached = answer.audio
        if audio is None and attached is not None and attached.status_code < 300:
            if attached.spilled:
                attached = self.fetch_export(attached.export or {}, job_id=answer.job_id)
            audio = attached.content
        if audio is None:
            record = answer.body if isinstance(answer.body, dict) else {}
            inline = record.get("audio_base64")
            if isinstance(inline, str):
                audio = base64.b64decode(inline)
            else:
                generation_id = record.get("id") or record.get("generation_id")
                if not generation_id:
                    raise ProtocolError(
                        f"/generate answered without an id or audio: {record!r:.200}"
                    )
                self._wait_generation(str(generation_id), record, progress, started, total)
                audio_answer = self.request("GET", f"/audio/{generation_id}", timeout=remaining())
                if audio_answer.content is None:
                    raise ProtocolError(f"/audio/{generation_id} answered JSON, not audio")
                audio = audio_answer.content
        if output is None:
            return audio
        target = Path(output)
        target.write_bytes(audio)
        return target

    def stream(
        self,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> RemoteStream:
        """Start a stream job (``POST /generate/stream`` or ``/v1/audio/speech``) and return it opened:
        iterate it for the audio bytes as they arrive; a refused request raises ``RemoteError`` here."""
        from backend.client.stream import RemoteStream

        envelope = self.build_envelope(
            "POST", path, body=dict(body or {}), params=params, headers=headers
        )
        return RemoteStream(self, envelope, timeout=timeout).open()

    def generate_stream(
        self,
        text: str,
        *,
        profile: str | Mapping[str, Any],
        format: str = "wav",  # noqa: A002 - the route's query parameter
        persist: bool = True,
        language: str | None = None,
        seed: int | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> RemoteStream:
        """Speak ``text`` as a stream: ``for chunk in vb.generate_stream(...)`` gets the audio as it is made
        (``format`` wav, pcm, mp3 or opus; ``persist=False`` keeps no history row)."""
        body: dict[str, Any] = {"profile_id": self._profile_id(profile), "text": text, **options}
        if language is not None:
            body["language"] = language
        if seed is not None:
            body["seed"] = seed
        params = {"format": format, "persist": "true" if persist else "false"}
        return self.stream("/generate/stream", body=body, params=params, timeout=timeout)

    def _wait_generation(
        self,
        generation_id: str,
        record: Mapping[str, Any],
        progress: ProgressCallback | None,
        started: float,
        total: float,
    ) -> None:
        """Wait for a queued generation (servers where POST /generate returns before the audio
        exists).
        """
        delay = self.poll_initial
        status = str(record.get("status") or "completed")
        while status in PENDING_GENERATION:
            elapsed = time.monotonic() - started
            if elapsed >= total:
                raise JobTimedOut(
                    f"generation {generation_id} still {status} after {elapsed:.0f}s",
                    on_server=False,
                )
            if progress is not None:
                progress(JobProgress(generation_id, status, elapsed, phase="generation"))
            self._sleep(delay)
            delay = min(delay * 1.6, self.poll_max)
            record = self._json(
                "GET", f"/history/{generation_id}", timeout=max(1.0, total - elapsed)
            )
            status = str(record.get("status") or "completed")
        if status == "failed":
            raise RemoteError(
                500, f"generation {generation_id} failed: {record.get('error')}", body=dict(record)
            )

    def audio(self, generation_id: str) -> bytes:
        answer = self.request("GET", f"/audio/{generation_id}")
        if answer.content is None:
            raise ProtocolError(f"/audio/{generation_id} answered JSON, not audio")
        return answer.content

    def history(
        self,
        *,
        profile: str | Mapping[str, Any] | None = None,
        limit: int = 50,
        offset: int = 0,
        search: str | None = None,
    ) -> dict[str, Any]:
        """``GET /history`` → ``{"items": [...], "total": n}``."""
        params: dict[str, Any] = {"limit": limit, "offset": offset, "search": search}
        if profile is not None:
            params["profile_id"] = self._profile_id(profile)
        return self._json("GET", "/history", params=params)

    def transcribe(
        self,
        path: str | os.PathLike[str],
        *,
        language: str | None = None,
        model: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """``POST /transcribe`` → ``{"text", "duration"}``.

        A 202 (Whisper still downloading on the worker) is retried with backoff until ``timeout``.
        """
        started = time.monotonic()
        delay = max(self.poll_initial, 1.0)
        while True:
            answer = self.request(
                "POST",
                "/transcribe",
                files={"file": path},
                form={"language": language, "model": model},
                progress=progress,
            )
            if answer.status_code != 202:
                return answer.body
            elapsed = time.monotonic() - started
            if elapsed >= self.timeout:
                raise JobTimedOut(
                    f"the transcription model was still downloading after {elapsed:.0f}s",
                    on_server=False,
                )
            if progress is not None:
                progress(JobProgress("-", "MODEL_DOWNLOADING", elapsed, answer.body, "transcribe"))
            self._sleep(delay)
            delay = min(delay * 1.6, max(self.poll_max, 1.0))
