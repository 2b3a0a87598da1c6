# Copyright (c) bytelatent contributors. MIT licence.
#
# The three published checkpoint layouts of the BLT, written from a model of the reference
# (facebookresearch/blt) and loaded back the way the reference loads each:
#
#   consolidated  <blt>/params.json (TrainArgs JSON) + <blt>/consolidated.pth (torch.save({"model": sd}));
#                 entropy_model/params.json + entropy_model/consolidated.pth beside it (hf-weights/).
#                 Loaded by bytelatent.generate.load_consolidated_model_and_tokenizer and, through
#                 PatcherArgs(realtime_patching=True).build(), bytelatent.entropy_model.load_entropy_model
#                 (what demo.py does).
#   hub           facebook/blt-1b: config.json {"args": model args dump}, model.safetensors (state-dict
#                 names), train_args.json (= params.json), entropy_model/ (layout 1); facebook/blt-entropy:
#                 config.json {"args": the LMTransformerArgs load_entropy_model built} + model.safetensors.
#                 Written as bytelatent/hf.py convert_to_transformers + huggingface_hub's
#                 PyTorchModelHubMixin.save_pretrained do; loaded as hf.py load_transformers does
#                 (Model(Args(**config["args"])) + the safetensors state dict, BltTokenizerAndPatcher
#                 reading train_args.json).
#   transformers  Hugging Face transformers' model_type "blt": what convert_blt_weights_to_hf.py
#                 (huggingface/transformers, commit HF_CONVERTER_COMMIT) makes of a hub folder:
#                 config.json = merge_configurations(config.json, entropy_model/params.json), the weights
#                 renamed and the hash tables fused; here written in two shards with
#                 model.safetensors.index.json. No reference loader exists: it is loaded by reversing the
#                 converter's mapping into the reference model, with the released blt-1b values for what
#                 the HF config does not carry (BLT_1B_NOT_IN_HF_CONFIG).
#
# This file is OUR code: the converter's facts (key names, formulas, key order) are re-implemented
# here, never copied; the reference is imported at run time from the checkout given to the scripts.
import json
import os
import shutil

import torch

from loader_shims import no_cuda
from st_io import read_safetensors, write_safetensors

LAYOUTS = ("consolidated", "hub", "transformers")
HF_CONVERTER_COMMIT = "34c18ed7191ce38fa9ffdade86321e5bc51599d0"
HF_CONVERTER = f"huggingface/transformers@{HF_CONVERTER_COMMIT}:src/transformers/models/blt/convert_blt_weights_to_hf.py"
HF_MODELING = "huggingface/transformers@ce1e50d4810f63f3a72e9ace54a51884c0ae1b45:src/transformers/models/blt/modeling_blt.py"

# What the pretrained/ folder of each layout holds (relative to pretrained/).
FOLDERS = {
    "consolidated": {"model": "blt", "entropy_model": "entropy_model"},
    "hub": {"model": "blt", "entropy_model": None, "entropy_model_standalone": "blt-entropy"},
    "transformers": {"model": "blt", "entropy_model": None},
}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def shared_tensor_groups(sd):
    """Names whose tensors share storage (safetensors' save_model keeps one name of each group and
    drops the others; torch.save keeps all)."""
    groups = {}
    for name, t in sd.items():
        groups.setdefault((t.device.type, t.storage().data_ptr()), []).append(name)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def bf16_state_dict(model):
    """The state dict in bfloat16 (the dtype of the released files), each tensor its own copy."""
    sd = model.state_dict()
    shared = shared_tensor_groups(sd)
    assert not shared, f"tensors sharing storage (safetensors' save_model would drop names): {shared}"
    return {k: v.detach().to(torch.bfloat16).contiguous().clone() for k, v in sd.items()}


def assert_loaded(model, expected_bf16, what):
    """Every tensor the loader put into `model` equals the bf16 tensor written (exact upcast)."""
    sd = model.state_dict()
    assert set(sd) == set(expected_bf16), f"{what}: key sets differ: {sorted(set(sd) ^ set(expected_bf16))}"
    for k, v in expected_bf16.items():
        assert sd[k].dtype == torch.float32, f"{what}: {k} loaded as {sd[k].dtype}"
        assert torch.equal(sd[k], v.float()), f"{what}: {k} differs from the file"


def write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json_indent(path, obj, **kw):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, **kw)


