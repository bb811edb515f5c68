"""Random-weight `qwen3next` GGUF models for tests, benchmarks and `qcn-lsp make-test-model`.

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

from engine.testing.writer import cached_test_model, write_test_model

__all__ = ["cached_test_model", "write_test_model"]
