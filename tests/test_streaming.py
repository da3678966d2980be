"""Streamed speech: the joiner, the engine's pieces, the encoders, the bounded buffer, ``POST /generate/stream``
and OpenAI's ``stream_format`` — first audio before the synthesis finished (checked with a gated engine, not a
clock), streamed == non-streamed samples, disconnects, back-pressure, the stream bound, bad input."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from backend.engines.chunking import CrossfadeJoiner, crossfade_join
from backend.engines.fake import FakeTTSEngine
from backend.engines.manager import AudioPiece, EngineManager
from backend.services.generation import SinkClosed
from backend.services.streaming import AudioStream, StreamEnd
from backend.storage.audio import encode_audio, normalize_loudness
from backend.storage.audio_stream import (
    StreamFormatError,
    StreamGain,
    open_stream_encoder,
    streaming_wav_header,
)
from tests.support.audio import wav_bytes
from tests.support.streaming import THREE_CHUNKS, StreamServer, stream_server

pytestmark = pytest.mark.timeout(180)

WAV_HEADER = 44


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def reference_crossfade(
    parts: list[np.ndarray], sample_rate: int, crossfade_ms: float
) -> np.ndarray:
    """The join as it was written before streaming (kept here as the oracle)."""
    parts = [np.asarray(p, dtype=np.float32).reshape(-1) for p in parts]
    parts = [p for p in parts if p.size]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    out = parts[0]
    fade = max(0, int(sample_rate * crossfade_ms / 1000))
    for nxt in parts[1:]:
        n = min(fade, out.size // 2, nxt.size // 2)
        if n <= 0:
            out = np.concatenate([out, nxt])
            continue
        ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
        mixed = out[-n:] * (1.0 - ramp) + nxt[:n] * ramp
        out = np.concatenate([out[:-n], mixed, nxt[n:]])
    return out.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------- engine
@pytest.mark.parametrize("crossfade_ms", [0, 1, 50, 500])
def test_joiner_pieces_are_the_crossfade_join_sample_for_sample(crossfade_ms: float) -> None:
    rng = np.random.default_rng(crossfade_ms)
    for _ in range(40):
        sizes = rng.choice([0, 1, 2, 3, 17, 100, 1199, 1200, 2401, 9000], size=rng.integers(1, 7))
        parts = [rng.standard_normal(int(n)).astype(np.float32) for n in sizes]
        joiner = CrossfadeJoiner(24000, crossfade_ms)
        pieces = [joiner.push(p) for p in parts] + [joiner.finish()]
        streamed = np.concatenate(pieces)
        expected = reference_crossfade(parts, 24000, crossfade_ms)
        assert streamed.dtype == np.float32
        assert np.array_equal(streamed, expected)
        assert np.array_equal(crossfade_join(parts, 24000, crossfade_ms), expected)


def test_joiner_holds_back_only_the_crossfade() -> None:
    joiner = CrossfadeJoiner(24000, 50)  # 1200 samples
    first = joiner.push(np.ones(24000, dtype=np.float32))
    assert first.size == 24000 - 1200  # everything but what the next crossfade mixes


def test_manager_pieces_concatenate_to_the_output(make_settings) -> None:
    settings = make_settings(VOICEBOX_TTS_MODEL="fake")
    manager = EngineManager(settings, tts_factory=lambda _s: FakeTTSEngine())
    pieces: list[AudioPiece] = []
    samples = [(wav_bytes(), "hello there")]
    result = manager.synthesize_detailed(
        samples, THREE_CHUNKS, seed=3, max_chunk_chars=100, on_audio=pieces.append
    )
    assert [p.index for p in pieces] == [0, 1, 2] and pieces[-1].last
    assert np.array_equal(np.concatenate([p.audio for p in pieces]), result.audio)
    whole = manager.synthesize(samples, THREE_CHUNKS, seed=3, max_chunk_chars=100)
    assert np.array_equal(whole, result.audio)


def test_stream_gain_is_normalize_loudness_for_one_chunk() -> None:
    rng = np.random.default_rng(1)
    for scale in (0.001, 0.1, 0.9, 3.0):  # quiet, normal, loud (peak-capped)
        chunk = (rng.standard_normal(30000) * scale).astype(np.float32)
        gain = StreamGain(enabled=True)
        gain.fix(chunk)
        halves = np.concatenate([gain.apply(chunk[:12345]), gain.apply(chunk[12345:])])
        assert np.array_equal(halves, normalize_loudness(chunk))
    off = StreamGain(enabled=False)
    off.fix(chunk)
    assert np.array_equal(off.apply(chunk), chunk)
    silent = StreamGain(enabled=True)
    silent.fix(np.zeros(100, dtype=np.float32))
    assert np.array_equal(silent.apply(chunk), chunk)


# ---------------------------------------------------------------------------------------------- encoders
def test_stream_encoders() -> None:
    audio = (np.random.default_rng(2).standard_normal(48000) * 0.3).astype(np.float32)

    def run(fmt: str) -> bytes:
        encoder = open_stream_encoder(fmt, 24000)
        return b"".join(encoder.encode(audio[i : i + 7001]) for i in range(0, audio.size, 7001)) + (
            encoder.finish()
        )

    wav = run("wav")
    assert wav[:WAV_HEADER] == streaming_wav_header(24000)
    assert wav[WAV_HEADER:] == encode_audio(audio, 24000, "wav")[WAV_HEADER:]
    decoded, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == 24000 and decoded.size == audio.size
    pcm = run("pcm")
    assert pcm == wav[WAV_HEADER:]  # the samples a stored WAV holds
    for fmt, kind in (("mp3", "audio/mpeg"), ("opus", "audio/ogg")):
        assert open_stream_encoder(fmt, 24000).content_type == kind
        data, rate = sf.read(io.BytesIO(run(fmt)), dtype="float32")
        assert (
            rate == 24000 and audio.size <= data.size <= audio.size + 4800
        )  # whole (+ codec padding)
    with pytest.raises(StreamFormatError, match="flac"):
        open_stream_encoder("flac", 24000)
    with pytest.raises(StreamFormatError, match="not supported"):
        open_stream_encoder("aiff", 24000)


# ---------------------------------------------------------------------------------------------- buffer
def piece(n: int, index: int = 1) -> AudioPiece:
    audio = np.full(n, 0.1, dtype=np.float32)
    return AudioPiece(audio, audio, index, 10, 24000)


def test_buffer_is_bounded_and_a_silent_reader_stops_the_synthesis() -> None:
    stream = AudioStream(sample_rate=24000, normalize=False, buffer_seconds=1, stall_seconds=0.3)
    stream.push(piece(20000))
    pusher_done = threading.Event()
    errors: list[BaseException] = []

    def push_more() -> None:
        try:
            stream.push(piece(20000))  # would pass the 1 s bound: waits for the reader
        except SinkClosed as exc:
            errors.append(exc)
        pusher_done.set()

    threading.Thread(target=push_more, daemon=True).start()
    assert not pusher_done.wait(0.1)  # paused by back-pressure
    assert stream.buffered_samples == 20000
    assert pusher_done.wait(5)  # nobody read for the stall time: the synthesis is stopped
    assert errors and "took nothing" in str(errors[0])
    assert stream.buffered_samples == 0  # and the buffered audio dropped


def test_buffer_resumes_when_the_reader_reads() -> None:
    stream = AudioStream(sample_rate=24000, normalize=False, buffer_seconds=1, stall_seconds=10)
    stream.push(piece(20000))
    done = threading.Event()
    threading.Thread(target=lambda: (stream.push(piece(20000)), done.set()), daemon=True).start()
    assert not done.wait(0.1)
    assert isinstance(stream.read(1), np.ndarray)
    assert done.wait(5)
    stream.end("completed", None)
    assert isinstance(stream.read(1), np.ndarray)
    assert stream.read(1) == StreamEnd("completed", None)


def test_a_closed_reader_stops_the_next_push() -> None:
    stream = AudioStream(sample_rate=24000, normalize=False, buffer_seconds=10, stall_seconds=10)
    stream.push(piece(100))
    stream.close("the client disconnected")
    with pytest.raises(SinkClosed, match="disconnected"):
        stream.push(piece(100))


# ---------------------------------------------------------------------------------------------- HTTP
@pytest.fixture
def server(tmp_path: Path, volume_template: Path):
    with stream_server(tmp_path, volume_template, gated=True) as srv:
        yield srv


def body(srv: StreamServer, text: str = THREE_CHUNKS, **extra: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "profile_id": srv.profile_id,
        "text": text,
        "seed": 11,
        "max_chunk_chars": 100,
    }
    payload.update(extra)
    return payload


def history(srv: StreamServer, gen_id: str) -> dict[str, object]:
    return httpx.get(f"{srv.base_url}/history/{gen_id}", timeout=10).json()


def test_first_audio_arrives_before_the_synthesis_finished(server: StreamServer) -> None:
    server.engine.release(1)  # only the first chunk may be generated
    with httpx.stream(
        "POST", f"{server.base_url}/generate/stream", json=body(server), timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["transfer-encoding"] == "chunked"
        gen_id = response.headers["x-generation-id"]
        chunks = response.iter_raw()
        received = b""
        while len(received) <= WAV_HEADER:
            received += next(chunks)
        # audio is here while chunk 2 is still waiting for the gate: the synthesis has not finished
        assert server.engine.generate_calls == 1
        assert history(server, gen_id)["status"] == "generating"
        assert received[:4] == b"RIFF"
        server.engine.open_gate()
        received += b"".join(chunks)
    row = history(server, gen_id)
    assert row["status"] == "completed" and row["source"] == "stream"
    stored = httpx.get(f"{server.base_url}/audio/{gen_id}", timeout=10).content
    assert received[WAV_HEADER:] == stored[WAV_HEADER:]  # the history keeps exactly what was heard


@pytest.mark.parametrize(
    ("text", "normalize", "identical"),
    [(THREE_CHUNKS, False, True), (THREE_CHUNKS[:90], True, True), (THREE_CHUNKS, True, False)],
)
def test_streamed_and_whole_generations_match(
    server: StreamServer, text: str, normalize: bool, identical: bool
) -> None:
    server.engine.open_gate()
    payload = body(server, text, normalize=normalize)
    streamed = httpx.post(f"{server.base_url}/generate/stream", json=payload, timeout=60).content
    row = httpx.post(f"{server.base_url}/generate?wait=true", json=payload, timeout=60).json()
    whole = httpx.get(f"{server.base_url}/audio/{row['id']}", timeout=10).content
    a = np.frombuffer(streamed[WAV_HEADER:], "<i2").astype(np.float64)
    b = np.frombuffer(whole[WAV_HEADER:], "<i2").astype(np.float64)
    assert a.size == b.size
    if identical:
        assert streamed[WAV_HEADER:] == whole[WAV_HEADER:]
    else:  # longer than a chunk with normalize: the same samples at another (constant) gain
        big = np.abs(b) > 2000
        ratio = a[big] / b[big]
        assert streamed[WAV_HEADER:] != whole[WAV_HEADER:]
        assert np.allclose(ratio, np.median(ratio), rtol=0.01)


def test_formats_persist_false_and_bad_input(server: StreamServer) -> None:
    server.engine.open_gate()
    url = f"{server.base_url}/generate/stream"
    before = httpx.get(f"{server.base_url}/history", timeout=10).json()["total"]
    for fmt, kind in (("pcm", "audio/pcm"), ("mp3", "audio/mpeg"), ("opus", "audio/ogg")):
        answer = httpx.post(
            url, params={"format": fmt, "persist": "false"}, json=body(server), timeout=60
        )
        assert answer.status_code == 200 and answer.headers["content-type"] == kind
        assert "x-generation-id" not in answer.headers
        if fmt != "pcm":
            audio, rate = sf.read(io.BytesIO(answer.content))
            assert rate == 24000 and audio.size > 24000 * 5
    assert httpx.get(f"{server.base_url}/history", timeout=10).json()["total"] == before
    for fmt in ("flac", "aiff"):  # flac cannot stream; the spec's enum lists the four that can
        refused = httpx.post(url, params={"format": fmt}, json=body(server), timeout=10)
        assert refused.status_code == 422 and "'opus'" in json.dumps(refused.json()["detail"])
    too_long = httpx.post(url, json=body(server, "a" * 50001), timeout=10)
    assert too_long.status_code == 422
    missing = httpx.post(url, json={**body(server), "profile_id": "nope"}, timeout=10)
    assert missing.status_code == 404
    missing = httpx.post(
        url, params={"persist": "false"}, json={**body(server), "profile_id": "nope"}
    )
    assert missing.status_code == 404


def test_a_client_that_disconnects_stops_the_synthesis_within_a_chunk(server: StreamServer) -> None:
    server.engine.release(1)
    with httpx.stream(
        "POST", f"{server.base_url}/generate/stream", json=body(server), timeout=60
    ) as response:
        gen_id = response.headers["x-generation-id"]
        next(response.iter_raw())
    # the client is gone while chunk 2 waits for the gate; the server notices it
    wait_for(lambda: any(s.reader_gone.is_set() for s in server.services.streaming.streams))
    server.engine.release(1)  # chunk 2 may finish; its hand-over stops the synthesis
    wait_for(lambda: history(server, gen_id)["status"] == "failed")
    assert server.engine.generate_calls == 2  # chunk 3 never started
    assert "disconnected" in str(history(server, gen_id)["error"])
    assert server.services.streaming.active == 0


def test_a_reader_that_reads_nothing_pauses_then_stops_the_synthesis(
    tmp_path: Path, volume_template: Path
) -> None:
    env = {"VOICEBOX_STREAM_BUFFER_SECONDS": "1", "VOICEBOX_STREAM_STALL_SECONDS": "0.5"}
    with stream_server(tmp_path, volume_template, gated=False, **env) as srv:
        payload = json.dumps(body(srv, "word " * 9999, max_chunk_chars=1000)).encode()
        sock = socket.create_connection(("127.0.0.1", int(srv.base_url.rsplit(":", 1)[1])))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sock.sendall(
                b"POST /generate/stream HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )  # ... and never read a byte
            wait_for(lambda: len(srv.services.streaming.streams) == 1)
            stream = next(iter(srv.services.streaming.streams))
            assert stream.finished.wait(60)
            assert stream.end_state is not None and stream.end_state.status == "cancelled"
            assert "took nothing" in str(stream.end_state.error)
            assert srv.services.streaming.active == 0
            row = history(srv, str(stream.generation_id))
            assert row["status"] == "failed" and "took nothing" in str(row["error"])
            # 50 chunks of about 60 s each were asked for; the synthesis stopped after a few
            assert srv.engine.generate_calls < 20
        finally:
            sock.close()


def test_streams_are_bounded_with_a_429(tmp_path: Path, volume_template: Path) -> None:
    with stream_server(tmp_path, volume_template, gated=True, VOICEBOX_MAX_STREAMS="4") as srv:

        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=250)
            async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                url = f"{srv.base_url}/generate/stream"
                payload = body(srv, THREE_CHUNKS[:90], persist=False)
                tasks = [
                    asyncio.create_task(client.post(url, params={"persist": "false"}, json=payload))
                    for _ in range(200)
                ]
                # every refusal is immediate: wait for them while the four admitted ones are gated
                await asyncio.to_thread(wait_for, lambda: sum(t.done() for t in tasks) >= 196, 90)
                srv.engine.open_gate()
                return await asyncio.gather(*tasks)

        answers = asyncio.run(burst())
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(200) == 4 and statuses.count(429) == 196
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.headers["retry-after"] == "5"
        assert "VOICEBOX_MAX_STREAMS" in refused.json()["detail"]
        assert srv.services.streaming.active == 0


# ---------------------------------------------------------------------------------------------- OpenAI
def openai_client(srv: StreamServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.base_url}/v1", api_key="unused", max_retries=0)


def test_openai_sse_stream_matches_the_whole_answer(server: StreamServer) -> None:
    server.engine.open_gate()
    client = openai_client(server)
    params = {
        "model": "tts-1",
        "voice": "Narrator",
        "input": THREE_CHUNKS,
        "extra_body": {"seed": 5},
    }
    with client.audio.speech.with_streaming_response.create(
        **params, response_format="pcm", stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")
        ]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    done = events[-1]
    assert done["type"] == "speech.audio.done" and done["usage"]["input_tokens"] == len(
        THREE_CHUNKS
    )
    streamed = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    whole = client.audio.speech.create(**params, response_format="pcm").read()
    assert streamed == whole  # one chunk (800 characters) with the default normalize: identical


def test_openai_audio_stream_arrives_before_the_synthesis_finished(server: StreamServer) -> None:
    # OpenAI's route uses the default chunk size: a text over 800 characters makes several chunks
    text = " ".join([THREE_CHUNKS] * 4)
    server.engine.release(1)
    client = openai_client(server)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="Narrator", input=text, response_format="wav", stream_format="audio"
    ) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        gen_id = response.headers["x-generation-id"]
        chunks = response.iter_bytes()
        first = next(chunks)
        assert first[:4] == b"RIFF" and server.engine.generate_calls == 1
        assert history(server, gen_id)["status"] == "generating"
        server.engine.open_gate()
        rest = b"".join(chunks)
    assert len(first + rest) > WAV_HEADER + 24000 * 2 * 10
    assert history(server, gen_id)["source"] == "openai"


@pytest.mark.parametrize("crossfade_ms", [0, 1, 50, 500])
def test_parts_fed_in_pieces_join_like_whole_parts(crossfade_ms: float) -> None:
    rng = np.random.default_rng(100 + crossfade_ms)
    for _ in range(40):
        sizes = rng.choice(
            [1, 2, 17, 100, 1199, 1200, 2400, 2401, 9000, 30000], size=rng.integers(1, 6)
        )
        parts = [rng.standard_normal(int(n)).astype(np.float32) for n in sizes]
        joiner = CrossfadeJoiner(24000, crossfade_ms)
        pieces = []
        for part in parts:
            joiner.open_part()
            cuts = np.sort(rng.integers(0, part.size + 1, size=rng.integers(0, 5)))
            for piece in np.split(part, cuts):
                pieces.append(joiner.feed(piece))
            pieces.append(joiner.close_part())
        pieces.append(joiner.finish())
        assert np.array_equal(
            np.concatenate(pieces), reference_crossfade(parts, 24000, crossfade_ms)
        )


def test_openai_sse_delta_arrives_before_the_synthesis_finished(server: StreamServer) -> None:
    text = " ".join([THREE_CHUNKS] * 4)  # over 800 characters: several chunks
    server.engine.release(1)
    client = openai_client(server)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="Narrator", input=text, response_format="pcm", stream_format="sse"
    ) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        event = json.loads(first[6:])
        assert event["type"] == "speech.audio.delta" and base64.b64decode(event["audio"])
        assert server.engine.generate_calls == 1  # the second chunk still waits for the gate
        server.engine.open_gate()
        rest = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert rest[-1]["type"] == "speech.audio.done"
