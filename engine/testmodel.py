"""Small random-weight `qwen3next` GGUF models for tests and benchmarks.

The models have the real architecture's layer pattern (three Gated DeltaNet layers, then one
gated-attention layer; routed experts plus a gated shared expert in every layer) and a Qwen-style
byte-level BPE vocabulary with the Qwen special tokens, so the engine exercises the same hybrid
memory, state snapshots and prompt formats as with Qwen3-Coder-Next. The text they produce is
noise.

Only `gguf` and `numpy` are needed here: writing a model must not load llama.cpp.

Properties the tests rely on:
- Deterministic: the same preset and seed give a byte-identical file.
- The recurrent state matters: DeltaNet decay rates span fast to slow (like the real model's
  initialisation) and every layer's output is comparable in size to the token embedding, so
  changing an early token changes the logits at the end of a long prompt.
- Special and added tokens have all-zero rows in the output matrix: their logit is exactly 0
  while the best ordinary token's is well above it, so greedy decoding never stops on its own
  (and never emits `<|endoftext|>` or `<tool_call>` by chance); use `max_tokens`.
"""

from __future__ import annotations

import heapq
import os
import re
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import gguf
import numpy as np
import numpy.typing as npt

PresetName = Literal["tiny", "small"]
ARCH = "qwen3next"


@dataclass(frozen=True)
class ModelPreset:
    """Sizes of one generated model (names follow the GGUF keys they fill)."""

    name: str
    embedding_length: int
    block_count: int
    full_attention_interval: int
    # Gated attention layers: the Q projection is twice `head_count * head_dim` (query + gate).
    head_count: int
    head_count_kv: int
    head_dim: int
    rope_dimension_count: int
    # Gated DeltaNet layers: key heads (`group_count`), value heads (`time_step_rank`, a
    # multiple of the key heads) and the per-head dimension (`state_size`) of both.
    ssm_state_size: int
    ssm_group_count: int
    ssm_time_step_rank: int
    ssm_conv_kernel: int
    expert_count: int
    expert_used_count: int
    expert_feed_forward_length: int
    expert_shared_feed_forward_length: int
    context_length: int
    rope_freq_base: float = 1.0e7
    rms_norm_eps: float = 1.0e-6


PRESETS: Mapping[str, ModelPreset] = MappingProxyType(
    {
        # One block (3 DeltaNet + 1 attention layer): loads and answers in milliseconds.
        "tiny": ModelPreset(
            name="tiny",
            embedding_length=64,
            block_count=4,
            full_attention_interval=4,
            head_count=2,
            head_count_kv=1,
            head_dim=32,
            rope_dimension_count=8,
            ssm_state_size=16,
            ssm_group_count=2,
            ssm_time_step_rank=4,
            ssm_conv_kernel=4,
            expert_count=8,
            expert_used_count=2,
            expert_feed_forward_length=32,
            expert_shared_feed_forward_length=32,
            context_length=262144,
        ),
        # Two blocks, wide enough that prefilling 16K-64K tokens takes seconds on 2 cores, so
        # that what the checkpoint cache saves is measurable.
        "small": ModelPreset(
            name="small",
            embedding_length=512,
            block_count=8,
            full_attention_interval=4,
            head_count=4,
            head_count_kv=2,
            head_dim=64,
            rope_dimension_count=16,
            ssm_state_size=64,
            ssm_group_count=4,
            ssm_time_step_rank=8,
            ssm_conv_kernel=4,
            expert_count=32,
            expert_used_count=4,
            expert_feed_forward_length=128,
            expert_shared_feed_forward_length=256,
            context_length=262144,
        ),
    }
)

# Qwen special tokens, in their order in the Qwen2.5/Qwen3 vocabulary. Those marked special
# there are CONTROL tokens (parsed only with special=True, not rendered in text); the tool-call
# tags are plain added tokens (USER_DEFINED: always one token, rendered as text), as in the
# real model's GGUF.
CONTROL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
USER_DEFINED_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)

