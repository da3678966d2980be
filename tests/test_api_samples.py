"""Reference samples over HTTP: formats, validation, size limits while streaming, order, audio."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.app import create_app
from backend.db.models import ProfileSample
from backend.services.container import Services
from tests.support.api import (
    api_settings_for,
    audio_bytes,
    files_under,
    fresh_volume,
)
from tests.support.audio import wav_bytes


def _profile(client: TestClient) -> str:
    return client.post("/profiles", json={"name": "Voice"}).json()["id"]


def _upload(client: TestClient, pid: str, data: bytes, name: str = "clip", text: str = "Hi there."):
    return client.post(
        f"/profiles/{pid}/samples",
        files={"file": (name, data, "application/octet-stream")},
        data={"reference_text": text},
    )


def _nothing_written(services: Services) -> None:
    assert files_under(services.settings.data_dir / "profiles") == []
    assert files_under(services.settings.tmp_dir) == []
    with services.db.read() as session:
        assert session.scalar(select(func.count()).select_from(ProfileSample)) == 0


def _can_encode_mp3() -> bool:
    try:
        audio_bytes(1.0, fmt="MP3", subtype="MPEG_LAYER_III")
    except Exception:  # noqa: BLE001
        return False
    return True


FORMATS = [
    pytest.param("WAV", "PCM_16", 24000, 1, id="wav-24k-mono"),
    pytest.param("WAV", "FLOAT", 44100, 2, id="wav-44k-stereo-float"),
    pytest.param("FLAC", "PCM_16", 48000, 1, id="flac-48k"),
    pytest.param("OGG", "VORBIS", 22050, 1, id="ogg-vorbis"),
    pytest.param("OGG", "OPUS", 48000, 1, id="ogg-opus"),
    pytest.param(
        "MP3",
        "MPEG_LAYER_III",
        44100,
        1,
        id="mp3",
        marks=pytest.mark.skipif(not _can_encode_mp3(), reason="libsndfile without MP3"),
    ),
]


@pytest.mark.parametrize(("fmt", "subtype", "sr", "channels"), FORMATS)
def test_upload_formats_are_stored_as_24k_mono_pcm16(
    api_client: TestClient, api_services: Services, fmt: str, subtype: str, sr: int, channels: int
) -> None:
    pid = _profile(api_client)
    data = audio_bytes(4.0, fmt=fmt, subtype=subtype, sr=sr, channels=channels)
    r = _upload(api_client, pid, data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["audio_path"] == f"profiles/{pid}/{body['id']}.wav"
    assert body["duration"] == pytest.approx(4.0, abs=0.1)
    stored = api_services.blobs.read_bytes(body["audio_path"])
    info = sf.info(io.BytesIO(stored))
    assert (info.format, info.subtype, info.channels, info.samplerate) == (
        "WAV",
        "PCM_16",
        1,
        24000,
    )
    assert body["size_bytes"] == len(stored)
    import hashlib

    assert body["sha256"] == hashlib.sha256(stored).hexdigest()
    served = api_client.get(f"/samples/{body['id']}")
    assert served.status_code == 200 and served.content == stored
    assert served.headers["content-type"] == "audio/wav"
    assert files_under(api_services.settings.tmp_dir) == []


def test_canonical_wav_is_kept_byte_for_byte(
    api_client: TestClient, api_services: Services
) -> None:
    pid = _profile(api_client)
    data = audio_bytes(3.0)
    body = _upload(api_client, pid, data).json()
    assert api_services.blobs.read_bytes(body["audio_path"]) == data


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (audio_bytes(1.0), "at least 2"),
        (wav_bytes(3.0, amp=0.0), "silent"),
        (audio_bytes(50.0, fmt="FLAC"), "at most 30"),
        (wav_bytes(3.0, amp=0.004, freq=24000 / (2 * math.pi * 7)), "silent"),
        (b"this is not audio at all" * 100, "could not"),
        (b"", "could not"),
    ],
    ids=["too-short", "silent", "too-long", "too-quiet", "not-audio", "empty"],
)
def test_bad_audio_is_400_and_nothing_is_written(
    api_client: TestClient, api_services: Services, data: bytes, needle: str
) -> None:
    pid = _profile(api_client)
    r = _upload(api_client, pid, data)
    assert r.status_code == 400, r.text
    assert needle in r.json()["detail"]
    _nothing_written(api_services)


def test_clips_of_30_to_45_seconds_are_trimmed_to_30(api_client: TestClient) -> None:
    pid = _profile(api_client)
    r = _upload(api_client, pid, audio_bytes(40.0, fmt="FLAC"))
    assert r.status_code == 200, r.text
    assert r.json()["duration"] == pytest.approx(30.0, abs=0.01)


def test_reference_text_validation(api_client: TestClient, api_services: Services) -> None:
    pid = _profile(api_client)
    r = api_client.post(
        f"/profiles/{pid}/samples", files={"file": ("a.wav", audio_bytes(3.0), "audio/wav")}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "reference_text"]
    r = _upload(api_client, pid, audio_bytes(3.0), text="x" * 1001)
    assert r.status_code == 400 and "1000" in r.json()["detail"]
    r = _upload(api_client, pid, audio_bytes(3.0), text="   ")
    assert r.status_code == 400
    r = api_client.post(f"/profiles/{pid}/samples", data={"reference_text": "hi"})
    assert r.status_code == 400 and "multipart" in r.json()["detail"]
    _nothing_written(api_services)


@pytest.fixture
def small_limit_client(tmp_path, volume_template) -> Iterator[tuple[TestClient, Services]]:
    volume = fresh_volume(volume_template, tmp_path / "small")
    settings = api_settings_for(volume, tmp_path / "local-small", VOICEBOX_MAX_UPLOAD_MB="1")
    services = Services.create(settings)
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False) as c:
        yield c, services
    services.close()


def test_size_limit_is_enforced_while_streaming(small_limit_client) -> None:
    client, services = small_limit_client
    pid = client.post("/profiles", json={"name": "Big"}).json()["id"]
    big = audio_bytes(30.0, fmt="WAV", subtype="FLOAT", sr=48000)  # ~5.8 MB, limit 1 MB
    assert len(big) > 2 * 1024 * 1024
    # With Content-Length: refused before the body is read.
    r = _upload(client, pid, big)
    assert r.status_code == 413 and "1 MB" in r.json()["detail"]
    # Chunked (no Content-Length): the parser stops at the limit, having consumed only part of it.
    boundary = "xyzBOUNDARY"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="reference_text"\r\n\r\nhello\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(
        f"/profiles/{pid}/samples",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413
    _nothing_written(services)


def test_samples_keep_a_stable_order_and_can_be_edited(
    api_client: TestClient, api_services: Services
) -> None:
    pid = _profile(api_client)
    ids = [
        _upload(api_client, pid, audio_bytes(2.5, seed=i), text=f"t{i}").json()["id"]
        for i in range(4)
    ]
    listed = api_client.get(f"/profiles/{pid}/samples").json()
    assert [s["id"] for s in listed] == ids
    r = api_client.put(f"/profiles/samples/{ids[1]}", json={"reference_text": "new words"})
    assert r.status_code == 200 and r.json()["reference_text"] == "new words"
    assert (
        api_client.put(f"/profiles/samples/{ids[1]}", json={"reference_text": ""}).status_code
        == 422
    )
    assert (
        api_client.put(
            f"/profiles/samples/{ids[1]}", json={"reference_text": "y" * 1001}
        ).status_code
        == 422
    )
    path = listed[2]["audio_path"]
    assert api_client.delete(f"/profiles/samples/{ids[2]}").status_code == 200
    assert not api_services.blobs.exists(path)
    assert [s["id"] for s in api_client.get(f"/profiles/{pid}/samples").json()] == [
        ids[0],
        ids[1],
        ids[3],
    ]
    assert api_client.get(f"/profiles/{pid}").json()["sample_count"] == 3
    assert api_client.get(f"/samples/{ids[2]}").status_code == 404


def test_missing_sample_file_is_404_with_advice(
    api_client: TestClient, api_services: Services
) -> None:
    pid = _profile(api_client)
    body = _upload(api_client, pid, audio_bytes(3.0)).json()
    api_services.blobs.delete(body["audio_path"])
    r = api_client.get(f"/samples/{body['id']}")
    assert r.status_code == 404 and "fsck" in r.json()["detail"]


def test_decoded_audio_is_normalised_to_mono(
    api_client: TestClient, api_services: Services
) -> None:
    pid = _profile(api_client)
    left = np.zeros(24000 * 3, dtype=np.float32)
    right = (0.5 * np.sin(np.arange(24000 * 3) / 10)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([left, right], axis=1), 24000, format="WAV", subtype="PCM_16")
    body = _upload(api_client, pid, buf.getvalue()).json()
    audio, sr = sf.read(io.BytesIO(api_services.blobs.read_bytes(body["audio_path"])))
    assert audio.ndim == 1 and sr == 24000


def test_parser_stops_reading_at_the_limit(tmp_path) -> None:
    """The limit is enforced while streaming: the parser stops pulling the body once it is past it."""
    import asyncio

    from starlette.requests import Request

    from backend.api.uploads import read_multipart
    from backend.services.errors import PayloadTooLargeError

    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    ).encode()
    chunks = [head] + [b"\x01" * 65536] * 200  # 12.5 MB offered, limit 1 MB
    pulled = {"n": 0}

    async def receive() -> dict:
        i = pulled["n"]
        pulled["n"] += 1
        more = i + 1 < len(chunks)
        return {"type": "http.request", "body": chunks[i], "more_body": more}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
    }
    request = Request(scope, receive)
    with pytest.raises(PayloadTooLargeError):
        asyncio.run(read_multipart(request, tmp_dir=tmp_path, file_limits={"file": 1024 * 1024}))
    assert pulled["n"] < 25  # ~17 chunks reach the limit; the other 180 are never read
    assert list(tmp_path.iterdir()) == []


def test_file_part_without_a_filename_is_still_a_file(api_client: TestClient) -> None:
    pid = _profile(api_client)
    boundary = "nofilename"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="reference_text"\r\n\r\nhey\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'
        ).encode()
        + audio_bytes(3.0)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = api_client.post(
        f"/profiles/{pid}/samples",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 200, r.text


def test_an_abort_closes_a_staged_file_that_was_never_written(tmp_path) -> None:
    """A file part whose chunks are still queued when a later part fails the form: its file is closed and
    removed with the rest, not left open until the garbage collector finds it."""
    from backend.api.uploads import _FormReader

    reader = _FormReader(tmp_path, {"file": 1000})
    reader.on_part_begin()
    reader.part.headers[b"content-disposition"] = b'form-data; name="file"; filename="a.wav"'
    reader.on_headers_finished()
    staged = reader.part.handle
    assert staged is not None
    reader.on_part_data(b"RIFF", 0, 4)  # queued for the writer thread, not written yet
    reader.on_part_end()
    reader.on_part_begin()  # the next part: the file part is no longer the current one
    reader.abort()
    assert staged.closed
    assert list(tmp_path.iterdir()) == []
