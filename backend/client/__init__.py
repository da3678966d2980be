"""Client for a deployed voicebox-worker endpoint: Python API, ``remote`` CLI and the local bridge.

Why a package of its own: it runs on the user's machine, not the worker, and needs only the runpod
SDK and requests -- importing it must not pull in the server, the database or torch.
"""

from backend.client.client import Answer, JobProgress, VoiceboxClient
from backend.client.errors import (
    AuthError,
    ClientError,
    ConfigError,
    JobCancelled,
    JobError,
    JobFailed,
    JobTimedOut,
    PayloadTooLarge,
    ProtocolError,
    RemoteError,
    ResultExpired,
    ResultMissing,
    ResultOnVolume,
    TransportError,
)

__all__ = [
    "Answer",
    "AuthError",
    "ClientError",
    "ConfigError",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobProgress",
    "JobTimedOut",
    "PayloadTooLarge",
    "ProtocolError",
    "RemoteError",
    "ResultExpired",
    "ResultMissing",
    "ResultOnVolume",
    "TransportError",
    "VoiceboxClient",
]
