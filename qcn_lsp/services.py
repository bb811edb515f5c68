"""Shared services: the model backend and the workspace index, loaded in the background.

Start-up never waits for either: `initialized` schedules the loads, requests that need them
call `backend_ready(timeout)` / `index_ready(timeout)` and get a `RequestFailed` error that
says what is going on ("model still loading", "no model configured: ...") when they are not
there in time. Settings changes that concern a service reload it without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from engine.backend import Backend
from engine.errors import EngineError
from engine.report import RequestReport
from qcn_lsp.cache_health import prepare_cache
from qcn_lsp.errors import RequestFailed
from qcn_lsp.progress import Progress
from qcn_lsp.settings import Settings
from qcn_lsp.wire import report_dict
from qcn_lsp.workspace import workspace_roots

if TYPE_CHECKING:
    from context.index import RepoIndex
    from qcn_lsp.server import QcnServer

logger = logging.getLogger(__name__)

SHUTTING_DOWN = "server shutting down"


def _backend_inputs(settings: Settings) -> tuple[object, ...]:
    """The sections the backend is built from: a change in any of them reloads it."""
    return (settings.model, settings.backend, settings.engine, settings.cache)


def _backend_label(settings: Settings) -> str:
    backend = settings.backend
    if backend.kind == "openai":
        return f"{backend.model} at {backend.base_url}"
    return str(settings.model.path)


def _load_failure(settings: Settings, exc: Exception) -> str:
    if settings.backend.kind == "openai":
        return f"the model server is not usable: {exc}"
    return f"model failed to load: {exc}"


def remote_backend(settings: Settings) -> Backend:
    """The OpenAI-compatible backend the settings describe; RequestFailed naming the setting
    to fix. The API key is read from the environment variable named in backend.apiKeyEnv."""
    from engine.remote import RemoteBackend, RemoteConfig

    backend = settings.backend
    key = None
    if backend.api_key_env:
        key = os.environ.get(backend.api_key_env)
        if not key:
            raise RequestFailed(
                f"backend.apiKeyEnv names {backend.api_key_env}, which is not set (or empty) "
                "in the environment qcn-lsp was started with; export it before starting the "
                "editor, or clear backend.apiKeyEnv for a server without a key"
            )
    try:
        config = RemoteConfig(
            base_url=backend.base_url,
            model=backend.model,
            api_key=key,
            api_key_env=backend.api_key_env,
            connect_timeout_s=backend.connect_timeout_s,
            read_timeout_s=backend.read_timeout_s,
            n_ctx=settings.model.context_length,
            shape_requests=backend.shape_requests,
        )
    except EngineError as exc:
        raise RequestFailed(str(exc)) from None
    return RemoteBackend(config)


def _index_inputs(settings: Settings) -> tuple[object, ...]:
    """What the index is built from (besides the workspace folders)."""
    return (settings.context.ignore, settings.cache)


class Services:
    """The backend and the index of one server, each loaded by its own background task."""

    def __init__(self, server: QcnServer) -> None:
        self.server = server
        self._backend: Backend | None = None
        self._backend_error: str | None = None
        self._backend_task: asyncio.Task[None] | None = None
        self._backend_generation = 0
        self._index: RepoIndex | None = None
        self._index_error: str | None = None
        self._index_task: asyncio.Task[None] | None = None
        self._index_state = "not started"
        self._index_listeners: list[Callable[[RepoIndex], None]] = []
        # Editor events queued for the index (set by features/documents).
        self.index_backlog: Callable[[], int] = lambda: 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.last_report: RequestReport | None = None
        self.last_warmup: RequestReport | None = None
        # The repository files in the last completion's prompt (qcn.status: why that answer?).
        self.last_context: list[str] = []
        self.last_error: str | None = None
        self._failure_shown = False
        self.started = False
        self._started_event = asyncio.Event()
        # Set once by begin_shutdown(): requests waiting for a service are answered at once.
        self.shutting_down = False
        self._shutdown_event = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule the model load and the indexing (called once the client is initialized)."""
        if self.started:
            return
        self.started = True
        self._started_event.set()
        self._reload_backend()
        self._reload_index()

    def settings_changed(self, previous: Settings) -> None:
        if not self.started or self.shutting_down:
            return
        current = self.server.settings
        if _backend_inputs(current) != _backend_inputs(previous):
            self._reload_backend()
        if _index_inputs(current) != _index_inputs(previous):
            self._reload_index()

    def workspace_folders_changed(self) -> None:
        """Folders were added or removed: index the new set (unchanged files come from the
        disk cache)."""
        if self.started and not self.shutting_down:
            self._reload_index()

    def begin_shutdown(self) -> None:
        """Stop serving: loads and builds are cancelled, waiting requests answered "server
        shutting down", and the backend closed in the background (its generations cancelled
        at the next micro-batch or token, its resume point persisted); see `closed`."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self._shutdown_event.set()
        for task in (self._backend_task, self._index_task):
            if task is not None:
                task.cancel()
        self._closing = self._spawn(self._close_backend())

    async def _close_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()

    async def closed(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the shutdown's backend close; True once it is done."""
        if self._closing is None:
            return True
        done, _ = await asyncio.wait({self._closing}, timeout=timeout)
        return bool(done)

    def check_serving(self) -> None:
        """RequestFailed once shutdown has begun: no new model or index work starts."""
        if self.shutting_down:
            raise RequestFailed(f"qcn-lsp: {SHUTTING_DOWN}")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        # Keep a reference (asyncio only holds weak ones) and log what went wrong.
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("service task failed", exc_info=task.exception())

    # -- backend ------------------------------------------------------------------------------

    def _reload_backend(self) -> None:
        if self._backend_task is not None:
            self._backend_task.cancel()
        self._backend_generation += 1
        self._backend_error = None
        self.last_error = None
        self._failure_shown = False
        self._backend_task = self._spawn(self._load_backend(self._backend_generation))

    async def _load_backend(self, generation: int) -> None:
        old, self._backend = self._backend, None
        if old is not None:
            await old.close()
        state_dir = await self._cache_dir("state")
        try:
            backend = self._create_backend(state_dir)
        except RequestFailed as exc:
            self._backend_error = exc.message
            self._show(types.MessageType.Warning, exc.message)
            return
        async with Progress(self.server, "qcn-lsp: loading model") as progress:
            progress.report(_backend_label(self.server.settings), 0)
            started = time.perf_counter()
            try:
                await backend.start()
            except asyncio.CancelledError:
                await backend.close()
                raise
            except (EngineError, OSError, ValueError) as exc:
                self._backend_error = _load_failure(self.server.settings, exc)
                self._show(types.MessageType.Error, self._backend_error)
                return
        if generation != self._backend_generation:
            await backend.close()
            return
        self._backend = backend
        info = backend.info()
        logger.info(
            "model loaded in %.1f s: %s%s",
            time.perf_counter() - started,
            info.path,
            f" ({info.server})" if info.server else "",
        )

    async def _cache_dir(self, name: str) -> Path | None:
        """The cache subdirectory `name`, checked (and repaired) off the event loop; None,
        with a message to the user, when it cannot hold a cache."""
        directory = Path(self.server.settings.cache.dir) / name
        usable, note = await asyncio.get_running_loop().run_in_executor(
            None, prepare_cache, directory
        )
        if note is not None:
            self._show(types.MessageType.Warning, note)
        return usable

    def _create_backend(self, state_dir: Path | None) -> Backend:
        settings = self.server.settings
        model, engine = settings.model, settings.engine
        if settings.backend.kind == "openai":
            return remote_backend(settings)
        if not model.path:
            raise RequestFailed(
                "no model configured: set model.path (or the QCN_MODEL environment variable) "
                "to a GGUF file"
            )
        if not Path(model.path).is_file():
            raise RequestFailed(f"model file not found: {model.path}; check model.path")
        from engine.local import EngineConfig, LocalEngine

        return LocalEngine(
            EngineConfig(
                model_path=model.path,
                n_ctx=model.context_length,
                n_threads=model.threads,
                n_gpu_layers=model.gpu_layers,
                cpu_moe=model.cpu_moe,
                n_cpu_moe=model.n_cpu_moe,
                cache_type_k=model.cache_type_k,
                cache_type_v=model.cache_type_v,
                flash_attention=model.flash_attention,
                mmap=model.mmap,
                mlock=model.mlock,
                checkpoint_interval=engine.checkpoint_interval,
                checkpoint_memory_mb=engine.checkpoint_memory_mb,
                prompt_cache_mb=engine.snapshot_memory_mb,
                state_dir=state_dir,
                state_cache_bytes=settings.cache.state_disk_mb << 20,
                prompt_cache=engine.prompt_cache,
            )
        )

    def backend_status(self) -> str:
        if self.shutting_down:
            return SHUTTING_DOWN
        if self._backend is not None:
            return "ready"
        if self._backend_error is not None:
            return self._backend_error
        if not self.started:
            return "not started (waiting for the client's `initialized`)"
        return "model still loading"

    async def backend_ready(
        self, timeout: float, on_wait: Callable[[], None] | None = None
    ) -> Backend:
        """The loaded backend, waiting up to `timeout` s; else RequestFailed. `on_wait` is
        called when the wait is for a model still loading."""
        deadline = time.monotonic() + timeout
        if not self.started:
            # Requests may arrive before `initialized` was handled (settings still being pulled).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._started_event.wait(), timeout)
        while True:
            self.check_serving()
            if self._backend is not None:
                return self._backend
            task = self._backend_task
            remaining = deadline - time.monotonic()
            if self._backend_error is not None or task is None or remaining <= 0:
                raise RequestFailed(f"qcn-lsp: {self.backend_status()}")
            if on_wait is not None:
                on_wait()
            # `wait` rather than awaiting the task: a cancelled request must not cancel the load.
            await self._wait_for(task, remaining)
            self.check_serving()
            if task.done() and task is self._backend_task and self._backend is None:
                raise RequestFailed(f"qcn-lsp: {self.backend_status()}")

    async def _wait_for(self, task: asyncio.Task[None], timeout: float) -> None:
        """Until `task` is done, shutdown begins, or `timeout` s have passed."""
        shutdown = asyncio.ensure_future(self._shutdown_event.wait())
        try:
            await asyncio.wait({task, shutdown}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            shutdown.cancel()

    def request_failed(self, exc: EngineError) -> None:
        """A request the backend could not serve: the first failure after a success is shown
        to the user; the ones that follow (every keystroke while a server is down) only
        logged, so the user gets one clear message."""
        self.last_error = str(exc)
        if self._failure_shown:
            logger.warning("request failed: %s", exc)
            return
        self._failure_shown = True
        self._show(types.MessageType.Error, str(exc))

    def request_succeeded(self) -> None:
        self._failure_shown = False

    # -- index --------------------------------------------------------------------------------

    def _reload_index(self) -> None:
        old, self._index = self._index, None
        if old is not None:
            old.close()
        # The workspace the process must never write to, as of this (re)build.
        self.server.audit.protect(
            workspace_roots(self.server.workspace), [Path(self.server.settings.cache.dir)]
        )
        if self._index_task is not None:
            self._index_task.cancel()
        self._index_error = None
        self._index_state = "indexing"
        self._index_task = self._spawn(self._build_index())

    async def _build_index(self) -> None:
        roots = workspace_roots(self.server.workspace)
        if not roots:
            self._index_state = "no workspace folder"
            self._index_error = "no workspace folder open: repository context is off"
            return
        from context.index import RepoIndex

        settings = self.server.settings
        index = RepoIndex(
            roots, cache_dir=await self._cache_dir("index"), ignore=settings.context.ignore
        )
        self._index_state = "indexing"
        loop = asyncio.get_running_loop()
        async with Progress(self.server, "qcn-lsp: indexing workspace") as progress:
            stop = False

            def report(done: int, total: int) -> None:
                percentage = int(100 * done / total) if total else 0
                loop.call_soon_threadsafe(progress.report, f"{done}/{total} files", percentage)

            def cancelled() -> bool:
                return stop or progress.cancelled

            try:
                stats = await loop.run_in_executor(None, lambda: index.build(report, cancelled))
            except asyncio.CancelledError:
                stop = True
                raise
            except Exception as exc:  # an indexing failure must leave completions working
                logger.exception("indexing failed")
                self._index_error = f"indexing failed: {exc}"
                self._index_state = "failed"
                return
        if progress.cancelled:
            self._index_error = "indexing cancelled by the user"
            self._index_state = "cancelled"
            return
        self._index = index
        self._index_state = (
            f"ready: {stats.files} files, {stats.definitions} definitions in {stats.seconds:.1f} s"
        )
        if index.cache_error is not None:
            self._show(types.MessageType.Warning, index.cache_error)
        for listener in self._index_listeners:
            listener(index)

    async def index_settled(self, timeout: float) -> RepoIndex | None:
        """The index, once a build in flight has finished (waiting up to `timeout` s); None
        without one: no workspace folder, a failed or cancelled build, or still building."""
        deadline = time.monotonic() + timeout
        if not self.started:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._started_event.wait(), timeout)
        task = self._index_task
        if self._index is None and self._index_error is None and task is not None:
            # `wait` rather than awaiting the task: a cancelled request must not cancel the build.
            await self._wait_for(task, max(0.0, deadline - time.monotonic()))
        self.check_serving()
        return self._index

    async def index_ready(self, timeout: float) -> RepoIndex:
        """The built RepoIndex, waiting up to `timeout` s; else RequestFailed."""
        index = await self.index_settled(timeout)
        if index is None:
            reason = self._index_error or f"workspace index still building ({self._index_state})"
            raise RequestFailed(f"qcn-lsp: {reason}")
        return index

    def index_if_ready(self) -> RepoIndex | None:
        return self._index

    def on_index_ready(self, listener: Callable[[RepoIndex], None]) -> None:
        """Call `listener(index)` each time a (re)built index becomes the current one."""
        self._index_listeners.append(listener)

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        engine: dict[str, Any] = {"state": self.backend_status()}
        if self._backend is not None:
            info = self._backend.info()
            if info.server:
                engine["server"] = info.server
            engine.update(
                model=info.path,
                arch=info.arch,
                layers=info.layers,
                hybrid=info.hybrid,
                nCtx=info.n_ctx,
                stats=self._backend.stats(),
            )
        report, warmup = self.last_report, self.last_warmup
        if self.last_error is not None:
            engine["lastError"] = self.last_error
        return {
            "engine": engine,
            "lastRequest": None if report is None else report_dict(report),
            "lastWarmup": None if warmup is None else report_dict(warmup),
            "lastContext": list(self.last_context),
            "index": self._index_status(),
            "settings": self.server.settings.values,
        }

    def _index_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "state": self._index_state,
            "error": self._index_error,
            "pendingUpdates": self.index_backlog(),
        }
        if self._index is not None:
            with self._index.reading() as graph:
                files = tuple(graph.files.values())
            status.update(
                files=len(files), definitions=sum(len(tags.definitions) for tags in files)
            )
        return status

    def _show(self, kind: types.MessageType, message: str) -> None:
        logger.warning(message)
        self.server.window_show_message(
            types.ShowMessageParams(type=kind, message=f"qcn-lsp: {message}")
        )
