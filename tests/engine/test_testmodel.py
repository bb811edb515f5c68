"""The generated random-weight qwen3next models: file contents, loading, tokenizer, generation."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.formats import fim_prompt, is_safe_cut
from engine.testing import write_test_model
from engine.testing.presets import PRESETS
from engine.testing.vocab import CONTROL_TOKENS, USER_DEFINED_TOKENS

FIM_PROMPT = (
    "<|repo_name|>demo\n<|file_sep|>calc.py\n<|fim_prefix|>def add(a, b):\n    return "
    "<|fim_suffix|>\n\nprint(add(1, 2))\n<|fim_middle|>"
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_model(tmp_path_factory.mktemp("testmodel") / "tiny.gguf")


@pytest.fixture(scope="module")
def llm(tiny_path: Path) -> Iterator[llama_cpp.Llama]:
    model = llama_cpp.Llama(model_path=str(tiny_path), n_ctx=1024, n_threads=1, verbose=False)
    yield model
    model.close()


def _tokenize(llm: llama_cpp.Llama, text: str, *, special: bool = True) -> list[int]:
    return llm.tokenize(text.encode(), add_bos=False, special=special)


def _last_logits(llm: llama_cpp.Llama, tokens: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(tokens)
    logits = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(logits, shape=(llm.n_vocab(),)).copy()


def test_same_seed_gives_the_same_file_and_another_seed_other_weights(
    tiny_path: Path, tmp_path: Path
) -> None:
    again = write_test_model(tmp_path / "again.gguf", preset="tiny", seed=0)
    other = write_test_model(tmp_path / "other.gguf", preset="tiny", seed=1)
    assert _digest(again) == _digest(tiny_path)
    assert _digest(other) != _digest(tiny_path)
    assert other.stat().st_size == tiny_path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.gguf", "other.gguf"]


def test_unknown_preset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown test model preset"):
        write_test_model(tmp_path / "x.gguf", preset="huge")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_file_has_the_qwen3next_layer_pattern(tiny_path: Path) -> None:
    reader = gguf.GGUFReader(tiny_path)
    preset = PRESETS["tiny"]
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    assert arch is not None
    assert arch.contents() == "qwen3next"
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    for layer in range(preset.block_count):
        attention = f"blk.{layer}.attn_q.weight" in tensors
        deltanet = f"blk.{layer}.ssm_a" in tensors
        assert attention != deltanet
        assert attention == ((layer + 1) % preset.full_attention_interval == 0)
        assert f"blk.{layer}.ffn_gate_exps.weight" in tensors
        assert f"blk.{layer}.ffn_gate_inp_shexp.weight" in tensors
        if deltanet:
            assert (np.asarray(tensors[f"blk.{layer}.ssm_a"].data) < 0).all()
    tokens = reader.get_field(gguf.Keys.Tokenizer.LIST)
    assert tokens is not None
    assert tokens.contents()[-len(CONTROL_TOKENS) - len(USER_DEFINED_TOKENS) :] == [
        *CONTROL_TOKENS,
        *USER_DEFINED_TOKENS,
    ]


def test_llama_cpp_loads_it_as_a_hybrid_model(llm: llama_cpp.Llama) -> None:
    assert llama_cpp.llama_model_is_hybrid(llm.model)
    assert llama_cpp.llama_model_n_ctx_train(llm.model) == PRESETS["tiny"].context_length


def test_special_tokens_are_single_tokens(llm: llama_cpp.Llama) -> None:
    vocab = llm._model.vocab
    fim_prefix = llama_cpp.llama_vocab_fim_pre(vocab)
    fim_suffix = llama_cpp.llama_vocab_fim_suf(vocab)
    tokens = _tokenize(llm, "<|fim_prefix|>def f():<|fim_suffix|>")
    assert tokens[0] == fim_prefix
    assert tokens[-1] == fim_suffix
    assert len(tokens) < 2 + len("def f():")
    for text in CONTROL_TOKENS:
        [token] = _tokenize(llm, text)
        assert llm.detokenize([token], special=True) == text.encode()
        assert llm.detokenize([token]) == b""
    # Tool-call tags are added tokens, as in the real model: one token, rendered as text.
    for text in USER_DEFINED_TOKENS:
        [token] = _tokenize(llm, text, special=False)
        assert llm.detokenize([token]) == text.encode()
    assert llm.token_eos() == _tokenize(llm, "<|endoftext|>")[0]
    assert llama_cpp.llama_vocab_is_eog(vocab, _tokenize(llm, "<|file_sep|>")[0])


def test_code_takes_fewer_tokens_than_bytes(llm: llama_cpp.Llama) -> None:
    code = Path(__file__).read_text(encoding="utf-8")
    tokens = _tokenize(llm, code, special=False)
    assert len(tokens) < 0.75 * len(code.encode())
    assert llm.detokenize(tokens).decode() == code


def test_logits_are_finite_and_depend_on_early_context(llm: llama_cpp.Llama) -> None:
    prompt = _tokenize(llm, FIM_PROMPT * 3)
    logits = _last_logits(llm, prompt)
    assert np.isfinite(logits).all()
    assert logits.std() > 0.1
    changed = _last_logits(llm, [prompt[1], *prompt[1:]])
    assert np.abs(changed - logits).max() > 1e-3


def test_greedy_generation_is_repeatable_and_does_not_stop(llm: llama_cpp.Llama) -> None:
    prompt = _tokenize(llm, FIM_PROMPT)

    def greedy(count: int) -> list[int]:
        llm.reset()
        generated: list[int] = []
        for token in llm.generate(prompt, temp=0.0):
            generated.append(token)
            if len(generated) == count:
                break
        return generated

    first = greedy(8)
    assert len(first) == 8
    assert not any(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) for token in first)
    assert greedy(8) == first


def test_the_header_reader_agrees_with_the_gguf_package(tiny_path: Path) -> None:
    from engine.gguf_info import read_gguf_info

    info = read_gguf_info(tiny_path)
    reader = gguf.GGUFReader(tiny_path)
    expected = {t.name: (int(t.data_offset), int(t.n_bytes)) for t in reader.tensors}
    assert {t.name: (t.offset, t.n_bytes) for t in info.tensors} == expected
    assert info.tensors_end == tiny_path.stat().st_size
    assert info.fim_tokens and info.architecture == "qwen3next"
    preset = PRESETS["tiny"]
    experts = {t.name for t in info.tensors if t.expert}
    assert experts == {name for name in expected if "_exps." in name}
    assert len(experts) == 3 * preset.block_count


def test_the_geometry_preset_has_the_real_models_state_sizes(tmp_path: Path) -> None:
    """Qwen3-Coder-Next: a recurrent checkpoint of 75.4 MiB, 24 KiB of attention KV a token."""
    from engine.gguf_info import read_gguf_info
    from engine.host import PARTIAL_ONLY, LlamaSession, LoadedModel

    path = write_test_model(tmp_path / "geometry.gguf", preset="geometry")
    info = read_gguf_info(path)
    assert (info.block_count, info.recurrent_layers, info.attention_layers) == (48, 36, 12)
    # 36 DeltaNet layers x (3 x 8,192 conv + 32 heads x 128 x 128 state) f32
    assert info.recurrent_state_bytes == 36 * (3 * 8192 + 32 * 128 * 128) * 4 == 79_036_416
    assert info.kv_bytes_per_token == 12 * 2 * (256 + 256) * 2 == 24 * 1024
    model = LoadedModel(path)
    # One thread: 48 layers are ~1,500 graph nodes, each a barrier for a thread pool, and a
    # busy machine makes every barrier wait for a time slice.
    session = LlamaSession(model, n_ctx=256, n_batch=32, n_threads=1)
    try:
        tokens = list(model.tokenize("def area(w, h):\n    return w * h\n" * 16))[:32]
        assert len(tokens) == 32

        def sizes() -> tuple[int, int]:
            partial = llama_cpp.llama_state_seq_get_size_ext(session.ctx, 0, PARTIAL_ONLY)
            return partial, llama_cpp.llama_state_seq_get_size_ext(session.ctx, 0, 0)

        session.decode(tokens[:16], 0, logits_last=False)
        partial_16, full_16 = sizes()
        session.decode(tokens[16:], 16, logits_last=True)
        partial_32, full_32 = sizes()
    finally:
        session.close()
        model.close()
    # The partial state is the recurrent state (+ a few hundred bytes of headers): 75.4 MiB.
    assert partial_16 == partial_32
    assert 0 <= partial_32 - info.recurrent_state_bytes < 4096
    assert round(partial_32 / 2**20, 1) == 75.4
    # Each token adds its K and V rows (+ 12 bytes of cell position and sequence ids).
    per_token = (full_32 - full_16) / 16
    assert info.kv_bytes_per_token <= per_token < info.kv_bytes_per_token + 32


# Text with what decides where pre-tokens end: letters, digits, punctuation, blanks of every
# kind (Unicode ones too) and line ends of every kind.
_CUT_ALPHABET = "ab_Zé字1 \t\n\n\n\r\x0b\x0c\x85\u00a0\u2003\u3000.:(){}'\"#"


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=_CUT_ALPHABET, max_size=60))
def test_tokens_of_the_pieces_at_safe_cuts_are_the_tokens_of_the_whole(
    llm: llama_cpp.Llama, text: str
) -> None:
    """The property the completion prompt's layout rests on (engine.formats.is_safe_cut), for
    the tokenizer the test models ship."""
    whole = _tokenize(llm, text)
    for at in range(1, len(text)):
        if is_safe_cut(text, at):
            assert _tokenize(llm, text[:at]) + _tokenize(llm, text[at:]) == whole, at


def test_a_completion_prompt_has_the_tokens_of_its_whole_text(llm: llama_cpp.Llama) -> None:
    source = Path(__file__).read_text()
    for cursor in range(0, len(source), 997):
        prompt = fim_prompt("r", [], "t.py", source[:cursor], source[cursor:], chunk_chars=300)
        pieces = [t for s in prompt.segments for t in _tokenize(llm, s.text)]
        assert pieces == _tokenize(llm, prompt.text)