def train_args_json(*, model=None, entropy_model=None, train_entropy_model=False, patcher_args, model_dtype):
    """A TrainArgs of the reference, as its checkpointing writes params.json (`model_dump_json()`)."""
    from bytelatent.args import TrainArgs

    ta = TrainArgs(
        model=model,
        entropy_model=entropy_model,
        train_entropy_model=train_entropy_model,
        data={"tokenizer_args": {"name": "blt"}, "patcher_args": patcher_args},
        distributed={"model_dtype": model_dtype},
    )
    return ta.model_dump_json()


def hub_config_json(args):
    """huggingface_hub's ModelHubMixin.save_pretrained(dir, config={"args": args.model_dump()}):
    json.dumps(config, sort_keys=True, indent=2)."""
    return json.dumps({"args": args.model_dump()}, sort_keys=True, indent=2)


def float32_entropy_model(model):
    """Deviation from load_entropy_model (which sets torch's default dtype to bfloat16 and leaves it
    so, building the model in bf16): restore the float32 default and upcast the model, so that the
    golden vectors are float32. The bf16 weights upcast exactly; the RoPE table (a float32 buffer
    built by precompute_freqs_cis) is checked to be the float32 one."""
    from bytelatent.base_transformer import RotaryEmbedding, precompute_freqs_cis

    torch.set_default_dtype(torch.float32)
    model.float()
    for m in model.modules():
        if isinstance(m, RotaryEmbedding):
            fresh = precompute_freqs_cis(dim=m.head_dim, end=m.max_seqlen, theta=m.theta, rope_use_fp32_in_outer_product=m.rope_use_fp32_in_outer_product)
            assert m.freqs_cis.dtype == torch.float32 and torch.equal(m.freqs_cis, fresh), "entropy RoPE table is not the float32 one"
    return model.eval()


def build_patcher(patcher_args, entropy_model_dir=None):
    """patcher_args.build() on the CPU (devices overridden: the files say what they say). With
    `entropy_model_dir`, realtime patching: Patcher loads the entropy model itself through
    load_entropy_model (as demo.py); returns (patcher, the LMTransformerArgs that loader built)."""
    import bytelatent.data.patcher as patcher_module

    update = {"patching_device": "cpu", "device": "cpu"}
    if entropy_model_dir is not None:
        update.update(realtime_patching=True, entropy_model_checkpoint_dir=entropy_model_dir)
    patcher_args = patcher_args.model_copy(update=update, deep=True)
    captured = {}
    original = patcher_module.load_entropy_model

    def load_and_record(*a, **k):  # instrumentation: Patcher discards the args load_entropy_model returns
        model, args = original(*a, **k)
        captured["args"] = args
        return model, args

    patcher_module.load_entropy_model = load_and_record
    try:
        with no_cuda():
            patcher = patcher_args.build()
    finally:
        patcher_module.load_entropy_model = original
    if entropy_model_dir is not None:
        float32_entropy_model(patcher.entropy_model)
    return patcher, captured.get("args")


def attach_entropy_model(patcher, model):
    """hf.py load_transformers: patcher.realtime_patching = True; patcher.entropy_model = model."""
    patcher.realtime_patching = True
    patcher.entropy_model = model
    patcher.device = "cpu"
    return patcher


class Loaded:
    """What a layout's loader gives: models (float32, eval), their arguments, tokenizer, patcher, and
    `problems`: where the folder departs from what the reference (or the published layout) needs."""

    def __init__(self, **kw):
        self.problems = []
        self.__dict__.update(kw)


# ---------------------------------------------------------------------------------------------
# Layout 1: consolidated
# ---------------------------------------------------------------------------------------------
def write_consolidated_folder(folder, params_json_text, state_dict):
    os.makedirs(folder, exist_ok=True)
    write_text(os.path.join(folder, "params.json"), params_json_text)
    torch.save({"model": state_dict}, os.path.join(folder, "consolidated.pth"))


def load_consolidated(blt_dir, entropy_dir):
    """demo.py: load_consolidated_model_and_tokenizer(blt_dir); patcher from params.json
    data.patcher_args with realtime_patching and the entropy model folder."""
    from bytelatent.generate import load_consolidated_model_and_tokenizer

    with no_cuda():
        blt, tokenizer, train_args = load_consolidated_model_and_tokenizer(blt_dir)
    patcher, entropy_args = build_patcher(train_args.data.patcher_args, entropy_dir)
    return Loaded(
        blt=blt,
        blt_args=train_args.model,
        tokenizer=tokenizer,
        patcher=patcher,
        entropy_model=patcher.entropy_model,
        entropy_args=entropy_args,
        model_dtype=train_args.distributed.model_dtype,
        patcher_args=patcher.patcher_args,
    )


