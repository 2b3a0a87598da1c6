#!/usr/bin/env python3
# Copyright (c) bytelatent contributors. MIT licence.
#
# Writes a golden folder in the layout of shared/golden/tiny (see shared/golden/README.md) by
# running Meta's reference Byte Latent Transformer (github.com/facebookresearch/blt) end to end:
# tokenizer -> entropy model -> Patcher -> ByteLatentTransformer, with forward hooks on every
# sub-module. Any configuration the reference accepts can be written, so that our golden checker
# (tools/golden) can be run on other sizes, depths, heads, hash functions, windows and
# cross-attention options than the shipped tiny one.
#
# This file is OUR code only. The reference is read, unmodified, from a checkout given with
# --reference; what torch 1.13 lacks (xformers, flex_attention, nn.RMSNorm, pydantic v2) is stood in
# by tools/reference-bench/reference_bench.py's install_shims(), imported from there.
#
#   /usr/bin/python3 tools/golden-producer/produce_golden.py --reference /tmp/blt-ref --config tiny --out /tmp/golden-tiny
#   /usr/bin/python3 tools/golden-producer/produce_golden.py --reference /tmp/blt-ref --config variant-a --out .cache/golden-variants/variant-a
#   /usr/bin/python3 tools/golden-producer/produce_golden.py --reference /tmp/blt-ref --config '{"preset": "tiny", "blt_args": {"cross_attn_k": 1}}' --out DIR
#   /usr/bin/python3 tools/golden-producer/produce_golden.py --reference /tmp/blt-ref --config ../shared/golden/tiny/config.json --out DIR
import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Writes a golden folder (layout of shared/golden/tiny) from the reference BLT.")
    p.add_argument("--reference", required=True, help="a checkout of github.com/facebookresearch/blt (commit 9774ed4 was used)")
    p.add_argument(
        "--config",
        required=True,
        help="a preset name (%s), a JSON file, or a JSON string: {preset?, blt_args?, entropy_model_args?, "
        "patcher_args?, seeds?, cases?, threshold_quantile?}; keys override the preset (default tiny)" % ", ".join(PRESETS),
    )
    p.add_argument("--out", required=True, help="output folder (created; existing files of the layout are overwritten)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--compare", metavar="DIR", help="after writing, compare every tensor with those of another golden folder (e.g. ../shared/golden/tiny)")
    p.add_argument(
        "--layout",
        choices=("consolidated", "hub", "transformers"),
        help="write the model into pretrained/ in this published checkpoint layout (bf16 weights) and compute every "
        "vector from the models as the reference's loaders read them back from there (no blt_model/entropy_model.safetensors)",
    )
    p.add_argument(
        "--weights-from",
        metavar="DIR",
        help="load blt_model.safetensors and entropy_model.safetensors from this golden folder instead of the seeded init",
    )
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Configurations. `tiny` is shared/golden/tiny's (its config.json, every field); the variants change
# what the checker must read from config.json instead of assuming.
# ---------------------------------------------------------------------------------------------
TINY_BLT_ARGS = {
    "dim": 64, "n_layers": 2, "head_dim": None, "n_heads": 4, "n_kv_heads": None, "ffn_dim_multiplier": 1.0,
    "multiple_of": 256, "norm_eps": 1e-05, "rope_theta": 500000.0, "rope_use_fp32_in_outer_product": True,
    "init_base_std": None, "init_std_factor": "current_depth", "max_seqlen": 4096, "attn_impl": "xformers",
    "attn_bias_type": "block_causal", "eos_id": 2, "seed": 42, "vocab_size": 260, "weight_tying": False,
    "patch_in_forward": True, "dim_token": None, "dim_global": 64, "dim_local_decoder": 32, "dim_local_encoder": 32,
    "n_layers_global": 2, "n_layers_local_decoder": 2, "n_layers_local_encoder": 1, "patch_size": 4.5,
    "patching_mode": "entropy", "patching_threshold": 5.1, "patching_threshold_add": None, "monotonicity": False,
    "patching_batch_size": 1, "patching_device": "cpu", "max_patch_length": 6, "tie_local_encoder_decoder_logits": False,
    "use_local_encoder_transformer": True, "encoder_lm_loss": False, "max_encoder_seq_length": 24576,
    "pad_to_max_length": True, "encoder_enable_byte_ngrams": False, "encoder_enable_byte_group_hash": False,
    "ngram_vocab_sizes": None, "cross_attn_encoder": True, "cross_attn_decoder": True, "cross_attn_window_encoder": None,
    "cross_attn_window_decoder": None, "cross_attn_k": 2, "cross_attn_nheads": 2, "cross_attn_all_layers_decoder": True,
    "cross_attn_all_layers_encoder": False, "cross_attn_use_flex_attention": True, "cross_attn_init_by_pooling": True,
    "encoder_hash_byte_group_size": [3, 4, 5, 6, 7, 8], "encoder_hash_byte_group_vocab": 1000,
    "encoder_hash_byte_group_nb_functions": 1, "log_patch_lengths": False, "non_linearity": "swiglu", "use_rope": True,
    "recompute_fc1_out": False, "recompute_fc3_out": False, "recompute_attn": False, "custom_bwd": False,
    "layer_ckpt": "none", "init_use_gaussian": True, "init_use_depth": "current", "alpha_depth": "disabled",
    "max_length": 256, "norm_affine": True, "pre_norm": True, "norm_type": "rmsnorm", "dropout": 0.0, "output_size": -1,
    "architecture": "vanilla", "share_encoder_decoder_emb": True, "global_local_decoder_residual_layer": None,
    "tokenize_with_bpe_delimiter": False, "patching_thresholds_str": None, "tie_local_encoder_decoder": False,
    "encoder_preds_low_entropy_toks": None, "encoder_preds_random_toks": None, "dim_token_emb": None,
    "dim_patch_emb": None, "encoder_ngram_table_dir": None, "encoder_ngram_to_size_str": None,
    "entropy_model_checkpoint_dir": None, "entropy_model_is_ngram_model": False, "downsampling_by_pooling": "max",
    "n_heads_global": 4, "n_heads_local_decoder": 2, "n_heads_local_encoder": 2, "n_kv_heads_global": None,
    "conv_kernel_size": None, "local_attention_window_len": 24, "sequence_parallel": False, "loss_parallel": False,
    "fuse_sequence_parallel": False, "use_fsdp": True, "attn_to_keep": "all", "pm_size": 0, "full_logging_n_layers": 4,
}
# The arguments bytelatent.entropy_model.load_entropy_model passes, shrunk (the others take defaults).
TINY_ENTROPY_ARGS = {
    "dim": 32, "n_layers": 2, "n_heads": 2, "max_seqlen": 8192, "ffn_dim_multiplier": 1.0, "vocab_size": 260,
    "attn_bias_type": "local_block_causal", "attn_impl": "xformers", "sliding_window": 16,
}
TINY_CASES = [
    {"name": "ascii", "texts": ["Hello, world! The quick brown fox jumps over the lazy dog. 12345"]},
    {"name": "utf8", "texts": ["Caf\u00e9 d\u00e9j\u00e0 vu: na\u00efve r\u00e9sum\u00e9 \U0001f642\U0001f680 \u65e5\u672c\u8a9e\u30c6\u30ad\u30b9\u30c8 \u2014 ok!"]},
    {"name": "code", "texts": ["def add(a, b):\n    return a + b  # sum\n\nprint(add(2, 3))\t<EOF>"]},
    {"name": "packed_two_docs", "texts": ["First doc.", "Second document, a bit longer!"]},
]
# A row of 3 tokens, whose single usable entropy may well stay under the threshold (no patch start
# beyond the forced ones: the reference's padded start ids), and a row of several short documents.
EXTRA_CASES = [
    {"name": "short", "texts": ["Hi"]},
    {"name": "three_docs", "texts": ["a", "bb", "Third, last: \u00e9t\u00e9 \u2192 fin."]},
]

# Over 256 tokens: our windowed attention then runs block by block (LOCAL_BLOCK = 256), which no
# shorter case reaches. Three documents; prose, code and UTF-8.
LONG_CASE = {
    "name": "long",
    "texts": [
        "The Byte Latent Transformer reads raw bytes. An entropy model decides where each patch ends: "
        "where the next byte is hard to predict, a new patch starts. Easy stretches such as the end of a "
        "long word or a run of spaces          are grouped into long patches, so the large global model "
        "runs less often. 0123456789 -- the quick brown fox jumps over the lazy dog, again and again.",
        "def patch_lengths(entropies, threshold):\n    starts = [0, 1]\n    for i, h in enumerate(entropies[1:], 1):\n"
        "        if h > threshold:\n            starts.append(i + 1)\n    return starts\n",
        "Gr\u00fc\u00dfe aus M\u00fcnchen \u2014 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3082\u3042\u308a\u307e\u3059 \U0001f642 fin.",
    ],
}

