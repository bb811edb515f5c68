"""Benchmarks of the context index: full build, keystroke updates, assembly, relevance, stability.

    PYTHONPATH=. python bench/index_bench.py --repo /tmp/django_sdist/django-5.2.19 \
        --edit-file django/db/backends/base/schema.py
    PYTHONPATH=. python bench/index_bench.py --repo /tmp/npm_ts/rxjs/package/src \
        --edit-file internal/Observable.ts --other-file internal/Subscriber.ts

The repositories are ones nobody here wrote: Django's sdist (``pip download --no-deps
--no-binary :all: django -d /tmp/django_sdist`` and unpack it) and the TypeScript sources that
rxjs ships in its npm tarball (``npm pack rxjs@7.8.2`` and unpack it). Every ratio is against a
baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tree_sitter

from context.assemble import ContextAssembler, RepoContext
from context.cost import RenderedCost, estimate_tokens
from context.index import RepoIndex
from context.languages import grammar, language_for_path
from context.scan import WorkspaceScanner
from engine.formats import FILE_SEP, repo_context_text, repo_file_text, repo_header_text

# The estimate over the entries as the engine renders them, as the CLI counts.
QWEN_ESTIMATE = RenderedCost(estimate_tokens, repo_header_text, repo_file_text)


def render(context: RepoContext) -> str:
    return repo_context_text(context.repo_name, [(f.path, f.content) for f in context.files])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _child(code: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=900
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


# Peak RSS of the interpreter with the index's modules imported and the grammars loaded, before
# any file is read: subtracted to give the index's own memory.
_CHILD_PRELUDE = (
    "import json, resource, time\n"
    "from context.index import RepoIndex\n"
    "from context.languages import EXTENSIONS, grammar\n"
    "for name in set(EXTENSIONS.values()): grammar(name)\n"
    "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
)


def build_in_child(repo: Path) -> dict[str, float]:
    """Full cold builds in fresh processes, so peak RSS is the index's own.

    One without the disk cache (tags only in memory), one with a fresh cache followed by a
    warm rebuild from that cache (what a server restart costs)."""
    memory = _child(
        _CHILD_PRELUDE + f"index = RepoIndex([{str(repo)!r}])\n"
        "stats = index.build()\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps({'files': stats.files, 'parsed': stats.parsed, 'plain': stats.plain,"
        " 'definitions': stats.definitions, 'references': stats.references,"
        " 'cold_s': stats.seconds, 'base_rss_mb': base, 'peak_rss_mb': peak}))\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        cached = _child(
            _CHILD_PRELUDE + f"index = RepoIndex([{str(repo)!r}], cache_dir={cache!r})\n"
            "cold = index.build()\n"
            "index.close()\n"
            f"warm_index = RepoIndex([{str(repo)!r}], cache_dir={cache!r})\n"
            "warm = warm_index.build()\n"
            "print(json.dumps({'cold_cached_s': cold.seconds, 'warm_s': warm.seconds,"
            " 'warm_parsed': warm.parsed}))\n"
        )
    return {**memory, **cached}


def raw_parse_seconds(repo: Path) -> tuple[float, int]:
    """Baseline: read and parse the same files with plain tree-sitter, nothing else."""
    scanner = WorkspaceScanner([repo])
    files = [f for f in scanner.scan() if language_for_path(f.key)]
    parsers: dict[str, tree_sitter.Parser] = {}
    for language in {language_for_path(f.key) for f in files}:
        assert language is not None
        parsers[language] = tree_sitter.Parser(grammar(language).language)
    started = time.perf_counter()
    for scanned in files:
        language = language_for_path(scanned.key)
        assert language is not None
        parsers[language].parse(scanned.path.read_bytes())
    return time.perf_counter() - started, len(files)


# Keystrokes between two pauses in typing: where the server re-parses an inexact document.
PAUSE_EVERY = 50


def keystroke_updates(
    index: RepoIndex, repo: Path, edit_file: str, count: int
) -> tuple[list[float], int, list[float]]:
    """(update ms per keystroke, keystrokes that left an inexact tree, ms per verification
    at a pause every PAUSE_EVERY keystrokes when the document was inexact)."""
    path = repo / edit_file
    text = path.read_text()
    index.update_document(str(path), text)
    lines = text.split("\n")
    # Type a new statement at the end of a line in the middle of the file.
    row = len(lines) // 2
    offset = sum(len(line) + 1 for line in lines[:row]) + len(lines[row])
    typed = "\n        value = self.compute(arg, other=None)  # note" * (count // 50 + 1)
    timings = []
    verifications = []
    inexact = 0
    for keystroke, character in enumerate(typed[:count], start=1):
        text = text[:offset] + character + text[offset:]
        offset += 1
        started = time.perf_counter()
        index.update_document(str(path), text)
        timings.append((time.perf_counter() - started) * 1000)
        inexact += index.needs_verify(str(path))
        if keystroke % PAUSE_EVERY == 0 and index.needs_verify(str(path)):
            started = time.perf_counter()
            index.verify_document(str(path))
            verifications.append((time.perf_counter() - started) * 1000)
    index.close_document(str(path))
    return timings, inexact, verifications


def call_sites(index: RepoIndex, count: int, seed: int) -> list[tuple[str, int, int, str]]:
    """Calls in real code whose callee is defined in another, unambiguous file."""
    graph = index.graph
    sites = []
    for path, tags in sorted(graph.files.items()):
        if tags.language is None or "/tests/" in f"/{path}":
            continue
        for reference in tags.references:
            if reference.kind != "call":
                continue
            defining = graph.defining_files(reference.name)
            if defining and path not in defining and len(defining) <= 3:
                sites.append((path, reference.line, reference.col, reference.name))
    random.Random(seed).shuffle(sites)
    return sites[:count]


def nearby_files_context(index: RepoIndex, path: str, budget: int) -> str:
    """Baseline: whole files of the same folder, by name, as long as they fit."""
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    files: list[tuple[str, str]] = []
    used = QWEN_ESTIMATE.header(index.repo_name)
    for other in sorted(index.graph.files):
        if other == path or (other.rsplit("/", 1)[0] if "/" in other else "") != folder:
            continue
        content = (index.read_text(other) or "").rstrip("\n")
        cost = QWEN_ESTIMATE.file(other, content)
        if used + cost <= budget:
            files.append((other, content))
            used += cost
    return repo_context_text(index.repo_name, files)


def defined_in(rendered: str, index: RepoIndex, name: str, path: str) -> bool:
    for location in index.graph.definitions(name):
        if location.path == path:
            continue
        if f"{FILE_SEP}{location.path}\n" in rendered and location.definition.signature in rendered:
            return True
    return False


def relevance(index: RepoIndex, repo: Path, sites: list, budget: int) -> tuple[float, float, list]:
    hits = baseline_hits = 0
    timings = []
    texts: dict[str, str] = {}
    for path, line, col, name in sites:
        text = texts.setdefault(path, (repo / path).read_text(errors="replace"))
        assembler = ContextAssembler(index, QWEN_ESTIMATE)
        started = time.perf_counter()
        context = assembler.assemble(str(repo / path), text, line, col, budget)
        timings.append((time.perf_counter() - started) * 1000)
        hits += defined_in(render(context), index, name, path)
        baseline_hits += defined_in(nearby_files_context(index, path, budget), index, name, path)
    return hits / len(sites), baseline_hits / len(sites), timings


def _offset_at_line_end(text: str, row: int) -> int:
    lines = text.split("\n")
    row = max(0, min(row, len(lines) - 1))
    return sum(len(line) + 1 for line in lines[:row]) + len(lines[row])


def _timed_assembly(
    assembler: ContextAssembler,
    path: str,
    text: str,
    offset: int,
    budget: int,
    timings: list[float],
) -> str:
    """The rendered context for a cursor at ``offset``; the assembly's time goes to ``timings``."""
    line = text.count("\n", 0, offset)
    col = offset - (text.rfind("\n", 0, offset) + 1)
    started = time.perf_counter()
    context = assembler.assemble(path, text, line, col, budget)
    timings.append((time.perf_counter() - started) * 1000)
    return render(context)


