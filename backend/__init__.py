"""voicebox-worker: a Voicebox-compatible TTS server on a RunPod network volume.

Importing this package has no side effects: no disk, no network, no torch.
"""

__version__ = "0.1.0"