# Upper bound on learned merges; the built-in corpus yields fewer (a merge needs >= 2 uses).
MAX_MERGES = 2000

# The pre-tokenizer of llama.cpp's `qwen2` vocabulary, with \p{L} / \p{N} spelled for Python's
# `re` (letters are word characters that are neither digits nor "_"). Merges learned on these
# pieces are the ones llama.cpp can apply, since it never merges across them.
_PRETOKENIZE = re.compile(
    r"'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
    r"|(?:[^\r\n\w]|_)?[^\W\d_]+"
    r"|\d"
    r"| ?(?:[^\s\w]|_)+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)

# Code the merges are learned from: a few idioms of the languages an LSP user edits most.
_MERGE_CORPUS = '''\
import os
import sys
from pathlib import Path
from typing import Any, Optional


class Config:
    """Settings read from the environment."""

    def __init__(self, path: Path, *, verbose: bool = False) -> None:
        self.path = path
        self.verbose = verbose
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        if key in self.values:
            return self.values[key]
        return os.environ.get(key, default)

    def load(self) -> None:
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name, _, value = line.partition("=")
                self.values[name.strip()] = value.strip()


def parse_args(argv: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for index, arg in enumerate(argv):
        if arg.startswith("--"):
            result[arg[2:]] = argv[index + 1] if index + 1 < len(argv) else ""
    return result


async def fetch_all(client, urls: list[str]) -> list[bytes]:
    results = []
    for url in urls:
        response = await client.get(url)
        response.raise_for_status()
        results.append(response.content)
    return results


def main() -> int:
    config = Config(Path(sys.argv[1]))
    config.load()
    print(f"loaded {len(config.values)} values from {config.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


@dataclass(frozen=True)
class Point:
    x: float
    y: float

    def distance_to(self, other: "Point") -> float:
        return ((self.x - other.x) ** 2 + (self.y - other.y) ** 2) ** 0.5


def test_distance_is_symmetric() -> None:
    first = Point(1.0, 2.0)
    second = Point(4.0, 6.0)
    assert first.distance_to(second) == second.distance_to(first) == 5.0


@pytest.fixture
def client(tmp_path):
    database = tmp_path / "test.db"
    yield create_client(str(database))


class Repository:
    def __init__(self, session) -> None:
        self.session = session

    def find_by_name(self, name: str) -> list[dict[str, object]]:
        query = "SELECT id, name, created_at FROM users WHERE name = ? ORDER BY id"
        rows = self.session.execute(query, (name,)).fetchall()
        return [dict(zip(("id", "name", "created_at"), row)) for row in rows]

    def delete(self, user_id: int) -> bool:
        try:
            self.session.execute("DELETE FROM users WHERE id = ?", (user_id,))
        except DatabaseError as error:
            logger.warning("could not delete user %s: %s", user_id, error)
            return False
        else:
            self.session.commit()
            return True


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    """Yield successive slices of `items` with at most `size` elements each."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]

// JavaScript and TypeScript
import { readFile } from "node:fs/promises";

export interface User {
  id: number;
  name: string;
  email?: string;
}

export async function loadUsers(path: string): Promise<User[]> {
  const text = await readFile(path, "utf8");
  const users = JSON.parse(text) as User[];
  return users.filter((user) => user.id > 0);
}

export class Cache<T> {
  private readonly items = new Map<string, T>();

  get(key: string): T | undefined {
    return this.items.get(key);
  }

  set(key: string, value: T): void {
    this.items.set(key, value);
  }
}

function debounce(callback, delay) {
  let timer = null;
  return function (...args) {
    clearTimeout(timer);
    timer = setTimeout(() => callback.apply(this, args), delay);
  };
}

export function TodoList({ items, onToggle }: { items: Todo[]; onToggle: (id: number) => void }) {
  const [filter, setFilter] = useState<"all" | "done" | "open">("all");
  const visible = useMemo(
    () => items.filter((item) => filter === "all" || (filter === "done") === item.done),
    [items, filter],
  );
  return (
    <ul className="todo-list">
      {visible.map((item) => (
        <li key={item.id} onClick={() => onToggle(item.id)}>
          {item.title}
        </li>
      ))}
    </ul>
  );
}

describe("loadUsers", () => {
  it("returns only users with a positive id", async () => {
    const users = await loadUsers("fixtures/users.json");
    expect(users.length).toBeGreaterThan(0);
    expect(users.every((user) => user.id > 0)).toBe(true);
  });
});

// Rust
use std::collections::HashMap;
use std::fs;

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub text: String,
    pub offset: usize,
}

impl Token {
    pub fn new(kind: TokenKind, text: &str, offset: usize) -> Self {
        Self { kind, text: text.to_string(), offset }
    }
}

pub fn count_words(path: &str) -> Result<HashMap<String, usize>, std::io::Error> {
    let text = fs::read_to_string(path)?;
    let mut counts = HashMap::new();
    for word in text.split_whitespace() {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
    }
    Ok(counts)
}

// Go
package server

import (
	"context"
	"fmt"
	"net/http"
)

type Handler struct {
	name  string
	count int
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.count++
	fmt.Fprintf(w, "hello %s, request %d\\n", h.name, h.count)
}

func Run(ctx context.Context, addr string) error {
	server := &http.Server{Addr: addr, Handler: &Handler{name: "world"}}
	if err := server.ListenAndServe(); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return nil
}

/* C and C++ */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct node {
    int value;
    struct node *next;
} node_t;

static node_t *list_push(node_t *head, int value) {
    node_t *item = malloc(sizeof(node_t));
    if (item == NULL) {
        return head;
    }
    item->value = value;
    item->next = head;
    return item;
}

int main(int argc, char **argv) {
    node_t *list = NULL;
    for (int i = 0; i < argc; i++) {
        list = list_push(list, (int)strlen(argv[i]));
    }
    printf("%d\\n", list ? list->value : 0);
    return 0;
}

// Java
public final class Counter {
    private int value;

    public Counter(int start) {
        this.value = start;
    }

    public int increment() {
        return ++this.value;
    }

    @Override
    public String toString() {
        return "Counter(" + value + ")";
    }
}

-- SQL
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
SELECT name, COUNT(*) AS total FROM users GROUP BY name HAVING COUNT(*) > 1;

# Shell
#!/usr/bin/env bash
set -euo pipefail
for file in "$@"; do
    if [[ -f "$file" ]]; then
        echo "checking $file"
        python -m pytest -q "$file" || exit 1
    fi
done

# Markdown
## Installation

Install the package with `pip install -e .` and run the tests with `pytest`. The server reads
its settings from the workspace configuration; see the documentation for the list of options.
'''


def _byte_symbols() -> list[str]:
    """The byte-level BPE alphabet: one printable character per byte value (GPT-2's mapping)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\N{INVERTED EXCLAMATION MARK}"), ord("\N{NOT SIGN}") + 1),
        *range(ord("\N{REGISTERED SIGN}"), ord("\N{LATIN SMALL LETTER Y WITH DIAERESIS}") + 1),
    ]
    symbols: dict[int, str] = {byte: chr(byte) for byte in printable}
    # Bytes without a printable character of their own take the code points from 256 upward.
    shifted = 256
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(shifted)
            shifted += 1
    return [symbols[byte] for byte in range(256)]


def _learn_merges(text: str, max_merges: int) -> list[tuple[str, str]]:
    """Byte-level BPE merges learned from `text`, most frequent pair first.

    Ties are broken by the pair's text, so the result is the same on every run and platform.
    Pair counts are updated incrementally (only the words containing the merged pair are
    rescanned), which keeps learning a couple of thousand merges well under a second.
    """
    alphabet = _byte_symbols()
    word_counts = Counter(
        "".join(alphabet[byte] for byte in piece.encode("utf-8"))
        for piece in _PRETOKENIZE.findall(text)
    )
    words = [list(word) for word in word_counts]
    counts = list(word_counts.values())

    pair_count: Counter[tuple[str, str]] = Counter()
    pair_words: dict[tuple[str, str], set[int]] = {}
    for index, symbols in enumerate(words):
        for pair in pairwise(symbols):
            pair_count[pair] += counts[index]
            pair_words.setdefault(pair, set()).add(index)

    # Max-heap on count with lazy deletion: an entry is stale once its count differs.
    heap = [(-count, pair) for pair, count in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < max_merges:
        negative_count, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negative_count:
            continue
        if -negative_count < 2:
            break
        merges.append(pair)
        merged = pair[0] + pair[1]
        touched: set[tuple[str, str]] = set()
        for index in sorted(pair_words.pop(pair, set())):
            symbols = words[index]
            for old in pairwise(symbols):
                pair_count[old] -= counts[index]
                touched.add(old)
            rewritten: list[str] = []
            position = 0
            while position < len(symbols):
                if symbols[position : position + 2] == [pair[0], pair[1]]:
                    rewritten.append(merged)
                    position += 2
                else:
                    rewritten.append(symbols[position])
                    position += 1
            words[index] = rewritten
            for new in pairwise(rewritten):
                pair_count[new] += counts[index]
                pair_words.setdefault(new, set()).add(index)
                touched.add(new)
        del pair_count[pair]
        touched.discard(pair)
        for changed in sorted(touched):
            if pair_count[changed] > 0:
                heapq.heappush(heap, (-pair_count[changed], changed))
            else:
                del pair_count[changed]
                pair_words.pop(changed, None)
    return merges


@dataclass(frozen=True)
class _Vocabulary:
    tokens: list[str]
    token_types: list[int]
    merges: list[str]

    def id_of(self, text: str) -> int:
        return self.tokens.index(text)


def _build_vocabulary() -> _Vocabulary:
    """Byte symbols (id = byte value), then one token per merge, then the special tokens."""
    merges = _learn_merges(_MERGE_CORPUS, MAX_MERGES)
    # Two merges can spell the same token ("ab c", "a bc"): it is listed once.
    tokens = list(dict.fromkeys([*_byte_symbols(), *(left + right for left, right in merges)]))
    token_types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    tokens += [*CONTROL_TOKENS, *USER_DEFINED_TOKENS]
    token_types += [int(gguf.TokenType.CONTROL)] * len(CONTROL_TOKENS)
    token_types += [int(gguf.TokenType.USER_DEFINED)] * len(USER_DEFINED_TOKENS)
    return _Vocabulary(
        tokens=tokens,
        token_types=token_types,
        merges=[f"{left} {right}" for left, right in merges],
    )


class _WeightMaker:
    """Seeded weights, one independent stream per tensor name (independent of write order)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed

    def _rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self._seed, zlib.crc32(name.encode())])

    def normal(self, name: str, shape: tuple[int, ...], std: float) -> npt.NDArray[np.float32]:
        values = self._rng(name).standard_normal(shape, dtype=np.float32)
        values *= np.float32(std)
        return values

    def uniform(
        self, name: str, shape: tuple[int, ...], low: float, high: float
    ) -> npt.NDArray[np.float32]:
        return self._rng(name).uniform(low, high, shape).astype(np.float32)

    def levels_f16(self, name: str, shape: tuple[int, ...], std: float) -> npt.NDArray[np.float16]:
        """Zero-mean f16 values on 256 evenly spaced levels with the given std.

        One random byte per weight, looked up in a table of levels: several times faster than
        normal samples (the `small` model has ~60M weights), and any symmetric distribution
        serves here.
        """
        table = ((np.arange(256) - 127.5) * (std / _BYTE_LEVELS_STD)).astype(np.float16)
        picks = np.frombuffer(self._rng(name).bytes(int(np.prod(shape))), dtype=np.uint8)
        return table[picks].reshape(shape)


