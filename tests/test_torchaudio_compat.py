"""The product-side stand-in for torchaudio's kaldi module (only on machines without a matching torchaudio)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from backend.engines.torchaudio_compat import TorchaudioUnavailableError, ensure_kaldi_importable
registered = ensure_kaldi_importable()
import qwen_tts  # must import either way
if registered:
    import torchaudio.compliance.kaldi as kaldi
    try:
        kaldi.fbank()
    except TorchaudioUnavailableError as exc:
        assert "25 Hz tokenizer" in str(exc)
        print("stand-in")
    else:
        sys.exit("the stand-in must refuse to compute")
else:
    print("real")
"""


def test_qwen_tts_imports_and_kaldi_use_fails_clearly() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] in {"stand-in", "real"}