def stability(
    index: RepoIndex, repo: Path, edit_file: str, other_file: str, budget: int, keystrokes: int
) -> dict:
    """A scripted session over one shared assembler (as the server keeps one).

    Typing words at a spot with 8% backspaces, the cursor moving up to 15 lines now and then
    (1% of words), a save every 150 keystrokes, and every 400 keystrokes a focus switch to
    ``other_file`` for 20 keystrokes and back. A keystroke counts as stable when the rendered
    repository context equals the one of the keystroke before.
    """
    texts = {name: (repo / name).read_text() for name in (edit_file, other_file)}
    offsets = {
        name: _offset_at_line_end(text, len(text.split("\n")) // 3) for name, text in texts.items()
    }
    rng = random.Random(7)
    assembler = ContextAssembler(index, QWEN_ESTIMATE)
    words = ["result", " = ", "self", ".", "compute", "(", "value", ")", "\n        "]
    previous: str | None = None
    unchanged = saves = switches = 0
    changed_by: dict[str, int] = {"switch": 0, "save": 0, "typing": 0}
    timings: list[float] = []
    for name, text in texts.items():
        index.update_document(str(repo / name), text)
    focus = edit_file
    typed = 0
    while typed < keystrokes:
        if rng.random() < 0.01:
            text = texts[focus]
            row = text.count("\n", 0, offsets[focus]) + rng.randint(-15, 15)
            offsets[focus] = _offset_at_line_end(text, row)
        for character in rng.choice(words):
            if typed >= keystrokes:
                break
            event = "typing"
            if typed and typed % 400 == 0:
                focus = other_file
                switches += 1
                event = "switch"
            elif typed % 400 == 20 and focus != edit_file:
                focus = edit_file
                switches += 1
                event = "switch"
            text, offset = texts[focus], offsets[focus]
            if rng.random() < 0.08 and offset > 0:
                text = text[: offset - 1] + text[offset:]
                offset -= 1
            else:
                text = text[:offset] + character + text[offset:]
                offset += 1
            texts[focus], offsets[focus] = text, offset
            path = str(repo / focus)
            index.update_document(path, text)
            if typed and typed % 150 == 0:
                index.save_document(path)
                saves += 1
                event = "save" if event == "typing" else event
            prefix = _timed_assembly(assembler, path, text, offset, budget, timings)
            if previous is not None:
                if prefix == previous:
                    unchanged += 1
                else:
                    changed_by[event] += 1
            previous = prefix
            typed += 1
    for name in texts:
        index.close_document(str(repo / name))
    return {
        "keystrokes": keystrokes,
        "unchanged_fraction": round(unchanged / (keystrokes - 1), 4),
        "saves": saves,
        "focus_switches": switches,
        "changed_on": changed_by,
        "reranks": assembler.reranks,
        "assemble_p50_ms": round(statistics.median(timings), 2),
        "assemble_p95_ms": round(percentile(timings, 0.95), 2),
    }


def two_spots(index: RepoIndex, repo: Path, edit_file: str, budget: int, keystrokes: int) -> dict:
    """Alternating one character at a time between two spots 60 lines apart in one file, a new
    line typed at each, over one shared assembler; stable as in ``stability``. Also: the share
    of stable keystrokes after the first 50, and the time of an assembly per keystroke (the
    hysteresis check, or a re-rank)."""
    path = str(repo / edit_file)
    text = (repo / edit_file).read_text()
    lines = text.split("\n")
    offsets: list[int] = []
    for row in (len(lines) // 3, len(lines) // 3 + 60):
        offset = _offset_at_line_end(text, row + len(offsets))
        indent = lines[row][: len(lines[row]) - len(lines[row].lstrip())]
        text = text[:offset] + "\n" + indent + text[offset:]
        offsets = [o if o < offset else o + 1 + len(indent) for o in offsets]
        offsets.append(offset + 1 + len(indent))
    index.update_document(path, text)
    assembler = ContextAssembler(index, QWEN_ESTIMATE)
    typed = "result = self.compute(value, other=None)  " * (keystrokes // 40 + 2)
    previous: str | None = None
    unchanged = unchanged_late = 0
    timings: list[float] = []
    for keystroke in range(keystrokes):
        spot = keystroke % 2
        offset = offsets[spot]
        text = text[:offset] + typed[keystroke // 2] + text[offset:]
        offsets = [o + 1 if o >= offset and i != spot else o for i, o in enumerate(offsets)]
        offsets[spot] += 1
        index.update_document(path, text)
        prefix = _timed_assembly(assembler, path, text, offsets[spot], budget, timings)
        if previous is not None and prefix == previous:
            unchanged += 1
            unchanged_late += keystroke >= 50
        previous = prefix
    index.close_document(path)
    return {
        "keystrokes": keystrokes,
        "unchanged_fraction": round(unchanged / (keystrokes - 1), 4),
        "unchanged_after_50": round(unchanged_late / (keystrokes - 50), 4),
        "reranks": assembler.reranks,
        "assemble_p50_ms": round(statistics.median(timings), 2),
        "assemble_p95_ms": round(percentile(timings, 0.95), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", type=Path, default=Path("/tmp/django_sdist/django-5.2.19"))
    parser.add_argument("--edit-file", default="django/db/backends/base/schema.py")
    parser.add_argument("--other-file", default="django/db/backends/base/operations.py")
    parser.add_argument("--sites", type=int, default=200)
    parser.add_argument("--keystrokes", type=int, default=500)
    args = parser.parse_args()
    repo = args.repo.resolve()

    build = build_in_child(repo)
    raw_seconds, raw_files = raw_parse_seconds(repo)
    print(f"full index: {json.dumps(build)}")
    print(
        f"raw tree-sitter read+parse of the {raw_files} source files: {raw_seconds:.2f} s; "
        f"index/raw = {build['cold_s'] / raw_seconds:.2f}x without the disk cache, "
        f"{build['cold_cached_s'] / raw_seconds:.2f}x with it; "
        f"index memory {build['peak_rss_mb'] - build['base_rss_mb']:.0f} MB over the interpreter"
    )

    index = RepoIndex([repo])
    index.build()
    updates, inexact, verifications = keystroke_updates(
        index, repo, args.edit_file, args.keystrokes
    )
    lines = (repo / args.edit_file).read_text().count("\n")
    verify = (
        f"p50 {statistics.median(verifications):.2f} ms over {len(verifications)} pauses"
        if verifications
        else "none needed"
    )
    print(
        f"keystroke update in {args.edit_file} ({lines} lines): "
        f"p50 {statistics.median(updates):.2f} ms, p95 {percentile(updates, 0.95):.2f} ms; "
        f"{inexact} of {len(updates)} left syntax errors (re-parsed afresh at a pause: "
        f"{verify})"
    )

    sites = call_sites(index, args.sites, seed=1)
    for budget in (4096, 16384):
        recall, baseline, timings = relevance(index, repo, sites, budget)
        print(
            f"budget {budget}: recall {recall:.1%} vs same-folder baseline {baseline:.1%} "
            f"over {len(sites)} call sites; assembly p50 {statistics.median(timings):.1f} ms, "
            f"p95 {percentile(timings, 0.95):.1f} ms"
        )

    for budget in (4096, 16384):
        result = stability(index, repo, args.edit_file, args.other_file, budget, args.keystrokes)
        print(f"stability at budget {budget}: {json.dumps(result)}")
    for budget in (4096, 16384):
        result = two_spots(index, repo, args.edit_file, budget, args.keystrokes)
        print(f"two spots at budget {budget}: {json.dumps(result)}")
    print(
        f"bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
