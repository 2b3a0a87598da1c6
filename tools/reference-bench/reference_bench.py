#!/usr/bin/env python3
# Copyright (c) bytelatent contributors. MIT licence.
#
# Forward and forward+backward throughput (bytes/s) of Meta's reference Byte Latent Transformer
# (github.com/facebookresearch/blt) on the CPU, for the same configurations, input and patches as
# tools/bench/src/benches/blt.ts. Prints one JSON line.
#
# This file is OUR code only. The reference is read, unmodified, from a checkout given with
# --reference (git clone https://github.com/facebookresearch/blt). It needs torch >= 2.5, xformers
# and pydantic v2; Debian 12's python3-torch is 1.13, so install_shims() below supplies, at import
# time and without touching the checkout, what 1.13 lacks (see README.md for the list and why
# each one leaves the measured model code unchanged).
#
#   /usr/bin/python3 tools/reference-bench/reference_bench.py --reference ~/blt --threads 2
#   /usr/bin/python3 tools/reference-bench/reference_bench.py --reference ~/blt --check-golden ../shared/golden/tiny
import argparse
import json
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reference", required=True, help="a checkout of github.com/facebookresearch/blt")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (and OpenMP/OpenBLAS/MKL threads); default 2")
    p.add_argument("--blas-threads", type=int, help="OpenBLAS/MKL threads (default: --threads); torch calls BLAS for its matmuls")
    p.add_argument("--configs", default="tiny,10m", help="comma-separated: tiny, 10m (default both)")
    p.add_argument("--modes", default="forward,train", help="comma-separated: forward, train (forward+backward), matmul (torch's own float32 matmul GFLOP/s)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per figure after one warm-up; the median is reported")
    p.add_argument("--bytes", type=int, default=512, help="bytes of synthetic text per step (default 512, as blt.ts)")
    p.add_argument(
        "--input",
        help="JSON file {configs: {name: BltArgs}, tokens, targets, patch_lengths} written by the Node "
        "side-by-side runner (tools/bench/dist/compare-reference.js), so both sides run exactly the same",
    )
    p.add_argument("--check-golden", metavar="DIR", help="instead of timing: run the golden cases (e.g. ../shared/golden/tiny) through the shimmed reference and report the largest logit difference")
    return p.parse_args(argv)


ARGS = parse_args()

# Thread counts must be fixed before torch (and its BLAS / OpenMP runtimes) load.
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
# libgomp's default (active) wait makes idle OpenMP workers spin, starving OpenBLAS's own threads
# and anything else on the machine: on two cores torch 1.13's 2-thread figures were 5-20x lower
# and erratic with it. Passive waiting is the reference's best setting here; set OMP_WAIT_POLICY
# yourself to measure another.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.blas_threads or ARGS.threads)
sys.dont_write_bytecode = True  # leave no __pycache__ in the reference checkout

import enum  # noqa: E402
import importlib  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)
warnings.filterwarnings("ignore", message="scatter_reduce")

# ---------------------------------------------------------------------------------------------
# Shims: what torch 1.13 (and this machine's Python) lacks. Each is recorded in SHIMS.
# ---------------------------------------------------------------------------------------------
SHIMS = []


def _module(name, attrs=None, package=False):
    mod = types.ModuleType(name)
    if package:
        mod.__path__ = []
    for k, v in (attrs or {}).items():
        setattr(mod, k, v)
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, mod)
    return mod


