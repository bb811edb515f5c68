"""The OpenAI-compatible backend: the same `Backend` as `engine.local`, served over HTTP by
llama-server, vLLM, SGLang, Ollama or DashScope (`RemoteBackend`)."""

from engine.remote.backend import RemoteBackend
from engine.remote.config import RemoteConfig

__all__ = ["RemoteBackend", "RemoteConfig"]