PRESETS = {
    "tiny": {"blt_args": TINY_BLT_ARGS, "entropy_model_args": TINY_ENTROPY_ARGS, "cases": TINY_CASES},
    # (a) other widths, depths and heads (head_dim 12 and 16, GQA/MQA), a token projection in the
    # global transformer (k=1: 48 -> 80), 2 hash functions over [3, 5, 7], window 16, cross-attention
    # after every encoder layer but only before the first decoder layer, other FFN sizes, norm_eps,
    # rope_theta; an entropy model with GQA, another window, other FFN, theta; max_patch_length 4.
    "variant-a": {
        "preset": "tiny",
        "blt_args": {
            "dim_local_encoder": 48, "dim_local_decoder": 48, "dim_global": 80,
            "n_layers_local_encoder": 2, "n_layers_global": 3, "n_layers_local_decoder": 2,
            "n_heads_local_encoder": 4, "n_heads_global": 5, "n_heads_local_decoder": 3,
            "n_kv_heads": 1, "n_kv_heads_global": 1, "cross_attn_nheads": 3, "cross_attn_k": 1,
            "cross_attn_all_layers_encoder": True, "cross_attn_all_layers_decoder": False,
            "encoder_hash_byte_group_size": [3, 5, 7], "encoder_hash_byte_group_nb_functions": 2,
            "encoder_hash_byte_group_vocab": 509, "local_attention_window_len": 16,
            "multiple_of": 64, "ffn_dim_multiplier": 1.5, "norm_eps": 1e-6, "rope_theta": 10000.0,
            "patching_threshold": "auto", "max_patch_length": 4, "max_encoder_seq_length": 2048, "max_seqlen": 512,
        },
        "entropy_model_args": {
            "dim": 48, "n_layers": 3, "n_heads": 4, "n_kv_heads": 2, "sliding_window": 8, "rope_theta": 500000.0,
            "multiple_of": 64, "ffn_dim_multiplier": 1.5, "norm_eps": 1e-6,
        },
        "threshold_quantile": 0.7,
        "cases": TINY_CASES + EXTRA_CASES + [LONG_CASE],
    },
    # (b) explicit head_dim 8 (attention width != model width), GQA in the global transformer,
    # k=3 (global input 96 -> 64), cross-attention windows (encoder 2, decoder 3), 2 encoder layers
    # with one cross-attention after the last, 3 decoder layers all cross-attending, a plain causal global mask (no document split), no max_patch_length, the
    # reference's combined patching rule (threshold_add), an entropy model with a plain causal mask.
    "variant-b": {
        "preset": "tiny",
        "blt_args": {
            "head_dim": 8, "n_heads_local_encoder": 2, "n_heads_global": 4, "n_heads_local_decoder": 4,
            "n_kv_heads": 1, "n_kv_heads_global": 2, "cross_attn_nheads": 4, "cross_attn_k": 3,
            "cross_attn_window_encoder": 2, "cross_attn_window_decoder": 3,
            "n_layers_local_encoder": 2, "cross_attn_all_layers_encoder": False,
            "n_layers_local_decoder": 3, "cross_attn_all_layers_decoder": True,
            "attn_bias_type": "causal", "local_attention_window_len": 40, "multiple_of": 32,
            "encoder_hash_byte_group_size": [2, 4], "encoder_hash_byte_group_vocab": 97,
            "patching_threshold": "auto", "patching_threshold_add": 0.01, "max_patch_length": None,
        },
        "entropy_model_args": {
            "dim": 32, "n_layers": 1, "n_heads": 4, "head_dim": 8, "attn_bias_type": "causal", "sliding_window": None,
            "multiple_of": 32,
        },
        "threshold_quantile": 0.5,
        "cases": TINY_CASES + EXTRA_CASES,
    },
    # (c) one width everywhere (32) and k=1: the reference then has neither a global token projection
    # nor a decoder patch projection; the monotonic patching rule; one hash size, 3 functions;
    # pm_size 4 (embedding and output rows beyond the 260 byte tokens).
    "variant-c": {
        "preset": "tiny",
        "blt_args": {
            "dim_local_encoder": 32, "dim_local_decoder": 32, "dim_global": 32, "n_heads_global": 2,
            "cross_attn_k": 1, "cross_attn_nheads": 1, "n_layers_local_decoder": 1,
            "encoder_hash_byte_group_size": [4], "encoder_hash_byte_group_nb_functions": 3,
            "local_attention_window_len": 12, "monotonicity": True, "patching_threshold": "auto", "max_patch_length": 8,
            "pm_size": 4,
        },
        "threshold_quantile": 0.6,
        "cases": TINY_CASES + EXTRA_CASES,
    },
    # (d) no cross-attention at all (the paper's pooling variant): the encoder's byte states are
    # pooled (avg and max, concatenated) into the global transformer, the decoder adds the global
    # state of each byte's patch. Not the released layout.
    "variant-d": {
        "preset": "tiny",
        "blt_args": {
            "cross_attn_encoder": False, "cross_attn_decoder": False, "cross_attn_k": None,
            "downsampling_by_pooling": "avg,max", "patching_threshold": "auto",
        },
        "threshold_quantile": 0.7,
        "cases": TINY_CASES,
    },
    # (e) no hash n-gram tables at all, k=4 (global input 128 -> 64), max_patch_length 2, an entropy
    # model whose mask splits documents but has no window (block_causal).
    "variant-e": {
        "preset": "tiny",
        "blt_args": {
            "encoder_hash_byte_group_size": None, "cross_attn_k": 4, "cross_attn_nheads": 4,
            "patching_threshold": "auto", "max_patch_length": 2,
        },
        "entropy_model_args": {"attn_bias_type": "block_causal", "sliding_window": None},
        "threshold_quantile": 0.5,
        "cases": TINY_CASES + EXTRA_CASES + [LONG_CASE],
    },
    # Small configurations for the checked-in fixtures tools/golden/fixtures/mini-{a,b} (under 500 kB
    # each), each combining several options of the variants above: widths 16, one short case of two
    # documents.
    # mini-a: k=2, windows on both cross-attentions, cross-attention at every local layer, GQA/MQA,
    # head_dim 4, plain causal global and entropy masks, the combined patching rule, 2 hash functions.
    "mini-a": {
        "preset": "tiny",
        "blt_args": {
            "dim_local_encoder": 16, "dim_local_decoder": 16, "dim_global": 24, "head_dim": 4,
            "n_heads_local_encoder": 2, "n_heads_global": 3, "n_heads_local_decoder": 1,
            "n_kv_heads": 1, "n_kv_heads_global": 1,
            "n_layers_local_encoder": 2, "n_layers_global": 1, "n_layers_local_decoder": 2,
            "cross_attn_nheads": 2, "cross_attn_k": 2, "cross_attn_all_layers_encoder": True,
            "cross_attn_all_layers_decoder": True, "cross_attn_window_encoder": 2, "cross_attn_window_decoder": 2,
            "encoder_hash_byte_group_size": [3, 5], "encoder_hash_byte_group_nb_functions": 2,
            "encoder_hash_byte_group_vocab": 61, "local_attention_window_len": 6, "multiple_of": 16,
            "attn_bias_type": "causal", "rope_theta": 10000.0, "norm_eps": 1e-6,
            "patching_threshold": "auto", "patching_threshold_add": 0.01, "max_patch_length": 3,
            "max_encoder_seq_length": 256, "max_seqlen": 128,
        },
        "entropy_model_args": {
            "dim": 16, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "attn_bias_type": "causal", "sliding_window": None,
            "multiple_of": 16,
        },
        "threshold_quantile": 0.5,
        "cases": [{"name": "packed", "texts": ["Ab, c\u00e9!", "x\ty"]}],
    },
    # mini-b: one width (16) and k=1 (no global token projection, no decoder patch projection), no
    # hash tables, pm_size 2, the monotonic patching rule, a windowless document-split entropy mask.
    "mini-b": {
        "preset": "tiny",
        "blt_args": {
            "dim_local_encoder": 16, "dim_local_decoder": 16, "dim_global": 16,
            "n_heads_local_encoder": 2, "n_heads_global": 2, "n_heads_local_decoder": 4,
            "n_layers_local_encoder": 1, "n_layers_global": 2, "n_layers_local_decoder": 1,
            "cross_attn_nheads": 1, "cross_attn_k": 1, "encoder_hash_byte_group_size": None, "pm_size": 2,
            "local_attention_window_len": 5, "multiple_of": 16, "monotonicity": True,
            "patching_threshold": "auto", "max_patch_length": 4, "max_encoder_seq_length": 256, "max_seqlen": 128,
        },
        "entropy_model_args": {
            "dim": 16, "n_layers": 2, "n_heads": 1, "attn_bias_type": "block_causal", "sliding_window": None,
            "multiple_of": 16, "rope_theta": 500000.0,
        },
        "threshold_quantile": 0.6,
        "cases": [{"name": "packed", "texts": ["Ab, c\u00e9!", "x\ty"]}],
    },
    # Fixtures of the published checkpoint layouts (--layout; tools/golden/fixtures/layout-*): the
    # reference writes pretrained/ and the vectors come from the models its loaders read back. The
    # entropy model's arguments are those load_entropy_model builds (it reads only dim, n_layers,
    # n_heads, max_seqlen, ffn_dim_multiplier, vocab_size and forces the rest).
    # layout-consolidated: GQA/MQA, head_dim 8, a local window of 8, 3 hash sizes, the combined
    # patching rule (threshold_add) and max_patch_length 3, written in params.json data.patcher_args.
    "layout-consolidated": {
        "preset": "tiny",
        "blt_args": {
            "dim_local_encoder": 16, "dim_local_decoder": 16, "dim_global": 32,
            "n_heads_local_encoder": 2, "n_heads_global": 4, "n_heads_local_decoder": 2,
            "n_kv_heads": 1, "n_kv_heads_global": 2, "cross_attn_nheads": 2, "cross_attn_k": 2,
            "n_layers_local_encoder": 1, "n_layers_global": 2, "n_layers_local_decoder": 2,
            "encoder_hash_byte_group_size": [3, 4, 5], "encoder_hash_byte_group_vocab": 31,
            "local_attention_window_len": 8, "multiple_of": 16,
            "patching_threshold": "auto", "patching_threshold_add": 0.01, "max_patch_length": 3,
            "max_encoder_seq_length": 256, "max_seqlen": 128,
        },
        "entropy_model_args": {"dim": 16, "n_layers": 2, "n_heads": 2, "sliding_window": 512},
        "threshold_quantile": 0.5,
        "cases": [
            {"name": "packed", "texts": ["Ab, c\u00e9!", "x\ty"]},
            {"name": "line", "texts": ["if a < 3: b"]},
        ],
    },
    # layout-hub: a global token projection (k=2 x 16 = 32 -> 40), decoder heads 4 (head_dim 4; its
    # cross-attention 2 heads of 8), cross-attention after both encoder layers, 2 hash functions,
    # the monotonic patching rule (train_args.json data.patcher_args), norm_eps 1e-6, theta 1e4.
    "layout-hub": {
        "preset": "tiny",
        "blt_args": {
            "dim_local_encoder": 16, "dim_local_decoder": 16, "dim_global": 40,
            "n_heads_local_encoder": 2, "n_heads_global": 5, "n_heads_local_decoder": 4,
            "cross_attn_nheads": 2, "cross_attn_k": 2,
            "n_layers_local_encoder": 2, "n_layers_global": 1, "n_layers_local_decoder": 1,
            "cross_attn_all_layers_encoder": True,
            "encoder_hash_byte_group_size": [3, 6], "encoder_hash_byte_group_nb_functions": 2,
            "encoder_hash_byte_group_vocab": 23, "local_attention_window_len": 6, "multiple_of": 32,
            "norm_eps": 1e-6, "rope_theta": 10000.0,
            "patching_threshold": "auto", "monotonicity": True, "max_patch_length": None,
            "max_encoder_seq_length": 256, "max_seqlen": 128,
        },
        "entropy_model_args": {"dim": 16, "n_layers": 2, "n_heads": 2, "sliding_window": 512},
        "threshold_quantile": 0.6,
        "cases": [
            {"name": "packed", "texts": ["Ab, c\u00e9!", "x\ty"]},
            {"name": "line", "texts": ["if a < 3: b"]},
        ],
    },
    # layout-transformers: everything the HF config does not carry at the released blt-1b's values
    # (local window 512, global block_causal, no cross-attention windows, cross-attention heads = local
    # heads, no GQA in the local models, one encoder cross-attention, decoder cross-attention before
    # every layer, hash sizes 3..8 with one function, ffn_dim_multiplier 1, RoPE theta 5e5 in fp32,
    # max positions 4096 / 24576), sizes shrunk; GQA in the global transformer (carried:
    # num_key_value_heads); max_patch_length 4 (carried). Single-document inputs shorter than 512 bytes:
    # where the HF modeling code and the reference agree (README).
    "layout-transformers": {
        "preset": "tiny",
        "blt_args": {
            "dim_local_encoder": 16, "dim_local_decoder": 16, "dim_global": 32,
            "n_heads_local_encoder": 2, "n_heads_global": 4, "n_heads_local_decoder": 2,
            "n_kv_heads_global": 2, "cross_attn_nheads": 2, "cross_attn_k": 2,
            "n_layers_local_encoder": 1, "n_layers_global": 2, "n_layers_local_decoder": 2,
            "encoder_hash_byte_group_vocab": 23, "local_attention_window_len": 512, "multiple_of": 16,
            "patching_threshold": "auto", "max_patch_length": 4,
            "dim": 32, "n_layers": 2, "n_heads": 4,
        },
        "entropy_model_args": {"dim": 16, "n_layers": 2, "n_heads": 2, "sliding_window": 512},
        "threshold_quantile": 0.55,
        "cases": [
            {"name": "ascii", "texts": ["Hello, wor1d!"]},
            {"name": "utf8", "texts": ["na\u00efve \u2192 ok"]},
        ],
    },
}


