"""``python -m bench [--short] [--only NAME]``: run every benchmark module and print one table.

Each module under ``bench/`` named ``bench_*.py`` exposes ``run(short: bool) -> list[dict]`` whose rows have
``bench``, ``p50_ms``, ``max_ms`` (or other numeric columns) and ``ratio`` against a baseline measured in the
same run. Figures are printed, never asserted: timing asserts flake on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import platform
import sys
import time
from pathlib import Path


def modules(only: str | None) -> list[str]:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    return [n for n in names if only is None or only in n]


def machine() -> str:
    import os

    return f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"


def render(rows: list[dict]) -> str:
    """A markdown table: bench, p50, ratio, and every other figure of the row as ``key=value``."""
    lines = ["| bench | p50 ms | ratio | other figures |", "|---|---:|---:|---|"]
    for row in rows:
        name = row["bench"] + (f" ({row['case']})" if "case" in row else "")
        rest = {
            k: v for k, v in row.items() if k not in {"bench", "case", "module", "p50_ms", "ratio"}
        }
        other = ", ".join(f"{k}={v}" for k, v in rest.items())
        lines.append(f"| {name} | {row.get('p50_ms', '')} | {row.get('ratio', '')} | {other} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--short", action="store_true", help="small sizes, few repeats (CI)")
    parser.add_argument("--only", default=None, help="run modules whose name contains this")
    parser.add_argument(
        "--long", action="store_true", help="also the largest cases (1M history rows)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows: list[dict] = []
    for name in modules(args.only):
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        import inspect

        kwargs = (
            {"long": True}
            if args.long and "long" in inspect.signature(module.run).parameters
            else {}
        )
        for row in module.run(short=args.short, **kwargs):
            rows.append({"module": name, **row})
        print(f"# {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if args.json:
        print(json.dumps({"machine": machine(), "rows": rows}, indent=2))
        return 0
    print(f"machine: {machine()}")
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