# Standard deviation of the 256 levels -127.5, -126.5, ..., 127.5.
_BYTE_LEVELS_STD = float(np.sqrt((256**2 - 1) / 12))


def _add_hyperparameters(writer: gguf.GGUFWriter, preset: ModelPreset) -> None:
    writer.add_name(f"qcn-lsp test model ({preset.name})")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(preset.context_length)
    writer.add_embedding_length(preset.embedding_length)
    writer.add_block_count(preset.block_count)
    writer.add_full_attention_interval(preset.full_attention_interval)
    writer.add_head_count(preset.head_count)
    writer.add_head_count_kv(preset.head_count_kv)
    writer.add_key_length(preset.head_dim)
    writer.add_value_length(preset.head_dim)
    writer.add_rope_dimension_count(preset.rope_dimension_count)
    writer.add_rope_freq_base(preset.rope_freq_base)
    writer.add_layer_norm_rms_eps(preset.rms_norm_eps)
    writer.add_ssm_conv_kernel(preset.ssm_conv_kernel)
    writer.add_ssm_state_size(preset.ssm_state_size)
    writer.add_ssm_group_count(preset.ssm_group_count)
    writer.add_ssm_time_step_rank(preset.ssm_time_step_rank)
    writer.add_ssm_inner_size(preset.ssm_state_size * preset.ssm_time_step_rank)
    writer.add_expert_count(preset.expert_count)
    writer.add_expert_used_count(preset.expert_used_count)
    writer.add_expert_feed_forward_length(preset.expert_feed_forward_length)
    writer.add_expert_shared_feed_forward_length(preset.expert_shared_feed_forward_length)