# ---------------------------------------------------------------------------------------------
# Layout 2: hub (PyTorchModelHubMixin)
# ---------------------------------------------------------------------------------------------
def write_hub_model(folder, args, state_dict):
    """save_pretrained: config.json, model.safetensors (safetensors.torch.save_model: no metadata
    when no tensor is shared, tensors in the library's order)."""
    os.makedirs(folder, exist_ok=True)
    write_text(os.path.join(folder, "config.json"), hub_config_json(args))
    write_safetensors(os.path.join(folder, "model.safetensors"), state_dict, safetensors_order=True)


def load_hub_state_dict(model, path, what):
    """huggingface_hub's _load_as_safetensor: safetensors load_model(model, file, strict=False)."""
    missing, unexpected = model.load_state_dict(read_safetensors(path), strict=False)
    missing = [k for k in missing if "freqs_cis" not in k]
    assert not missing and not unexpected, f"{what}: missing {missing}, unexpected {unexpected}"


def load_hub_entropy(folder):
    """LMTransformer.from_pretrained(folder) (facebook/blt-entropy)."""
    from bytelatent.transformer import LMTransformer, LMTransformerArgs

    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        args = LMTransformerArgs(**json.load(f)["args"])
    model = LMTransformer(args)
    load_hub_state_dict(model, os.path.join(folder, "model.safetensors"), folder)
    return model.eval(), args


def load_hub(blt_dir, entropy_dir=None):
    """hf.py load_transformers(source="local"): ByteLatentTransformer.from_pretrained(blt_dir),
    LMTransformer.from_pretrained(entropy_dir), BltTokenizerAndPatcher.from_pretrained(blt_dir)
    (train_args.json), params cast to its distributed.model_dtype, realtime patching with the
    entropy model attached. Without `entropy_dir`, the entropy model is blt_dir/entropy_model (layout
    1, through load_entropy_model, as the transformers converter finds it)."""
    from bytelatent.hf import BltTokenizerAndPatcher
    from bytelatent.model.blt import ByteLatentTransformer, ByteLatentTransformerArgs

    with open(os.path.join(blt_dir, "config.json"), encoding="utf-8") as f:
        blt_args = ByteLatentTransformerArgs(**json.load(f)["args"])
    blt = ByteLatentTransformer(blt_args)
    load_hub_state_dict(blt, os.path.join(blt_dir, "model.safetensors"), blt_dir)
    tp = BltTokenizerAndPatcher._from_pretrained(
        model_id=blt_dir, revision=None, cache_dir=None, force_download=False, proxies=None, resume_download=None, local_files_only=True, token=None
    )
    tokenizer = tp.tokenizer_args.build()
    problems = []
    if tp.patcher_args.realtime_patching and tp.patcher_args.entropy_model_checkpoint_dir is None:
        # hf.py load_transformers builds this PatcherArgs as it is: Patcher() asserts then.
        problems.append(
            "train_args.json data.patcher_args has realtime_patching true without entropy_model_checkpoint_dir: "
            "hf.py load_transformers (patcher_args.build()) fails with 'Cannot require realtime patching without an entropy "
            "model checkpoint'; checked here with realtime_patching false"
        )
        tp.patcher_args = tp.patcher_args.model_copy(update={"realtime_patching": False})
    param_dtype = dict(fp32=torch.float32, fp16=torch.float16, bf16=torch.bfloat16)[tp.distributed_args.model_dtype]
    blt = blt.eval()
    for p in blt.parameters():
        p.data = p.data.to(dtype=param_dtype)
    if entropy_dir is None and not os.path.exists(os.path.join(blt_dir, "entropy_model", "params.json")) and os.path.exists(os.path.join(blt_dir, "entropy_model", "config.json")):
        # A blt-entropy-style subfolder: hf.py load_transformers reads that (given as entropy_dir), but
        # the published blt-1b holds layout 1 there (params.json + consolidated.pth), which the
        # transformers converter needs.
        entropy_dir = os.path.join(blt_dir, "entropy_model")
        problems.append(
            "entropy_model/ holds config.json + model.safetensors (the blt-entropy layout), not params.json + consolidated.pth "
            "as the published blt-1b: the transformers converter (convert_blt_weights_to_hf.py) could not convert this folder; "
            "loaded here as LMTransformer.from_pretrained would"
        )
    if entropy_dir is None:
        patcher, entropy_args = build_patcher(tp.patcher_args, os.path.join(blt_dir, "entropy_model"))
        entropy_model = patcher.entropy_model
    else:
        entropy_model, entropy_args = load_hub_entropy(entropy_dir)
        patcher, _ = build_patcher(tp.patcher_args)
        attach_entropy_model(patcher, entropy_model)
    return Loaded(
        blt=blt,
        blt_args=blt_args,
        tokenizer=tokenizer,
        patcher=patcher,
        entropy_model=entropy_model,
        entropy_args=entropy_args,
        model_dtype=tp.distributed_args.model_dtype,
        patcher_args=patcher.patcher_args,
        problems=problems,
    )


