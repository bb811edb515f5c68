"""Thin, typed layer over llama-cpp-python's low-level API.

`LoadedModel` owns the weights and the vocabulary (tokenizing is safe from any thread: the
vocab keeps no mutable state once loaded, and llama-server tokenizes on its HTTP threads too).
`LlamaSession` owns one llama context; it is not thread-safe, so every method must be called
from the one worker thread that created it (see `engine.local`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from array import array
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp

from engine.backend import ModelInfo
from engine.errors import EngineError, ModelLoadError
from engine.gguf_info import GGUFInfoError, read_gguf_info
from engine.placement import KvCache, ModelParams, WeightPlacement

logger = logging.getLogger(__name__)

LLAMA_CPP_VERSION: str = llama_cpp.__version__
PARTIAL_ONLY = llama_cpp.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
FULL_STATE = llama_cpp.LLAMA_STATE_SEQ_FLAGS_NONE
SEQ = 0  # the engine drives a single sequence per context

# A state snapshot: bytearray from snapshot(), or a (writable) view of a blob read from disk.
StateBytes = bytes | bytearray | memoryview

_GGML_LOG_ERROR = 4  # enum ggml_log_level in ggml.h of this llama.cpp
_recent_errors: deque[str] = deque(maxlen=20)
_backend_lock = threading.Lock()
_backend_ready = False


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    # llama.cpp explains load failures only through its log: keep the last errors so that
    # ModelLoadError can quote them, and route everything else to Python logging.
    message = text.decode("utf-8", errors="replace").rstrip()
    if not message:
        return
    if level == _GGML_LOG_ERROR:
        _recent_errors.append(message)
        logger.debug("llama.cpp: %s", message)
    else:
        logger.log(5, "llama.cpp: %s", message)


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True


def _meta_str(model: llama_cpp.llama_model_p, key: str) -> str | None:
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    if n >= len(buf):  # the value was cut: n is its full length (chat templates run to KBs)
        buf = ctypes.create_string_buffer(n + 1)
        n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    return buf.value.decode("utf-8", errors="replace") if n >= 0 else None


class LoadedModel:
    """Weights + vocabulary of one GGUF file, shared by every context of the engine."""

    def __init__(
        self, path: str | os.PathLike[str], placement: WeightPlacement | None = None
    ) -> None:
        self.path = Path(path)
        self.placement = placement or WeightPlacement()
        _check_model_file(self.path)
        _init_backend()
        params = ModelParams(self.placement)
        _recent_errors.clear()
        model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), params.params)
        if not model:
            raise ModelLoadError(_explain_load_failure(self.path))
        self.model: llama_cpp.llama_model_p = model
        vocab = llama_cpp.llama_model_get_vocab(model)
        if not vocab:
            llama_cpp.llama_model_free(model)
            raise ModelLoadError(f"{self.path}: the model has no vocabulary")
        self.vocab = vocab
        self.arch = _meta_str(model, "general.architecture") or "unknown"
        self.chat_template = _meta_str(model, "tokenizer.chat_template")
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(model)
        self.n_layer = llama_cpp.llama_model_n_layer(model)
        self.recurrent = bool(llama_cpp.llama_model_is_recurrent(model))
        self.hybrid = bool(llama_cpp.llama_model_is_hybrid(model))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        self.bos = llama_cpp.llama_vocab_bos(vocab)
        # Pieces are rendered with special=True so that stop strings such as <|file_sep|>
        # can match; end-of-generation tokens stop before their text is emitted.
        self._pieces: list[bytes | None] = [None] * self.n_vocab
        self._closed = False
        # Tokenizers in flight: close() waits for them, so the vocab is never freed under one,
        # while tokenizers on different threads still run concurrently.
        self._users = 0
        self._lifetime = threading.Condition()

    @property
    def needs_checkpoints(self) -> bool:
        """True when a partial `seq_rm` cannot roll the state back (recurrent layers)."""
        return self.recurrent or self.hybrid

    def info(self, n_ctx: int) -> ModelInfo:
        return ModelInfo(
            arch=self.arch,
            layers=self.n_layer,
            hybrid=self.hybrid,
            n_ctx_train=self.n_ctx_train,
            n_ctx=n_ctx,
            path=str(self.path),
            recurrent=self.recurrent,
            n_vocab=self.n_vocab,
            chat_template=self.chat_template,
        )

    def tokenize(self, text: str) -> array[int]:
        """Tokens of `text` with special tokens parsed, without BOS."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        with self._lifetime:
            if self._closed:
                raise EngineError("the model was closed")
            self._users += 1
        try:
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, capacity, False, True)
            if n < 0:  # cannot happen with one slot per byte, but the API allows it
                capacity = -n
                buf = (llama_cpp.llama_token * capacity)()
                n = llama_cpp.llama_tokenize(
                    self.vocab, data, len(data), buf, capacity, False, True
                )
        finally:
            with self._lifetime:
                self._users -= 1
                self._lifetime.notify_all()
        if n < 0:
            raise EngineError(f"tokenization failed ({n})")
        out = array("i")
        out.frombytes(memoryview(buf).cast("B")[: n * 4])
        return out

    def piece(self, token: int) -> bytes:
        cached = self._pieces[token]
        if cached is None:
            buf = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            cached = buf.raw[: max(n, 0)]
            self._pieces[token] = cached
        return cached

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def close(self) -> None:
        with self._lifetime:
            if self._closed:
                return
            self._closed = True
            self._lifetime.wait_for(lambda: self._users == 0)
        llama_cpp.llama_model_free(self.model)


