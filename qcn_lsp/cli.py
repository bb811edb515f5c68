"""The `qcn-lsp` command: serve LSP (stdio by default, or TCP) and the helper subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from qcn_lsp import __version__


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
        choices=["tiny", "small"],
        default="tiny",
        help="tiny: unit tests (loads and answers in well under a second); "
        "small: benchmarks (prefill cost is real)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same file)")

    p = sub.add_parser(
        "doctor",
        help="check the installation, grammars, model and cache, and say what to fix",
        description="Report what qcn-lsp finds on this machine and what to do about each problem.",
    )
    p.add_argument("--model", type=Path, help="GGUF to check (default: $QCN_MODEL)")
    p.add_argument("--cache-dir", type=Path, help="cache directory (default: ~/.cache/qcn-lsp)")
    p.add_argument("--no-load", action="store_true", help="read the GGUF header only")
    p.add_argument(
        "--backend-url",
        metavar="URL",
        help="check an OpenAI-compatible endpoint (backend.baseUrl) instead of a local GGUF",
    )
    p.add_argument("--backend-model", metavar="NAME", help="backend.model (with --backend-url)")
    p.add_argument(
        "--api-key-env", metavar="VAR", default="", help="backend.apiKeyEnv (with --backend-url)"
    )

    p = sub.add_parser(
        "pull",
        help="download a GGUF model (resumable, verified) and print the setting to use",
        description="Download a GGUF into the cache directory (or --out) with a progress bar. "
        "An interrupted download resumes; the size and sha256 are verified before the file is "
        "put in place, and a bad download is deleted. Either a URL, or --quant for the "
        "published Qwen3-Coder-Next GGUF repository (split files are fetched together).",
    )
    p.add_argument("url", nargs="?", help="URL of a .gguf file")
    p.add_argument("--quant", help="a quantization of the published repository, e.g. Q4_K_M")
    p.add_argument(
        "--repo",
        help="model repository for --quant (default: $QCN_PULL_REPO or Qwen/Qwen3-Coder-Next-GGUF)",
    )
    p.add_argument(
        "--base-url",
        help="model hub for --quant (default: $QCN_PULL_BASE_URL or https://huggingface.co)",
    )
    p.add_argument("--revision", default="main", help="repository revision for --quant")
    p.add_argument("--sha256", help="expected sha256 of the file (URL downloads)")
    p.add_argument(
        "--out", type=Path, help="target file or directory (default: the cache's models/ directory)"
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
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per remote request


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    _setup_logging(args.log_level, args.log_file)

    if args.command == "make-test-model":
        from engine.testing import write_test_model

        path = write_test_model(args.out, preset=args.preset, seed=args.seed)
        print(
            f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, preset {args.preset}, "
            f"seed {args.seed}); random weights: its text is noise"
        )
        return 0
    if args.command == "doctor":
        from qcn_lsp.doctor import run_doctor

        return run_doctor(
            model=args.model,
            cache_dir=args.cache_dir,
            load=not args.no_load,
            backend_url=args.backend_url,
            backend_model=args.backend_model,
            api_key_env=args.api_key_env,
        )
    if args.command == "pull":
        if (args.url is None) == (args.quant is None):
            print("qcn-lsp pull: give a URL or --quant (one of them)", file=sys.stderr)
            return 2
        if args.sha256 and args.quant:
            print(
                "qcn-lsp pull: --sha256 goes with a URL; --quant uses the published sums",
                file=sys.stderr,
            )
            return 2
        from qcn_lsp.pull import run_pull

        return run_pull(
            args.url,
            quant=args.quant,
            repo=args.repo,
            base=args.base_url,
            revision=args.revision,
            sha256=args.sha256,
            out=args.out,
        )
    if args.command == "index":
        from context.cli import run_index

        return run_index(args.path, out=sys.stdout)
    if args.command == "context":
        from context.cli import run_context
        from context.cost import RenderedCost, estimate_tokens
        from engine.formats import repo_context_text, repo_file_text, repo_header_text

        # Estimated tokens of the entries exactly as the engine renders them.
        cost = RenderedCost(estimate_tokens, repo_header_text, repo_file_text)
        return run_context(
            args.spec,
            args.budget,
            render=lambda context: repo_context_text(
                context.repo_name, [(item.path, item.content) for item in context.files]
            ),
            cost=cost,
            out=sys.stdout,
        )

    from qcn_lsp.app import create_server

    server = create_server()
    if args.tcp:
        server.start_tcp(*args.tcp)
    else:
        server.start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
