"""Generation statuses: one type shared by the server, fsck, adoption, the bridge and the client.

Why a module of its own with no imports beyond the standard library: the client package (``backend/client/``) must
stay importable without the server's packages, yet it has to agree with the server on which statuses are final —
the bridge stops polling (billed RunPod jobs) exactly when the server would stop streaming.

The server writes ``generating`` while it works and ``completed`` / ``failed`` when it is done (a cancel is
Voicebox's ``failed`` with ``CANCELLED_ERROR``). ``cancelled`` is found in rows written before that and in
adopted libraries. ``queued`` and ``loading_model`` are states the desktop app knows (upstream Voicebox reports
them; the bridge reports them while its RunPod job waits); the server never writes them but treats rows that
carry them as still running.
"""

from __future__ import annotations

from enum import StrEnum


class GenerationStatus(StrEnum):
    GENERATING = "generating"
    QUEUED = "queued"
    LOADING_MODEL = "loading_model"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: a generation in one of these states will not change any more: watchers stop here
FINAL: frozenset[GenerationStatus] = frozenset(
    {GenerationStatus.COMPLETED, GenerationStatus.FAILED, GenerationStatus.CANCELLED}
)
#: still running (on some worker, or waiting for one)
ACTIVE: frozenset[GenerationStatus] = frozenset(
    {GenerationStatus.GENERATING, GenerationStatus.QUEUED, GenerationStatus.LOADING_MODEL}
)
#: what a retry may re-run
RETRYABLE: frozenset[GenerationStatus] = frozenset(
    {GenerationStatus.FAILED, GenerationStatus.CANCELLED}
)
#: Voicebox's error of a cancelled generation: the desktop app knows only ``failed``, and shows this message
CANCELLED_ERROR = "Generation cancelled"


def is_final(status: str | None) -> bool:
    """Whether a status (as a string off the wire or a row) is final; unknown strings are not."""
    return status in FINAL


def is_active(status: str | None) -> bool:
    return status in ACTIVE