# ---------------------------------------------------------------------------------------------
# Layout 3: Hugging Face transformers (model_type "blt")
# ---------------------------------------------------------------------------------------------
# The converter's renames, in its order (applied one after the other to each key).
HF_RENAMES = [
    (".attention.", ".self_attn."),
    (".feed_forward.", ".mlp."),
    (".attention_norm.", ".input_layernorm."),
    (".ffn_norm.", ".post_attention_layernorm."),
    (".tok_embeddings.", ".embed_tokens."),
    (".cross_attn_norm_q.", ".q_norm."),
    (".cross_attn_norm_kv.", ".k_norm."),
    (".w1.", ".gate_proj."),
    (".w2.", ".down_proj."),
    (".w3.", ".up_proj."),
    (".wq.", ".q_proj."),
    (".wk.", ".k_proj."),
    (".wv.", ".v_proj."),
    (".wo.", ".o_proj."),
    (".output.", ".lm_head."),
]


def _ffn_size(hidden, multiple_of):
    """The converter's intermediate_size: multiple_of * ceil(int(8·hidden/3) / multiple_of)."""
    return multiple_of * ((int(8 * hidden / 3) + multiple_of - 1) // multiple_of)


def merge_configurations(config_path, entropy_params_path):
    """The converter's merge_configurations (same keys, order and values); our implementation."""
    with open(config_path, encoding="utf-8") as f:
        main = json.load(f)
    with open(entropy_params_path, encoding="utf-8") as f:
        entropy_data = json.load(f)
    ent = entropy_data.get("entropy_model", {})
    pa = entropy_data.get("data", {}).get("patcher_args", {})
    u = dict(main["args"])
    for key in ["vocab_size", "dim", "n_layers", "n_heads", "max_seqlen"]:
        if key in u and not isinstance(u[key], int):
            u[key] = int(u[key])
    patch_size = pa.get("patch_size", 8)
    if isinstance(patch_size, float):
        patch_size = int(patch_size)
    ent_hidden = int(ent.get("dim", 512))
    patcher_config = {
        "vocab_size": int(ent.get("vocab_size", 256)),
        "hidden_size": ent_hidden,
        "num_hidden_layers": int(ent.get("n_layers", 8)),
        "num_attention_heads": int(ent.get("n_heads", 8)),
        "num_key_value_heads": int(ent["n_kv_heads"]) if ent.get("n_kv_heads") is not None else None,
        "max_position_embeddings": int(ent.get("max_seqlen", 1024)),
        "norm_eps": ent.get("norm_eps", 1e-5),
        "dropout": ent.get("dropout", 0.0),
        "rope_theta": ent.get("rope_theta", 10000.0),
        "attn_impl": ent.get("attn_impl", "sdpa"),
        "attn_bias_type": ent.get("attn_bias_type", "causal"),
        "intermediate_size": _ffn_size(ent_hidden, int(ent.get("multiple_of", 256))),
    }

    def local(prefix, n_layers_default, with_pm_size):
        hidden = u.get(f"dim_local_{prefix}", 1024)
        c = {
            "vocab_size": u.get("vocab_size", 256),
            "cross_attn_all_layers": u.get(f"cross_attn_all_layers_{prefix}", False),
            "cross_attn_k": u.get("cross_attn_k", 2),
            "hidden_size_global": u.get("dim_global", 2048),
        }
        if with_pm_size:
            c["pm_size"] = u.get("pm_size", 0)
        c.update(
            {
                "hidden_size": hidden,
                "num_attention_heads": u.get(f"n_heads_local_{prefix}", 16),
                "num_key_value_heads": u.get("n_kv_heads"),
                "num_hidden_layers": u.get(f"n_layers_local_{prefix}", n_layers_default),
                "norm_eps": u.get("norm_eps", 1e-5),
                "dropout": u.get("dropout", 0.0),
                "max_position_embeddings": u.get("max_encoder_seq_length") or u.get("max_seqlen", 1024),
                "rope_theta": u.get("rope_theta", 10000.0),
                "rope_parameters": {"rope_type": "default"},
                "hidden_act": u.get("hidden_act", "silu"),
                "_attn_implementation": u.get("_attn_implementation", "sdpa"),
                "intermediate_size": _ffn_size(hidden, u.get("multiple_of", 256)),
            }
        )
        return c

    global_hidden = u.get("dim_global", 2048)
    global_config = {
        "hidden_size": global_hidden,
        "num_attention_heads": u.get("n_heads_global", 16),
        "num_key_value_heads": u.get("n_kv_heads_global"),
        "num_hidden_layers": u.get("n_layers_global", 25),
        "norm_eps": u.get("norm_eps", 1e-5),
        "dropout": u.get("dropout", 0.0),
        "max_position_embeddings": u.get("max_seqlen", 1024),
        "rope_theta": u.get("rope_theta", 10000.0),
        "rope_parameters": {"rope_type": "default"},
        "hidden_act": u.get("hidden_act", "silu"),
        "_attn_implementation": u.get("_attn_implementation", "sdpa"),
        "intermediate_size": _ffn_size(global_hidden, u.get("multiple_of", 256)),
    }
    config = {
        "model_type": "blt",
        "vocab_size": u.get("vocab_size", 256),
        "max_position_embeddings": u.get("max_seqlen", 1024),
        "patch_in_forward": True,
        "realtime_patching": True,
        "patching_mode": "entropy",
        "patch_size": patch_size,
        "patching_threshold": pa.get("threshold", 0.5),
        "patching_threshold_add": pa.get("threshold_add", 0.0),
        "max_patch_length": pa.get("max_patch_length"),
        "patching_batch_size": pa.get("patching_batch_size", 1),
        "patching_device": pa.get("patching_device", "cuda"),
        "monotonicity": pa.get("monotonicity", False),
        "cross_attn_k": u.get("cross_attn_k", 2),
        "encoder_hash_byte_group_size": u.get("encoder_hash_byte_group_size"),
        "encoder_hash_byte_group_vocab": u.get("encoder_hash_byte_group_vocab", 30000),
        "encoder_hash_byte_group_nb_functions": u.get("encoder_hash_byte_group_nb_functions", 3),
        "pm_size": u.get("pm_size", 0),
        "patcher_config": patcher_config,
        "encoder_config": local("encoder", 1, True),
        "decoder_config": local("decoder", 9, False),
        "global_config": global_config,
    }
    config["tie_word_embeddings"] = False
    return config


def convert_weights(blt_safetensors_path, entropy_pth_path, config):
    """The converter's merge_weights + convert_hash_embeddings_to_fused: name -> tensor, in the order
    the converter's dict ends up in (BLT keys as load_file lists them, then the entropy model's as
    `patcher.*`; lm_head moved to the top level; the fused hash table last)."""
    main = read_safetensors(blt_safetensors_path)
    main = {k: main[k] for k in sorted(main)}  # safetensors' load_file: keys in sorted order
    entropy = torch.load(entropy_pth_path, map_location="cpu", weights_only=True)
    if "model" in entropy:
        entropy = entropy["model"]
    unified = dict(main)
    for k, t in entropy.items():
        unified[f"patcher.{k}"] = t
    renamed = {}
    for old, t in unified.items():
        new = old
        for a, b in HF_RENAMES:
            if a in new:
                new = new.replace(a, b)
        assert new not in renamed, f"rename collision: {old} -> {new}"
        renamed[new] = t
    renamed["lm_head.weight"] = renamed.pop("local_decoder.lm_head.weight")
    prefixed = {k if (k == "lm_head.weight" or k.startswith("model.")) else f"model.{k}": t for k, t in renamed.items()}
    # Fused hash tables: torch.zeros (float32, the converter's dtype) [vocab·n, hidden], table i at rows i·vocab.
    keys = [k for k in prefixed if "encoder_hash_tok_embedding." in k and ".weight" in k and k.split(".")[-2].isdigit()]
    n = config.get("encoder_hash_byte_group_nb_functions", 1) * len(config.get("encoder_hash_byte_group_size", [3, 4, 5, 6, 7, 8]))
    vocab = config.get("encoder_hash_byte_group_vocab", 500002)
    hidden = config.get("encoder_config", {}).get("hidden_size", 1024)
    assert len(keys) == n, (keys, n)
    fused = torch.zeros(vocab * n, hidden)
    for i, k in enumerate(sorted(keys, key=lambda k: int(k.split(".")[-2]))):
        fused[i * vocab : (i + 1) * vocab] = prefixed.pop(k)
    prefixed["model.encoder_hash_tok_embedding.weight"] = fused
    return prefixed


def tokenizer_config(config):
    """The converter's create_tokenizer_config (the BltTokenizer version of commit 180042d9; the later
    one names PreTrainedTokenizerFast and writes tokenizer.json with the `tokenizers` library, which
    is not available here)."""
    return {
        "tokenizer_class": "BltTokenizer",
        "vocab_size": config.get("vocab_size", 256),
        "model_max_length": config.get("max_seqlen", 1024),
        "add_bos_token": True,
        "add_eos_token": True,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
    }


def write_sharded(folder, weights, n_shards=2):
    """transformers' save_pretrained layout: model-0000i-of-0000n.safetensors (metadata {"format": "pt"},
    tensors in safetensors' order) cut in the dict's order at about equal sizes, and
    model.safetensors.index.json {"metadata": {"total_size"}, "weight_map"} (sort_keys, indent 2)."""
    sizes = {k: t.numel() * t.element_size() for k, t in weights.items()}
    total = sum(sizes.values())
    shards, current, acc = [], {}, 0
    for k, t in weights.items():
        if current and len(shards) < n_shards - 1 and acc + sizes[k] / 2 > total * (len(shards) + 1) / n_shards:
            shards.append(current)
            current = {}
        current[k] = t
        acc += sizes[k]
    shards.append(current)
    assert len(shards) == n_shards, len(shards)
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        write_safetensors(os.path.join(folder, name), shard, metadata={"format": "pt"}, safetensors_order=True)
        for k in shard:
            weight_map[k] = name
    with open(os.path.join(folder, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True) + "\n")


def convert_hub_to_transformers(hub_dir, out_dir):
    """convert_hf_blt_to_unified on a local hub folder, the weights written sharded."""
    os.makedirs(out_dir, exist_ok=True)
    config = merge_configurations(os.path.join(hub_dir, "config.json"), os.path.join(hub_dir, "entropy_model", "params.json"))
    weights = convert_weights(os.path.join(hub_dir, "model.safetensors"), os.path.join(hub_dir, "entropy_model", "consolidated.pth"), config)
    write_json_indent(os.path.join(out_dir, "config.json"), config, indent=2)
    write_sharded(out_dir, weights)
    write_json_indent(os.path.join(out_dir, "tokenizer_config.json"), tokenizer_config(config), indent=2)
    return config


def read_sharded(folder):
    index_path = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.exists(index_path):
        return read_safetensors(os.path.join(folder, "model.safetensors"))
    with open(index_path, encoding="utf-8") as f:
        weight_map = json.load(f)["weight_map"]
    out = {}
    for shard in sorted(set(weight_map.values())):
        for k, t in read_safetensors(os.path.join(folder, shard)).items():
            assert weight_map.get(k) == shard, f"{k} in {shard} but the index says {weight_map.get(k)}"
            out[k] = t
    missing = sorted(set(weight_map) - set(out))
    assert not missing, f"index names tensors absent from the shards: {missing}"
    return out


def unconvert_weights(weights, config):
    """The inverse of convert_weights: (BLT state dict, entropy model state dict), reference names."""
    blt, entropy = {}, {}
    inverse = [(b, a) for a, b in reversed(HF_RENAMES)]
    vocab = config["encoder_hash_byte_group_vocab"]
    for key, t in weights.items():
        if key == "lm_head.weight":
            blt["local_decoder.output.weight"] = t
            continue
        if key == "model.encoder_hash_tok_embedding.weight":
            n = t.shape[0] // vocab
            assert n * vocab == t.shape[0], (t.shape, vocab)
            for i in range(n):
                blt[f"encoder_hash_tok_embedding.{i}.weight"] = t[i * vocab : (i + 1) * vocab]
            continue
        assert key.startswith("model."), key
        name = key[len("model.") :]
        target = blt
        if name.startswith("patcher."):
            target = entropy
        for b, a in inverse:
            name = name.replace(b, a) if b in name else name
        if target is entropy:
            name = name[len("patcher.") :]
        target[name] = t
    return blt, entropy


# The released blt-1b's values of every ByteLatentTransformerArgs field that the HF config does not
# carry and that changes the forward pass (see README "What the HF config lacks").
BLT_1B_NOT_IN_HF_CONFIG = {
    "attn_impl": "xformers",
    "attn_bias_type": "block_causal",  # global transformer: a patch holding EOS ends a document
    "local_attention_window_len": 512,  # local encoder/decoder self-attention window (local_block_causal, docs split at EOS)
    "cross_attn_encoder": True,
    "cross_attn_decoder": True,
    "cross_attn_window_encoder": None,
    "cross_attn_window_decoder": None,
    "cross_attn_init_by_pooling": True,
    "cross_attn_use_flex_attention": True,
    "downsampling_by_pooling": "max",
    "head_dim": None,
    "ffn_dim_multiplier": 1.0,
    "use_rope": True,
    "rope_use_fp32_in_outer_product": True,
    "eos_id": 2,
    "non_linearity": "swiglu",
    "use_local_encoder_transformer": True,
    "patch_in_forward": True,
    "pad_to_max_length": True,
    "init_std_factor": "current_depth",
    "recompute_attn": False,
    "layer_ckpt": "none",
    "max_length": 256,
    "dim_token": None,
    "tie_local_encoder_decoder_logits": False,
    "share_encoder_decoder_emb": True,
    "weight_tying": False,
}
# ... and of load_entropy_model's (the entropy model's mask: local_block_causal, window 512).
ENTROPY_NOT_IN_HF_CONFIG = {"attn_impl": "xformers", "attn_bias_type": "local_block_causal", "sliding_window": 512, "ffn_dim_multiplier": 1.0}


def _multiple_of(pairs):
    """A multiple_of that gives every (hidden, FFN size) pair with the reference's formula (ffn_dim_multiplier 1)."""
    for m in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        if all(_ffn_size(h, m) == ffn for h, ffn in pairs):
            return m
    raise ValueError(f"no multiple_of reproduces the FFN sizes {pairs} with ffn_dim_multiplier 1.0")


def _eps(c):
    return c.get("norm_eps", c.get("rms_norm_eps", 1e-5))


def blt_args_from_hf(config):
    """ByteLatentTransformerArgs from an HF config: its fields where it carries them, the released
    blt-1b's (BLT_1B_NOT_IN_HF_CONFIG) elsewhere. Fails where the HF config contradicts an assumption."""
    from bytelatent.model.blt import ByteLatentTransformerArgs

    enc, dec, glob = config["encoder_config"], config["decoder_config"], config["global_config"]
    assert enc["num_attention_heads"] == dec["num_attention_heads"], "HF cross-attention uses each local model's heads; the reference one cross_attn_nheads"
    assert enc.get("num_key_value_heads") == dec.get("num_key_value_heads")
    assert enc["max_position_embeddings"] == dec["max_position_embeddings"]
    for c in (enc, dec, glob):
        assert c.get("hidden_act", "silu") == "silu" and not c.get("dropout")
    assert _eps(enc) == _eps(dec) == _eps(glob) and enc["rope_theta"] == dec["rope_theta"] == glob["rope_theta"]
    multiple_of = _multiple_of([(enc["hidden_size"], enc["intermediate_size"]), (dec["hidden_size"], dec["intermediate_size"]), (glob["hidden_size"], glob["intermediate_size"])])
    args = dict(BLT_1B_NOT_IN_HF_CONFIG)
    args.update(
        dim=glob["hidden_size"],
        n_layers=glob["num_hidden_layers"],
        n_heads=glob["num_attention_heads"],
        vocab_size=config["vocab_size"],
        pm_size=config.get("pm_size", 0),
        max_seqlen=glob["max_position_embeddings"],
        max_encoder_seq_length=enc["max_position_embeddings"],
        multiple_of=multiple_of,
        norm_eps=_eps(glob),
        rope_theta=glob["rope_theta"],
        dim_global=glob["hidden_size"],
        dim_local_encoder=enc["hidden_size"],
        dim_local_decoder=dec["hidden_size"],
        n_layers_global=glob["num_hidden_layers"],
        n_layers_local_encoder=enc["num_hidden_layers"],
        n_layers_local_decoder=dec["num_hidden_layers"],
        n_heads_global=glob["num_attention_heads"],
        n_heads_local_encoder=enc["num_attention_heads"],
        n_heads_local_decoder=dec["num_attention_heads"],
        n_kv_heads=enc.get("num_key_value_heads"),
        n_kv_heads_global=glob.get("num_key_value_heads"),
        cross_attn_k=config["cross_attn_k"],
        cross_attn_nheads=enc["num_attention_heads"],
        cross_attn_all_layers_encoder=enc["cross_attn_all_layers"],
        cross_attn_all_layers_decoder=dec["cross_attn_all_layers"],
        encoder_hash_byte_group_size=config["encoder_hash_byte_group_size"],
        encoder_hash_byte_group_vocab=config["encoder_hash_byte_group_vocab"],
        encoder_hash_byte_group_nb_functions=config["encoder_hash_byte_group_nb_functions"],
        patching_mode=config["patching_mode"],
        patch_size=config["patch_size"],
        patching_threshold=config["patching_threshold"],
        patching_threshold_add=hf_threshold_add(config),
        monotonicity=config.get("monotonicity", False),
        max_patch_length=config.get("max_patch_length"),
        patching_batch_size=config.get("patching_batch_size", 1),
        patching_device=config.get("patching_device", "cuda"),
    )
    return ByteLatentTransformerArgs(**args)


def hf_threshold_add(config):
    """The converter writes patcher_args.get("threshold_add", 0.0): null when the params.json said
    null, 0.0 only when it lacked the key (then: no combined rule either)."""
    v = config.get("patching_threshold_add")
    return None if v in (None, 0, 0.0) else v


def entropy_args_from_hf(config):
    """LMTransformerArgs from the HF patcher_config, completed as load_entropy_model does."""
    from bytelatent.transformer import LMTransformerArgs

    p = config["patcher_config"]
    multiple_of = _multiple_of([(p["hidden_size"], p["intermediate_size"])])
    args = dict(ENTROPY_NOT_IN_HF_CONFIG)
    args.update(
        dim=p["hidden_size"],
        n_layers=p["num_hidden_layers"],
        n_heads=p["num_attention_heads"],
        n_kv_heads=p.get("num_key_value_heads"),
        max_seqlen=p["max_position_embeddings"],
        vocab_size=p["vocab_size"],
        norm_eps=_eps(p),
        rope_theta=p["rope_theta"],
        multiple_of=multiple_of,
    )
    return LMTransformerArgs(**args)


def patcher_args_from_hf(config):
    from bytelatent.data.patcher import PatcherArgs

    return PatcherArgs(
        patching_mode=config["patching_mode"],
        threshold=config["patching_threshold"],
        threshold_add=hf_threshold_add(config),
        max_patch_length=config.get("max_patch_length"),
        patch_size=config["patch_size"],
        patching_batch_size=config.get("patching_batch_size", 1),
        monotonicity=config.get("monotonicity", False),
        patching_device=config.get("patching_device", "cuda"),
    )


def load_transformers(folder):
    """The HF folder into the reference: the converter's mapping reversed, arguments from the HF config
    completed with the released blt-1b values (no reference loader for this layout exists)."""
    from bytelatent.model.blt import ByteLatentTransformer
    from bytelatent.tokenizers.build_tokenizer import TokenizerArgs
    from bytelatent.transformer import LMTransformer

    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config.get("model_type") == "blt", "not a transformers BLT folder"
    blt_sd, entropy_sd = unconvert_weights(read_sharded(folder), config)
    blt_args = blt_args_from_hf(config)
    entropy_args = entropy_args_from_hf(config)
    blt = ByteLatentTransformer(blt_args)
    missing, unexpected = blt.load_state_dict(blt_sd, strict=False)
    assert not unexpected and not [k for k in missing if "freqs_cis" not in k], (missing, unexpected)
    entropy_model = LMTransformer(entropy_args)
    missing, unexpected = entropy_model.load_state_dict(entropy_sd, strict=False)
    assert not unexpected and not [k for k in missing if "freqs_cis" not in k], (missing, unexpected)
    patcher, _ = build_patcher(patcher_args_from_hf(config))
    attach_entropy_model(patcher, entropy_model.eval())
    return Loaded(
        blt=blt.eval(),
        blt_args=blt_args,
        tokenizer=TokenizerArgs(name="blt").build(),
        patcher=patcher,
        entropy_model=entropy_model,
        entropy_args=entropy_args,
        model_dtype="fp32",
        patcher_args=patcher.patcher_args,
    )


def detect_layout(folder):
    if os.path.exists(os.path.join(folder, "params.json")) and os.path.exists(os.path.join(folder, "consolidated.pth")):
        return "consolidated"
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    if config.get("model_type") == "blt":
        return "transformers"
    if "args" in config:
        return "hub"
    raise ValueError(f"{folder}: no layout recognised")


def load_any(folder, entropy_dir=None):
    layout = detect_layout(folder)
    if layout == "consolidated":
        return layout, load_consolidated(folder, entropy_dir or os.path.join(os.path.dirname(os.path.abspath(folder)), "entropy_model"))
    if layout == "hub":
        return layout, load_hub(folder, entropy_dir)
    return layout, load_transformers(folder)


def jsonable_args(args):
    """model_dump() as JSON values (str enums as their value)."""

    def conv(x):
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        if hasattr(x, "value") and isinstance(x, str):
            return x.value
        return x

    return conv(args.model_dump())


def clean_dir(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
