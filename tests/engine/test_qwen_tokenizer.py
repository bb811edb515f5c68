"""A test model with Qwen's real vocabulary tokenizes as the real model does.

llama.cpp's tokenization (what the engine uses) is compared with the `tokenizers` library's on
the same `tokenizer.json`, token for token. One known difference is left out on purpose:
Qwen's tokenizer.json normalizes text to NFC and llama.cpp does not normalize at all (neither
does it for the real Qwen3-Coder-Next GGUF), so generated text is NFC-normalized before the
comparison; `test_llama_cpp_does_not_normalize_to_nfc` pins that difference.
"""

from __future__ import annotations

import shutil
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tokenizers
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.config import EngineConfig
from engine.formats import FIM_STOPS, fim_prompt, is_safe_cut
from engine.gguf_info import read_gguf_info
from engine.host import LoadedModel
from engine.local import LocalEngine
from engine.params import GenerationParams

REPO_ROOT = Path(__file__).resolve().parents[2]
POLY = REPO_ROOT / "tests" / "fixtures" / "repos" / "poly"

# Token ids of the Qwen2.5/Qwen3 vocabulary (Qwen3-Coder-Next's GGUF carries the same).
QWEN_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<tool_call>": 151657,
    "</tool_call>": 151658,
    "<|fim_prefix|>": 151659,
    "<|fim_middle|>": 151660,
    "<|fim_suffix|>": 151661,
    "<|fim_pad|>": 151662,
    "<|repo_name|>": 151663,
    "<|file_sep|>": 151664,
    "<tool_response>": 151665,
    "</tool_response>": 151666,
}
# Qwen's README (QwenLM/Qwen3-Coder) for fill-in-the-middle: stop on these ids.
QWEN_FIM_STOP_IDS = (151659, 151661, 151662, 151663, 151664, 151643, 151645)


@pytest.fixture(scope="module")
def qwen_model(qwen_tiny_model: Path) -> Iterator[LoadedModel]:
    model = LoadedModel(qwen_tiny_model)
    yield model
    model.close()


@pytest.fixture(scope="module")
def reference(qwen_tokenizer_json: Path) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer.from_file(str(qwen_tokenizer_json))


def _hf_ids(reference: tokenizers.Tokenizer, text: str) -> list[int]:
    return list(reference.encode(text, add_special_tokens=False).ids)


def _real_sources() -> list[Path]:
    files = sorted(p for p in POLY.rglob("*") if p.is_file())
    files += sorted((REPO_ROOT / "engine").glob("*.py"))
    return files


