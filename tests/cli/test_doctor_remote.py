"""`qcn-lsp doctor --backend-url`: a real llama_cpp.server on loopback, a model it does not
serve, and nothing listening."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qcn_lsp.cli import main
from tests.llama_cpp_server import MODEL_ALIAS, LlamaCppServer, free_port, llama_cpp_server


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    with llama_cpp_server(tiny_model, tmp_path_factory.mktemp("server")) as running:
        yield running


def doctor(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, str]:
    status = main(["doctor", "--cache-dir", str(tmp_path), *args])
    return status, capsys.readouterr().out


def test_a_working_endpoint(
    server: LlamaCppServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = doctor(
        capsys, tmp_path, "--backend-url", server.base_url, "--backend-model", MODEL_ALIAS
    )
    assert f"[ok] {server.base_url} answers in" in out
    assert f"llama-cpp-python at {server.base_url}, model '{MODEL_ALIAS}' listed" in out
    assert "(not reported: model.contextLength)" in out
    assert "[ok] a tiny FIM request" in out and "ms total" in out
    assert "no model configured" not in out  # no local GGUF needed


def test_a_model_not_served_and_no_server(
    server: LlamaCppServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = doctor(capsys, tmp_path, "--backend-url", server.base_url)
    assert status == 1
    assert "[!!] reachable, but the server" in out and f"it serves: '{MODEL_ALIAS}'" in out
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    status, out = doctor(capsys, tmp_path, "--backend-url", nowhere)
    assert status == 1 and "[!!] cannot reach the model server" in out
    status, out = doctor(
        capsys, tmp_path, "--backend-url", server.base_url, "--api-key-env", "QCN_NO_SUCH_VAR"
    )
    assert status == 1 and "$QCN_NO_SUCH_VAR (backend.apiKeyEnv) is not set" in out
