"""Write a random-weight `qwen3next` GGUF (see engine.testing)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

from engine.testing.presets import PRESETS, ModelPreset, PresetName
from engine.testing.vocab import Vocabulary, build_vocabulary

ARCH = "qwen3next"


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


def _add_tokenizer(writer: gguf.GGUFWriter, vocab: Vocabulary) -> None:
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
    writer: gguf.GGUFWriter, preset: ModelPreset, vocab: Vocabulary, seed: int
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


def write_test_model(
    path: str | Path, preset: PresetName | ModelPreset = "tiny", seed: int = 0
) -> Path:
    """Write a random-weight qwen3next GGUF to `path` (replaced atomically) and return it;
    `preset` names one of PRESETS, or gives the sizes (tests of unusual geometries)."""
    if isinstance(preset, str) and preset not in PRESETS:
        raise ValueError(f"unknown test model preset {preset!r} (known: {', '.join(PRESETS)})")
    if seed < 0:
        raise ValueError(f"test model seed must be >= 0, got {seed}")
    config = preset if isinstance(preset, ModelPreset) else PRESETS[preset]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    writer = gguf.GGUFWriter(partial, ARCH)
    try:
        _add_hyperparameters(writer, config)
        vocab = build_vocabulary()
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


def cached_test_model(path: str | Path, preset: PresetName = "small", seed: int = 0) -> Path:
    """`path`, written by `write_test_model` unless it exists already (benchmarks' default)."""
    target = Path(path)
    return target if target.exists() else write_test_model(target, preset, seed)
