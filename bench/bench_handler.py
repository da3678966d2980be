"""Benchmark: what the RunPod envelope costs per job, and how fast a 10 MB answer is encoded.

Why: the handler adds validation, a loopback hop through the shared httpx client and answer building to every
job; this measures that overhead against a direct HTTP call to the same app in the same run (so machine noise
affects both), and the base64 + JSON cost of a large binary answer (the SDK serializes what we return).

    python -m bench.bench_handler            # full run
    python -m bench.bench_handler --short    # CI-sized
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "healthy"}

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        return body

    return app


async def _overhead(settings: Any, base_url: str, iterations: int) -> list[dict]:
    import httpx

    from backend.serverless.handler import JobHandler

    handler = JobHandler(settings, base_url=base_url)
    direct_client = httpx.AsyncClient(base_url=base_url, trust_env=False)
    body = {"profile_id": "p1", "text": "Hello there, this is a benchmark sentence."}
    direct: dict[str, list[float]] = {"GET /health": [], "POST /echo": []}
    proxied: dict[str, list[float]] = {"GET /health": [], "POST /echo": []}
    try:
        for i in range(iterations + 20):  # 20 warm-up rounds, not recorded
            for name in direct:
                method, path = name.split(" ")
                kwargs = {"json": body} if method == "POST" else {}
                t0 = time.perf_counter()
                reply = await direct_client.request(method, path, **kwargs)
                reply.json()
                t1 = time.perf_counter()
                job_input: dict[str, Any] = {"method": method, "path": path}
                if method == "POST":
                    job_input["body"] = body
                answer = await handler({"id": f"b{i}", "input": job_input})
                t2 = time.perf_counter()
                assert answer["status_code"] == 200, answer
                if i >= 20:
                    direct[name].append((t1 - t0) * 1000)
                    proxied[name].append((t2 - t1) * 1000)
    finally:
        await direct_client.aclose()
        await handler.aclose()
    rows = []
    for name in direct:
        d50, h50 = statistics.median(direct[name]), statistics.median(proxied[name])
        rows.append(
            {
                "bench": "handler_overhead",
                "case": name,
                "n": iterations,
                "direct_p50_ms": round(d50, 3),
                "direct_p95_ms": round(_percentile(direct[name], 0.95), 3),
                "handler_p50_ms": round(h50, 3),
                "handler_p95_ms": round(_percentile(proxied[name], 0.95), 3),
                "overhead_p50_ms": round(h50 - d50, 3),
                "p50_ms": round(h50, 3),
                "p95_ms": round(_percentile(proxied[name], 0.95), 3),
                "ratio": round(h50 / d50, 2) if d50 else None,  # handler vs direct, same run
            }
        )
    return rows


def _base64_throughput(repeats: int) -> dict:
    from backend.serverless.answers import inline_answer, serialized_size

    data = os.urandom(10 * 1024 * 1024)
    encode, full = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        base64.b64encode(data)
        t1 = time.perf_counter()
        answer = inline_answer(200, {"content-type": "audio/wav"}, data)
        json.dumps({"output": answer}, ensure_ascii=False).encode("utf-8")  # what the SDK posts
        t2 = time.perf_counter()
        encode.append(t1 - t0)
        full.append(t2 - t1)
    mb = len(data) / (1024 * 1024)
    return {
        "bench": "base64_10mb_answer",
        "n": repeats,
        "size_mb": mb,
        "serialized_mb": round(serialized_size(answer) / (1024 * 1024), 2),
        "b64encode_mb_s": round(mb / statistics.median(encode), 1),
        "answer_build_and_json_mb_s": round(mb / statistics.median(full), 1),
        "answer_build_and_json_ms": round(statistics.median(full) * 1000, 1),
        "p50_ms": round(statistics.median(full) * 1000, 1),
        "ratio": round(statistics.median(full) / statistics.median(encode), 2),  # vs bare b64encode
    }


def run(short: bool) -> list[dict]:
    """Run the benchmark; returns one dict per figure (also printed by ``main``)."""
    from backend.config import load_settings
    from backend.serverless.launcher import ServerThread

    iterations = 200 if short else 2000
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {
                "VOICEBOX_VOLUME": str(Path(tmp) / "volume"),
                "VOICEBOX_LOCAL_DIR": str(Path(tmp) / "l"),
            }
        )
        server = ServerThread(_app(), port=0).start()
        if not server.wait_ready(30):
            raise RuntimeError("bench app did not start")
        try:
            rows = asyncio.run(_overhead(settings, server.base_url, iterations))
        finally:
            server.stop()
    rows.append(_base64_throughput(3 if short else 10))
    return rows


def main() -> None:
    for row in run(short="--short" in sys.argv[1:]):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
