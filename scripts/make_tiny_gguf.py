#!/usr/bin/env python3
"""Write council-tiny, a tiny llama-architecture GGUF model with random weights.

The model exists so that tests can talk to a real OpenAI-compatible server
(llama.cpp's own server, from the prebuilt xllamacpp wheel) on a CPU in
seconds. Its weights are random, drawn from a fixed seed, so its output is
babble, but it runs every part of the server for real: tokenizer, chat
template, sampling, schema-constrained (JSON schema) output, streaming,
parallel slots, prompt caching.

The tokenizer is a real one: every tokenizer.* key is copied from a
vocab-only GGUF that llama.cpp ships for its own tokenizer tests
(models/ggml-vocab-gpt-2.gguf, GPT-2's 50257-token byte-level BPE). A
byte-level BPE vocabulary, because llama.cpp's structured-output engine
(LLGuidance) cannot build its token trie from the SentencePiece test vocab
("Failed to initialize samplers"). Nothing is downloaded from a model hub.

Random weights alone make a model that a JSON schema cannot stop: it pads
JSON with whitespace until max_tokens, and it splits multi-byte characters
across tokens into invalid UTF-8, which the server's output parser rejects
(HTTP 500). So one dimension of the residual stream is a constant "bias
channel" (the same value in every token embedding, never written by a
layer), and the output projection reads it as a per-token logit bias:
tokens that are only whitespace, hold control characters or are not valid
UTF-8 on their own are all but never sampled; tokens that close a string,
an array or an object are favoured a little, so strings and lists end after
a few tokens. Free text stays babble.

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

# The bias channel: residual dimension BIAS_DIM carries BIAS_VALUE in every
# position. The output projection's column BIAS_DIM then adds, per token,
# about weight * BIAS_VALUE / rms(residual) (about 0.8 * weight) to its logit.
BIAS_DIM = 0
BIAS_VALUE = 1.0
BANNED_WEIGHT = -60.0  # whitespace-only, control characters, broken UTF-8
CLOSER_WEIGHT = 3.0  # tokens that start with '"', ']' or '}'

ROPE_BASE = 10000.0

# A chat template in the form llama.cpp's server renders (Jinja, with
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


def gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def token_biases(vocab_path: str, n_vocab: int) -> np.ndarray:
    """The output weight of the bias channel for every token (see the module doc)."""
    reader = gguf.GGUFReader(vocab_path)
    model = reader.fields["tokenizer.ggml.model"].contents()
    if model != "gpt2":
        raise SystemExit(f"{vocab_path}: tokenizer {model!r}, want a byte-level BPE ('gpt2') vocabulary")
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    decoder = gpt2_byte_decoder()
    bias = np.zeros(n_vocab, dtype=np.float32)
    for i, (tok, typ) in enumerate(zip(tokens, types)):
        if typ != gguf.TokenType.NORMAL:
            continue  # control tokens (end of text) keep a neutral bias
        try:
            text = bytes(decoder[c] for c in tok).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            bias[i] = BANNED_WEIGHT
            continue
        if text.strip() == "" or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            bias[i] = BANNED_WEIGHT
        elif text[0] in '"]}':
            bias[i] = CLOSER_WEIGHT
    return bias


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
    embd = weight(n_vocab, N_EMBD, 1.0)
    embd[:, BIAS_DIM] = BIAS_VALUE
    writer.add_tensor("token_embd.weight", embd)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        # Layers read the bias channel but never write it (rows BIAS_DIM of
        # the projections into the residual stream are zero).
        attn_out = weight(N_EMBD, N_EMBD, N_EMBD ** -0.5)
        attn_out[BIAS_DIM, :] = 0
        ffn_down = weight(N_EMBD, N_FF, N_FF ** -0.5)
        ffn_down[BIAS_DIM, :] = 0
        writer.add_tensor(p + "attn_norm.weight", ones(N_EMBD))
        writer.add_tensor(p + "attn_q.weight", weight(N_EMBD, N_EMBD, N_EMBD ** -0.5))
        writer.add_tensor(p + "attn_k.weight", weight(n_embd_kv, N_EMBD, N_EMBD ** -0.5))
        writer.add_tensor(p + "attn_v.weight", weight(n_embd_kv, N_EMBD, N_EMBD ** -0.5))
        writer.add_tensor(p + "attn_output.weight", attn_out)
        writer.add_tensor(p + "ffn_norm.weight", ones(N_EMBD))
        writer.add_tensor(p + "ffn_gate.weight", weight(N_FF, N_EMBD, N_EMBD ** -0.5))
        writer.add_tensor(p + "ffn_up.weight", weight(N_FF, N_EMBD, N_EMBD ** -0.5))
        writer.add_tensor(p + "ffn_down.weight", ffn_down)
    writer.add_tensor("output_norm.weight", ones(N_EMBD))
    out = weight(n_vocab, N_EMBD, N_EMBD ** -0.5)
    out[:, BIAS_DIM] = token_biases(args.vocab, n_vocab)
    writer.add_tensor("output.weight", out)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
