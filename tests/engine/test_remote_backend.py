"""RemoteBackend against a real OpenAI-compatible server: llama_cpp.server on loopback serving
the tiny generated model (random weights: these tests check the protocol, never the text)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.formats import FIM_STOPS, chat_prompt, fim_prompt
from engine.params import GenerationParams
from engine.remote import RemoteBackend, RemoteConfig
from engine.remote.errors import (
    RemoteAuthError,
    RemoteDisconnected,
    RemoteModelMissing,
    RemoteUnreachable,
)
from engine.segments import Prompt
from tests.llama_cpp_server import MODEL_ALIAS, LlamaCppServer, free_port, llama_cpp_server

KEY = "sk-test-0123456789abcdef"
# Long enough that a stream left running holds the server for a while, short enough that one
# whose text the server holds back ends soon.
LONG = GenerationParams(max_tokens=400)
DISCONNECTED = "Disconnected from client"  # what llama_cpp.server prints for a closed stream


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    with llama_cpp_server(tiny_model, tmp_path_factory.mktemp("server")) as running:
        yield running


def config(url: str, **changes: object) -> RemoteConfig:
    options: dict[str, object] = {"retries": 1, "backoff_s": 0.05, "n_ctx": 4096}
    options.update(changes)
    return RemoteConfig(url, MODEL_ALIAS, **options)  # type: ignore[arg-type]


def prompt(spot: int = 0) -> Prompt:
    files = [("pkg/util.py", "def helper(x):\n    return x * 2\n" * 20)]
    return fim_prompt("repo", files, "pkg/main.py", f"import os\n\n\ndef f{spot}():\n    ", "\n")


@pytest.fixture
async def backend(server: LlamaCppServer) -> RemoteBackend:
    started = RemoteBackend(config(server.base_url))
    await started.start()
    yield started  # type: ignore[misc]
    await started.close()


async def test_probe_reports_the_server_and_its_tokenizer(backend: RemoteBackend) -> None:
    info = backend.info()
    assert info.path == MODEL_ALIAS
    assert info.server is not None and info.server.startswith("llama-cpp-python at http://")
    assert info.n_ctx == 4096  # the server does not say: the configured window
    server = backend.stats()["server"]
    assert server["models"] == [MODEL_ALIAS]
    assert server["tokenizer"] == "measured with /extras/tokenize"
    text = "def add(a, b):\n    return a + b\n" * 10
    assert backend.count_tokens(text) >= len(text) / server["charsPerToken"]


async def test_a_completion_streams_text_deltas(backend: RemoteBackend) -> None:
    for spot in range(6):  # random weights may stop at once at a spot
        generation = backend.stream(
            prompt(spot), GenerationParams(max_tokens=12, stop=FIM_STOPS), key="a"
        )
        deltas = [delta async for delta in generation]
        assert generation.report is not None and not generation.report.cancelled
        assert generation.report.restore_kind == "server"
        if deltas:
            assert len(deltas) > 1
            return
    raise AssertionError("no spot produced text")


async def test_a_chat_answers_on_the_background_lane(backend: RemoteBackend) -> None:
    conversation = chat_prompt(
        [{"role": "system", "content": "You edit code."}, {"role": "user", "content": "Fix it."}],
        [{"type": "function", "function": {"name": "edit_file", "parameters": {}}}],
    )
    generation = backend.stream(conversation, GenerationParams(max_tokens=8), lane="background")
    await generation.text()
    assert generation.report is not None and generation.report.lane == "background"


async def test_cancelling_closes_the_stream_and_the_server_stops(
    backend: RemoteBackend, server: LlamaCppServer
) -> None:
    for spot in range(8):
        seen = server.output().count(DISCONNECTED)
        generation = backend.stream(prompt(spot), LONG, key="a")
        async for _ in generation:
            generation.cancel()
            break
        else:
            continue  # random weights stopped at once here: another spot
        with pytest.raises(asyncio.CancelledError):
            await generation.text()
        # llama_cpp.server notices a closed stream when it next has text to send (random text
        # it holds back as an incomplete UTF-8 tail runs to max_tokens first): then it stops
        # generating, its one lock free again.
        if server.wait_for_output(DISCONNECTED, 15, after=seen):
            break
    else:
        raise AssertionError("the server never noticed a closed stream")
    follow_up = backend.stream(prompt(1), GenerationParams(max_tokens=2), key="b")
    await asyncio.wait_for(follow_up.text(), 60)


async def test_a_new_stream_of_the_same_key_cancels_the_previous(backend: RemoteBackend) -> None:
    first = backend.stream(prompt(), LONG, key="doc")
    second = backend.stream(prompt(1), GenerationParams(max_tokens=2), key="doc")
    with pytest.raises(asyncio.CancelledError):
        await first.text()
    await asyncio.wait_for(second.text(), 30)


async def test_warm_prefills_and_a_stream_preempts_it(backend: RemoteBackend) -> None:
    warm = backend.warm(prompt())
    assert await warm.text() == ""
    assert backend.stats()["warm_requests"] == 1
    preempted = backend.warm(prompt(2))
    generation = backend.stream(prompt(3), GenerationParams(max_tokens=2))
    await preempted.text()  # ends without error: preempted
    await generation.text()
    assert backend.stats()["warm_requests"] == 1


async def test_shaping_warms_the_stable_prefix_once_per_change(server: LlamaCppServer) -> None:
    backend = RemoteBackend(config(server.base_url, shape_requests="on"))
    await backend.start()
    try:
        long_file = "def helper(x):\n    return x * 2\n" * 200  # past MIN_WARM_CHARS
        for spot in range(3):
            shaped = fim_prompt("repo", [("a.py", long_file)], "b.py", f"x = {spot}", "\n")
            await backend.stream(shaped, GenerationParams(max_tokens=1)).text()
        assert backend.stats()["warm_requests"] == 1  # same repository and file prefix
        moved = fim_prompt("repo", [("c.py", long_file)], "b.py", "x = 9", "\n")
        await backend.stream(moved, GenerationParams(max_tokens=1)).text()
        assert backend.stats()["warm_requests"] == 2
    finally:
        await backend.close()


async def test_a_model_the_server_does_not_serve_names_the_ones_it_does(
    server: LlamaCppServer,
) -> None:
    backend = RemoteBackend(RemoteConfig(server.base_url, "qwen3-coder-next", retries=0))
    with pytest.raises(RemoteModelMissing, match=f"it serves: '{MODEL_ALIAS}'"):
        await backend.start()


async def test_unreachable_server_is_retried_then_reported() -> None:
    backend = RemoteBackend(config(f"http://127.0.0.1:{free_port()}/v1", retries=2))
    with pytest.raises(RemoteUnreachable, match="cannot reach the model server"):
        await backend.start()


async def test_a_wrong_key_is_refused_without_echoing_it(tiny_model: Path, tmp_path: Path) -> None:
    with llama_cpp_server(tiny_model, tmp_path, api_key=KEY) as keyed:
        wrong = RemoteBackend(config(keyed.base_url, api_key=KEY[::-1], api_key_env="QCN_KEY"))
        with pytest.raises(RemoteAuthError) as refused:
            await wrong.start()
        assert "HTTP 401" in str(refused.value) and "$QCN_KEY" in str(refused.value)
        assert KEY[::-1] not in str(refused.value) and KEY[::-1] not in repr(wrong.config)
        missing = RemoteBackend(config(keyed.base_url))
        with pytest.raises(RemoteAuthError, match=r"backend\.apiKeyEnv"):
            await missing.start()
        right = RemoteBackend(config(keyed.base_url, api_key=KEY))
        await right.start()
        await right.stream(prompt(), GenerationParams(max_tokens=2)).text()
        await right.close()


async def test_a_server_killed_mid_request_gives_one_clear_error(
    tiny_model: Path, tmp_path: Path
) -> None:
    with llama_cpp_server(tiny_model, tmp_path) as doomed:
        backend = RemoteBackend(config(doomed.base_url))
        await backend.start()
        generation = backend.stream(prompt(), LONG)
        async for _ in generation:
            doomed.kill()
            break
        with pytest.raises(RemoteDisconnected, match="closed the connection mid-answer"):
            await generation.text()
        # Counting tokens never asks the server (it runs on every keystroke).
        assert backend.count_tokens("def f(x):\n    return x\n") > 0
        # The next request finds nobody there, and says so.
        with pytest.raises(RemoteUnreachable):
            await backend.stream(prompt(), GenerationParams(max_tokens=2)).text()
        await backend.close()