class _PlaceholderModule(types.ModuleType):
    """A module for distributed-training imports that the measured code never calls: any name
    imported from it is a distinct placeholder class (calling one fails loudly)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def fail(*_a, **_k):
            raise RuntimeError(f"reference_bench shim: {self.__name__}.{name} is a placeholder (torch 1.13 lacks it)")

        cls = type(name, (), {"__init__": fail, "__module__": self.__name__})
        setattr(self, name, cls)
        return cls


def _placeholder(name):
    mod = _PlaceholderModule(name)
    mod.__path__ = []
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, mod)
    return mod


def _shim_pydantic():
    """pydantic v2's BaseModel, as far as the reference's argument classes use it: annotated
    fields with defaults (required when none), extra="forbid", enum coercion, model_validator
    (mode="after"), model_copy(update=, deep=), model_dump()."""
    try:
        import pydantic

        if int(pydantic.VERSION.split(".")[0]) >= 2:
            return
    except ImportError:
        pass
    import copy

    required = object()

    def ConfigDict(**kw):  # noqa: N802
        return dict(kw)

    def model_validator(*, mode):
        def deco(fn):
            fn.__shim_model_validator__ = mode
            return fn

        return deco

    class BaseModel:
        model_config = {}

        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__(**kwargs)
            fields, types_, config, validators = {}, {}, {}, []
            for klass in reversed(cls.__mro__):
                config.update(klass.__dict__.get("model_config", {}) or {})
                for name, ann in klass.__dict__.get("__annotations__", {}).items():
                    if name == "model_config" or name.startswith("_"):
                        continue
                    fields[name] = klass.__dict__.get(name, required)
                    types_[name] = ann
                for v in klass.__dict__.values():
                    if getattr(v, "__shim_model_validator__", None) == "after" and v not in validators:
                        validators.append(v)
            cls.__shim_fields__, cls.__shim_types__, cls.__shim_config__, cls.__shim_validators__ = fields, types_, config, validators

        def __init__(self, **data):
            cls = type(self)
            fields = cls.__shim_fields__
            extra = [k for k in data if k not in fields]
            if extra and cls.__shim_config__.get("extra") == "forbid":
                raise ValueError(f"{cls.__name__}: extra fields not permitted: {extra}")
            for name, default in fields.items():
                if name in data:
                    value = data[name]
                elif default is required:
                    raise ValueError(f"{cls.__name__}: field {name} required")
                else:
                    value = copy.deepcopy(default)
                ann = cls.__shim_types__.get(name)
                if isinstance(ann, type) and issubclass(ann, enum.Enum) and not isinstance(value, ann):
                    value = ann(value)
                object.__setattr__(self, name, value)
            for k in extra:
                object.__setattr__(self, k, data[k])
            for v in cls.__shim_validators__:
                v(self)

        def model_copy(self, *, update=None, deep=False):
            new = copy.deepcopy(self) if deep else copy.copy(self)
            for k, v in (update or {}).items():
                object.__setattr__(new, k, v)
            return new

        def model_dump(self, **_kw):
            return {k: getattr(self, k) for k in type(self).__shim_fields__}

        def __repr__(self):
            return f"{type(self).__name__}({self.model_dump()})"

    _module("pydantic", {"BaseModel": BaseModel, "ConfigDict": ConfigDict, "model_validator": model_validator, "VERSION": "2-shim"})
    SHIMS.append("pydantic v2 BaseModel/ConfigDict/model_validator (minimal; pydantic v2 absent)")


def _shim_huggingface_hub():
    try:
        import huggingface_hub  # noqa: F401

        return
    except ImportError:
        pass

    class PyTorchModelHubMixin:
        def __init_subclass__(cls, **_kwargs):  # repo_url=..., coders=...: hub metadata only
            super().__init_subclass__()

    _module("huggingface_hub", {"PyTorchModelHubMixin": PyTorchModelHubMixin})
    SHIMS.append("huggingface_hub.PyTorchModelHubMixin (hub upload/download mixin; no-op)")


def _dense_attention(q, k, v, mask, scale=None):
    """softmax(q kᵀ · scale, masked) v on [B, H, Q, D] tensors; mask: bool, broadcastable to [B, H, Q, K]."""
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if mask is not None and not bool(mask.any(-1).all()):
        probs = probs.masked_fill(~mask.any(-1, keepdim=True), 0.0)  # rows with no key: 0, as flex_attention
    return torch.matmul(probs, v)


def _shim_torch():
    if not hasattr(torch, "compile"):
        torch.compile = lambda fn=None, *a, **k: fn if fn is not None else (lambda f: f)  # noqa: E731
        SHIMS.append("torch.compile = identity (torch < 2.0)")

    if not hasattr(torch.nn, "RMSNorm"):

        class RMSNorm(torch.nn.Module):
            """torch.nn.RMSNorm (torch 2.4): x · rsqrt(mean(x², last dims) + eps) · weight."""

            def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None):
                super().__init__()
                if isinstance(normalized_shape, int):
                    normalized_shape = (normalized_shape,)
                self.normalized_shape = tuple(normalized_shape)
                self.eps = eps
                self.elementwise_affine = elementwise_affine
                if elementwise_affine:
                    self.weight = torch.nn.Parameter(torch.ones(self.normalized_shape, device=device, dtype=dtype))
                else:
                    self.register_parameter("weight", None)

            def reset_parameters(self):
                if self.weight is not None:
                    torch.nn.init.ones_(self.weight)

            def forward(self, x):
                dims = tuple(range(-len(self.normalized_shape), 0))
                eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
                out = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
                return out * self.weight if self.weight is not None else out

        torch.nn.RMSNorm = RMSNorm
        SHIMS.append("torch.nn.RMSNorm (torch < 2.4), same formula")

    try:
        importlib.import_module("torch.nn.attention.flex_attention")
    except ImportError:

        class BlockMask:
            """Dense stand-in: the mask_mod evaluated on every (b, h, q, kv)."""

            def __init__(self, mask):
                self.mask = mask
                self.shape = tuple(mask.shape)

        def create_block_mask(mask_mod, B, H, Q_LEN, KV_LEN, device="cpu", BLOCK_SIZE=128, _compile=False):  # noqa: N803
            with torch.no_grad():
                b = torch.arange(B or 1).view(-1, 1, 1, 1)
                h = torch.arange(H or 1).view(1, -1, 1, 1)
                qi = torch.arange(Q_LEN).view(1, 1, -1, 1)
                ki = torch.arange(KV_LEN).view(1, 1, 1, -1)
                mask = mask_mod(b, h, qi, ki).expand(B or 1, H or 1, Q_LEN, KV_LEN)
            return BlockMask(mask)

        def flex_attention(query, key, value, score_mod=None, block_mask=None, scale=None, enable_gqa=False, return_lse=False, kernel_options=None):
            assert score_mod is None and not return_lse, "reference_bench shim: flex_attention without score_mod/lse only"
            return _dense_attention(query, key, value, None if block_mask is None else block_mask.mask, scale)

        _module("torch.nn.attention", package=True)
        _module(
            "torch.nn.attention.flex_attention",
            {"BlockMask": BlockMask, "create_block_mask": create_block_mask, "flex_attention": flex_attention, "_mask_mod_signature": object},
        )
        SHIMS.append("torch.nn.attention.flex_attention (torch < 2.5): create_block_mask evaluates mask_mod densely, flex_attention = masked softmax(q kT/sqrt(d)) v")

    # Distributed-training modules (tensor parallelism, FSDP2, DTensor) that the model files import
    # at the top but only call when parallelising; torch 1.13 lacks them.
    for name in ("torch.distributed._tensor", "torch.distributed.tensor", "torch.distributed.tensor.parallel", "torch.distributed.device_mesh", "torch.distributed._composable", "torch.distributed._composable.fsdp"):
        try:
            importlib.import_module(name)
        except ImportError:
            _placeholder(name)
            SHIMS.append(f"{name}: placeholder (imported, never called)")


def _shim_xformers():
    try:
        import xformers.ops  # noqa: F401

        return
    except ImportError:
        pass

    class AttentionBias:
        def _mask(self, q_len, kv_len):
            raise NotImplementedError

    class LowerTriangularMask(AttentionBias):
        def _mask(self, q_len, kv_len):
            return torch.ones(q_len, kv_len, dtype=torch.bool).tril()

    class LocalAttentionFromBottomRightMask(AttentionBias):
        def __init__(self, window_left, window_right):
            self.window_left, self.window_right = window_left, window_right

        def _mask(self, q_len, kv_len):
            d = torch.arange(kv_len).view(1, -1) - torch.arange(q_len).view(-1, 1) - (kv_len - q_len)
            return (d >= -self.window_left) & (d <= self.window_right)

    class BlockDiagonalCausalMask(AttentionBias):
        """Causal attention inside each block of `seqlens` (documents), none across blocks; with a
        window w (make_local_attention), only the w most recent keys (the query's included)."""

        def __init__(self, seqlens, window=None):
            self.seqlens, self.window = list(seqlens), window

        @classmethod
        def from_seqlens(cls, q_seqlen, kv_seqlen=None):
            assert kv_seqlen is None or list(kv_seqlen) == list(q_seqlen)
            return cls(q_seqlen)

        def make_local_attention(self, window_size):
            return BlockDiagonalCausalLocalAttentionMask(self.seqlens, window_size)

        def _mask(self, q_len, kv_len):
            assert q_len == kv_len == sum(self.seqlens)
            doc = torch.repeat_interleave(torch.arange(len(self.seqlens)), torch.tensor(self.seqlens))
            qi, ki = torch.arange(q_len).view(-1, 1), torch.arange(kv_len).view(1, -1)
            mask = (doc.view(-1, 1) == doc.view(1, -1)) & (ki <= qi)
            if self.window is not None:
                mask &= qi - ki < self.window
            return mask

    class BlockDiagonalCausalLocalAttentionMask(BlockDiagonalCausalMask):
        pass

    def memory_efficient_attention(query, key, value, attn_bias=None, p=0.0, scale=None, op=None):
        # xformers layout [B, M, H, K]
        assert p == 0.0
        q, k, v = (t.transpose(1, 2) for t in (query, key, value))
        mask = None if attn_bias is None else attn_bias._mask(q.shape[-2], k.shape[-2])
        return _dense_attention(q, k, v, mask, scale).transpose(1, 2)

    attn_bias = types.SimpleNamespace(
        LowerTriangularMask=LowerTriangularMask,
        LocalAttentionFromBottomRightMask=LocalAttentionFromBottomRightMask,
        BlockDiagonalCausalMask=BlockDiagonalCausalMask,
        BlockDiagonalCausalLocalAttentionMask=BlockDiagonalCausalLocalAttentionMask,
        AttentionBias=AttentionBias,
    )
    fmha = types.SimpleNamespace(attn_bias=attn_bias, memory_efficient_attention=memory_efficient_attention)
    _module("xformers", package=True)
    _module("xformers.ops", {"AttentionBias": AttentionBias, "fmha": fmha, "memory_efficient_attention": memory_efficient_attention})
    SHIMS.append("xformers.ops (CUDA kernels; absent): memory_efficient_attention = masked softmax(q kT/sqrt(d)) v with the BlockDiagonalCausal[Local] masks materialised")


def _shim_reference_modules():
    # bytelatent.distributed (FSDP/DDP set-up, selective activation checkpointing) looks up
    # torch.ops of torch >= 2.5 at import; the model only reaches it through the patcher's
    # `get_local_rank` import. Stand it in with that one function.
    mod = _placeholder("bytelatent.distributed")
    mod.get_local_rank = lambda: 0
    SHIMS.append("bytelatent.distributed: placeholder with get_local_rank() = 0 (distributed-training set-up, not on the model path)")


def install_shims(reference):
    sys.path.insert(0, os.path.abspath(reference))
    os.environ.setdefault("BLT_ALLOW_MISSING_FLEX_ATTENTION", "0")
    _shim_pydantic()
    _shim_huggingface_hub()
    _shim_torch()
    _shim_xformers()
    import bytelatent  # noqa: F401  (the package itself, so that its submodule can be stood in)

    _shim_reference_modules()


# ---------------------------------------------------------------------------------------------
# The configurations and input of tools/bench/src/benches/blt.ts.
# ---------------------------------------------------------------------------------------------
COMMON = dict(
    vocab_size=260, ffn_dim_multiplier=1.0, multiple_of=256, rope_theta=500000, max_seqlen=4096, max_encoder_seq_length=4096,
    attn_bias_type="block_causal", init_std_factor="current_depth", cross_attn_encoder=True, cross_attn_decoder=True,
    cross_attn_init_by_pooling=True, cross_attn_k=2, cross_attn_all_layers_encoder=False, cross_attn_all_layers_decoder=True,
    downsampling_by_pooling="max", encoder_hash_byte_group_size=[3, 4, 5, 6, 7, 8], encoder_hash_byte_group_nb_functions=1,
    use_rope=True, use_local_encoder_transformer=True, patching_mode="static",
)
CONFIGS = {
    "tiny": dict(COMMON, dim_global=64, dim_local_encoder=32, dim_local_decoder=32, n_layers_global=2, n_layers_local_encoder=1, n_layers_local_decoder=2, n_heads_global=4, n_heads_local_encoder=2, n_heads_local_decoder=2, cross_attn_nheads=2, local_attention_window_len=24, encoder_hash_byte_group_vocab=1000),
    "10m": dict(COMMON, dim_global=384, dim_local_encoder=128, dim_local_decoder=128, n_layers_global=4, n_layers_local_encoder=1, n_layers_local_decoder=2, n_heads_global=6, n_heads_local_encoder=4, n_heads_local_decoder=4, cross_attn_nheads=4, local_attention_window_len=512, encoder_hash_byte_group_vocab=2048),
}
# Reference-only arguments (ours has no such switches): the released blt-1b kernels (xformers
# for self-attention, flex_attention for cross-attention, as in the golden vectors), static
# patches of 4 bytes, and the model fed patch lengths (no patcher inside forward).
REFERENCE_ONLY = dict(attn_impl="xformers", cross_attn_use_flex_attention=True, patch_size=4, patch_in_forward=False)


def synthetic_text(nbytes, seed=1):
    """tools/bench/src/measure.ts syntheticText, byte for byte."""
    words = ["the", "byte", "latent", "transformer", "patch", "entropy", "of", "and", "naïve", "größe", "日本語", "model", "a", "to", "in"]
    out = bytearray()
    s = seed & 0xFFFFFFFF
    while len(out) < nbytes:
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        w = (words[s % len(words)] + (".\n" if s % 11 == 0 else " ")).encode()
        out += w[: nbytes - len(out)]
    return bytes(out)


def default_input(nbytes):
    ids = [1] + [b + 4 for b in synthetic_text(nbytes)] + [2]  # BOS, bytes + 4, EOS
    tokens, targets = ids[:-1], ids[1:]
    # Static patches of 4 over the tokens and the next one (the reference patcher's
    # include_next_token=True), the remainder last, then the first patch split so that it holds one
    # token (what the model's decoder requires), as @bytelatent/entropy-patcher's static mode does.
    m = len(tokens) + 1
    lengths = [4] * (m // 4) + ([m % 4] if m % 4 else [])
    if lengths[0] > 1:
        lengths = [1, lengths[0] - 1] + lengths[1:]
    return tokens, targets, lengths


def build(args_dict, seed=0):
    from bytelatent.model.blt import ByteLatentTransformer, ByteLatentTransformerArgs

    torch.manual_seed(seed)
    model = ByteLatentTransformer(ByteLatentTransformerArgs(**args_dict))
    model.init_weights()
    return model


def median_seconds(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def bench():
    from bytelatent.base_transformer import cross_entropy

    if ARGS.input:
        with open(ARGS.input) as f:
            data = json.load(f)
        configs = {k: dict(v) for k, v in data["configs"].items()}
        tokens, targets, lengths = data["tokens"], data["targets"], data["patch_lengths"]
        nbytes = data.get("bytes", len(tokens) - 1)
    else:
        configs = CONFIGS
        nbytes = ARGS.bytes
        tokens, targets, lengths = default_input(nbytes)
    assert sum(lengths) == len(tokens) + 1 and lengths[0] == 1
    tok = torch.tensor([tokens], dtype=torch.long)
    tgt = torch.tensor([targets], dtype=torch.long)
    figures = {
        "bench": "reference-blt",
        "reference": "facebookresearch/blt (PyTorch, CPU)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "blas_threads": int(os.environ["OPENBLAS_NUM_THREADS"]),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "bytes_per_step": nbytes,
        "patches": len(lengths),
    }
    modes = ARGS.modes.split(",")
    if "matmul" in modes:
        # torch's own float32 matmul at these threads, for the GFLOP/s table.
        for n in (1024, 2048):
            a, b = torch.rand(n, n) - 0.5, torch.rand(n, n) - 0.5
            med, _ = median_seconds(lambda: torch.matmul(a, b), ARGS.runs)
            figures[f"matmul_{n}_gflop_s"] = 2 * n**3 / med / 1e9
        if modes == ["matmul"]:
            print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in figures.items()}))
            return
    for name in ARGS.configs.split(","):
        args = dict(configs[name], **REFERENCE_ONLY)
        model = build(args)
        figures[f"{name}_params"] = sum(p.numel() for p in model.parameters())
        params = [p for p in model.parameters() if p.requires_grad]

        def forward():
            with torch.no_grad():
                pl = torch.tensor([lengths], dtype=torch.long)
                return model(tok, patch_lengths=pl)

        def train():
            pl = torch.tensor([lengths], dtype=torch.long)
            loss = cross_entropy(model(tok, patch_lengths=pl), tgt)
            loss.backward()
            for p in params:
                p.grad = None
            return loss

        if "forward" in modes:
            med, best = median_seconds(forward, ARGS.runs)
            figures[f"{name}_forward_bytes_s"] = nbytes / med
            figures[f"{name}_forward_best_bytes_s"] = nbytes / best
        if "train" in modes:
            med, best = median_seconds(train, ARGS.runs)
            figures[f"{name}_train_bytes_s"] = nbytes / med
            figures[f"{name}_train_best_bytes_s"] = nbytes / best
        del model
    figures["shims"] = len(SHIMS)
    figures["shim_list"] = "; ".join(SHIMS)
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in figures.items()}))


