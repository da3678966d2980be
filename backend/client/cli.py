"""``voicebox-worker remote ...`` and ``voicebox-worker bridge``: the client from a shell.

Why a CLI over the client: the common flows (check the endpoint, make a voice, speak a line) should
be one command each, with progress on stderr for the minutes a cold start or a long text takes,
``--json`` for scripts, and exit codes scripts can rely on: 0 success, 1 the remote operation failed
(message on stderr), 2 bad usage or configuration (no API key, no endpoint, a file too large to
send).

``add_commands(subparsers)`` plugs both commands into ``backend/cli.py``; each sets ``handler(args,
settings)`` (``settings`` is unused: the client is configured from RUNPOD_* variables, not the
worker's settings). ``python -m backend.client`` runs them standalone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from backend.cli_report import parse_args, report_failure
from backend.client.client import JobProgress, VoiceboxClient
from backend.client.errors import ClientError, ConfigError, PayloadTooLarge

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ProgressPrinter:
    """Job progress on stderr: a line when the state changes, and every ``every`` seconds
    otherwise.
    """

    def __init__(self, stream: Any = None, every: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self._last: tuple[str, str] | None = None
        self._printed_at = 0.0

    def __call__(self, event: JobProgress) -> None:
        key = (event.phase, event.status)
        now = time.monotonic()
        if key == self._last and now - self._printed_at < self.every:
            return
        self._last, self._printed_at = key, now
        what = "generation" if event.phase == "generation" else "job"
        extra = f" {json.dumps(event.output)}" if event.output is not None else ""
        print(
            f"[{what} {event.job_id[:12]}] {event.status} after {event.elapsed:.0f}s{extra}",
            file=self.stream,
            flush=True,
        )


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--endpoint",
        help="RunPod endpoint id (default: VOICEBOX_ENDPOINT_ID or RUNPOD_ENDPOINT_ID)",
    )
    parent.add_argument(
        "--api-base", help="RunPod API base URL (default: RUNPOD_API_BASE or RunPod)"
    )
    parent.add_argument(
        "--env-file", help="read RUNPOD_API_KEY etc. from this file (default ./.env)"
    )
    parent.add_argument(
        "--local",
        nargs="?",
        const="http://127.0.0.1:8000",
        metavar="URL",
        help="use the local worker of scripts/run-local.sh instead of RunPod "
        "(default URL http://127.0.0.1:8000; or set VOICEBOX_LOCAL_URL)",
    )
    parent.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for a job (default 900)"
    )
    parent.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parent.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    return parent


def make_client(args: argparse.Namespace) -> VoiceboxClient:
    return VoiceboxClient(
        getattr(args, "endpoint", None),
        api_base=getattr(args, "api_base", None),
        env_file=getattr(args, "env_file", None),
        local_url=getattr(args, "local", None),
        timeout=getattr(args, "timeout", 900.0),
    )


def _progress(args: argparse.Namespace) -> ProgressPrinter | None:
    return None if getattr(args, "quiet", False) else ProgressPrinter()


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, sort_keys=True, default=str) if args.json else text)


def _run(fn: Callable[[argparse.Namespace, VoiceboxClient], int]) -> Callable[..., int]:
    """Wrap a command: build the client, map errors to exit codes and one line on stderr."""

    def handler(args: argparse.Namespace, settings: Any = None) -> int:
        try:
            return fn(args, make_client(args))
        except (ConfigError, PayloadTooLarge) as exc:
            return report_failure(args, str(exc), EXIT_USAGE, type(exc).__name__)
        except ClientError as exc:
            kind = type(exc).__name__
            return report_failure(args, f"{kind}: {exc}", EXIT_FAILED, kind)
        except OSError as exc:
            return report_failure(args, str(exc), EXIT_FAILED, type(exc).__name__)

    return handler


# ------------------------------------------------------------------------------------------ command


def cmd_health(args: argparse.Namespace, client: VoiceboxClient) -> int:
    health = client.health()
    text = ", ".join(f"{k}={v}" for k, v in health.items()) if isinstance(health, dict) else health
    _emit(args, health, str(text))
    return EXIT_OK


def cmd_profiles_list(args: argparse.Namespace, client: VoiceboxClient) -> int:
    profiles = client.list_profiles()
    lines = [f"{p.get('id')}  {p.get('language', ''):<3} {p.get('name')}" for p in profiles]
    _emit(args, profiles, "\n".join(lines) if lines else "(no profiles)")
    return EXIT_OK


def cmd_profiles_create(args: argparse.Namespace, client: VoiceboxClient) -> int:
    profile = client.create_profile(args.name, description=args.description, language=args.language)
    _emit(args, profile, f"created {profile.get('name')} ({profile.get('id')})")
    return EXIT_OK


def cmd_profiles_add_sample(args: argparse.Namespace, client: VoiceboxClient) -> int:
    sample = client.add_sample(args.profile, args.file, args.text)
    _emit(args, sample, f"added sample {sample.get('id')} to {args.profile}")
    return EXIT_OK


def cmd_say(args: argparse.Namespace, client: VoiceboxClient) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    if not text.strip():
        return report_failure(args, "nothing to say", EXIT_USAGE, "usage")
    options: dict[str, Any] = {}
    if args.model_size:
        options["model_size"] = args.model_size
    if args.instruct:
        options["instruct"] = args.instruct
    if args.stream:
        return _say_stream(args, client, text, options)
    mode = "async" if args.use_async else None
    started = time.monotonic()
    path = client.generate(
        text,
        profile=args.profile,
        output=args.output,
        language=args.language,
        seed=args.seed,
        progress=_progress(args),
        mode=mode,
        **options,
    )
    size = Path(path).stat().st_size if isinstance(path, Path) else 0
    elapsed = time.monotonic() - started
    _emit(
        args,
        {"output": str(path), "bytes": size, "seconds": round(elapsed, 2)},
        f"wrote {path!s} ({size} bytes) in {elapsed:.1f}s",
    )
    return EXIT_OK


def _say_stream(
    args: argparse.Namespace, client: VoiceboxClient, text: str, options: dict[str, Any]
) -> int:
    """``say --stream``: write (or pipe, with ``-o -``) each chunk as the worker sends it.

    A file is written to ``<output>.part`` and renamed when the stream is complete, so a cut stream never
    leaves a file that looks whole; stdout gets the bytes at once (``| aplay``, ``| ffplay -``).
    """
    started = time.monotonic()
    stream = client.generate_stream(
        text,
        profile=args.profile,
        format=args.format,
        persist=not args.no_persist,
        language=args.language,
        seed=args.seed,
        **options,
    )
    to_stdout = args.output == "-"
    target = Path(args.output)
    part = target.with_name(target.name + ".part")
    size = 0
    first: float | None = None
    sink = sys.stdout.buffer if to_stdout else part.open("wb")
    try:
        for chunk in stream:
            if first is None:
                first = time.monotonic() - started
            sink.write(chunk)
            sink.flush()
            size += len(chunk)
    finally:
        if not to_stdout:
            sink.close()
    if not to_stdout:
        part.replace(target)
    elapsed = time.monotonic() - started
    where = "stdout" if to_stdout else str(target)
    report = {
        "output": where,
        "bytes": size,
        "seconds": round(elapsed, 2),
        "first_audio_seconds": None if first is None else round(first, 2),
        "job_id": stream.job_id,
        "generation_id": stream.headers.get("x-generation-id"),
    }
    message = f"wrote {where} ({size} bytes) in {elapsed:.1f}s, first audio after {first or 0:.1f}s"
    if to_stdout:  # stdout carries the audio: the report goes to stderr
        if not args.quiet:
            print(json.dumps(report, sort_keys=True) if args.json else message, file=sys.stderr)
    else:
        _emit(args, report, message)
    return EXIT_OK


def cmd_import(args: argparse.Namespace, client: VoiceboxClient) -> int:
    if (args.file is None) == (args.volume_name is None):
        return report_failure(
            args, "give a FILE or --volume-name NAME (one of them)", EXIT_USAGE, "usage"
        )
    profile = client.import_profile(
        args.file, volume_name=args.volume_name, progress=_progress(args)
    )
    _emit(args, profile, f"imported {profile.get('name')} ({profile.get('id')})")
    return EXIT_OK


def cmd_export(args: argparse.Namespace, client: VoiceboxClient) -> int:
    path = client.export_profile(args.profile, args.output)
    size = path.stat().st_size
    _emit(args, {"output": str(path), "bytes": size}, f"wrote {path} ({size} bytes)")
    return EXIT_OK


def cmd_history(args: argparse.Namespace, client: VoiceboxClient) -> int:
    page = client.history(profile=args.profile, limit=args.limit, offset=args.offset)
    lines = []
    for item in page.get("items", []):
        duration = item.get("duration")
        seconds = f"{duration:6.1f}s" if isinstance(duration, int | float) else "      -"
        text = str(item.get("text", "")).replace("\n", " ")
        lines.append(f"{item.get('id')}  {seconds}  {item.get('profile_name') or ''}: {text[:60]}")
    lines.append(f"({len(page.get('items', []))} of {page.get('total', '?')})")
    _emit(args, page, "\n".join(lines))
    return EXIT_OK


def cmd_transcribe(args: argparse.Namespace, client: VoiceboxClient) -> int:
    result = client.transcribe(args.file, language=args.language, progress=_progress(args))
    _emit(args, result, str(result.get("text", "")))
    return EXIT_OK


def cmd_bridge(args: argparse.Namespace, client: VoiceboxClient) -> int:
    from pathlib import Path

    from backend.client.bridge import DEFAULT_TOKEN_FILE, serve

    if args.host not in {"127.0.0.1", "localhost", "::1"}:
        print(
            f"voicebox-worker: warning: the bridge on {args.host} lets anyone who can reach it "
            "spend this RunPod account's credit",
            file=sys.stderr,
        )
    print(
        f"bridge: http://{args.host}:{args.port} -> "
        + (
            f"local worker {client.config.api_base}"
            if client.config.local
            else f"RunPod endpoint {client.endpoint_id}"
        ),
        file=sys.stderr,
    )
    token_file = getattr(args, "token_file", None)
    path = None if token_file == "none" else Path(token_file) if token_file else DEFAULT_TOKEN_FILE
    serve(client, host=args.host, port=args.port, token_file=path)
    return EXIT_OK


# ------------------------------------------------------------------------------------------ wiring


def add_commands(subparsers: Any) -> None:
    """Add ``remote`` and ``bridge`` to a ``voicebox-worker`` subparsers object."""
    common = _common()
    remote = subparsers.add_parser(
        "remote", help="use a deployed RunPod endpoint (RUNPOD_API_KEY, VOICEBOX_ENDPOINT_ID)"
    )
    sub = remote.add_subparsers(dest="remote_command", required=True)

    def leaf(parent: Any, name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, parents=[common], help=help_)
        parser.set_defaults(handler=_run(fn))
        return parser

    leaf(sub, "health", cmd_health, "GET /health on the endpoint (wakes a worker)")

    profiles = sub.add_parser("profiles", help="voice profiles").add_subparsers(
        dest="profiles_command", required=True
    )
    leaf(profiles, "list", cmd_profiles_list, "list profiles")
    create = leaf(profiles, "create", cmd_profiles_create, "create a profile")
    create.add_argument("name")
    create.add_argument("--language", default="en")
    create.add_argument("--description")
    add_sample = leaf(profiles, "add-sample", cmd_profiles_add_sample, "upload a reference clip")
    add_sample.add_argument("profile", help="profile name or id")
    add_sample.add_argument("file", help="audio file (wav, mp3, flac, ...)")
    add_sample.add_argument("--text", required=True, help="what is said in the clip")

    say = leaf(sub, "say", cmd_say, "generate speech into a file")
    say.add_argument("text", help='text to speak, or "-" to read stdin')
    say.add_argument("--profile", required=True, help="profile name or id")
    say.add_argument(
        "-o",
        "--output",
        required=True,
        help='where to write the audio ("-": stdout, with --stream)',
    )
    say.add_argument("--language")
    say.add_argument("--seed", type=int)
    say.add_argument("--model-size")
    say.add_argument("--instruct")
    say.add_argument(
        "--async",
        dest="use_async",
        action="store_true",
        help="submit with /run and poll (automatic for long texts)",
    )
    say.add_argument(
        "--stream",
        action="store_true",
        help="write the audio as it is generated (RunPod /stream); -o - pipes it to stdout",
    )
    say.add_argument(
        "--format", default="wav", choices=["wav", "pcm", "mp3", "opus"], help="with --stream"
    )
    say.add_argument("--no-persist", action="store_true", help="with --stream: keep no history row")

    imp = leaf(sub, "import", cmd_import, "import a profile bundle (zip)")
    imp.add_argument("file", nargs="?", help="bundle to upload in the job")
    imp.add_argument(
        "--volume-name",
        help="import voicebox/imports/NAME already uploaded to the volume (for large bundles)",
    )
    exp = leaf(sub, "export", cmd_export, "export a profile bundle (zip)")
    exp.add_argument("profile", help="profile name or id")
    exp.add_argument("-o", "--output", required=True)

    hist = leaf(sub, "history", cmd_history, "list generations")
    hist.add_argument("--profile")
    hist.add_argument("--limit", type=int, default=20)
    hist.add_argument("--offset", type=int, default=0)

    tr = leaf(sub, "transcribe", cmd_transcribe, "transcribe an audio file")
    tr.add_argument("file")
    tr.add_argument("--language")

    bridge = subparsers.add_parser(
        "bridge",
        parents=[common],
        help="serve the Voicebox API on localhost, forwarding each request as a RunPod job",
    )
    bridge.add_argument("--port", type=int, default=17493)
    bridge.add_argument("--host", default="127.0.0.1")
    bridge.add_argument(
        "--token-file",
        default=None,
        help="where to write the per-run token for scripts (mode 0600); "
        "default ~/.config/voicebox-worker/bridge-token; 'none' prints it only",
    )
    bridge.set_defaults(handler=_run(cmd_bridge))


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m backend.client``) with the same commands."""
    from backend import __version__

    parser = argparse.ArgumentParser(prog="voicebox-worker")
    parser.add_argument("--version", action="version", version=f"voicebox-worker {__version__}")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parse_args(parser, argv)
    return int(args.handler(args))