def resolve_config(spec):
    """The preset, JSON file or JSON string `spec`, over its base preset: "preset" names it, tiny
    by default (a whole golden config.json, which sets every argument, is therefore accepted too)."""
    if spec in PRESETS:
        user = copy.deepcopy(PRESETS[spec])
        user.setdefault("preset", None if spec == "tiny" else "tiny")
    else:
        if os.path.isfile(spec):
            with open(spec, encoding="utf-8") as f:
                user = json.load(f)
        else:
            user = json.loads(spec)
        user.setdefault("preset", "tiny")
    chain = [user]
    while chain[-1].get("preset"):
        name = chain[-1]["preset"]
        if name not in PRESETS:
            raise SystemExit(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
        chain.append(copy.deepcopy(PRESETS[name]))
        assert len(chain) < 10, "preset cycle"
    cfg = {"blt_args": {}, "entropy_model_args": {}, "patcher_args": {}, "seeds": {"torch.manual_seed": 0, "norm_weight_generator_seed": 1}}
    for layer in reversed(chain):
        for key in ("blt_args", "entropy_model_args", "patcher_args", "seeds"):
            cfg[key].update(copy.deepcopy(layer.get(key, {})))
        for key in ("cases", "threshold_quantile"):
            if key in layer:
                cfg[key] = copy.deepcopy(layer[key])
    cfg.setdefault("cases", TINY_CASES)
    cfg.setdefault("threshold_quantile", 0.7)
    return cfg


ARGS = parse_args() if __name__ == "__main__" else None

# Thread counts must be fixed before torch loads (reference_bench also sets them from its own argv).
if ARGS is not None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)
sys.dont_write_bytecode = True  # leave no __pycache__ in the reference checkout

# reference_bench parses its own command line at import time: give it one while importing.
sys.path.insert(0, os.path.join(REPO, "tools", "reference-bench"))
_argv = sys.argv
sys.argv = [_argv[0], "--reference", ARGS.reference if ARGS else ".", "--threads", str(ARGS.threads if ARGS else 1)]
try:
    from reference_bench import SHIMS, install_shims  # noqa: E402
finally:
    sys.argv = _argv

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# safetensors reading and writing: st_io.py (F32, BF16, I64, U8, ...).
sys.path.insert(0, HERE)
from st_io import read_safetensors, write_safetensors  # noqa: E402


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)