@pytest.mark.parametrize("path", _real_sources(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_real_source_files_tokenize_as_the_tokenizers_library_does(
    qwen_model: LoadedModel, reference: tokenizers.Tokenizer, path: Path
) -> None:
    text = path.read_text(encoding="utf-8")
    assert unicodedata.is_normalized("NFC", text)
    assert list(qwen_model.tokenize(text)) == _hf_ids(reference, text)


SPECIAL_STRINGS = [*QWEN_IDS, "<think>", "</think>", "<|vision_pad|>"]
_code_piece = st.one_of(
    st.sampled_from(
        ["def", "return", "class", "self", "import", "if", "else", "for", "while", "None"]
    ),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
    st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(list("()[]{}:;,.=+-*/%<>!&|^~@#\"'`\\?$")),
    st.sampled_from(["'s", "'T", "'re", "'ll", "'D", "->", "=>", "::", "==", "!=", "**", "//"]),
    # whitespace runs: indentation, blank lines with trailing spaces, CRLF, tabs, form feeds
    st.from_regex(r"[ \t]{1,9}", fullmatch=True),
    st.from_regex(r"(\r?\n){1,3}[ \t]{0,8}", fullmatch=True),
    st.sampled_from(["\u00a0", "\u3000", "\x0b", "\x0c", "\u2028", "\x85"]),
    st.sampled_from(SPECIAL_STRINGS),
    # letters, marks, digits, punctuation and symbols from the whole of Unicode
    st.text(
        st.characters(categories=["L", "M", "N", "P", "S", "Zs"]),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["é", "ß", "Ж", "中文", "日本語", "한국어", "😀", "👍🏽", "∑", "→", "\u2115"]),
)
code_like_text = st.lists(_code_piece, min_size=1, max_size=40).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=code_like_text)
def test_code_like_text_tokenizes_as_the_tokenizers_library_does(
    qwen_model: LoadedModel, reference: tokenizers.Tokenizer, text: str
) -> None:
    text = unicodedata.normalize("NFC", text)
    assert list(qwen_model.tokenize(text)) == _hf_ids(reference, text)


def test_llama_cpp_does_not_normalize_to_nfc(
    qwen_model: LoadedModel, reference: tokenizers.Tokenizer
) -> None:
    decomposed = "cafe\u0301 = 1\n"  # "café" with a combining acute accent
    assert _hf_ids(reference, decomposed) == _hf_ids(reference, "caf\u00e9 = 1\n")
    assert list(qwen_model.tokenize(decomposed)) != _hf_ids(reference, decomposed)


def test_fim_repo_and_tool_tokens_are_single_tokens_with_qwens_ids(
    qwen_model: LoadedModel,
) -> None:
    assert qwen_model.n_vocab == 151669
    for text, token_id in QWEN_IDS.items():
        assert list(qwen_model.tokenize(text)) == [token_id], text
        assert qwen_model.piece(token_id) == text.encode()
    assert not qwen_model.add_bos
    prompt = "<|repo_name|>r\n<|file_sep|>a.py\n<|fim_prefix|>x = <|fim_suffix|>\n<|fim_middle|>"
    tokens = list(qwen_model.tokenize(prompt))
    assert [t for t in tokens if t >= 151643] == [151663, 151664, 151659, 151661, 151660]


def test_control_and_added_tokens_have_the_real_models_types(qwen_tiny_model: Path) -> None:
    import llama_cpp

    model = LoadedModel(qwen_tiny_model)
    try:
        for text in ["<|fim_prefix|>", "<|file_sep|>", "<|im_end|>", "<|endoftext|>"]:
            attr = llama_cpp.llama_vocab_get_attr(model.vocab, QWEN_IDS[text])
            assert attr & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL, text
        for text in ["<tool_call>", "</tool_call>", "<tool_response>"]:
            attr = llama_cpp.llama_vocab_get_attr(model.vocab, QWEN_IDS[text])
            assert attr & llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED, text
    finally:
        model.close()


def _emitting(source: Path, target: Path, token_id: int) -> Path:
    """A copy of `source` whose greedy choice is always `token_id`.

    Every output row is zero but `token_id`'s, which reads hidden dimension 0; that dimension
    of every token embedding is made large and positive, so after the final RMS norm it stays
    positive at every position and `token_id` has the only positive logit.
    """
    shutil.copyfile(source, target)
    tensors = {t.name: t for t in read_gguf_info(target).tensors}
    n_vocab = 151669

    def view(name: str) -> np.memmap:
        info = tensors[name]
        shape = (n_vocab, info.n_bytes // 2 // n_vocab)
        return np.memmap(target, dtype=np.float16, mode="r+", offset=info.offset, shape=shape)

    embedding = view("token_embd.weight")
    embedding[:, 0] = 64.0
    embedding.flush()
    output = view("output.weight")
    output[:] = 0.0
    output[token_id, 0] = 1.0
    output.flush()
    del embedding, output
    return target


async def test_the_engine_stops_on_qwens_fim_stop_ids(
    qwen_tiny_model: Path, tmp_path: Path
) -> None:
    prompt = fim_prompt(
        "demo", [("util.py", "def one():\n    return 1\n")], "main.py", "x = ", "\n"
    )
    params = GenerationParams(max_tokens=8, stop=FIM_STOPS)
    for token_id in QWEN_FIM_STOP_IDS:
        path = _emitting(qwen_tiny_model, tmp_path / f"emits-{token_id}.gguf", token_id)
        engine = LocalEngine(EngineConfig(model_path=path, n_ctx=1024, n_threads=2))
        await engine.start()
        try:
            gen = engine.stream(prompt, params)
            assert await gen.text() == "", token_id
            assert gen.token_ids in ([], [token_id]), token_id
        finally:
            await engine.close()
        path.unlink()
    # The same model made to emit an ordinary token does not stop: the stop is the token's.
    path = _emitting(qwen_tiny_model, tmp_path / "emits-x.gguf", 87)  # "x"
    engine = LocalEngine(EngineConfig(model_path=path, n_ctx=1024, n_threads=2))
    await engine.start()
    try:
        assert await engine.stream(prompt, params).text() == "x" * 8
    finally:
        await engine.close()


# -- safe cuts ------------------------------------------------------------------------------

_line = st.lists(_code_piece, max_size=12).map("".join)
_lines = st.lists(_line, min_size=1, max_size=8).map("\n".join)


@pytest.fixture(scope="module", params=["qwen", "bytes"])
def vocabulary(request: pytest.FixtureRequest) -> Iterator[LoadedModel]:
    """The engine's tokenizer with Qwen's vocabulary and with the byte-level test one."""
    fixture = "qwen_tiny_model" if request.param == "qwen" else "tiny_model"
    model = LoadedModel(request.getfixturevalue(fixture))
    yield model
    model.close()


@settings(max_examples=200, deadline=None)
@given(a=_lines.map(lambda text: text + "\n"), b=_lines)
def test_a_cut_at_a_line_start_is_safe(vocabulary: LoadedModel, a: str, b: str) -> None:
    # engine.formats.is_safe_cut: the rule the completion prompt's chunks are cut by.
    assume(is_safe_cut(a + b, len(a)))
    whole = list(vocabulary.tokenize(a + b))
    assert whole == list(vocabulary.tokenize(a)) + list(vocabulary.tokenize(b))


def test_a_cut_before_a_blank_line_with_spaces_is_not_safe(qwen_model: LoadedModel) -> None:
    a, b = "x = 1\n", "    \ny = 2\n"
    # the `qwen2` pre-tokenizer's `\s*[\r\n]+` takes a blank line's indentation together with
    # the line breaks around it: "\n    \n" is one pre-token whole and two when cut.
    assert not b.startswith(("\r", "\n")) and not is_safe_cut(a + b, len(a))
    whole, cut = qwen_model.tokenize(a + b), [*qwen_model.tokenize(a), *qwen_model.tokenize(b)]
    assert list(whole) != cut
    assert b"\n    \n" in [qwen_model.piece(token) for token in whole]
