"""Qwen3-TTS Base (voice cloning) through the official ``qwen-tts`` package.

Why ``qwen-tts``: it is what Voicebox runs, Apache-2.0, and Qwen3-TTS is not in transformers yet. torch and
qwen_tts are imported in ``load()`` only, so importing this module is cheap and torch-free.

Loading goes through ``hfcache.ensure_model`` (complete snapshot on the volume, else download under a lease, else
a clear ``ModelNotCachedError``) and then loads from the resolved snapshot *directory* with the hub offline. Why
the directory rather than the repo id: the hub reads its cache path and offline flag at import, and qwen_tts's
processor load ignores ``cache_dir``; a local directory removes every dependency on import order and every
network probe, while the cache check still works by repo id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backend.config import Settings
from backend.engines.base import (
    OUTPUT_SAMPLE_RATE,
    QWEN_LANGUAGES,
    EngineError,
    VoicePrompt,
    release_device_memory,
)
from backend.engines.quiet_imports import import_qwen_tts as import_qwen_tts

log = logging.getLogger(__name__)

#: the combined reference audio of a multi-sample profile is capped (whole samples only): a longer ICL prompt
#: costs generation time on every request and adds nothing to the voice
MAX_PROMPT_SECONDS = 30.0
#: silence inserted between concatenated samples
SAMPLE_GAP_SECONDS = 0.25
#: frames of left context when decoding a window of new codec frames (what qwen-tts's own chunked decode uses)
DECODE_CONTEXT_FRAMES = 25


def resolve_device(requested: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; anything else is used as given."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError(f"VOICEBOX_DEVICE={requested} but torch sees no CUDA device")
    return requested


def resolve_dtype(device: str) -> Any:
    """bfloat16 on CUDA (halves memory, Qwen's own choice) when supported, float32 elsewhere."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _language_name(language: str | None, supported: set[str] | None) -> str:
    if not language or language.lower() == "auto":
        return "Auto"
    name = QWEN_LANGUAGES.get(language.lower(), language)
    if supported is not None and name.lower() not in supported:
        log.warning("language %r is not supported by this model; using Auto", language)
        return "Auto"
    return name


class QwenTTSEngine:
    """``TTSEngine`` over ``qwen_tts.Qwen3TTSModel`` (Base models: ICL voice clone from clip + transcript)."""

    name = "qwen3-tts"
    sample_rate = OUTPUT_SAMPLE_RATE

    def __init__(
        self,
        settings: Settings,
        repo_id: str | None = None,
        *,
        revision: str | None = None,
        max_new_tokens: int | None = None,
    ) -> None:
        self.settings = settings
        self.repo_id = repo_id or settings.tts_model
        self.requested_revision = revision
        self.revision: str | None = revision
        self.max_new_tokens = max_new_tokens
        self.device: str | None = None
        self.dtype_name: str | None = None
        self.snapshot_path: Path | None = None
        self._model: Any = None
        self._languages: set[str] | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        if self._model is not None:
            return
        from backend.engines.hfcache import ensure_model

        status = ensure_model(self.settings, self.repo_id, self.requested_revision)
        import_qwen_tts()
        from qwen_tts import Qwen3TTSModel

        device = resolve_device(self.settings.device)
        dtype = resolve_dtype(device)
        log.info("loading %s (%s) on %s as %s", self.repo_id, status.commit, device, dtype)
        model = Qwen3TTSModel.from_pretrained(str(status.path), dtype=dtype, device_map=device)
        if getattr(model.model, "tts_model_type", None) != "base":
            raise EngineError(
                f"{self.repo_id} is a {model.model.tts_model_type!r} model; voice cloning needs a "
                "Qwen3-TTS *Base* model (e.g. Qwen/Qwen3-TTS-12Hz-1.7B-Base)"
            )
        _pad_with_end_of_codes(model)
        langs = model.get_supported_languages()
        self._languages = {str(x).lower() for x in langs} if langs else None
        self._model = model
        self.device = device
        self.dtype_name = str(dtype).replace("torch.", "")
        self.revision = status.commit
        self.snapshot_path = status.path

    def unload(self) -> None:
        if self._model is None:
            return
        self._model = None
        release_device_memory()

    def is_loaded(self) -> bool:
        return self._model is not None

    def _require(self) -> Any:
        if self._model is None:
            raise EngineError("the TTS engine is not loaded")
        return self._model

    # ------------------------------------------------------------------------------------------ prompts
    def build_prompt(self, samples: list[tuple[np.ndarray, int, str]]) -> VoicePrompt:
        """Concatenate the samples (in order, whole samples up to 30 s) and build one ICL prompt.

        Several samples become one reference because Qwen's ICL prompt is a single clip + its transcript; the
        transcripts are joined in the same order. Without any transcript the prompt is x-vector only.
        """
        if not samples:
            raise ValueError("a voice prompt needs at least one sample")
        model = self._require()
        from backend.storage.audio import resample

        gap = np.zeros(int(SAMPLE_GAP_SECONDS * self.sample_rate), dtype=np.float32)
        pieces: list[np.ndarray] = []
        texts: list[str] = []
        used = 0
        for audio, sr, text in samples:
            a = resample(np.asarray(audio, dtype=np.float32), int(sr), self.sample_rate)
            total = sum(p.size for p in pieces) + a.size
            if pieces and total / self.sample_rate > MAX_PROMPT_SECONDS:
                break
            if pieces:
                pieces.append(gap)
            pieces.append(a)
            if text and text.strip():
                texts.append(text.strip())
            used += 1
        ref_audio = np.concatenate(pieces)
        ref_text = " ".join(texts)
        xvec_only = not ref_text
        items = model.create_voice_clone_prompt(
            ref_audio=(ref_audio, self.sample_rate),
            ref_text=ref_text or None,
            x_vector_only_mode=xvec_only,
        )
        item = items[0]
        arrays = {"ref_spk_embedding": _to_numpy(item.ref_spk_embedding)}
        if item.ref_code is not None:
            arrays["ref_code"] = _to_numpy(item.ref_code)
        return VoicePrompt(
            arrays=arrays,
            meta={
                "engine": self.name,
                "repo_id": self.repo_id,
                "revision": self.revision or "",
                "ref_text": item.ref_text or "",
                "x_vector_only_mode": "1" if item.x_vector_only_mode else "0",
                "icl_mode": "1" if item.icl_mode else "0",
                "samples_used": str(used),
            },
        )

    def _prompt_item(self, prompt: VoicePrompt) -> Any:
        import torch
        from qwen_tts.inference.qwen3_tts_model import VoiceClonePromptItem

        model = self._require()
        dev, dtype = model.model.device, model.model.dtype
        if "ref_spk_embedding" not in prompt.arrays:
            raise EngineError(
                "voice prompt has no speaker embedding (was it built by another engine?)"
            )
        spk = torch.from_numpy(np.array(prompt.arrays["ref_spk_embedding"])).to(dev, dtype)
        code = prompt.arrays.get("ref_code")
        ref_code = torch.from_numpy(np.array(code)).to(dev) if code is not None else None
        xvec = prompt.meta.get("x_vector_only_mode") == "1" or ref_code is None
        return VoiceClonePromptItem(
            ref_code=None if xvec else ref_code,
            ref_spk_embedding=spk,
            x_vector_only_mode=xvec,
            icl_mode=not xvec,
            ref_text=prompt.meta.get("ref_text") or None,
        )

    # ------------------------------------------------------------------------------------------ synthesis
    def generate(
        self,
        text: str,
        prompt: VoicePrompt,
        *,
        language: str | None,
        seed: int | None,
        instruct: str | None,
    ) -> np.ndarray:
        """One call of ``generate_voice_clone``; a seed makes it reproducible on the same device."""
        import torch

        model = self._require()
        if instruct:
            log.debug("instruct is ignored by Qwen3-TTS Base models")
        if seed is not None:
            torch.manual_seed(int(seed))
            if torch.cuda.is_available():
                torch.cuda.manual_seed_all(int(seed))
        kwargs: dict[str, Any] = {}
        if self.max_new_tokens:
            kwargs["max_new_tokens"] = self.max_new_tokens
        wavs, sr = model.generate_voice_clone(
            text=text,
            language=_language_name(language, self._languages),
            voice_clone_prompt=[self._prompt_item(prompt)],
            **kwargs,
        )
        audio = np.asarray(_to_numpy(wavs[0]), dtype=np.float32).reshape(-1)
        if int(sr) != self.sample_rate:
            from backend.storage.audio import resample

            audio = resample(audio, int(sr), self.sample_rate)
        return audio

    def generate_incremental(
        self,
        text: str,
        prompt: VoicePrompt,
        *,
        language: str | None,
        seed: int | None,
        instruct: str | None,
        every_frames: int,
        emit: Callable[[np.ndarray], None],
    ) -> np.ndarray:
        """Like ``generate``, but ``emit`` gets the audio every ``every_frames`` codec frames while the talker
        is still generating (12.5 frames per second of audio); returns the emitted samples joined.

        How (see docs/engines.md, "Incremental decoding"): a forward hook on the talker sees each frame's
        codebooks one step after it is sampled; every ``every_frames`` new frames are decoded with
        ``DECODE_CONTEXT_FRAMES`` frames before them as left context (the voice prompt's frames first), and
        only the new frames' samples are emitted. The codec decoder is causal, so this differs from the
        package's one-piece decode only by that bounded context (measured ≤ 5e-3 on the tiny model). ``emit``
        may raise to stop the generation at once (a stream whose reader is gone).
        """
        import torch

        model = self._require()
        if seed is not None:
            torch.manual_seed(int(seed))
            if torch.cuda.is_available():
                torch.cuda.manual_seed_all(int(seed))
        item = self._prompt_item(prompt)
        decoder = model.model.speech_tokenizer.model.decoder
        upsample = int(decoder.total_upsample)
        ref = item.ref_code if item.ref_code is not None else None
        frames: list[Any] = []
        parts: list[np.ndarray] = []
        done = [0]  # generated frames already decoded and emitted

        def decode_new(upto: int) -> None:
            if upto <= done[0]:
                return
            generated = torch.cat([f.to(decoder.device) for f in frames[:upto]], dim=0)
            codes = generated if ref is None else torch.cat([ref.to(generated.device), generated])
            offset = 0 if ref is None else int(ref.shape[0])
            start = offset + done[0]
            context = min(DECODE_CONTEXT_FRAMES, start)
            window = codes[start - context : offset + upto].clamp(min=0)
            with torch.no_grad():
                wav = decoder(window.T.unsqueeze(0)).reshape(-1)[context * upsample :]
            audio = _to_numpy(wav).astype(np.float32)
            done[0] = upto
            parts.append(audio)
            emit(audio)

        def hook(_module: Any, _args: Any, output: Any) -> None:
            codes = output.hidden_states[1] if isinstance(output.hidden_states, tuple) else None
            if codes is None:
                return  # the prefill step
            frames.append(codes.detach()[:1])
            if len(frames) - done[0] >= every_frames:
                decode_new(len(frames))

        kwargs: dict[str, Any] = {}
        if self.max_new_tokens:
            kwargs["max_new_tokens"] = self.max_new_tokens
        handle = model.model.talker.register_forward_hook(hook)
        try:
            model.generate_voice_clone(
                text=text,
                language=_language_name(language, self._languages),
                voice_clone_prompt=[item],
                **kwargs,
            )
        finally:
            handle.remove()
        eos = int(model.model.config.talker_config.codec_eos_token_id)
        total = len(frames)
        for index, frame in enumerate(frames):  # the package cuts at the first end-of-speech frame
            if int(frame[0, 0]) == eos:
                total = index
                break
        decode_new(total)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.repo_id,
            "revision": self.revision,
            "loaded": self.is_loaded(),
            "device": self.device,
            "dtype": self.dtype_name,
            "sample_rate": self.sample_rate,
        }


def _to_numpy(x: Any) -> np.ndarray:
    """A tensor or array as a CPU numpy array; bfloat16 (which numpy lacks) is widened to float32."""
    if isinstance(x, np.ndarray):
        return x
    t = x.detach().cpu()
    if str(t.dtype) in {"torch.bfloat16", "torch.float16"}:
        t = t.float()
    return t.numpy()


def _pad_with_end_of_codes(model: Any) -> None:
    """Give the talker its pad token: the end-of-codes token, which transformers otherwise picks itself on every
    generation while logging "Setting `pad_token_id` to `eos_token_id`" (the same choice, without a log line
    per request)."""
    inner = model.model
    inner.talker.generation_config.pad_token_id = inner.config.talker_config.codec_eos_token_id
