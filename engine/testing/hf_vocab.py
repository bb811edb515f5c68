"""A test model's vocabulary taken from a Hugging Face `tokenizer.json` of the Qwen2/Qwen3 family.

The GGUF then tokenizes as the real model does: the same token ids, the same counts. Only what
llama.cpp's `gpt2` tokenizer with the `qwen2` pre-tokenizer reproduces is accepted (a byte-level
BPE whose pre-tokenizer is Qwen2's split regex); anything else is refused with the reason, since
a GGUF that silently tokenizes differently from its `tokenizer.json` would make every count in
the tests and benchmarks wrong.

Token types follow what the real model's GGUF carries: vocabulary entries are NORMAL; added
tokens are CONTROL when marked special or spelled like `<|...|>` (the FIM, repository and chat
tokens), otherwise USER_DEFINED (`<tool_call>`, `<think>`: always one token, rendered as text).
Ids missing from both lists are UNUSED padding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf

from engine.testing.vocab import Vocabulary

# Qwen2's pre-tokenizer regex exactly as its tokenizer.json spells it; llama.cpp's `qwen2`
# pre-tokenizer implements this one (unicode.cpp, unicode_regex_split_custom_qwen2).
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


class TokenizerFileError(ValueError):
    """The tokenizer files are missing, unreadable, or of a kind llama.cpp would not reproduce."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TokenizerFileError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerFileError(f"{path}: not a readable JSON file ({exc})") from exc


def _check_pre_tokenizer(path: Path, spec: Any) -> None:
    steps = spec.get("pretokenizers", []) if isinstance(spec, dict) else []
    if isinstance(spec, dict) and spec.get("type") != "Sequence":
        steps = [spec]
    splits = [s for s in steps if isinstance(s, dict) and s.get("type") == "Split"]
    byte_level = [s for s in steps if isinstance(s, dict) and s.get("type") == "ByteLevel"]
    pattern = splits[0].get("pattern", {}).get("Regex") if len(splits) == 1 else None
    if pattern != QWEN2_SPLIT_REGEX or len(byte_level) != 1 or len(steps) != 2:
        raise TokenizerFileError(
            f"{path}: the pre-tokenizer is not Qwen2's (a Split on its regex, then ByteLevel); "
            "only the Qwen2/Qwen3 family is supported, since llama.cpp's `qwen2` pre-tokenizer "
            "would split this text differently"
        )


def _merge_text(merge: Any) -> str:
    # tokenizers >= 0.20 writes merges as pairs, older versions as "left right" strings.
    if isinstance(merge, list) and len(merge) == 2:
        return f"{merge[0]} {merge[1]}"
    if isinstance(merge, str) and merge.count(" ") == 1:
        return merge
    raise TokenizerFileError(f"unexpected BPE merge {merge!r}")


def _token_name(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if isinstance(value, dict):  # AddedToken serialised as an object
        value = value.get("content")
    return value if isinstance(value, str) else None


def load_hf_vocabulary(tokenizer_json: str | Path) -> Vocabulary:
    """The vocabulary of `tokenizer.json` (and the special tokens of the `tokenizer_config.json`
    beside it, when there is one)."""
    path = Path(tokenizer_json)
    data = _read_json(path)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise TokenizerFileError(f"{path}: not a BPE tokenizer.json")
    if model.get("byte_fallback") or data.get("decoder", {}).get("type") != "ByteLevel":
        raise TokenizerFileError(f"{path}: not a byte-level BPE (llama.cpp's `gpt2` model)")
    _check_pre_tokenizer(path, data.get("pre_tokenizer"))

    vocab: dict[str, int] = model.get("vocab") or {}
    added: list[dict[str, Any]] = data.get("added_tokens") or []
    size = 1 + max([*vocab.values(), *(int(t["id"]) for t in added)], default=-1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(gguf.TokenType.UNUSED)] * size
    for text, token_id in vocab.items():
        tokens[token_id] = text
        types[token_id] = int(gguf.TokenType.NORMAL)
    for token in added:
        text, token_id = str(token["content"]), int(token["id"])
        control = bool(token.get("special")) or (text.startswith("<|") and text.endswith("|>"))
        tokens[token_id] = text
        types[token_id] = int(gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED)
    try:
        merges = [_merge_text(m) for m in model.get("merges") or []]
    except TokenizerFileError as exc:
        raise TokenizerFileError(f"{path}: {exc}") from None
    if not merges:
        raise TokenizerFileError(f"{path}: the BPE has no merges (llama.cpp refuses to load it)")

    config_path = path.with_name("tokenizer_config.json")
    config: dict[str, Any] = _read_json(config_path) if config_path.is_file() else {}
    names = set(tokens)
    eos = _token_name(config, "eos_token") or "<|endoftext|>"
    pad = _token_name(config, "pad_token") or eos
    bos = _token_name(config, "bos_token") or "<|endoftext|>"
    for role, name in (("eos", eos), ("pad", pad), ("bos", bos)):
        if name not in names:
            raise TokenizerFileError(f"{path}: the {role} token {name!r} is not in the vocabulary")
    return Vocabulary(
        tokens=tokens,
        token_types=types,
        merges=merges,
        eos=eos,
        pad=pad,
        bos=bos,
        add_bos=bool(config.get("add_bos_token", False)),
    )
