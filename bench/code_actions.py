"""How long listing code actions takes, against a bare request round trip to the same server.

    PYTHONPATH=. python bench/code_actions.py [--requests 200] [--lines 3000]

Listing never runs the model, so it should cost about one protocol round trip whatever the
file size. The baseline is `workspace/executeCommand` of an unknown command on the same
server (decoded, dispatched, answered with an error: the cheapest full request path). Both
are measured in the same run, interleaved, on a generated Python file of `--lines` lines with
5 diagnostics and a selection per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lsprotocol import types  # noqa: E402
from pygls.exceptions import JsonRpcException  # noqa: E402

from tests.lsp.helpers import lsp_session  # noqa: E402


def action_params(uri: str, line: int) -> types.CodeActionParams:
    where = types.Range(
        start=types.Position(line=line, character=0), end=types.Position(line=line + 3, character=0)
    )
    diagnostics = [types.Diagnostic(range=where, message=f"problem {k}") for k in range(5)]
    return types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=where,
        context=types.CodeActionContext(diagnostics=diagnostics),
    )


async def measure(requests: int, lines: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "big.py"
        text = "".join(f"def f{k}(x):\n    return x + {k}\n" for k in range(lines // 2))
        path.write_text(text)
        async with lsp_session(profile="visual_studio_code", workspace=root) as (client, _):
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    text_document=types.TextDocumentItem(
                        uri=path.as_uri(), language_id="python", version=1, text=text
                    )
                )
            )
            listing: list[float] = []
            baseline: list[float] = []
            unknown = types.ExecuteCommandParams(command="bench.none", arguments=[])
            for k in range(requests):
                start = time.perf_counter()
                await client.text_document_code_action_async(
                    action_params(path.as_uri(), k % (lines - 4))
                )
                listing.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                with contextlib.suppress(JsonRpcException):
                    await client.workspace_execute_command_async(unknown)
                baseline.append((time.perf_counter() - start) * 1000)
    for name, samples in (("codeAction listing", listing), ("baseline round trip", baseline)):
        ordered = sorted(samples)
        print(
            f"{name:20s} median {statistics.median(ordered):6.2f} ms"
            f"  p95 {ordered[int(len(ordered) * 0.95) - 1]:6.2f} ms"
        )
    ratio = statistics.median(listing) / statistics.median(baseline)
    print(f"listing / baseline (median): {ratio:.2f}x over {requests} requests, {lines} lines")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--lines", type=int, default=3000)
    args = parser.parse_args()
    asyncio.run(measure(args.requests, args.lines))


if __name__ == "__main__":
    main()