def jsonable(x):
    """pydantic model_dump values -> JSON (str enums as their value)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "value") and isinstance(x, str):
        return x.value
    return x


# ---------------------------------------------------------------------------------------------
# Building the reference models
# ---------------------------------------------------------------------------------------------
def patcher_args_dict(blt_args, overrides):
    """The PatcherArgs the golden run patches with: the BLT's patching fields, on the CPU."""
    d = dict(
        patching_mode=blt_args["patching_mode"],
        patching_device="cpu",
        threshold=blt_args["patching_threshold"],
        threshold_add=blt_args.get("patching_threshold_add"),
        max_patch_length=blt_args.get("max_patch_length"),
        patch_size=blt_args["patch_size"],
        patching_batch_size=blt_args.get("patching_batch_size", 1),
        device="cpu",
        monotonicity=blt_args.get("monotonicity", False),
    )
    d.update(overrides)
    return d


def fill_missing_module_lists(blt):
    """init_weights reads `cross_attn_layers` of both local models; the reference sets it only when
    that model cross-attends. None is what init_weights expects then (no layer to initialise)."""
    for m in (blt.local_encoder, blt.local_decoder):
        if not hasattr(m, "cross_attn_layers"):
            m.cross_attn_layers = None


def build_models(cfg, weights_from=None):
    from bytelatent.model.blt import ByteLatentTransformer, ByteLatentTransformerArgs
    from bytelatent.transformer import LMTransformer, LMTransformerArgs

    torch.manual_seed(cfg["seeds"]["torch.manual_seed"])
    entropy_args = LMTransformerArgs(**cfg["entropy_model_args"])
    entropy_model = LMTransformer(entropy_args)
    entropy_model.init_weights()
    # "auto" is ours (picked later from the entropies); pydantic v2 would refuse it for a float field.
    blt_args = ByteLatentTransformerArgs(**{k: (None if k == "patching_threshold" and v == "auto" else v) for k, v in cfg["blt_args"].items()})
    blt = ByteLatentTransformer(blt_args)
    fill_missing_module_lists(blt)
    if blt.encoder_hash_tok_embedding is None:
        # init_weights iterates the hash tables, forward needs None when there are none.
        blt.encoder_hash_tok_embedding = torch.nn.ModuleList()
        blt.init_weights()
        blt.encoder_hash_tok_embedding = None
    else:
        blt.init_weights()
    # Deviation of the golden vectors (README "Initialisation"): init_weights leaves every RMSNorm
    # weight at 1; perturb them so that a port must apply them.
    g = torch.Generator().manual_seed(cfg["seeds"]["norm_weight_generator_seed"])
    with torch.no_grad():
        for model in (entropy_model, blt):
            for _name, mod in sorted(model.named_modules(), key=lambda kv: kv[0]):
                if isinstance(mod, torch.nn.RMSNorm):
                    mod.weight.copy_(1 + 0.1 * torch.randn(mod.weight.shape, generator=g))
    if weights_from:
        for model, fname in ((entropy_model, "entropy_model.safetensors"), (blt, "blt_model.safetensors")):
            missing, unexpected = model.load_state_dict(read_safetensors(os.path.join(weights_from, fname)), strict=False)
            assert not unexpected and all("freqs_cis" in k for k in missing), (fname, missing, unexpected)
    entropy_model.eval()
    blt.eval()
    return entropy_model, entropy_args, blt, blt_args


# ---------------------------------------------------------------------------------------------
# Activation capture
# ---------------------------------------------------------------------------------------------
# Modules whose input is also recorded (`<path>:input`), as in shared/golden/tiny.
INPUT_RECORDED = ("patch_embedding_projection", "local_decoder.norm", "local_decoder.output")


def flatten_output(name, out, sink, transform):
    if out is None:
        return
    if isinstance(out, torch.Tensor):
        if name not in sink:
            sink[name] = transform(out.detach().clone())
        return
    if isinstance(out, (tuple, list)):
        for i, o in enumerate(out):
            flatten_output(f"{name}[{i}]", o, sink, transform)


def install_hooks(model, prefix, sink, transform=lambda t: t, top_level_tuples=()):
    """Forward hooks on every sub-module (not containers, not RoPE tables): output -> sink[prefix.path]
    (first call only; tuple outputs indexed), plus the input of INPUT_RECORDED modules."""
    from bytelatent.base_transformer import RotaryEmbedding

    handles = []
    for path, mod in model.named_modules():
        if path == "" or isinstance(mod, (torch.nn.ModuleList, torch.nn.ModuleDict, RotaryEmbedding)):
            continue
        name = f"{prefix}.{path}"
        want_input = path.endswith("patch_embedding_projection") or path in INPUT_RECORDED

        def hook(_mod, inputs, output, name=name, want_input=want_input):
            flatten_output(name, output, sink, transform)
            if want_input and inputs and f"{name}:input" not in sink:
                sink[f"{name}:input"] = transform(inputs[0].detach().clone())

        handles.append(mod.register_forward_hook(hook))
    return handles


