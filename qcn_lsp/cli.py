"""The `qcn-lsp` command: serve LSP (stdio by default, or TCP) and the helper subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from context.languages import supported_languages
from context.roots import PROJECT_MARKERS
from qcn_lsp import __version__
from qcn_lsp.logs import DEFAULT_LEVEL, LEVELS, setup_logging

if TYPE_CHECKING:
    from engine.testing.presets import PresetName


# The most tokens of repository context a request can hold (the model's context window).
MAX_BUDGET_TOKENS = 262144


class _Parser(argparse.ArgumentParser):
    """Every usage error is one line naming the (sub)command, and where its help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT with a port from 0 to 65535 (0: any free port), got {text!r}"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


def _budget(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_BUDGET_TOKENS:
        raise argparse.ArgumentTypeError(
            f"expected a number of tokens from 1 to {MAX_BUDGET_TOKENS}, got {text!r}"
        )
    return int(text)


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's, by name."""
    parser = _Parser(
        prog="qcn-lsp",
        description="Language server for Qwen3-Coder-Next. With no subcommand it serves LSP "
        "over stdio, which is what editors launch.",
    )
    parser.add_argument("--version", action="version", version=f"qcn-lsp {__version__}")
    parser.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        type=_host_port,
        help="serve LSP over TCP instead of stdio (port 0: any free port; it says which)",
    )
    # Clients' stdio transports (vscode-languageclient's TransportKind.stdio) append it.
    parser.add_argument("--stdio", action="store_true", help="serve LSP over stdio (the default)")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        help=f"log level on stderr (default {DEFAULT_LEVEL}; stdout carries the protocol and "
        "is never logged to). The `log.level` setting, once an editor sends it, wins",
    )
    parser.add_argument("--log-file", type=Path, help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}

    p = commands["make-test-model"] = sub.add_parser(
        "make-test-model",
        help="write a random-weight qwen3next GGUF for tests and benchmarks",
        description="Write a random-weight GGUF with Qwen3-Coder-Next's layer pattern (3 Gated "
        "DeltaNet + 1 gated-attention layer per block, routed + shared experts) and the Qwen "
        "special tokens. Its weights are random: its text is noise, its compute and state real.",
    )
    p.add_argument("out", type=Path, metavar="OUT.gguf", help="the file to write")
    p.add_argument(
        "--preset",
        choices=["tiny", "small"],
        default="tiny",
        help="tiny: unit tests (loads and answers in well under a second); "
        "small: benchmarks (prefill cost is real) (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="random seed: same seed, same file (default: 0)"
    )

    p = commands["doctor"] = sub.add_parser(
        "doctor",
        help="check the installation, grammars, model and cache, and say what to fix",
        description="Report what qcn-lsp finds on this machine and what to do about each problem.",
    )
    p.add_argument(
        "--model",
        type=Path,
        help="GGUF to check (default: $QCN_MODEL, else the test model `make demo` wrote)",
    )
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

    p = commands["pull"] = sub.add_parser(
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

    p = commands["index"] = sub.add_parser(
        "index",
        help="index a workspace with tree-sitter and print statistics",
        description="Build the symbol index of PATH as the server does (honouring .gitignore; "
        "binaries, generated files and secrets left out) and print: files indexed; parsed "
        "with a grammar; taken from the cache; plain text (files in a language without a "
        "grammar: the repository context can show them, but they define no symbols); "
        "definitions and references found; time. Grammars: "
        + ", ".join(supported_languages())
        + ".",
    )
    p.add_argument("path", type=Path, metavar="PATH", help="the workspace folder")

    p = commands["context"] = sub.add_parser(
        "context",
        help="print the repository context that would be sent for a cursor",
        description="Print the repository context assembled for a cursor in FILE at LINE:COL "
        "(both 1-based, as editors and compilers show them), as the engine puts it into the "
        "prompt; statistics go to stderr. The workspace is the nearest folder above FILE "
        "holding one of " + ", ".join(PROJECT_MARKERS) + " (or --root).",
    )
    p.add_argument("spec", metavar="FILE:LINE:COL")
    p.add_argument(
        "--budget",
        type=_budget,
        default=4096,
        metavar="N",
        help="context budget in tokens (default: %(default)s)",
    )
    p.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="the workspace folder (default: found from FILE, see above)",
    )
    return parser, commands


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser, commands = _build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # An unknown flag is the subcommand's error when there is one, with its usage.
        commands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _fail(command: str, message: str, code: int = 1) -> int:
    sys.stderr.write(f"qcn-lsp {command}: {message}\n")
    return code


def _cannot_write(out: Path) -> str | None:
    """Why `out` cannot be written, said with what to do; None when it looks writable."""
    if out.is_dir():
        return f"{out} is a folder: give the file to write, e.g. {out / 'tiny.gguf'}"
    folder = out.parent
    if not folder.exists():
        return f"the folder {folder} does not exist: create it first (mkdir -p {folder})"
    if not folder.is_dir():
        return f"{folder} is a file, not a folder: choose a path inside a folder"
    if not os.access(folder, os.W_OK):
        return f"cannot write into {folder}: choose a folder you can write to"
    return None


def _make_test_model(out: Path, preset: PresetName, seed: int) -> int:
    from engine.testing import write_test_model

    problem = _cannot_write(out)
    if problem is not None:
        return _fail("make-test-model", problem)
    try:
        path = write_test_model(out, preset=preset, seed=seed)
    except OSError as error:
        return _fail(
            "make-test-model",
            f"cannot write {out}: {error.strerror or error}; choose a folder you can write to",
        )
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, preset {preset}, "
        f"seed {seed}); random weights: its text is noise"
    )
    return 0


def _context(args: argparse.Namespace) -> int:
    from context.cli import run_context
    from context.cost import RenderedCost, estimate_tokens
    from engine.formats import repo_context_text, repo_file_text, repo_header_text

    # Estimated tokens of the entries exactly as the engine renders them.
    cost = RenderedCost(estimate_tokens, repo_header_text, repo_file_text)
    return run_context(
        args.spec,
        args.budget,
        root=args.root,
        render=lambda context: repo_context_text(
            context.repo_name, [(item.path, item.content) for item in context.files]
        ),
        cost=cost,
        out=sys.stdout,
    )


def _pull(args: argparse.Namespace) -> int:
    if (args.url is None) == (args.quant is None):
        return _fail("pull", "give a URL or --quant (one of them)", 2)
    if args.sha256 and args.quant:
        return _fail("pull", "--sha256 goes with a URL; --quant uses the published sums", 2)
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


def _serve(tcp: tuple[str, int] | None) -> int:
    from qcn_lsp.app import create_server
    from qcn_lsp.transport import serve_stdio, serve_tcp

    server = create_server()
    server.audit.install()
    return serve_stdio(server) if tcp is None else serve_tcp(server, *tcp)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        setup_logging(args.log_level, args.log_file)
    except OSError as error:
        return _fail("--log-file", f"cannot open {args.log_file}: {error.strerror or error}", 2)
    try:
        if args.command == "make-test-model":
            return _make_test_model(args.out, args.preset, args.seed)
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
            return _pull(args)
        if args.command == "index":
            from context.cli import run_index

            return run_index(args.path, out=sys.stdout)
        if args.command == "context":
            return _context(args)
        if args.stdio and args.tcp is not None:
            return _fail("--stdio", "choose one transport: --stdio or --tcp", 2)
        return _serve(args.tcp)
    except KeyboardInterrupt:
        sys.stderr.write("qcn-lsp: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