def _add_tokenizer(writer: gguf.GGUFWriter, vocab: _Vocabulary) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    endoftext = vocab.id_of("<|endoftext|>")
    writer.add_bos_token_id(endoftext)
    writer.add_eos_token_id(endoftext)
    writer.add_pad_token_id(endoftext)
    writer.add_add_bos_token(False)
    fim_keys = {
        gguf.Keys.Tokenizer.FIM_PRE_ID: "<|fim_prefix|>",
        gguf.Keys.Tokenizer.FIM_SUF_ID: "<|fim_suffix|>",
        gguf.Keys.Tokenizer.FIM_MID_ID: "<|fim_middle|>",
        gguf.Keys.Tokenizer.FIM_PAD_ID: "<|fim_pad|>",
        gguf.Keys.Tokenizer.FIM_REP_ID: "<|repo_name|>",
        gguf.Keys.Tokenizer.FIM_SEP_ID: "<|file_sep|>",
    }
    for key, text in fim_keys.items():
        writer.add_uint32(key, vocab.id_of(text))


def _add_tensors(
    writer: gguf.GGUFWriter, preset: ModelPreset, vocab: _Vocabulary, seed: int
) -> None:
    """All tensors `load_arch_tensors` of qwen3next asks for, and no others.

    numpy shapes are ggml's reversed. Matrices are f16 with std 1/sqrt(fan_in), so that each
    layer adds O(1) to the residual stream; vectors, the routers and the conv kernel stay f32.
    """
    weights = _WeightMaker(seed)
    n_embd = preset.embedding_length
    n_vocab = len(vocab.tokens)

    def matrix(name: str, *shape: int) -> None:
        writer.add_tensor(name, weights.levels_f16(name, shape, shape[-1] ** -0.5))

    def f32_matrix(name: str, *shape: int) -> None:
        writer.add_tensor(name, weights.normal(name, shape, shape[-1] ** -0.5))

    def norm(name: str, size: int) -> None:
        writer.add_tensor(name, 1.0 + weights.normal(name, (size,), 0.02))

    writer.add_tensor(
        "token_embd.weight", weights.levels_f16("token_embd.weight", (n_vocab, n_embd), 1.0)
    )
    norm("output_norm.weight", n_embd)
    output = weights.levels_f16("output.weight", (n_vocab, n_embd), n_embd**-0.5)
    # Zero rows: special and added tokens get logit 0, below the best ordinary token.
    output[np.asarray(vocab.token_types) != gguf.TokenType.NORMAL] = 0.0
    writer.add_tensor("output.weight", output)

    head_k = preset.ssm_state_size
    key_dim = head_k * preset.ssm_group_count
    value_dim = head_k * preset.ssm_time_step_rank
    conv_dim = 2 * key_dim + value_dim
    n_expert = preset.expert_count
    n_ff = preset.expert_feed_forward_length
    n_ff_shared = preset.expert_shared_feed_forward_length
    q_width = preset.head_count * preset.head_dim
    kv_width = preset.head_count_kv * preset.head_dim

    for layer in range(preset.block_count):
        blk = f"blk.{layer}"
        norm(f"{blk}.attn_norm.weight", n_embd)
        norm(f"{blk}.post_attention_norm.weight", n_embd)
        if (layer + 1) % preset.full_attention_interval == 0:
            matrix(f"{blk}.attn_q.weight", 2 * q_width, n_embd)  # query and gate
            matrix(f"{blk}.attn_k.weight", kv_width, n_embd)
            matrix(f"{blk}.attn_v.weight", kv_width, n_embd)
            matrix(f"{blk}.attn_output.weight", n_embd, q_width)
            norm(f"{blk}.attn_q_norm.weight", preset.head_dim)
            norm(f"{blk}.attn_k_norm.weight", preset.head_dim)
        else:
            matrix(f"{blk}.attn_qkv.weight", conv_dim, n_embd)
            matrix(f"{blk}.attn_gate.weight", value_dim, n_embd)
            conv = f"{blk}.ssm_conv1d.weight"
            writer.add_tensor(conv, weights.normal(conv, (conv_dim, preset.ssm_conv_kernel), 0.5))
            # Like the real initialisation: per-head decay rates A in [1, 16] and step sizes
            # dt in [1e-3, 1e-1] (stored as softplus^-1), from long to short memory.
            dt_name = f"{blk}.ssm_dt.bias"
            step = np.exp(
                weights.uniform(dt_name, (preset.ssm_time_step_rank,), np.log(1e-3), np.log(1e-1))
            )
            writer.add_tensor(dt_name, np.log(np.expm1(step)).astype(np.float32))
            a_name = f"{blk}.ssm_a"
            writer.add_tensor(
                a_name, -weights.uniform(a_name, (preset.ssm_time_step_rank,), 1.0, 16.0)
            )
            matrix(f"{blk}.ssm_ba.weight", 2 * preset.ssm_time_step_rank, n_embd)
            norm(f"{blk}.ssm_norm.weight", head_k)
            matrix(f"{blk}.ssm_out.weight", n_embd, value_dim)
        f32_matrix(f"{blk}.ffn_gate_inp.weight", n_expert, n_embd)
        matrix(f"{blk}.ffn_gate_exps.weight", n_expert, n_ff, n_embd)
        matrix(f"{blk}.ffn_up_exps.weight", n_expert, n_ff, n_embd)
        matrix(f"{blk}.ffn_down_exps.weight", n_expert, n_embd, n_ff)
        f32_matrix(f"{blk}.ffn_gate_inp_shexp.weight", n_embd)
        matrix(f"{blk}.ffn_gate_shexp.weight", n_ff_shared, n_embd)
        matrix(f"{blk}.ffn_up_shexp.weight", n_ff_shared, n_embd)
        matrix(f"{blk}.ffn_down_shexp.weight", n_embd, n_ff_shared)


def write_test_model(path: str | Path, preset: PresetName = "tiny", seed: int = 0) -> Path:
    """Write a random-weight qwen3next GGUF to `path` (replaced atomically) and return it."""
    if preset not in PRESETS:
        raise ValueError(f"unknown test model preset {preset!r} (known: {', '.join(PRESETS)})")
    if seed < 0:
        raise ValueError(f"test model seed must be >= 0, got {seed}")
    config = PRESETS[preset]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    writer = gguf.GGUFWriter(partial, ARCH)
    try:
        _add_hyperparameters(writer, config)
        vocab = _build_vocabulary()
        _add_tokenizer(writer, vocab)
        _add_tensors(writer, config, vocab, seed)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(partial, target)
    finally:
        writer.close()
        partial.unlink(missing_ok=True)
    return target