def capture_kwargs(module, sink, key):
    """Records the keyword arguments of the module's calls (torch 1.13 hooks do not see them)."""
    original = module.forward

    def forward(*a, **kw):
        if key not in sink:
            sink[key] = {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
        return original(*a, **kw)

    module.forward = forward
    return lambda: module.__dict__.pop("forward", None)


# ---------------------------------------------------------------------------------------------
# Patching thresholds: "auto" picks one so that every case has patch starts, and no entropy (or
# entropy rise) lies within float32 noise of it.
# ---------------------------------------------------------------------------------------------
def threshold_scores(entropies, monotonicity):
    """The values the patcher compares with the threshold: entropy[1:], or its rises (monotonic)."""
    e = entropies[0, 1:]
    return (e[1:] - e[:-1]) if monotonicity else e


def pick_threshold(score_lists, quantile):
    """A round threshold near the quantile of the scores, far from every score: at least 5e-4 (else
    2e-4) away, which is over 100 times the float32 differences of a correct port's entropies."""
    allv = torch.cat([s.flatten() for s in score_lists]).double()
    target = float(torch.quantile(allv, quantile))
    for min_gap in (5e-4, 2e-4):
        for step in (1e-2, 5e-3, 1e-3, 1e-4):
            candidates = sorted((round(round(target / step) * step + i * step, 6) for i in range(-10, 11)), key=lambda t: abs(t - target))
            for t in candidates:
                if abs(t - target) <= 0.02 and float((allv - t).abs().min()) >= min_gap:
                    return t
    raise SystemExit(f"no threshold near the {quantile} quantile ({target}) stays 2e-4 away from every score")


# ---------------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------------
def derive_mask(m, q_len, kv_len):
    """A reference mask object (the shims' dense stand-ins) as a [q, kv] bool tensor."""
    if hasattr(m, "_mask"):
        return m._mask(q_len, kv_len)
    if hasattr(m, "mask"):  # BlockMask stand-in: [B, H, Q, KV]
        return m.mask[0, 0]
    raise TypeError(type(m))


def run_case(case, tokenizer, entropy_model, blt, blt_args, patcher_args, patcher=None):
    from bytelatent.data.patcher import (
        Patcher,
        PatcherArgs,
        entropy,
        find_entropy_patch_start_ids,
        patch_lengths_from_start_ids,
    )
    from bytelatent.model.blt import (
        byte_group_hash_function,
        compute_hash_embeddings,
        cross_attn_mask,
        decoder_patch_ids_from_lengths,
        patch_ids_from_lengths,
        rolling_polynomial_hash,
    )
    from bytelatent.model.utils import create_causal_mask

    texts = case["texts"]
    ids = []
    for t in texts:
        ids += tokenizer.encode(t, add_bos=True, add_eos=True)
    tokens = torch.tensor([ids[:-1]], dtype=torch.int64)
    targets = torch.tensor([ids[1:]], dtype=torch.int64)
    N = tokens.shape[1]

    # Entropy model through the Patcher (the model attached by hand, as bytelatent/hf.py does).
    if patcher is None:
        patcher = Patcher(PatcherArgs(**patcher_args))
        patcher.entropy_model = entropy_model
    assert patcher.entropy_model is entropy_model
    ent_acts = {}
    handles = install_hooks(entropy_model, "act.entropy", ent_acts, transform=lambda t: t[:, :N] if t.dim() >= 2 else t)
    with torch.no_grad():
        patch_lengths, scores = patcher.patch(tokens, include_next_token=True)
    for h in handles:
        h.remove()
    entropy_logits = ent_acts["act.entropy.output"]
    assert torch.equal(entropy(entropy_logits), scores), "entropy(entropy.logits) != patcher entropies"
    patch_start_ids = find_entropy_patch_start_ids(
        scores,
        patcher.patch_size,
        threshold=patcher.threshold,
        threshold_add=patcher.threshold_add,
        monotonicity=patcher.monotonicity,
        include_next_token=True,
    )
    patch_lengths_unsplit = patch_lengths_from_start_ids(patch_start_ids, N + 1)

    # The BLT forward (generate_nocache's call), every sub-module hooked.
    acts = {}
    kw = {}
    handles = install_hooks(blt, "act.blt", acts)
    restore = [capture_kwargs(m, kw, name) for name, m in (("enc", blt.local_encoder), ("glob", blt.global_transformer), ("dec", blt.local_decoder))]
    with torch.no_grad():
        logits = blt(tokens, patch_lengths=patch_lengths.clone())
        token_losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        loss = token_losses.mean()
    for h in handles:
        h.remove()
    for r in restore:
        r()

    P = patch_lengths.shape[1]
    k = blt_args.cross_attn_k
    patch_ids = patch_ids_from_lengths(patch_lengths, N)
    decoder_patch_ids = decoder_patch_ids_from_lengths(patch_lengths, 0, N)

    out = {}
    out["tokens"] = tokens
    out["targets"] = targets
    out["entropy.logits"] = entropy_logits
    out["entropies"] = scores
    out["patch_start_ids"] = patch_start_ids
    out["patch_lengths_unsplit"] = patch_lengths_unsplit
    out["patch_lengths"] = patch_lengths
    out["patch_ids"] = patch_ids
    out["decoder_patch_ids"] = decoder_patch_ids
    sizes = list(blt_args.encoder_hash_byte_group_size or [])
    vocab = blt_args.encoder_hash_byte_group_vocab
    n_funcs = max(3, blt_args.encoder_hash_byte_group_nb_functions)
    hash_json, raw_json = {}, {}
    for f in range(n_funcs):
        for n in sizes:
            h = byte_group_hash_function(tokens, n, hash_func_nb=f, max_hash=vocab)
            out[f"hash_ids.f{f}.n{n}"] = h
            windows = torch.cat([torch.zeros(1, n - 1, dtype=torch.int64), tokens], dim=1).unfold(1, n, 1)
            raw = rolling_polynomial_hash(windows, f)
            assert torch.equal(raw % vocab, h)
            hash_json[f"f{f}.n{n}"] = h[0].tolist()
            raw_json[f"f{f}.n{n}"] = [str(v) for v in raw[0].tolist()]
    out["encoder.byte_embeds"] = acts["act.blt.local_encoder.tok_embeddings"]
    with torch.no_grad():
        input_embeds = compute_hash_embeddings(
            local_encoder_tokens=tokens,
            local_encoder=blt.local_encoder,
            encoder_hash_tok_embedding=blt.encoder_hash_tok_embedding,
            encoder_hash_byte_group_nb_functions=blt.encoder_hash_byte_group_nb_functions,
            encoder_hash_byte_group_size=blt.encoder_hash_byte_group_size,
            encoder_hash_byte_group_vocab=blt.encoder_hash_byte_group_vocab,
        )
    if input_embeds is None:  # no hash tables: the encoder embeds the bytes itself
        assert kw["enc"]["embeds"] is None
        input_embeds = acts["act.blt.local_encoder.tok_embeddings"]
    else:
        assert torch.equal(input_embeds, kw["enc"]["embeds"]), "encoder.input_embeds differs from what the forward passed"
    out["encoder.input_embeds"] = input_embeds
    out["encoder.h"] = acts["act.blt.local_encoder[0][0]"]
    if "act.blt.local_encoder.patch_embedding_projection:input" in acts:
        out["encoder.pooled_patch_embeds"] = acts["act.blt.local_encoder.patch_embedding_projection:input"]
    if "act.blt.local_encoder[0][1]" in acts:
        out["encoder.patch_embeds"] = acts["act.blt.local_encoder[0][1]"]
    global_tokens = kw["glob"]["tokens"]
    out["global.tokens"] = global_tokens
    out["global.input"] = kw["glob"]["embeds"]
    global_output = acts["act.blt.global_transformer[0]"]
    out["global.output"] = global_output
    # What the decoder combines with the byte states: its projection of the global output, reshaped
    # to k rows per patch when it cross-attends (the global output itself when it has no projection).
    dec = blt.local_decoder
    if "act.blt.local_decoder.patch_embedding_projection" in acts:
        pe = acts["act.blt.local_decoder.patch_embedding_projection"]
        if dec.cross_attn_k is not None:
            pe = pe.reshape(1, pe.shape[1] * dec.cross_attn_k, dec.dim)
    else:
        pe = kw["dec"]["patch_embeds"]
    out["decoder.patch_embeds"] = pe
    out["logits"] = logits
    out["token_losses"] = token_losses
    out["loss"] = loss

    # Masks, from the reference's constructors, materialised.
    ent_pad = getattr(entropy_model, "max_length", 8192)
    padded = torch.cat([tokens, torch.zeros(1, ent_pad - N, dtype=torch.int64)], dim=1)
    m_local = create_causal_mask(N, blt.local_encoder.attn_impl, "local_block_causal", sliding_window=blt.local_encoder.sliding_window, tokens=tokens, eos_id=blt.local_encoder.eos_id)
    out["mask.local_self"] = derive_mask(m_local, N, N).to(torch.uint8)
    m_ent = create_causal_mask(ent_pad, entropy_model.attn_impl, entropy_model.attn_bias_type, sliding_window=entropy_model.sliding_window, tokens=padded, eos_id=entropy_model.eos_id)
    out["mask.entropy_self"] = derive_mask(m_ent, ent_pad, ent_pad)[:N, :N].to(torch.uint8)
    gt = blt.global_transformer
    m_glob = create_causal_mask(P, gt.attn_impl, gt.attn_bias_type, tokens=global_tokens, eos_id=gt.eos_id)
    out["mask.global_self"] = derive_mask(m_glob, P, P).to(torch.uint8)
    if blt.cross_attn_encoder:
        m = cross_attn_mask(patch_ids, patch_lengths, N, patches_as_queries=True, cross_attn_k=k, window=blt.cross_attn_window_encoder, block_mask=True)
        out["mask.cross_encoder"] = derive_mask(m, P * k, N).to(torch.uint8)
    if blt.cross_attn_decoder:
        m = cross_attn_mask(decoder_patch_ids, patch_lengths, N, patches_as_queries=False, cross_attn_k=k, window=blt.cross_attn_window_decoder, block_mask=True)
        out["mask.cross_decoder"] = derive_mask(m, N, P * k).to(torch.uint8)
    # RoPE tables [L, head_dim/2, 2, 2] (the encoder's: the decoder's may have another head_dim).
    out["rope.local"] = blt.local_encoder.rope(seqlen=N)
    out["rope.global"] = gt.rope_embeddings(seqlen=P)
    out["rope.entropy"] = entropy_model.rope_embeddings(seqlen=N)
    for name, t in ent_acts.items():
        out[name] = t
    for name, t in acts.items():
        out[name] = t

    # The human-readable JSON.
    ent = scores[0]
    if patcher.monotonicity:
        gaps = (threshold_scores(scores, True) - patcher.threshold).abs()
    else:
        gaps = (ent[1:] - patcher.threshold).abs()
        if patcher.threshold_add is not None:
            gaps = torch.cat([gaps, (threshold_scores(scores, True) - patcher.threshold_add).abs()])
    bounds, start = [], 0
    for length in patch_lengths[0].tolist():
        bounds.append([start, start + length])
        start += length
    info = {
        "name": case["name"],
        "texts": texts,
        "utf8_bytes": [list(t.encode("utf-8")) for t in texts],
        "construction": "ids = concat(tokenizer.encode(t, add_bos=True, add_eos=True) for t in texts); tokens = ids[:-1] (model input), targets = ids[1:]",
        "tokens": tokens[0].tolist(),
        "targets": targets[0].tolist(),
        "seq_len": N,
        "entropies": ent.tolist(),
        "threshold": patcher.threshold,
    }
    if patcher.threshold_add is not None:
        info["threshold_add"] = patcher.threshold_add
    if patcher.monotonicity:
        info["monotonicity"] = True
    info.update(
        {
            "min_abs_entropy_minus_threshold": float(gaps.min()) if gaps.numel() else None,
            "patch_start_ids": patch_start_ids[0].tolist(),
            "patch_lengths_unsplit": patch_lengths_unsplit[0].tolist(),
            "patch_lengths": patch_lengths[0].tolist(),
            "patch_boundaries_bytes": bounds,
            "num_patches": P,
            "patch_ids": patch_ids[0].tolist(),
            "decoder_patch_ids": decoder_patch_ids[0].tolist(),
            "global_tokens": global_tokens[0].tolist(),
            "hash_ids": hash_json,
            "hash_raw_int64_before_mod": raw_json,
            "loss": float(loss),
            "token_losses": token_losses.tolist(),
            "logits_argmax": logits[0].argmax(-1).tolist(),
            "last_patch_has_no_input_byte": bounds[-1][0] >= N,
            "tensors": {
                name: {"dtype": {torch.float32: "float32", torch.int64: "int64", torch.uint8: "uint8"}[t.dtype], "shape": list(t.shape)}
                for name, t in out.items()
            },
        }
    )
    return out, info


# ---------------------------------------------------------------------------------------------
# config.json "derived"
# ---------------------------------------------------------------------------------------------
def block_info(block):
    a = block.attention
    return {"dim": a.dim, "n_heads": a.n_heads, "n_kv_heads": a.n_kv_heads, "head_dim": a.head_dim, "ffn_hidden_dim": block.feed_forward.hidden_dim, "norm_eps": block.attention_norm.eps}


def rope_info(r):
    return {"theta": r.theta, "head_dim": r.head_dim, "max_seqlen": r.max_seqlen, "rope_use_fp32_in_outer_product": r.rope_use_fp32_in_outer_product}


def cross_info(layers):
    if not layers:
        return None
    c = layers[0]
    return {"dim": c.dim, "n_heads": c.n_heads, "n_kv_heads": c.n_kv_heads, "head_dim": c.head_dim, "norm_eps": c.cross_attn_norm_q.eps}


def linear_shape(m):
    return None if m is None else [m.out_features, m.in_features]


def local_mask_text(window):
    return "xformers BlockDiagonalCausalMask(docs split after each EOS)" + (".make_local_attention(sliding_window)" if window is not None else "")


def pooling_text(mode):
    """pooling_downsample's reductions, in its order (concatenated when several)."""
    names = [r for key, r in (("avg", "mean"), ("min", "amin"), ("max", "amax")) if key in mode or (key == "avg" and "mean" in mode)]
    return names[0] if len(names) == 1 else " | ".join(names) + " (concatenated)"


def derived(blt, blt_args, entropy_model):
    from bytelatent.model.blt import primes

    enc, gt, dec = blt.local_encoder, blt.global_transformer, blt.local_decoder
    n_enc, n_dec = len(enc.layers), len(dec.layers)
    enc_cross = enc.cross_attn_layers or []
    dec_cross = dec.cross_attn_layers or []
    pooling = blt_args.downsampling_by_pooling
    d = {
        "local_encoder": {
            "n_layers": n_enc,
            "block": block_info(enc.layers[0]),
            "rope": rope_info(enc.rope),
            "self_attn_mask": local_mask_text(enc.sliding_window),
            "sliding_window": enc.sliding_window,
            "cross_attn_layers": len(enc_cross),
            "cross_attn": cross_info(enc_cross),
            "cross_attn_applied_after_layers": [i for i in range(n_enc) if blt.cross_attn_encoder and (i == n_enc - 1 or enc.cross_attn_all_layers_encoder)],
            "patch_embedding_projection": linear_shape(enc.patch_embedding_projection),
            "token_embedding_projection": linear_shape(enc.token_embedding_projection),
            "pooling": (f"{pooling_text(pooling)} over bytes of each patch (patch_reduce/scatter_reduce include_self=False; empty patch -> 0)" if pooling else "concatenation (concat_downsample)")
            + ("" if blt.cross_attn_encoder else "; pooled states are the global input (no cross-attention)"),
        },
        "global_transformer": {
            "n_layers": len(gt.layers),
            "block": block_info(gt.layers[0]),
            "rope": rope_info(gt.rope_embeddings),
            "attn_bias_type": gt.attn_bias_type,
            "self_attn_mask": "xformers BlockDiagonalCausalMask over patches; a patch containing EOS ends a doc" if gt.attn_bias_type == "block_causal" else f"xformers mask for attn_bias_type={gt.attn_bias_type} (no document split)",
            "token_embedding_projection": linear_shape(gt.token_embedding_projection),
            "dim_token_emb": gt.dim_token_emb,
        },
        "local_decoder": {
            "n_layers": n_dec,
            "block": block_info(dec.layers[0]),
            "rope": rope_info(dec.rope),
            "sliding_window": dec.sliding_window,
            "cross_attn_layers": len(dec_cross),
            "cross_attn": cross_info(dec_cross),
            "cross_attn_applied_before_layers": [i for i in range(n_dec) if blt.cross_attn_decoder and (i == 0 or dec.cross_attn_all_layers_decoder)],
            "patch_embedding_projection": linear_shape(dec.patch_embedding_projection),
            "output": linear_shape(dec.output),
        },
        "hash_embeddings": {
            "n_tables": len(blt.encoder_hash_tok_embedding or []),
            "table_order": "for func_nb in range(nb_functions): for n in encoder_hash_byte_group_size",
            "group_sizes": list(blt_args.encoder_hash_byte_group_size or []),
            "nb_functions": blt_args.encoder_hash_byte_group_nb_functions,
            "vocab": blt_args.encoder_hash_byte_group_vocab,
            "primes": list(primes),
        },
        "entropy_model": {
            "n_layers": len(entropy_model.layers),
            "block": block_info(entropy_model.layers[0]),
            "rope": rope_info(entropy_model.rope_embeddings),
            "sliding_window": entropy_model.sliding_window,
            "self_attn_mask": {
                "local_block_causal": local_mask_text(entropy_model.sliding_window),
                "block_causal": "xformers BlockDiagonalCausalMask(docs split after each EOS)",
            }.get(entropy_model.attn_bias_type, f"xformers mask for attn_bias_type={entropy_model.attn_bias_type} (no document split)"),
            "calculate_entropies_pad_length": getattr(entropy_model, "max_length", 8192),
        },
        "special_tokens": {"BOE_ID": 0, "BOS_ID": 1, "EOS_ID": 2, "BPE_ID": 3, "OFFSET": 4, "PAD_ID": -1},
    }
    return d


SOURCES = [
    "bytelatent/model/blt.py",
    "bytelatent/model/local_models.py",
    "bytelatent/model/latent_transformer.py",
    "bytelatent/model/utils.py",
    "bytelatent/base_transformer.py",
    "bytelatent/transformer.py",
    "bytelatent/entropy_model.py",
    "bytelatent/data/patcher.py",
    "bytelatent/tokenizers/blt_tokenizer.py",
    "bytelatent/tokenizers/constants.py",
]


# What the layout fixtures depend on besides SOURCES: the loaders and the argument classes.
LOADER_SOURCES = [
    "bytelatent/generate.py",
    "bytelatent/hf.py",
    "bytelatent/args.py",
    "bytelatent/distributed.py",
]


def reference_commit(reference):
    try:
        return subprocess.run(["git", "-C", reference, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# ---------------------------------------------------------------------------------------------
# Comparison with another folder (the sanity check against shared/golden/tiny)
# ---------------------------------------------------------------------------------------------
def compare_folders(ours, theirs):
    worst = {"weights": 0.0, "float": 0.0, "int_mismatches": 0, "missing": [], "extra": [], "shape": []}
    report = []
    for fname in ("blt_model.safetensors", "entropy_model.safetensors"):
        a, b = read_safetensors(os.path.join(ours, fname)), read_safetensors(os.path.join(theirs, fname))
        if list(a) != list(b):
            report.append(f"{fname}: key lists differ")
        for key in b:
            if key in a and a[key].shape == b[key].shape:
                worst["weights"] = max(worst["weights"], float((a[key] - b[key]).abs().max()))
    with open(os.path.join(theirs, "index.json")) as f:
        names = [c["name"] for c in json.load(f)["cases"]]
    per_case = {}
    for name in names:
        path = os.path.join(ours, "cases", f"{name}.safetensors")
        if not os.path.exists(path):
            worst["missing"].append(f"{name} (case)")
            continue
        a, b = read_safetensors(path), read_safetensors(os.path.join(theirs, "cases", f"{name}.safetensors"))
        if list(a) != list(b):
            report.append(f"{name}: tensor order/names differ")
        worst["missing"] += [f"{name}:{k}" for k in b if k not in a]
        worst["extra"] += [f"{name}:{k}" for k in a if k not in b]
        case_float = 0.0
        for key in b:
            if key not in a:
                continue
            if a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
                worst["shape"].append(f"{name}:{key} {tuple(a[key].shape)}/{a[key].dtype} vs {tuple(b[key].shape)}/{b[key].dtype}")
                continue
            if b[key].dtype == torch.float32:
                d = float((a[key] - b[key]).abs().max()) if b[key].numel() else 0.0
                case_float = max(case_float, d)
            elif not torch.equal(a[key], b[key]):
                worst["int_mismatches"] += 1
                report.append(f"{name}:{key} integers differ")
        per_case[name] = case_float
        worst["float"] = max(worst["float"], case_float)
        ja = json.load(open(os.path.join(ours, "cases", f"{name}.json"), encoding="utf-8"))
        jb = json.load(open(os.path.join(theirs, "cases", f"{name}.json"), encoding="utf-8"))
        if list(ja) != list(jb):
            report.append(f"{name}.json: keys differ: {sorted(set(ja) ^ set(jb))}")
        for key in jb:
            if key in ja and not isinstance(jb[key], float) and key not in ("entropies", "token_losses", "loss", "min_abs_entropy_minus_threshold") and ja[key] != jb[key]:
                report.append(f"{name}.json: {key} differs")
    ca, cb = json.load(open(os.path.join(ours, "config.json"))), json.load(open(os.path.join(theirs, "config.json")))
    for key in ("blt_args", "entropy_model_args", "patcher_args", "tokenizer", "derived"):
        if ca.get(key) != cb.get(key):
            report.append(f"config.json {key} differs: " + ", ".join(sorted(k for k in set(ca.get(key, {})) | set(cb.get(key, {})) if ca.get(key, {}).get(k) != cb.get(key, {}).get(k))))
    if list(ca) != list(cb):
        report.append(f"config.json top-level keys differ: {sorted(set(ca) ^ set(cb))}")
    if json.load(open(os.path.join(ours, "weights_manifest.json"))) != json.load(open(os.path.join(theirs, "weights_manifest.json"))):
        report.append("weights_manifest.json differs")
    result = {"max_abs_diff_weights": worst["weights"], "max_abs_diff_case_floats": worst["float"], "per_case_float": per_case, "integer_tensor_mismatches": worst["int_mismatches"], "missing": worst["missing"], "extra": worst["extra"], "shape_or_dtype": worst["shape"], "notes": report}
    print(json.dumps(result, indent=1))
    return result


# ---------------------------------------------------------------------------------------------
def auto_threshold(cfg, tokenizer, entropy_model):
    """"auto" threshold: from the entropies of every case (see pick_threshold)."""
    from bytelatent.data.patcher import calculate_entropies

    lists = []
    for case in cfg["cases"]:
        ids = [i for t in case["texts"] for i in tokenizer.encode(t, add_bos=True, add_eos=True)][:-1]
        scores, _ = calculate_entropies(torch.tensor([ids]), entropy_model, 1, "cpu")
        lists.append(threshold_scores(scores, cfg["blt_args"].get("monotonicity", False)))
    t = pick_threshold(lists, cfg["threshold_quantile"])
    print(f"auto threshold: {t}", file=sys.stderr)
    return t


def relative_files(root, base):
    out = {}
    for d, _dirs, files in sorted(os.walk(root)):
        _dirs.sort()
        for name in sorted(files):
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, base)] = {"bytes": os.path.getsize(path), "sha256": hashlib.sha256(f.read()).hexdigest()}
    return out


def produce_pretrained(cfg, layout, out, entropy_model, entropy_args, blt, blt_args, tokenizer):
    """Writes out/pretrained/ in `layout` from the seeded models (weights rounded to bf16), then loads
    it back with the reference's loaders. Returns (the loaded models etc., the "pretrained" contract,
    the weights manifest)."""
    import tempfile

    import layouts as L
    from bytelatent.data.patcher import PatcherArgs
    from bytelatent.entropy_model import load_entropy_model

    pre = os.path.join(out, "pretrained")
    L.clean_dir(pre)
    ent_sd = L.bf16_state_dict(entropy_model)
    blt_sd = L.bf16_state_dict(blt)
    # The patcher settings as the files keep them (PatcherArgs' own device defaults: "cuda").
    file_pa = dict(patcher_args_dict(cfg["blt_args"], cfg["patcher_args"]), device="cuda", patching_device="cuda")
    notes = []

    def entropy_params(patcher_args):
        return L.train_args_json(model=None, entropy_model=entropy_args.model_dump(), train_entropy_model=True, patcher_args=patcher_args, model_dtype="fp32")

    with tempfile.TemporaryDirectory() as tmp:
        if cfg["blt_args"].get("patching_threshold") == "auto":
            # From the entropy model as load_entropy_model reads it back from its files.
            probe = os.path.join(tmp, "probe", "entropy_model")
            L.write_consolidated_folder(probe, entropy_params(dict(file_pa, threshold=0.0)), ent_sd)
            patcher, _ = L.build_patcher(PatcherArgs(), probe)
            t = auto_threshold(cfg, tokenizer, patcher.entropy_model)
            cfg["blt_args"]["patching_threshold"] = t
            blt_args.patching_threshold = t
            file_pa["threshold"] = t
        params_blt = L.train_args_json(model=blt_args.model_dump(), patcher_args=file_pa, model_dtype="fp32")
        params_ent = entropy_params(file_pa)

        if layout == "consolidated":
            L.write_consolidated_folder(os.path.join(pre, "blt"), params_blt, blt_sd)
            L.write_consolidated_folder(os.path.join(pre, "entropy_model"), params_ent, ent_sd)
            loaded = L.load_consolidated(os.path.join(pre, "blt"), os.path.join(pre, "entropy_model"))
            loaded_by = (
                "bytelatent.generate.load_consolidated_model_and_tokenizer('pretrained/blt') (params cast to "
                "distributed.model_dtype fp32); PatcherArgs of its params.json data.patcher_args with realtime_patching=True and "
                "entropy_model_checkpoint_dir='pretrained/entropy_model', .build() -> bytelatent.entropy_model.load_entropy_model "
                "(what demo.py does)"
            )
        else:
            hub = pre if layout == "hub" else os.path.join(tmp, "hub")
            blt_dir = os.path.join(hub, "blt")
            L.write_hub_model(blt_dir, blt_args, blt_sd)
            L.write_text(os.path.join(blt_dir, "train_args.json"), params_blt)  # hf.py: params.json copied
            L.write_consolidated_folder(os.path.join(blt_dir, "entropy_model"), params_ent, ent_sd)
            # facebook/blt-entropy, as hf.py convert_to_transformers writes it: the model and arguments
            # load_entropy_model returns (bf16: it sets torch's default dtype), save_pretrained.
            ent_dir = os.path.join(blt_dir, "entropy_model")
            m, a = load_entropy_model(ent_dir, os.path.join(ent_dir, "consolidated.pth"))
            torch.set_default_dtype(torch.float32)
            standalone_sd = m.state_dict()
            assert all(v.dtype == torch.bfloat16 and torch.equal(v, ent_sd[k]) for k, v in standalone_sd.items()) and set(standalone_sd) == set(ent_sd)
            L.write_hub_model(os.path.join(hub, "blt-entropy"), a, standalone_sd)
            if layout == "hub":
                loaded = L.load_hub(blt_dir)
                standalone = L.load_hub(blt_dir, os.path.join(hub, "blt-entropy"))
                assert standalone.entropy_args.model_dump() == loaded.entropy_args.model_dump()
                L.assert_loaded(standalone.entropy_model, ent_sd, "pretrained/blt-entropy")
                notes.append("pretrained/blt-entropy (LMTransformer.from_pretrained, what hf.py load_transformers is given) holds the same weights and arguments as pretrained/blt/entropy_model (checked)")
                loaded_by = (
                    "ByteLatentTransformer.from_pretrained('pretrained/blt') emulated: ByteLatentTransformer(ByteLatentTransformerArgs(**config.json['args'])) "
                    "+ load_state_dict(model.safetensors, strict=False, nothing missing or unexpected); bytelatent.hf.BltTokenizerAndPatcher reads "
                    "train_args.json (patcher, tokenizer, distributed.model_dtype fp32 applied to the parameters); the entropy model from "
                    "pretrained/blt/entropy_model through PatcherArgs(realtime_patching=True).build() -> load_entropy_model"
                )
            else:
                out_dir = os.path.join(pre, "blt")
                L.convert_hub_to_transformers(blt_dir, out_dir)
                loaded = L.load_transformers(out_dir)
                source = L.load_hub(blt_dir)
                a1, a2 = loaded.blt_args.model_dump(), source.blt_args.model_dump()
                differ = sorted(k for k in a2 if a1.get(k) != a2.get(k))
                assert set(differ) <= {"patch_size", "patching_device"}, f"HF config + blt-1b values do not give the source arguments: {differ}"
                for k in differ:
                    notes.append(f"blt_args.{k}: {a1[k]!r} from the HF config (the hub folder's args say {a2[k]!r}; unused with given patch lengths)")
                e1, e2 = loaded.entropy_args.model_dump(), source.entropy_args.model_dump()
                assert e1 == e2, sorted(k for k in e2 if e1.get(k) != e2.get(k))
                loaded_by = (
                    "no reference loader exists for this layout: the shards (model.safetensors.index.json) read, "
                    f"the converter's mapping ({L.HF_CONVERTER}) reversed into ByteLatentTransformer / LMTransformer state dicts, "
                    "the arguments from config.json completed with the released blt-1b values of what it does not carry "
                    "(layouts.BLT_1B_NOT_IN_HF_CONFIG, ENTROPY_NOT_IN_HF_CONFIG), the patcher from its patching_* keys; the same "
                    "arguments and weights as the hub folder it was converted from, loaded by the reference (checked)"
                )
    L.assert_loaded(loaded.blt, blt_sd, "BLT")
    L.assert_loaded(loaded.entropy_model, ent_sd, "entropy model")
    assert loaded.patcher.threshold == file_pa["threshold"]
    folders = L.FOLDERS[layout]
    contract = {
        "layout": layout,
        "model": "pretrained/" + folders["model"],
        "entropy_model": None if folders["entropy_model"] is None else "pretrained/" + folders["entropy_model"],
    }
    if "entropy_model_standalone" in folders:
        contract["entropy_model_standalone"] = "pretrained/" + folders["entropy_model_standalone"]
    contract.update(
        {
            "weights_dtype": "bfloat16" + (" (model.encoder_hash_tok_embedding.weight float32: the converter fuses the tables into torch.zeros)" if layout == "transformers" else ""),
            "model_dtype": loaded.model_dtype,
            "loaded_by": loaded_by,
            "deviations": [
                "weights: the seeded initialisation rounded to bfloat16, stored in bf16; the models compute in float32 (params.json distributed.model_dtype "
                "fp32, where the released files say bf16), so the stored weights upcast exactly",
                "load_entropy_model sets torch's default dtype to bfloat16 (so the entropy model is built in bf16) and leaves it so: "
                "the producer restores float32 after it and upcasts the entropy model (its RoPE table checked to be the float32 one)",
                "patcher devices: the files keep PatcherArgs' 'cuda'; the run overrides patching_device and device to 'cpu'; Module.cuda() is the identity",
            ]
            + notes,
            "files": relative_files(pre, out),
        }
    )
    manifest = {}
    for rel in contract["files"]:
        path = os.path.join(out, rel)
        if rel.endswith(".safetensors"):
            from st_io import read_safetensors_header

            h = read_safetensors_header(path)
            manifest[rel] = {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in h.items() if k != "__metadata__"}
        elif rel.endswith(".pth"):
            sd = torch.load(path, map_location="cpu")["model"]
            manifest[rel] = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in sd.items()}
    return loaded, contract, manifest


