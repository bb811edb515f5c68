"""`qcn-lsp doctor --backend-url URL`: is the OpenAI-compatible endpoint usable — reachable,
the model listed, one tiny FIM request answered, and how long it took."""

from __future__ import annotations

import asyncio
import os
import time

from engine.errors import EngineError
from engine.formats import FIM_STOPS, fim_prompt
from engine.params import GenerationParams
from engine.remote import RemoteBackend, RemoteConfig
from engine.remote.errors import RemoteModelMissing, RemoteUnreachable

PROBE_PREFIX = "def add(a, b):\n    return "
# (ok, what was found, what to do): qcn_lsp.doctor makes its findings of these.
Check = tuple[bool, str, str]


def found(ok: bool, what: str, fix: str = "") -> Check:
    return ok, what, fix


def check_remote(base_url: str, model: str, api_key_env: str) -> list[Check]:
    return asyncio.run(_check(base_url, model, api_key_env))


async def _check(base_url: str, model: str, api_key_env: str) -> list[Check]:
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        return [
            found(
                False,
                f"${api_key_env} (backend.apiKeyEnv) is not set",
                f"export {api_key_env}=... in the environment the editor starts qcn-lsp from",
            )
        ]
    try:
        backend = RemoteBackend(
            RemoteConfig(base_url, model, api_key=key, api_key_env=api_key_env, retries=1)
        )
    except EngineError as exc:
        return [found(False, str(exc), "fix backend.baseUrl / backend.model")]
    try:
        started = time.perf_counter()
        try:
            await backend.start()
        except RemoteUnreachable as exc:
            return [found(False, str(exc), "start the server, or fix backend.baseUrl")]
        except RemoteModelMissing as exc:
            return [found(False, f"reachable, but {exc}", "set backend.model")]
        except EngineError as exc:
            return [found(False, str(exc), "see the message")]
        probe_ms = (time.perf_counter() - started) * 1000
        info = backend.info()
        findings = [
            found(
                True,
                f"{base_url} answers in {probe_ms:.0f} ms: {info.server}, model {model!r} "
                f"listed, context window {info.n_ctx} tokens"
                + (
                    ""
                    if backend.stats()["server"]["nCtx"]
                    else " (not reported: model.contextLength)"
                ),
            )
        ]
        prompt = fim_prompt("doctor", [], "doctor.py", PROBE_PREFIX, "\n")
        generation = backend.stream(prompt, GenerationParams(max_tokens=4, stop=FIM_STOPS))
        try:
            text = await asyncio.wait_for(generation.text(), 120)
        except (EngineError, TimeoutError) as exc:
            findings.append(
                found(False, f"a tiny FIM request failed: {exc or 'no answer in 120 s'}", "")
            )
            return findings
        report = generation.report
        ms = report.ms if report is not None else {}
        first = f"first token {ms['first_token']:.0f} ms, " if "first_token" in ms else ""
        findings.append(
            found(
                True,
                f"a tiny FIM request ({report.prompt_tokens if report else '?'} prompt tokens) "
                f"answered {text!r} in {first}{ms.get('total', 0):.0f} ms total",
            )
        )
        return findings
    finally:
        await backend.close()
