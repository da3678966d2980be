"""The client against the RunPod SDK's local test API (``--local`` / ``VOICEBOX_LOCAL_URL``): no key, no endpoint
id, routes at the API's root, ``/status`` by POST. End to end it runs in tests/test_docs_examples.py."""

from __future__ import annotations

import argparse
import logging

from backend.client.cli import add_commands
from backend.client.client import LOCAL_ENDPOINT_ID, VoiceboxClient, resolve_config


def test_local_url_needs_no_key_or_endpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = resolve_config(
        env={"VOICEBOX_LOCAL_URL": "http://127.0.0.1:8000/"}, env_file=tmp_path / "x"
    )
    assert config.local and config.api_base == "http://127.0.0.1:8000"
    assert config.endpoint_id == LOCAL_ENDPOINT_ID
    remote = resolve_config(
        env={"RUNPOD_API_KEY": "k", "VOICEBOX_ENDPOINT_ID": "ep"}, env_file=tmp_path / "x"
    )
    assert not remote.local


def test_a_local_url_over_an_endpoint_says_so(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """A forgotten VOICEBOX_LOCAL_URL still wins over --endpoint, but not without a word."""
    with caplog.at_level(logging.WARNING, logger="voicebox.client"):
        config = resolve_config(
            endpoint_id="ep",
            env={"VOICEBOX_LOCAL_URL": "http://127.0.0.1:8000"},
            env_file=tmp_path / "x",
        )
    assert config.local
    assert [r.getMessage() for r in caplog.records] == [
        "using the local worker at http://127.0.0.1:8000 (VOICEBOX_LOCAL_URL is set; unset it to "
        "reach RunPod), not endpoint ep"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="voicebox.client"):
        resolve_config(env={"VOICEBOX_LOCAL_URL": "http://127.0.0.1:8000"}, env_file=tmp_path / "x")
    assert caplog.records == []  # no endpoint asked for: nothing to warn about


def test_routes_have_no_endpoint_id_locally(tmp_path) -> None:  # type: ignore[no-untyped-def]
    local = VoiceboxClient(local_url="http://127.0.0.1:8000", env={}, env_file=tmp_path / "x")
    assert local._route("runsync") == "runsync"
    remote = VoiceboxClient("ep", api_key="k", env={}, env_file=tmp_path / "x")
    assert remote._route("status/j") == "ep/status/j"


def test_local_flag_defaults_to_run_local_sh() -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["remote", "health", "--local"])
    assert args.local == "http://127.0.0.1:8000"
    args = parser.parse_args(["bridge", "--local", "http://127.0.0.1:9000"])
    assert args.local == "http://127.0.0.1:9000"
