"""Answer building: shapes per content type, useful headers only, exact budget, atomic spill to the volume."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from pathlib import Path

import pytest

from backend import job_answer as keys
from backend.serverless.answers import (
    BodyCollector,
    OverBudget,
    answer_kind,
    b64_length,
    export_name,
    inline_answer,
    inline_size,
    serialized_size,
    useful_headers,
    write_export,
)
from tests.support.serverless import big_bytes, settings_for


def test_kinds() -> None:
    assert answer_kind("application/json") == "json"
    assert answer_kind("application/problem+json; charset=utf-8") == "json"
    assert answer_kind("text/plain; charset=utf-8") == "text"
    for ctype in [
        "audio/wav",
        "application/zip",
        "application/octet-stream",
        "image/png",
        "",
        None,
    ]:
        assert answer_kind(ctype) == "binary"


def test_useful_headers_only() -> None:
    headers = {
        "Content-Type": "audio/wav",
        "Content-Length": "10",
        "Server": "uvicorn",
        "Date": "now",
        "X-Generation-Id": "g1",
        "Retry-After": "3",
        "Location": "/x",
        "Content-Disposition": "attachment",
        "Set-Cookie": "a=b",
    }
    assert useful_headers(headers) == {
        "content-type": "audio/wav",
        "x-generation-id": "g1",
        "retry-after": "3",
        "location": "/x",
        "content-disposition": "attachment",
    }


def test_json_text_binary_shapes() -> None:
    js = inline_answer(200, {"content-type": "application/json"}, b'{"a":[1,2]}')
    assert js == {
        "status_code": 200,
        "headers": {"content-type": "application/json"},
        "body": {"a": [1, 2]},
    }
    err = inline_answer(404, {"content-type": "application/json"}, b'{"detail":"nope"}')
    assert err["status_code"] == 404 and err["body"] == {"detail": "nope"} and "error" not in err
    txt = inline_answer(200, {"content-type": "text/plain"}, "héllo".encode())
    assert txt["body"] == "héllo"
    broken = inline_answer(500, {"content-type": "application/json"}, b"Internal Server Error")
    assert broken["body"] == "Internal Server Error"
    wav = inline_answer(200, {"content-type": "audio/wav"}, b"RIFF1234")
    assert wav["is_binary"] is True and wav["content_type"] == "audio/wav"
    assert base64.b64decode(wav["body_base64"]) == b"RIFF1234"
    empty = inline_answer(204, {}, b"")
    assert empty["status_code"] == 204


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 1000, 65537])
def test_inline_size_is_exact(n: int) -> None:
    headers = {"content-type": "audio/wav"}
    data = big_bytes(n)
    assert b64_length(n) == len(base64.b64encode(data))
    assert inline_size(200, headers, data) == serialized_size(inline_answer(200, headers, data))
    js = json.dumps([{"t": "é" * n}]).encode()
    jh = {"content-type": "application/json"}
    assert inline_size(200, jh, js) == serialized_size(inline_answer(200, jh, js))


def test_export_names() -> None:
    a = export_name("job/../x", "audio/wav")
    b = export_name("job/../x", "audio/wav")
    assert a != b and a.endswith(".wav") and "/" not in a and ".." not in a
    assert export_name("j", "application/octet-stream", 'attachment; filename="p.zip"').endswith(
        ".zip"
    )
    assert export_name("j", "application/x-unknown").endswith(".bin")


def test_write_export_is_atomic_and_complete(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    data = big_bytes(200_000)
    info = write_export(settings, data, "job-x.bin", "application/octet-stream")
    target = settings.exports_dir / "job-x.bin"
    assert target.read_bytes() == data
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert list(settings.tmp_dir.iterdir()) == []  # no temp left behind
    with pytest.raises(FileExistsError):
        write_export(settings, b"other", "job-x.bin", "application/octet-stream")
    assert target.read_bytes() == data  # never overwritten
    assert list(settings.tmp_dir.iterdir()) == []


def _collect(settings, chunks, *, budget, inline_only=False, headers=None, status=200):
    async def go():
        c = BodyCollector(
            settings,
            budget=budget,
            inline_only=inline_only,
            job_id="job-1",
            headers=headers or {"content-type": "audio/wav"},
        )
        try:
            for chunk in chunks:
                await c.feed(chunk)
            return await c.answer(status)
        except BaseException:
            await c.abort()
            raise

    return asyncio.run(go())


def test_collector_inline_within_budget(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    data = big_bytes(3000)
    answer = _collect(settings, [data[:1000], data[1000:]], budget=10_000)
    assert base64.b64decode(answer["body_base64"]) == data
    assert serialized_size(answer) <= 10_000


def test_collector_spills_when_encoded_answer_exceeds_budget(tmp_path: Path) -> None:
    """Raw fits, base64 does not: measured on the serialized answer, then spilled."""
    settings = settings_for(tmp_path)
    data = big_bytes(9000)  # 12 000 bytes of base64
    answer = _collect(settings, [data], budget=10_000)
    assert answer["spilled"] is True and "body_base64" not in answer
    export = answer["export"]
    path = settings.exports_dir / export["name"]
    assert path.read_bytes() == data
    assert export["sha256"] == hashlib.sha256(data).hexdigest() and export["size"] == len(data)
    assert export["volume_path"] == f"voicebox/exports/{export['name']}"
    assert serialized_size(answer) < 10_000


def test_collector_streams_to_disk_past_budget(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    data = big_bytes(300_000)
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    answer = _collect(settings, chunks, budget=100_000)
    assert (settings.exports_dir / answer["export"]["name"]).read_bytes() == data
    assert list(settings.tmp_dir.iterdir()) == []


def test_big_json_spills_as_json(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    body = json.dumps([{"i": i} for i in range(5000)]).encode()
    answer = _collect(settings, [body], budget=2000, headers={"content-type": "application/json"})
    assert answer["export"]["name"].endswith(".json")
    assert json.loads((settings.exports_dir / answer["export"]["name"]).read_bytes())[3] == {"i": 3}


def test_inline_only_over_budget_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with pytest.raises(OverBudget, match="inline budget of 10000"):
        _collect(settings, [big_bytes(9000)], budget=10_000, inline_only=True)
    with pytest.raises(OverBudget):
        _collect(settings, [big_bytes(60_000)] * 3, budget=10_000, inline_only=True)
    assert not settings.exports_dir.exists() or list(settings.exports_dir.iterdir()) == []
    assert not settings.tmp_dir.exists() or list(settings.tmp_dir.iterdir()) == []


def test_answers_are_written_with_the_keys_the_client_reads() -> None:
    """One definition of the answer's keys (backend/job_answer.py): what the handler writes, the codec reads."""
    from backend.client.codec import decode_output
    from backend.serverless.answers import inline_answer

    wav = inline_answer(200, {"content-type": "audio/wav"}, b"RIFF....")
    assert set(wav) == {
        keys.STATUS_CODE,
        keys.HEADERS,
        keys.IS_BINARY,
        keys.CONTENT_TYPE,
        keys.BODY_BASE64,
    }
    decoded = decode_output(wav, job_id="j")
    assert decoded.content == b"RIFF...." and decoded.content_type == "audio/wav"
    doc = inline_answer(201, {"content-type": "application/json"}, b'{"id": "x"}')
    assert decode_output(doc).body == {"id": "x"} and decode_output(doc).status_code == 201
