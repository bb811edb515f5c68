"""LocalEngine: an in-process GGUF backend with a checkpoint cache for hybrid models.

Two lanes, "interactive" (completions) and "background" (refactors, chat), each with its own
llama context on the shared weights, its own worker thread and its own checkpoint cache
(`engine.lane`). Why not interleave both on one context: switching between two prompts on one
hybrid context means restoring a recurrent snapshot (and usually trimming and re-reading
attention KV) at every switch, and a long background prefill would sit between a keystroke and
its completion. A second context costs only its KV memory (it defaults to a smaller window),
and the background worker pauses between micro-batches and tokens while interactive work is
queued, so on a CPU the two never compete for cores.

Within a lane, requests run in order; `stream(..., key=k)` cancels the previous stream of the
same key, which stops within one token or one prefill micro-batch. Every output is
token-identical to a fresh full prefill of the same tokens (`engine.batching`).

`warm(prompt)` prefills on the interactive lane at the lowest priority: every later `stream` or
`warm` cancels the warm-ups in flight, which stop at their next micro-batch, and a warm-up does
not start or go on while the background lane has work (it would take its cores).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

from engine.backend import Lane, ModelInfo
from engine.config import EngineConfig, lane_configs
from engine.errors import EngineError
from engine.generation import LocalGeneration
from engine.host import LoadedModel
from engine.lane import LaneRunner
from engine.memory import available_bytes, check_contexts_fit
from engine.params import GenerationParams
from engine.persist import StateStore
from engine.segments import Prompt
from engine.tokens import TokenMemo

logger = logging.getLogger(__name__)

NOT_STARTED = "the engine is not started: call `await engine.start()` first"
SHUTTING_DOWN = "the engine is shutting down"


class LocalEngine:
    """Backend running a GGUF model in this process through llama-cpp-python."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._model: LoadedModel | None = None
        self._store: StateStore | None = None
        self._memo: TokenMemo | None = None
        self._interactive: LaneRunner | None = None
        self._background: LaneRunner | None = None
        self._by_key: dict[str, LocalGeneration] = {}
        # Every generation queued or running, keyed or not, warm-ups too: close() cancels them.
        self._live: set[LocalGeneration] = set()
        self._warms: set[LocalGeneration] = set()
        self._keys_lock = threading.Lock()
        self._closing = False
        self._background_busy = 0
        self._interactive_pending = 0
        self._interactive_idle = threading.Event()
        self._interactive_idle.set()
        self._pending_lock = threading.Lock()
        self._info: ModelInfo | None = None

    async def start(self) -> None:
        if self._model is not None:
            return
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(None, self._load_model)
        try:
            self._setup(model)
            assert self._interactive is not None
            await asyncio.wrap_future(self._interactive.executor.submit(self._interactive.open))
        except BaseException:
            await self.close()
            raise

    def _load_model(self) -> LoadedModel:
        # Both are checked here, so a bad memory setting fails before the weights load.
        weights, _ = self.config.weights, self.config.kv_cache
        return LoadedModel(self.config.model_path, weights)

    def _setup(self, model: LoadedModel) -> None:
        config = self.config
        self._model = model
        interactive, background = lane_configs(config, model.n_ctx_train)
        check_contexts_fit(
            config.model_path,
            [interactive.n_ctx, background.n_ctx],
            available_bytes(),
            config.kv_cache,
        )
        self._memo = TokenMemo(model, config.token_memo_entries)
        if config.state_dir is not None and config.prompt_cache:
            # "exact": states are taken only after multi-token micro-batches (engine.batching)
            signature = f"n_batch={config.prefill_chunk}|seq=1|{config.kv_cache.signature}|exact"
            try:
                self._store = StateStore(
                    Path(config.state_dir),
                    model_path=Path(config.model_path),
                    context_signature=signature,
                    size_limit=config.state_cache_bytes,
                )
            except Exception as exc:  # a cache must never take the model down
                logger.warning("persisted state off: %s cannot be used (%s)", config.state_dir, exc)
        self._interactive = LaneRunner(
            interactive,
            model,
            memo=self._memo,
            store=self._store,
            warm_yield=self._other_work_waits,
        )
        self._background = LaneRunner(
            background,
            model,
            memo=self._memo,
            store=self._store,
            pause=self._wait_for_interactive,
        )
        self._info = model.info(interactive.n_ctx)

    def _other_work_waits(self) -> bool:
        """Asked by a warm-up between micro-batches."""
        return self._interactive_pending > 0 or self._background_busy > 0

    def _wait_for_interactive(self, gen: LocalGeneration) -> None:
        while not self._interactive_idle.wait(0.02):
            if gen.cancelled:
                return

    def _runner(self, lane: Lane) -> LaneRunner:
        runner = self._interactive if lane == "interactive" else self._background
        if runner is None:
            raise EngineError(NOT_STARTED)
        return runner

    def stream(
        self,
        prompt: Prompt,
        params: GenerationParams,
        *,
        key: str | None = None,
        lane: Lane = "interactive",
    ) -> LocalGeneration:
        if lane not in ("interactive", "background"):
            raise ValueError(f"unknown lane {lane!r}")
        runner = self._runner(lane)
        gen = LocalGeneration(asyncio.get_running_loop(), lane)
        self._preempt_warmups()
        previous = None
        with self._keys_lock:
            if self._closing:
                raise EngineError(SHUTTING_DOWN)
            self._live.add(gen)
            if key is not None:
                previous = self._by_key.get(key)
                self._by_key[key] = gen
        if previous is not None:
            previous.cancel()
        with self._pending_lock:
            if lane == "interactive":
                self._interactive_pending += 1
                self._interactive_idle.clear()
            else:
                self._background_busy += 1
        runner.executor.submit(self._run_job, runner, prompt, params, gen, key)
        return gen

    def warm(self, prompt: Prompt, *, key: str | None = None) -> LocalGeneration:
        """Prefill `prompt` on the interactive lane at the lowest priority (module docstring).

        `key` is accepted for the protocol; a local warm-up is preempted by any later call."""
        runner = self._runner("interactive")
        gen = LocalGeneration(asyncio.get_running_loop(), "interactive")
        self._preempt_warmups()
        with self._keys_lock:
            if self._closing:
                raise EngineError(SHUTTING_DOWN)
            self._live.add(gen)
            self._warms.add(gen)
        runner.executor.submit(self._warm_job, runner, prompt, gen)
        return gen

    def _preempt_warmups(self) -> None:
        with self._keys_lock:
            warms, self._warms = self._warms, set()
        for gen in warms:
            gen.cancel()

    def _warm_job(self, runner: LaneRunner, prompt: Prompt, gen: LocalGeneration) -> None:
        try:
            if self._background_busy:
                gen.cancel()  # the background lane has the cores: the warm-up would slow it
            runner.warm(prompt, gen)
        finally:
            with self._keys_lock:
                self._live.discard(gen)
                self._warms.discard(gen)

    def _run_job(
        self,
        runner: LaneRunner,
        prompt: Prompt,
        params: GenerationParams,
        gen: LocalGeneration,
        key: str | None,
    ) -> None:
        try:
            runner.run(prompt, params, gen)
        finally:
            with self._pending_lock:
                if runner.config.name == "interactive":
                    self._interactive_pending -= 1
                    if self._interactive_pending == 0:
                        self._interactive_idle.set()
                else:
                    self._background_busy -= 1
            with self._keys_lock:
                self._live.discard(gen)
                if key is not None and self._by_key.get(key) is gen:
                    del self._by_key[key]

    def count_tokens(self, text: str) -> int:
        if self._model is None:
            raise EngineError(NOT_STARTED)
        return len(self._model.tokenize(text))

    def info(self) -> ModelInfo:
        if self._info is None:
            raise EngineError(NOT_STARTED)
        return self._info

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for runner in (self._interactive, self._background):
            if runner is not None:
                out[runner.config.name] = runner.stats()
        if self._memo is not None:
            out["token_memo"] = {"hits": self._memo.hits, "misses": self._memo.misses}
        if self._store is not None:
            out["disk"] = self._store.stats()
        return out

    def flush_persisted(self) -> None:
        """Wait until queued state writes reached the disk (benchmarks, tests)."""
        if self._store is not None:
            self._store.flush()

    async def close(self) -> None:
        """Cancel every queued and running generation (each stops within one micro-batch or
        token), persist each lane's resume point, free the contexts and the model."""
        with self._keys_lock:
            self._closing = True
            running = list(self._live)
        for gen in running:
            gen.cancel()
        runners = [r for r in (self._interactive, self._background) if r is not None]
        # Both lanes stop and persist at once, each on its own worker thread.
        await asyncio.gather(
            *(asyncio.wrap_future(runner.executor.submit(runner.close)) for runner in runners)
        )
        for runner in runners:
            runner.executor.shutdown(wait=True)
        self._interactive = self._background = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._model is not None:
            self._model.close()
            self._model = None
