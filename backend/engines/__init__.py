"""TTS/STT engines, the volume's model cache and the voice prompt cache (see ``docs/engines.md``).

Importing this package (or ``base``, ``manager``, ``hfcache``, ``prompt_cache``, ``chunking``, ``fake``) never
imports torch, transformers, qwen_tts or huggingface_hub: the API, database and RunPod code stay torch-free and
the hub's import-time environment (``HF_HOME``, ``HF_HUB_OFFLINE``) can still be set first.
"""
