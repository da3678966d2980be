"""Tiny, randomly initialised Qwen3-TTS Base and Whisper checkpoints in a real Hugging Face cache layout.

Why this exists: no real weights are reachable from CI or from an offline laptop, yet the production loading path
(cache completeness check → offline → ``from_pretrained``) must run unchanged. These builders write checkpoints of
the real architectures (a few hundred thousand parameters, ~3 MB) and lay them out exactly as the hub does
(``models--ORG--NAME/{blobs,snapshots/<commit>,refs/main}``), so the demo (``models install-demo``) and the test
fixtures exercise the same code. The audio they produce is noise: they check plumbing, not speech.

Everything heavy (torch, transformers, qwen_tts, tokenizers) is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

DEMO_TTS_REPO = "voicebox-demo/tiny-qwen3-tts-base"
DEMO_STT_REPO = "voicebox-demo/tiny-whisper"

_NQ = 4  # codebooks (real model: 16); must equal the codec's quantizer count
_H = 16  # hidden size everywhere (real model: 1024/2048)
_LFS_SUFFIXES = {".safetensors", ".bin", ".pt", ".onnx"}


def _git_blob_sha1(data: bytes) -> str:
    h = hashlib.sha1()
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def install_into_hf_cache(
    src_dir: Path, hub_cache: Path, repo_id: str, commit: str | None = None
) -> Path:
    """Copy ``src_dir`` into ``hub_cache`` as the hub lays out a downloaded repo; return the snapshot dir.

    Blob names mimic the hub (sha256 for LFS-like files, git sha1 otherwise) and snapshot entries are relative
    symlinks to the blobs, so the completeness checks see exactly what a real download leaves behind.
    """
    src_dir, hub_cache = Path(src_dir), Path(hub_cache)
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    repo_dir = hub_cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in src_dir.rglob("*") if p.is_file()):
        rel = f.relative_to(src_dir)
        data = f.read_bytes()
        lfs = f.suffix in _LFS_SUFFIXES or len(data) > 10_000_000
        digest = hashlib.sha256(data).hexdigest() if lfs else _git_blob_sha1(data)
        blob = repo_dir / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(f, blob)
        dst = snap / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        os.symlink(os.path.relpath(blob, dst.parent), dst)
    (repo_dir / "refs" / "main").write_text(commit)  # the hub writes it without a trailing newline
    return snap


def build_tiny_qwen3_tts(out: Path) -> dict[str, int]:
    """Write a ~480k-parameter Qwen3-TTS Base checkpoint (with ``speech_tokenizer/``) that qwen_tts loads.

    The non-obvious parts come from the reference recipe: the text tokenizer must make
    ``"<|im_start|>assistant\\n"`` exactly 3 tokens (the model slices ``[:3]``), codec specials live in the top
    1024 ids that ``generate()`` suppresses, and ``speaker_encoder_config`` must hold only its own keys.
    """
    import torch
    import transformers

    from backend.engines.quiet_imports import import_qwen_tts

    import_qwen_tts()
    from qwen_tts.core.models import (
        Qwen3TTSConfig,
        Qwen3TTSForConditionalGeneration,
        Qwen3TTSProcessor,
    )
    from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2Config,
    )
    from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2Model,
    )
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import EncodecFeatureExtractor, Qwen2TokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    common = dict(unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "vocab.json").write_text(json.dumps(vocab))
        (tmp / "merges.txt").write_text("#version: 0.2\n")
        if int(transformers.__version__.split(".")[0]) >= 5:
            tok = Qwen2TokenizerFast(vocab=vocab, merges=[], **common)
        else:
            tok = Qwen2TokenizerFast(
                vocab_file=str(tmp / "vocab.json"), merges_file=str(tmp / "merges.txt"), **common
            )
    specials = ["<|im_start|>", "<|im_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>"]
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.add_tokens(["assistant", "user"])
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    if len(tok("<|im_start|>assistant\n")["input_ids"]) != 3:
        raise RuntimeError("tiny tokenizer: assistant header must be exactly 3 tokens")
    Qwen3TTSProcessor(tokenizer=tok).save_pretrained(out)

    codec = dict(
        codec_pad_id=2148,
        codec_bos_id=2149,
        codec_eos_token_id=2150,
        codec_think_id=2154,
        codec_nothink_id=2155,
        codec_think_bos_id=2156,
        codec_think_eos_id=2157,
    )
    talker = dict(
        vocab_size=3072,
        hidden_size=_H,
        intermediate_size=2 * _H,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=4096,
        rope_theta=10000,
        rope_scaling={"rope_type": "default", "mrope_section": [2, 1, 1], "interleaved": True},
        num_code_groups=_NQ,
        text_hidden_size=_H,
        text_vocab_size=len(tok),
        codec_language_id={"english": 2050, "chinese": 2051},
        spk_id={},
        spk_is_dialect={},
        code_predictor_config=dict(
            vocab_size=2048,
            hidden_size=_H,
            intermediate_size=2 * _H,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            num_code_groups=_NQ,
            pad_token_id=None,
        ),
        pad_token_id=None,
        **codec,
    )
    spk = dict(
        mel_dim=128,
        enc_dim=_H,
        enc_channels=[16, 16, 16, 16, 48],
        enc_kernel_sizes=[5, 3, 3, 3, 1],
        enc_dilations=[1, 2, 3, 4, 1],
        enc_attention_channels=8,
        enc_res2net_scale=8,
        enc_se_channels=8,
        sample_rate=24000,
    )
    cfg = Qwen3TTSConfig(
        talker_config=talker,
        speaker_encoder_config=spk,
        tokenizer_type="qwen3_tts_tokenizer_12hz",
        tts_model_size="tiny",
        tts_model_type="base",
        im_start_token_id=ids["<|im_start|>"],
        im_end_token_id=ids["<|im_end|>"],
        tts_pad_token_id=ids["<tts_pad>"],
        tts_bos_token_id=ids["<tts_text_bos>"],
        tts_eos_token_id=ids["<tts_text_eod>"],
        architectures=["Qwen3TTSForConditionalGeneration"],
    )
    torch.manual_seed(0)
    model = Qwen3TTSForConditionalGeneration(cfg).eval()
    model.save_pretrained(out)
    cj = json.loads((out / "config.json").read_text())
    cj["speaker_encoder_config"] = {
        k: v for k, v in cj["speaker_encoder_config"].items() if k in spk
    }
    (out / "config.json").write_text(json.dumps(cj, indent=2))
    # qwen_tts reads generation_config.json as a plain dict of its own generate() defaults
    (out / "generation_config.json").write_text(
        json.dumps(
            {
                "do_sample": True,
                "top_k": 50,
                "top_p": 1.0,
                "temperature": 0.9,
                "repetition_penalty": 1.05,
                "subtalker_dosample": True,
                "subtalker_top_k": 50,
                "subtalker_top_p": 1.0,
                "subtalker_temperature": 0.9,
                "max_new_tokens": 24,
            }
        )
    )

    enc = dict(
        sampling_rate=24000,
        frame_rate=12.5,
        audio_channels=1,
        hidden_size=_H,
        num_filters=4,
        num_residual_layers=1,
        upsampling_ratios=[8, 6, 5, 4],
        codebook_size=2048,
        codebook_dim=_H,
        num_quantizers=_NQ,
        num_semantic_quantizers=1,
        vector_quantization_hidden_dimension=_H,
        upsample_groups=_H,
        num_hidden_layers=1,
        intermediate_size=2 * _H,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=250,
        use_streaming=False,
    )
    dec = dict(
        codebook_size=2048,
        hidden_size=_H,
        latent_dim=_H,
        codebook_dim=_H,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=2 * _H,
        num_hidden_layers=1,
        num_quantizers=_NQ,
        upsample_rates=[8, 5, 4, 3],
        upsampling_ratios=[2, 2],
        decoder_dim=32,
        sliding_window=72,
    )
    st_cfg = Qwen3TTSTokenizerV2Config(
        encoder_config=enc,
        decoder_config=dec,
        encoder_valid_num_quantizers=_NQ,
        architectures=["Qwen3TTSTokenizerV2Model"],
    )
    st = Qwen3TTSTokenizerV2Model(st_cfg).eval()
    _randomize_codebooks(st)
    _calibrate_output_level(st)
    st.save_pretrained(out / "speech_tokenizer")
    EncodecFeatureExtractor(feature_size=1, sampling_rate=24000, padding_value=0.0).save_pretrained(
        out / "speech_tokenizer"
    )
    return {
        "talker_params": sum(p.numel() for p in model.parameters()),
        "speech_tokenizer_params": sum(p.numel() for p in st.parameters()),
    }


def _randomize_codebooks(module: Any) -> None:
    """Give the codec's vector-quantizer codebooks random entries.

    Freshly constructed codebooks are all zeros (``embedding_sum`` starts empty and is learnt), so an untouched
    random model decodes every code to exact silence and every seed to the same all-zero audio — which would make
    determinism and "audio is not empty" checks pass vacuously. Random codebooks make the noise depend on the
    generated codes.
    """
    import torch

    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if name.endswith("embedding_sum"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
            elif name.endswith("cluster_usage"):
                tensor.fill_(1.0)


def _calibrate_output_level(st: Any, target_rms: float = 0.1) -> None:
    """Scale the codec's last (linear) conv so decoded noise sits near ``target_rms``.

    A random decoder's output is ~1e-9: PCM16 would store it as all zeros, and every encoded WAV would be the same
    bytes whatever the seed. Audible noise keeps byte-level checks meaningful.
    """
    import torch

    decoder = st.decoder
    gen = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 2048, (1, _NQ, 25), generator=gen)
    with torch.no_grad():
        level = float(decoder(codes).float().pow(2).mean().sqrt())
        if level > 0:
            decoder.decoder[-1].conv.weight.mul_(target_rms / level)


def build_tiny_whisper(out: Path) -> dict[str, int]:
    """Write a ~40k-parameter ``WhisperForConditionalGeneration`` with a byte-level processor.

    ``max_source_positions`` stays at 1500 because 30 s of features need it; the generation config carries the
    language/task ids that ``generate(language=..., task=...)`` looks up.
    """
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    byte_syms = sorted(ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(byte_syms)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    specials = [
        "<|startoftranscript|>",
        "<|en|>",
        "<|fr|>",
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]
    with tempfile.TemporaryDirectory() as tmp_name:
        vf, mf = Path(tmp_name) / "vocab.json", Path(tmp_name) / "merges.txt"
        vf.write_text(json.dumps(vocab))
        mf.write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
        eot = "<|endoftext|>"
        tok = WhisperTokenizerFast(
            vocab_file=str(vf),
            merges_file=str(mf),
            pad_token=eot,
            unk_token=eot,
            bos_token=eot,
            eos_token=eot,
        )
    tok.add_special_tokens({"additional_special_tokens": specials})
    ids = {s: tok.convert_tokens_to_ids(s) for s in ["<|endoftext|>", *specials]}
    proc = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=80, sampling_rate=16000),
        tokenizer=tok,
    )
    cfg = WhisperConfig(
        vocab_size=len(tok),
        num_mel_bins=80,
        encoder_layers=1,
        decoder_layers=1,
        d_model=16,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=64,
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        max_length=64,
        is_multilingual=True,
        lang_to_id={"<|en|>": ids["<|en|>"], "<|fr|>": ids["<|fr|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        suppress_tokens=[],
        begin_suppress_tokens=[ids["<|endoftext|>"]],
    )
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return {"params": sum(p.numel() for p in model.parameters())}


def copy_prebuilt_models(prebuilt_hf_home: Path, hf_home: Path, repos: tuple[str, ...]) -> bool:
    """Copy the cache folders of ``repos`` from a prebuilt HF home into ``hf_home``; False when one is missing.

    Why: building the demo checkpoints costs ~7 s of CPU at a fresh volume's first start, while copying the
    2.8 MB a set-up step built once costs milliseconds (``scripts/setup-venv.sh`` builds them into the venv and
    ``scripts/run-local.sh`` names them with ``VOICEBOX_DEMO_PREBUILT``). Each folder is copied under a temporary
    name and renamed into place, so a killed copy leaves no half-installed repo; the snapshots' relative links to
    their blobs are kept as links. A repo already installed whole is left alone: a peer worker on the same volume
    may have installed it a moment ago and be loading from it. An incomplete one is moved aside before the copy
    takes its place.
    """
    hub, source_hub = Path(hf_home) / "hub", Path(prebuilt_hf_home) / "hub"
    names = [f"models--{repo.replace('/', '--')}" for repo in repos]
    if not all((source_hub / name / "refs" / "main").is_file() for name in names):
        return False
    hub.mkdir(parents=True, exist_ok=True)
    for name in names:
        _install_copy(source_hub / name, hub / name)
    return True


def _installed(repo_dir: Path) -> bool:
    """The repo's ``refs/main`` names a snapshot folder that exists (what a finished copy or build leaves)."""
    try:
        commit = (repo_dir / "refs" / "main").read_text().strip()
    except OSError:
        return False
    return bool(commit) and (repo_dir / "snapshots" / commit).is_dir()