def _check_model_file(path: Path) -> None:
    """Reject what llama.cpp would reject, with a message that says what to do."""
    if not path.exists():
        raise ModelLoadError(
            f"model file {path} does not exist: set the model path to a .gguf file "
            "(for a test model: qcn-lsp make-test-model model.gguf)"
        )
    if not path.is_file():
        raise ModelLoadError(f"model path {path} is not a file: point it at a .gguf file")
    try:
        info = read_gguf_info(path)
    except GGUFInfoError as exc:
        raise ModelLoadError(f"{exc}. Re-download or re-convert the model.") from exc
    expected = info.tensors_end
    size = path.stat().st_size
    if expected is not None and size < expected:
        raise ModelLoadError(
            f"model file {path} is truncated: {size} bytes, its tensors need {expected}. "
            "The download or copy was probably interrupted: Re-download the model."
        )
    logger.debug("model %s: architecture %s", path, info.architecture)


def _explain_load_failure(path: Path) -> str:
    errors = " | ".join(_recent_errors) or "no details from llama.cpp"
    try:
        arch = read_gguf_info(path).architecture
    except GGUFInfoError:
        arch = "?"
    if "unknown model architecture" in errors:
        return (
            f"{path}: llama-cpp-python {LLAMA_CPP_VERSION} does not support the model "
            f"architecture '{arch}' ({errors}). Use a Qwen3-Coder-Next GGUF or another "
            "architecture llama.cpp supports."
        )
    return (
        f"llama.cpp could not load {path} (architecture '{arch}'): {errors}. The file may be "
        "corrupt or made for a different llama.cpp version: re-download or re-convert it."
    )