def main():
    torch.set_num_threads(ARGS.threads)
    install_shims(ARGS.reference)
    shims = list(SHIMS)
    if ARGS.layout:
        from loader_shims import NO_CUDA_SHIM, install_loader_shims

        shims += install_loader_shims(ARGS.reference) + [NO_CUDA_SHIM]
    from bytelatent.tokenizers.build_tokenizer import TokenizerArgs

    cfg = resolve_config(ARGS.config)
    entropy_model, entropy_args, blt, blt_args = build_models(cfg, ARGS.weights_from)
    tokenizer = TokenizerArgs(name="blt").build()
    out = ARGS.out
    patcher = None
    pretrained = None
    if ARGS.layout:
        loaded, pretrained, manifest = produce_pretrained(cfg, ARGS.layout, out, entropy_model, entropy_args, blt, blt_args, tokenizer)
        entropy_model, entropy_args, blt, blt_args = loaded.entropy_model, loaded.entropy_args, loaded.blt, loaded.blt_args
        tokenizer, patcher = loaded.tokenizer, loaded.patcher
        patcher_dump = jsonable(loaded.patcher_args.model_dump())
        if patcher_dump.get("entropy_model_checkpoint_dir"):
            patcher_dump["entropy_model_checkpoint_dir"] = os.path.relpath(patcher_dump["entropy_model_checkpoint_dir"], out)
        patcher_args = None
    else:
        if cfg["blt_args"].get("patching_threshold") == "auto":
            t = auto_threshold(cfg, tokenizer, entropy_model)
            cfg["blt_args"]["patching_threshold"] = t
            blt_args.patching_threshold = t
            blt.patching_threshold = t
        patcher_args = patcher_args_dict(cfg["blt_args"], cfg["patcher_args"])
        from bytelatent.data.patcher import PatcherArgs

        patcher_dump = jsonable(PatcherArgs(**patcher_args).model_dump())

    os.makedirs(os.path.join(out, "cases"), exist_ok=True)
    index = []
    for case in cfg["cases"]:
        tensors, info = run_case(case, tokenizer, entropy_model, blt, blt_args, patcher_args, patcher)
        write_safetensors(os.path.join(out, "cases", f"{case['name']}.safetensors"), tensors)
        write_json(os.path.join(out, "cases", f"{case['name']}.json"), info)
        index.append({"name": case["name"], "seq_len": info["seq_len"], "num_patches": info["num_patches"], "loss": info["loss"]})
        print(f"{case['name']}: N={info['seq_len']} P={info['num_patches']} loss={info['loss']:.6f} tensors={len(tensors)}", file=sys.stderr)
        if pretrained is not None:
            gap = info["min_abs_entropy_minus_threshold"]
            assert gap is None or gap >= 2e-4, f"{case['name']}: an entropy lies {gap} from the threshold"

    if pretrained is None:
        meta = {"format": "pt", "source": "facebookresearch/blt state_dict()"}
        manifest = {}
        for fname, model in (("blt_model.safetensors", blt), ("entropy_model.safetensors", entropy_model)):
            sd = model.state_dict()
            write_safetensors(os.path.join(out, fname), sd, meta)
            manifest[fname] = {k: {"dtype": "float32", "shape": list(v.shape)} for k, v in sd.items()}
    else:
        for fname in ("blt_model.safetensors", "entropy_model.safetensors"):
            if os.path.exists(os.path.join(out, fname)):
                os.remove(os.path.join(out, fname))  # the checker must go through pretrained/
    write_json(os.path.join(out, "weights_manifest.json"), manifest)
    write_json(os.path.join(out, "index.json"), {"cases": index})

    reference = ARGS.reference
    shas = {}
    for rel in SOURCES + (LOADER_SOURCES if pretrained is not None else []):
        with open(os.path.join(reference, rel), "rb") as f:
            shas[rel] = hashlib.sha256(f.read()).hexdigest()
    import pydantic

    tok = tokenizer
    config = {
        "reference": "github.com/facebookresearch/blt",
        "reference_commit": reference_commit(reference),
        "reference_source_sha256": shas,
        "torch_version": torch.__version__ + " (CPU)",
        "pydantic_version": getattr(pydantic, "VERSION", "?"),
        "shims": "tools/reference-bench/reference_bench.py install_shims(): " + "; ".join(SHIMS)
        + ("" if pretrained is None else "; tools/golden-producer/loader_shims.py: " + "; ".join(shims[len(SHIMS) :])),
        "dtype": "float32",
        "seeds": cfg["seeds"],
        "blt_args": jsonable(blt_args.model_dump()),
        "entropy_model_args": jsonable(entropy_args.model_dump()),
        "patcher_args": patcher_dump,
        "tokenizer": {
            "name": "blt",
            "class": type(tok).__name__,
            "vocab_size_unit_1": tok.vocab_size_unit_1,
            "offset": tok.offsetting_special_char,
            "add_bos": tok.add_bos,
            "add_eos": tok.add_eos,
            "bpe_delim": tok.bpe_delim,
            "n_words": tok.n_words,
        },
        "derived": derived(blt, blt_args, entropy_model),
        "patching_call": "patcher.patch(tokens, include_next_token=True) -> patch_lengths; logits = ByteLatentTransformer(tokens, patch_lengths=patch_lengths)",
        "producer": "tools/golden-producer/produce_golden.py --config "
        + (ARGS.config if ARGS.config in PRESETS else "<json>")
        + (f" --layout {ARGS.layout}" if ARGS.layout else ""),
    }
    if pretrained is not None:
        config["pretrained"] = pretrained
    write_json(os.path.join(out, "config.json"), config)
    print(f"wrote {out}", file=sys.stderr)
    if ARGS.compare:
        compare_folders(out, ARGS.compare)


if __name__ == "__main__":
    main()