def read_safetensors(path):
    import struct

    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    dtypes = {"F32": torch.float32, "I64": torch.int64, "U8": torch.uint8}
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = bytearray(raw[8 + n + a : 8 + n + b])
        t = torch.frombuffer(buf, dtype=dtypes[info["dtype"]]) if b > a else torch.empty(0, dtype=dtypes[info["dtype"]])
        out[key] = t.reshape(info["shape"])
    return out


def check_golden(folder):
    """The shims are kernels only: the shimmed reference must reproduce the golden vectors."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    args = dict(cfg["blt_args"], patch_in_forward=False)
    model = build(args)
    missing, unexpected = model.load_state_dict(read_safetensors(os.path.join(folder, "blt_model.safetensors")), strict=False)
    assert not unexpected and all("rope" in k or "freqs_cis" in k for k in missing), (missing, unexpected)
    with open(os.path.join(folder, "index.json")) as f:
        cases = json.load(f)["cases"]
    result = {"bench": "reference-golden-check", "torch": torch.__version__}
    worst = 0.0
    for case in cases:
        t = read_safetensors(os.path.join(folder, "cases", f"{case['name']}.safetensors"))
        with torch.no_grad():
            logits = model(t["tokens"], patch_lengths=t["patch_lengths"].clone())
        diff = (logits - t["logits"]).abs().max().item()
        result[f"{case['name']}_max_abs_diff"] = float(f"{diff:.3g}")
        worst = max(worst, diff)
    result["max_abs_diff"] = float(f"{worst:.3g}")
    result["ok"] = worst <= 1e-4
    result["shim_list"] = "; ".join(SHIMS)
    print(json.dumps(result))
    return result["ok"]


def main():
    install_shims(ARGS.reference)
    if ARGS.check_golden:
        sys.exit(0 if check_golden(ARGS.check_golden) else 1)
    bench()


if __name__ == "__main__":
    main()
