"""Where the client finds its endpoint and key: arguments, then the environment, then ``.env``."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from backend.client.errors import ConfigError

DEFAULT_API_BASE = "https://api.runpod.ai/v2"

log = logging.getLogger("voicebox.client")


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a ``.env`` file (``KEY=VALUE``, ``export`` prefix, quotes, ``#`` comments).

    Why not python-dotenv: four lines of parsing are not worth a dependency, and we must not touch
    ``os.environ`` (no side effects; the real environment wins over the file).
    """
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


#: the RunPod SDK's local test API (``scripts/run-local.sh``): ``/run``, ``/runsync`` and ``/status/{id}`` at
#: its root, no endpoint id in the path, no API key
LOCAL_ENDPOINT_ID = "local"


@dataclass(frozen=True)
class ClientConfig:
    api_key: str
    endpoint_id: str
    api_base: str
    local: bool = False


def resolve_config(
    *,
    endpoint_id: str | None = None,
    api_key: str | None = None,
    api_base: str | None = None,
    env: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    local_url: str | None = None,
) -> ClientConfig:
    """Arguments first, then the environment, then ``.env`` (``env_file`` or ``./.env``).

    ``local_url`` (or ``VOICEBOX_LOCAL_URL``) selects the RunPod SDK's local test API instead of RunPod: the
    worker of ``scripts/run-local.sh`` at ``http://127.0.0.1:8000``; no key or endpoint id is needed. It wins
    over an endpoint id, and says so in a warning: a forgotten ``VOICEBOX_LOCAL_URL`` must not send
    ``--endpoint``'s requests to a local worker without a word.
    """
    environ = dict(os.environ if env is None else env)
    file_values = read_env_file(env_file if env_file is not None else Path.cwd() / ".env")

    def pick(*names: str) -> str | None:
        for source in (environ, file_values):
            for name in names:
                value = (source.get(name) or "").strip()
                if value:
                    return value
        return None

    local = local_url or pick("VOICEBOX_LOCAL_URL")
    if local and endpoint_id:
        log.warning(
            "using the local worker at %s (%s), not endpoint %s",
            local,
            "--local" if local_url else "VOICEBOX_LOCAL_URL is set; unset it to reach RunPod",
            endpoint_id,
        )
    if local:
        return ClientConfig(
            api_key=api_key or "local",
            endpoint_id=LOCAL_ENDPOINT_ID,
            api_base=local.rstrip("/"),
            local=True,
        )
    key = api_key or pick("RUNPOD_API_KEY")
    endpoint = endpoint_id or pick("VOICEBOX_ENDPOINT_ID", "RUNPOD_ENDPOINT_ID")
    base = api_base or pick("RUNPOD_API_BASE") or DEFAULT_API_BASE
    if not key:
        raise ConfigError("no RunPod API key: set RUNPOD_API_KEY in the environment or in .env")
    if not endpoint:
        raise ConfigError(
            "no endpoint id: pass --endpoint, or set VOICEBOX_ENDPOINT_ID (or RUNPOD_ENDPOINT_ID)"
        )
    return ClientConfig(api_key=key, endpoint_id=endpoint, api_base=base.rstrip("/"))
