"""One Voicebox HTTP request as a RunPod job, and its answer brought back whole.

Why a module of its own: ``runpod.py`` knows jobs and ``codec.py`` knows the envelope; this joins them
for one request -- build the envelope, run the job, decode the answer, fetch a spilled answer back
from ``voicebox/exports/`` and turn an HTTP error status into ``RemoteError``. ``VoiceboxClient``
(``client.py``) builds the Voicebox-shaped methods on top of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Unpack
from urllib.parse import quote

from backend.client.codec import (
    Answer,
    EnvelopeParts,
    build_envelope,
    decode_output,
    detail_message,
)
from backend.client.errors import JobFailed, ProtocolError, RemoteError, ResultOnVolume
from backend.client.runpod import ProgressCallback, RunPodEndpoint

# Largest spilled file fetched back through a job: what fits the worker's default result budget
# (14 MiB) once base64 grows it by a third. Larger files are only reachable with RunPod's S3 API.
DEFAULT_FETCH_LIMIT = 14 * 1024 * 1024 * 3 // 4


def s3_download_hint(name: str) -> str:
    return (
        f"aws s3 cp s3://<NETWORK_VOLUME_ID>/voicebox/exports/{name} ./{name} "
        "--region <DATACENTER> --endpoint-url https://s3api-<datacenter>.runpod.io"
    )


def s3_upload_hint(local: str, name: str) -> str:
    return (
        f"aws s3 cp {local} s3://<NETWORK_VOLUME_ID>/voicebox/imports/{name} "
        "--region <DATACENTER> --endpoint-url https://s3api-<datacenter>.runpod.io"
    )


def _error_body(answer: Answer) -> Any:
    """The body an HTTP error answer carries: its JSON, else the start of its text."""
    if answer.body is not None or answer.content is None:
        return answer.body
    try:
        return json.loads(answer.content)
    except ValueError:
        return answer.content.decode("utf-8", "replace")[:500]


class VoiceboxExchange(RunPodEndpoint):
    """A RunPod endpoint spoken to in Voicebox HTTP requests (``request``).

    ``fetch_limit``: the largest spilled answer fetched back through a job.
    """

    fetch_limit: int = DEFAULT_FETCH_LIMIT

    build_envelope = staticmethod(build_envelope)

    def decode_output(self, output: Any, *, job_id: str | None = None) -> Answer:
        """Turn a job output into an ``Answer`` (``codec.decode_output``)."""
        return decode_output(output, job_id=job_id)

    def fetch_export(self, export: Mapping[str, Any], *, job_id: str | None = None) -> Answer:
        """Fetch a spilled answer from ``voicebox/exports/`` through a job, when it fits through
        RunPod.
        """
        name = str(export["name"])
        size = export.get("size")
        if isinstance(size, int) and size > self.fetch_limit:
            raise ResultOnVolume(
                f"the answer ({size / 1e6:.1f} MB) is too large to return through RunPod and was saved "
                f"on the network volume as voicebox/exports/{name}; download it with RunPod's S3 API: "
                f"{s3_download_hint(name)}",
                export=dict(export),
                job_id=job_id,
            )
        try:
            fetched = self.request(
                "GET", f"/exports/{quote(name, safe='')}", inline_only=True, fetch_spilled=False
            )
        except (JobFailed, RemoteError) as exc:  # over the worker's budget even alone, or gone
            raise ResultOnVolume(
                f"the answer was saved on the network volume as voicebox/exports/{name} and could "
                f"not be fetched through a job ({exc}); download it with RunPod's S3 API: "
                f"{s3_download_hint(name)}",
                export=dict(export),
                job_id=job_id,
            ) from None
        if fetched.spilled or fetched.content is None:
            raise ResultOnVolume(
                f"could not fetch voicebox/exports/{name} through a job; download it with RunPod's S3 "
                f"API: {s3_download_hint(name)}",
                export=dict(export),
                job_id=job_id,
            )
        digest = export.get("sha256")
        if digest and hashlib.sha256(fetched.content).hexdigest() != digest:
            raise ProtocolError(f"voicebox/exports/{name}: sha256 mismatch after download")
        return Answer(
            200,
            fetched.headers,
            content=fetched.content,
            content_type=export.get("content_type") or fetched.content_type,
            job_id=job_id,
            export=dict(export),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        mode: str = "sync",
        progress: ProgressCallback | None = None,
        timeout: float | None = None,
        check: bool = True,
        fetch_spilled: bool = True,
        **parts: Unpack[EnvelopeParts],
    ) -> Answer:
        """Send one Voicebox HTTP request as a job and return the server's answer.

        ``parts`` are ``build_envelope``'s (body, params, headers, files, form, inline_audio,
        inline_only). With ``check`` an HTTP error status raises ``RemoteError`` carrying the
        server's ``detail``. A spilled answer is fetched back (``fetch_spilled``) and a spilled
        JSON answer is parsed.
        """
        envelope = self.build_envelope(method, path, **parts)
        job_id, output = self.run_job(envelope, mode=mode, progress=progress, timeout=timeout)
        answer = self.decode_output(output, job_id=job_id)
        if answer.spilled and fetch_spilled:
            answer = self._fetch_spilled(answer, job_id)
        if check and answer.status_code >= 400:
            body_ = _error_body(answer)
            raise RemoteError(answer.status_code, detail_message(body_), body=body_)
        return answer

    def _fetch_spilled(self, answer: Answer, job_id: str | None) -> Answer:
        """The spilled answer fetched back, keeping the job's status and headers; JSON parsed."""
        fetched = self.fetch_export(answer.export or {}, job_id=job_id)
        fetched.status_code = answer.status_code
        fetched.headers = {**answer.headers, **fetched.headers}
        if (fetched.content_type or "").startswith("application/json") and fetched.content:
            fetched.body = json.loads(fetched.content)
            fetched.content = None
        return fetched

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.request(method, path, **kwargs)
        if answer.content is not None:
            raise ProtocolError(f"{method} {path}: expected JSON, got {answer.content_type}")
        return answer.body
