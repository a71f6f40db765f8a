#!/usr/bin/env python3
"""Write council-tiny, a tiny llama-architecture GGUF model with random weights.

The model exists so that tests can talk to a real OpenAI-compatible server
(llama.cpp through llama-cpp-python) on a CPU in seconds. Its weights are
random, drawn from a fixed seed, so its output is babble, but it runs every
part of the server for real: tokenizer, chat template, sampling, grammar
constrained (JSON schema) output, streaming.

The tokenizer is a real one: every tokenizer.* key is copied from the
vocab-only GGUF that llama.cpp ships for its own tokenizer tests
(models/ggml-vocab-llama-spm.gguf, a 32000-token SentencePiece vocabulary).
Nothing is downloaded from a model hub.

The output is deterministic: the same vocabulary file, seed and gguf/numpy
versions give a byte-identical file.

Usage: make_tiny_gguf.py --vocab VOCAB.gguf --out MODEL.gguf [--seed N]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import gguf

ARCH = "llama"
NAME = "council-tiny"

# Shape of the model. Small enough to generate hundreds of tokens a second on
# one CPU core, with a context long enough for council's prompts (1-2k
# tokens; a critique prompt carries every proposal) plus the completion. The
# KV cache of 8192 positions is 4 MiB.
N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 4
N_FF = 128
N_CTX = 8192
RMS_EPS = 1e-5
ROPE_BASE = 10000.0

# A chat template in the form llama-cpp-python renders (Jinja2, with
# bos_token/eos_token and add_generation_prompt). It has to add the BOS token
# itself: the server does not add one to a rendered chat prompt.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def copy_tokenizer(vocab_path: str, writer: gguf.GGUFWriter) -> int:
    """Copy every tokenizer.* key of vocab_path into writer; return the vocabulary size."""
    reader = gguf.GGUFReader(vocab_path)
    n_vocab = 0
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        value = field.contents()
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, value, vtype, sub_type=field.types[-1])
            if key == "tokenizer.ggml.tokens":
                n_vocab = len(value)
        else:
            writer.add_key_value(key, value, vtype)
    if n_vocab == 0:
        raise SystemExit(f"{vocab_path}: no tokenizer.ggml.tokens")
    return n_vocab


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", required=True, help="vocab-only GGUF to take the tokenizer from")
    parser.add_argument("--out", required=True, help="where to write the model")
    parser.add_argument("--seed", type=int, default=20240611, help="seed of the random weights")
    args = parser.parse_args()

    tmp = args.out + ".tmp"
    writer = gguf.GGUFWriter(tmp, ARCH)
    writer.add_name(NAME)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_rope_freq_base(ROPE_BASE)

    n_vocab = copy_tokenizer(args.vocab, writer)
    writer.add_vocab_size(n_vocab)
    writer.add_chat_template(CHAT_TEMPLATE)

    # RandomState, not default_rng: its stream is frozen across numpy versions.
    rng = np.random.RandomState(args.seed)

    def weight(rows: int, cols: int, std: float) -> np.ndarray:
        # numpy shape (out, in); GGUF stores it as ggml ne = [in, out].
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    n_embd_kv = N_EMBD // N_HEAD * N_HEAD_KV
    writer.add_tensor("token_embd.weight", weight(n_vocab, N_EMBD, 1.0))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", ones(N_EMBD))
        writer.add_tensor(p + "attn_q.weight", weight(N_EMBD, N_EMBD, N_EMBD ** -0.5))
        writer.add_tensor(p + "attn_k.weight", weight(n_embd_kv, N_EMBD, N_EMBD ** -0.5))
        writer.add_tensor(p + "attn_v.weight", weight(n_embd_kv, N_EMBD, N_EMBD ** -0.5))
        writer.add_tensor(p + "attn_output.weight", weight(N_EMBD, N_EMBD, N_EMBD ** -0.5))
        writer.add_tensor(p + "ffn_norm.weight", ones(N_EMBD))
        writer.add_tensor(p + "ffn_gate.weight", weight(N_FF, N_EMBD, N_EMBD ** -0.5))
        writer.add_tensor(p + "ffn_up.weight", weight(N_FF, N_EMBD, N_EMBD ** -0.5))
        writer.add_tensor(p + "ffn_down.weight", weight(N_EMBD, N_FF, N_FF ** -0.5))
    writer.add_tensor("output_norm.weight", ones(N_EMBD))
    writer.add_tensor("output.weight", weight(n_vocab, N_EMBD, N_EMBD ** -0.5))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
