"""The keys of a job's answer: what the RunPod handler writes for one HTTP request and the client reads back.

Why a module of its own with no imports: the serverless adapter (``backend/serverless/answers.py``) writes these
answers and the client (``backend/client/codec.py``) decodes them; the client must stay importable without the
server's packages, so the one definition both use lives here. The shapes are described in
``docs/serverless.md`` ("Answers").
"""

from __future__ import annotations

#: the HTTP status of the server's answer
STATUS_CODE = "status_code"
#: the server's headers a caller can act on (lower-case names)
HEADERS = "headers"
#: a JSON or text body, as is
BODY = "body"
#: a binary body: ``is_binary`` true, its ``content_type`` and ``body_base64``
IS_BINARY = "is_binary"
CONTENT_TYPE = "content_type"
BODY_BASE64 = "body_base64"
#: a body too large to answer inline: ``spilled`` true and ``export`` describing the file on the volume
SPILLED = "spilled"
EXPORT = "export"
MESSAGE = "message"
#: with ``inline_audio``: the generation's audio, attached as an answer of its own
AUDIO = "audio"
#: a job that failed before it had an answer (the handler's own error)
ERROR = "error"
