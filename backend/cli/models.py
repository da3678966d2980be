"""``voicebox-worker models status|prefetch REPO|install-demo``.

Why a prefetch command: serverless workers should never download multi-GB weights on a billed cold start (and may
have no route to the hub at all). An operator fills the volume once, from a pod or a laptop with the volume
mounted, and every worker then loads offline. Exit codes: 0 ok, 1 failure, 2 usage.
"""

from __future__ import annotations

import argparse
from typing import Any

from backend.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, emit


def _fail(args: argparse.Namespace, message: str, code: int = EXIT_FAILED) -> int:
    from backend.cli_report import report_failure

    return report_failure(args, message, code)


def _repos(settings: Any, explicit: list[str] | None) -> list[str]:
    if explicit:
        return explicit
    return [r for r in (settings.tts_model, settings.stt_model) if r.strip().lower() != "fake"]


def _source(settings: Any, repo: str) -> str:
    """Which setting names ``repo`` (and whether it is the built-in default): what the worker will use."""
    import os

    for var, value in (
        ("VOICEBOX_TTS_MODEL", settings.tts_model),
        ("VOICEBOX_STT_MODEL", settings.stt_model),
    ):
        if repo == value:
            return var if os.environ.get(var, "").strip() else f"{var} not set: default"
    return "named on the command line"


def cmd_models_status(args: argparse.Namespace, settings: Any) -> int:
    """Completeness of the configured (or named) repos in the volume cache; exit 1 if any is incomplete."""
    from backend.engines.demo import DEMO_TTS_REPO, demo_installed
    from backend.engines.hfcache import check_snapshot, not_downloaded_hint, prefetch_command

    repos = _repos(settings, args.repo)
    rows = [check_snapshot(settings.hf_home, repo).as_dict() for repo in repos]
    lines = [f"HF cache: {settings.hf_home / 'hub'} (volume: {settings.volume_source})"]
    for row in rows:
        row["source"] = _source(settings, row["repo_id"])
        if not row["complete"]:
            row["hint"] = not_downloaded_hint(row["repo_id"])
            row["fix"] = prefetch_command(row["repo_id"])
        state = "complete" if row["complete"] else row["hint"]
        lines.append(f"  {row['repo_id']} ({row['source']}): {state}")
        if row["files"]:
            lines.append(f"    {row['files']} files, {row['size_bytes']} bytes")
        if not row["complete"] and row["files"]:
            lines.append("    problems: " + "; ".join(row["problems"]))
    ok = all(row["complete"] for row in rows)
    if not ok and DEMO_TTS_REPO not in repos and demo_installed(settings.hf_home):
        lines.append(
            "  the offline demo models are installed on this volume (scripts/run-local.sh uses them when "
            "VOICEBOX_TTS_MODEL is not set): check them with\n"
            "    VOICEBOX_TTS_MODEL=voicebox-demo/tiny-qwen3-tts-base "
            "VOICEBOX_STT_MODEL=voicebox-demo/tiny-whisper voicebox-worker models status"
        )
    emit(args, {"ok": ok, "hf_home": str(settings.hf_home), "models": rows}, "\n".join(lines))
    return EXIT_OK if ok else EXIT_FAILED


def cmd_models_prefetch(args: argparse.Namespace, settings: Any) -> int:
    """Download a whole snapshot into the volume cache (under the repo's lease) and verify it."""
    from backend.engines.hfcache import ModelNotCachedError, ensure_model

    repos = _repos(settings, args.repo)
    if not repos:
        return _fail(args, "no repo given and both models are 'fake'", EXIT_USAGE)
    results = []
    for repo in repos:
        try:
            status = ensure_model(settings, repo, args.revision, download=True)
        except ModelNotCachedError as exc:
            return _fail(args, str(exc))
        results.append(status.as_dict())
    text = "\n".join(f"{r['repo_id']}: complete at {r['path']}" for r in results)
    emit(args, {"ok": True, "models": results}, text)
    return EXIT_OK


def cmd_models_install_demo(args: argparse.Namespace, settings: Any) -> int:
    """Install the tiny random-weight demo models (noise output) into the volume cache."""
    from backend.engines.demo import demo_installed, install_demo_models
    from backend.engines.hfcache import check_snapshot

    already = not args.force and demo_installed(settings.hf_home)
    try:
        repos = install_demo_models(settings.hf_home, force=args.force)
    except Exception as exc:  # noqa: BLE001 - e.g. qwen_tts not importable on this machine
        return _fail(args, f"could not build the demo models: {type(exc).__name__}: {exc}")
    checks = {kind: check_snapshot(settings.hf_home, repo).complete for kind, repo in repos.items()}
    ok = all(checks.values())
    done = "already installed in" if already else "installed demo models into"
    text = (
        f"{done} {settings.hf_home / 'hub'} (random weights: the audio is noise)\n"
        f"  VOICEBOX_TTS_MODEL={repos['tts']}\n  VOICEBOX_STT_MODEL={repos['stt']}"
    )
    data = {"ok": ok, "models": repos, "hf_home": str(settings.hf_home), "built": not already}
    emit(args, data, text)
    return EXIT_OK if ok else EXIT_FAILED


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``models ...`` on the main parser; handlers are ``handler(args, settings) -> int``."""
    models = subparsers.add_parser("models", help="model cache on the volume").add_subparsers(
        dest="models", required=True
    )

    def add(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        p = models.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=handler)
        return p

    p = add("status", cmd_models_status, "is each model completely in the volume's HF cache?")
    p.add_argument("repo", nargs="*", help="repo ids (default: the configured TTS and STT models)")
    p = add("prefetch", cmd_models_prefetch, "download a model into the volume's HF cache")
    p.add_argument("repo", nargs="*", help="repo ids (default: the configured TTS and STT models)")
    p.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    p = add(
        "install-demo", cmd_models_install_demo, "install tiny random-weight demo models (noise)"
    )
    p.add_argument("--force", action="store_true", help="rebuild even when already installed")