def _install_copy(source: Path, target: Path) -> None:
    if _installed(target):
        return
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial = target.with_name(f".{target.name}.copy-{tag}")
    shutil.copytree(source, partial, symlinks=True)
    if _installed(target):  # a peer finished while this copy ran
        shutil.rmtree(partial, ignore_errors=True)
        return
    if target.exists():  # an incomplete repo (a killed build): out of the way first
        stale = target.with_name(f".{target.name}.stale-{tag}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(partial, target)
    except OSError:  # a peer on the same volume installed it meanwhile: theirs is as good
        shutil.rmtree(partial, ignore_errors=True)
        if not _installed(target):
            raise


def install_tiny_models(
    hf_home: Path,
    tts_repo: str = DEMO_TTS_REPO,
    stt_repo: str = DEMO_STT_REPO,
) -> dict[str, str]:
    """Build both tiny checkpoints and install them into ``<hf_home>/hub``; return ``{"tts": repo, "stt": repo}``.

    Building happens in a scratch directory and only the final cache layout lands under ``hf_home``; a repo
    that is already installed is rebuilt in place (deterministic weights, same blobs), which is harmless.
    """
    hub = Path(hf_home) / "hub"
    hub.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="voicebox-tiny-") as tmp_name:
        tmp = Path(tmp_name)
        build_tiny_qwen3_tts(tmp / "tts")
        build_tiny_whisper(tmp / "stt")
        install_into_hf_cache(tmp / "tts", hub, tts_repo)
        install_into_hf_cache(tmp / "stt", hub, stt_repo)
    return {"tts": tts_repo, "stt": stt_repo}