class LlamaSession:
    """One llama context driving sequence 0, with batches filled by hand.

    Not thread-safe: create, use and close it on a single worker thread.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        n_ctx: int,
        n_batch: int,
        n_threads: int,
        kv_cache: KvCache | None = None,
    ) -> None:
        self.model = model
        params = llama_cpp.llama_context_default_params()
        (kv_cache or KvCache()).apply(params)
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        # One physical batch per logical batch: micro-batches are already sized by the engine.
        params.n_ubatch = n_batch
        params.n_seq_max = 1
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        _recent_errors.clear()
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not ctx:
            raise ModelLoadError(
                f"llama.cpp could not create a context of {n_ctx} tokens for {model.path} "
                f"({' | '.join(_recent_errors) or 'out of memory?'}): lower the context length"
            )
        self.ctx: llama_cpp.llama_context_p = ctx
        self.n_ctx = llama_cpp.llama_n_ctx(ctx)
        self.n_batch = n_batch
        self.memory = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        # Every token of every batch belongs to sequence 0: set those fields once.
        for i in range(n_batch):
            self._batch.n_seq_id[i] = 1
            self._batch.seq_id[i][0] = SEQ
        self._positions = array("i", range(n_batch))

    def decode(self, tokens: Sequence[int], start_pos: int, *, logits_last: bool) -> None:
        """Decode `tokens` at positions start_pos.. (one micro-batch, len <= n_batch)."""
        n = len(tokens)
        if n == 0:
            return
        if n > self.n_batch:
            raise ValueError(f"micro-batch of {n} tokens exceeds n_batch={self.n_batch}")
        batch = self._batch
        batch.n_tokens = n
        token_buf = tokens if isinstance(tokens, array) else array("i", tokens)
        ctypes.memmove(batch.token, token_buf.buffer_info()[0], n * 4)
        positions = array("i", range(start_pos, start_pos + n))
        ctypes.memmove(batch.pos, positions.buffer_info()[0], n * 4)
        ctypes.memset(batch.logits, 0, n)
        if logits_last:
            batch.logits[n - 1] = 1
        rc = llama_cpp.llama_decode(self.ctx, batch)
        if rc != 0:
            raise EngineError(
                f"llama_decode failed with code {rc} at positions {start_pos}..{start_pos + n}"
                f" (n_ctx={self.n_ctx})"
            )

    def trim(self, pos: int) -> bool:
        """Remove positions >= pos; False when the memory cannot (recurrent state)."""
        return bool(llama_cpp.llama_memory_seq_rm(self.memory, SEQ, pos, -1))

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)

    def snapshot_size(self, *, partial: bool) -> int:
        """Bytes a snapshot of the sequence would take now."""
        flags = PARTIAL_ONLY if partial else FULL_STATE
        return int(llama_cpp.llama_state_seq_get_size_ext(self.ctx, SEQ, flags))

    def snapshot(self, *, partial: bool) -> bytearray:
        """Copy the sequence state out (written in place: one copy, no temporary)."""
        flags = PARTIAL_ONLY if partial else FULL_STATE
        size = self.snapshot_size(partial=partial)
        data = bytearray(size)
        buf = (ctypes.c_uint8 * size).from_buffer(data)
        written = llama_cpp.llama_state_seq_get_data_ext(self.ctx, buf, size, SEQ, flags)
        del buf  # release the export so the bytearray can be resized or freed later
        if written != size:
            raise EngineError(f"state snapshot wrote {written} of {size} bytes")
        return data

    def restore(self, data: StateBytes, *, partial: bool) -> bool:
        """Load a snapshot; False (with the sequence cleared) when llama.cpp rejects it."""
        flags = PARTIAL_ONLY if partial else FULL_STATE
        size = len(data)
        src: Any
        if isinstance(data, bytes):  # read-only: point at the bytes object's own buffer
            src = ctypes.cast(ctypes.c_char_p(data), ctypes.POINTER(ctypes.c_uint8))
        else:
            src = (ctypes.c_uint8 * size).from_buffer(data)
        read = llama_cpp.llama_state_seq_set_data_ext(self.ctx, src, size, SEQ, flags)
        del src
        if read == 0:
            self.clear()
            return False
        return True

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None  # type: ignore[assignment]


class Sampler:
    """A llama.cpp sampler chain: greedy, or top-k / top-p / min-p / temperature / seeded dist."""

    def __init__(
        self, *, temperature: float, top_k: int, top_p: float, min_p: float, seed: int | None
    ) -> None:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if temperature <= 0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            if top_k > 0:
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(top_k))
            if top_p < 1.0:
                llama_cpp.llama_sampler_chain_add(
                    chain, llama_cpp.llama_sampler_init_top_p(top_p, 1)
                )
            if min_p > 0:
                llama_cpp.llama_sampler_chain_add(
                    chain, llama_cpp.llama_sampler_init_min_p(min_p, 1)
                )
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(temperature))
            dist_seed = llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed & 0xFFFFFFFF
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(dist_seed))
        self._chain = chain

    def sample(self, session: LlamaSession) -> int:
        """Sample from the logits of the last decoded token (and accept it into the chain)."""
        return int(llama_cpp.llama_sampler_sample(self._chain, session.ctx, -1))

    def close(self) -> None:
        if self._chain:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
