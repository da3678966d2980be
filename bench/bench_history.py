"""History page at 100k rows: ``GET /history`` (first page, a deep page, a profile filter, a search) through
the app, against the same queries on an empty history as the baseline (same run).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from backend.app import create_app
from backend.config import load_settings
from backend.services.container import Services
from volume_bootstrap.bootstrap import bootstrap


def _fill(services: Services, rows: int) -> str:
    with services.db.write() as session:
        conn = session.connection()
        conn.execute(
            text(
                "INSERT INTO profiles (id, name, language, created_at, updated_at) "
                "VALUES ('p1', 'Bench', 'en', '2026-01-01', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO generations (id, profile_id, profile_name, text, language, engine, "
                "status, is_favorited, source, created_at, audio_path, duration) VALUES (:id, :pid, "
                "'Bench', :text, 'en', 'qwen', 'completed', 0, 'manual', :at, :path, 1.5)"
            ),
            [
                {
                    "id": f"g{i:07d}",
                    "pid": "p1" if i % 4 == 0 else None,
                    "text": f"history row number {i} with some words",
                    "at": f"2026-01-01 00:{(i // 60) % 60:02d}:{i % 60:02d}.{i:06d}",
                    "path": f"generations/2026-01/g{i:07d}.wav",
                }
                for i in range(rows)
            ],
        )
    return "p1"


def _time(client: TestClient, url: str, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return statistics.median(samples)


def run(short: bool = False) -> list[dict]:
    rows = 20_000 if short else 100_000
    repeats = 5 if short else 20
    queries = {
        "first page": "/history?limit=50",
        "page at offset 10000": "/history?limit=50&offset=10000",
        "profile filter": "/history?limit=50&profile_id=p1",
        "search": "/history?limit=50&search=number%2012345",
    }
    timings: dict[int, dict[str, float]] = {}
    for count in (0, rows):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "volume").mkdir()
            settings = load_settings(
                {
                    "VOICEBOX_VOLUME": str(root / "volume"),
                    "VOICEBOX_LOCAL_DIR": str(root / "local"),
                    "VOICEBOX_TTS_MODEL": "fake",
                    "VOICEBOX_STT_MODEL": "fake",
                }
            )
            bootstrap(settings, run_fsck=False)
            services = Services.create(settings)
            if count:
                _fill(services, count)
            with TestClient(create_app(settings, services=services)) as client:
                timings[count] = {
                    name: _time(client, url, repeats) for name, url in queries.items()
                }
            services.close()
    return [
        {
            "bench": f"GET /history {name} @ {rows} rows",
            "p50_ms": round(timings[rows][name] * 1000, 2),
            "baseline_ms": round(timings[0][name] * 1000, 2),
            "ratio": round(timings[rows][name] / timings[0][name], 2),
        }
        for name in queries
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
