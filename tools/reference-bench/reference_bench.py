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
#
# With --model-dir, a checkpoint in the hub layout (the released blt-1b shapes, from
# tools/released-checkpoints) loaded through the reference's own hub path, forward and
# generate_nocache (one JSON line per figure; ~12.5 GiB for blt-1b: run it under `flock`):
#   flock /tmp/bigmem.lock /usr/bin/python3 tools/reference-bench/reference_bench.py --reference ~/blt \
#       --model-dir /tmp/blt1b --threads 2 --modes forward,generate
#
# With --entropy-model, an entropy model in one safetensors file (e.g. the one @bytelatent/entropy-patcher
# ships) built as the reference's LMTransformer and timed through the reference's calculate_entropies
# on --input's tokens (what tools/bench/src/benches/entropy-patcher.ts runs with BENCH_REFERENCE):
#   /usr/bin/python3 tools/reference-bench/reference_bench.py --reference ~/blt --threads 2 \
#       --entropy-model packages/entropy-patcher/models/entropy-small.safetensors --input tokens.json
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
    p.add_argument(
        "--modes",
        help="comma-separated. Built configurations: forward, train (forward+backward), matmul (torch's own float32 "
        "matmul GFLOP/s); default forward,train. With --model-dir: forward, generate; default both",
    )
    p.add_argument("--runs", type=int, help="timed runs per figure after one warm-up; the median is reported (default 5; 3 with --model-dir)")
    p.add_argument("--bytes", type=int, help="bytes of text per step (default 512, as blt.ts; 1024 with --model-dir)")
    p.add_argument(
        "--input",
        help="JSON file {configs: {name: BltArgs}, tokens, targets, patch_lengths} written by the Node "
        "side-by-side runner (tools/bench/dist/compare-reference.js), so both sides run exactly the same. With "
        "--model-dir: {tokens: [BOS, byte+4, ...], patch_lengths: [...], prompt?: str}; with --entropy-model: "
        "{tokens: [BOS, byte+4, ...], entropies?: [...]} (see README)",
    )
    p.add_argument("--check-golden", metavar="DIR", help="instead of timing: run the golden cases (e.g. ../shared/golden/tiny) through the shimmed reference and report the largest logit difference")
    p.add_argument(
        "--model-dir",
        help="a BLT checkpoint in the hub layout (config.json {args}, model.safetensors, train_args.json, entropy_model/), "
        "e.g. the released blt-1b shapes from tools/released-checkpoints: loaded by the reference's own hub path "
        "(ByteLatentTransformer.from_pretrained, hf.py's BltTokenizerAndPatcher) and measured instead of --configs",
    )
    p.add_argument(
        "--entropy-model",
        metavar="FILE",
        help="an entropy model in one safetensors file (reference LMTransformer state_dict names, its LMTransformerArgs as JSON "
        "in the metadata key entropy_model_args, e.g. packages/entropy-patcher/models/entropy-small.safetensors): times the "
        "reference's calculate_entropies on --input's tokens instead of a BLT (see README)",
    )
    p.add_argument(
        "--patching-batch-size",
        default="1",
        help="--entropy-model: comma-separated patching_batch_size values for calculate_entropies (default 1, PatcherArgs' default)",
    )
    p.add_argument("--generate-bytes", default="8", help="--model-dir generate: comma-separated new-byte counts for generate_nocache (default 8)")
    p.add_argument("--prompt-bytes", type=int, default=64, help="--model-dir generate: prompt length in bytes (default 64; --input's prompt wins)")
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
        """huggingface_hub's PyTorchModelHubMixin as far as loading a local folder goes (the hub
        layout of facebook/blt-1b; bytelatent/hf.py load_transformers): from_pretrained(folder)."""

        def __init_subclass__(cls, *, coders=None, **_meta):  # repo_url=..., license=...: model-card metadata
            super().__init_subclass__()
            cls._hub_mixin_coders = dict(coders or {})

        @classmethod
        def from_pretrained(cls, pretrained_model_name_or_path, *, local_files_only=False, map_location="cpu", strict=False, **model_kwargs):
            return hub_from_pretrained(cls, str(pretrained_model_name_or_path), map_location=map_location, strict=strict, **model_kwargs)

    _module("huggingface_hub", {"PyTorchModelHubMixin": PyTorchModelHubMixin})
    SHIMS.append(
        "huggingface_hub.PyTorchModelHubMixin (absent): from_pretrained(local folder) as the library does it: config.json's "
        "entries decoded by the class's own `coders` into its __init__ arguments, cls(**those), model.safetensors loaded "
        "into it by load_state_dict(strict=False) (safetensors.torch.load_model), tensor by tensor"
    )


# How hub_from_pretrained builds the model before loading into it. None: as huggingface_hub does
# (torch's default dtype, float32). The released-size bench sets it (see load_released): built in
# `build_dtype` (bfloat16: half the memory of a float32 build), then every parameter but those
# `keep(name)` selects widened to float32, and every buffer checked to be what a float32 build makes.
HUB_LOAD_POLICY = None


def read_safetensors_header(path):
    import struct

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return 8 + n, json.loads(f.read(n))


_ST_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def read_safetensors_tensor(f, base, info, rows=None):
    """One tensor of an open safetensors file (`base`: the data's offset), or rows [r0, r1) of it."""
    dtype = _ST_DTYPES[info["dtype"]]
    shape = list(info["shape"])
    a, b = info["data_offsets"]
    if rows is not None:
        row_bytes = (b - a) // shape[0]
        a, b = a + rows[0] * row_bytes, a + rows[1] * row_bytes
        shape[0] = rows[1] - rows[0]
    buf = bytearray(b - a)
    f.seek(base + a)
    assert f.readinto(buf) == len(buf), "short read"
    if not buf:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(buf, dtype=dtype).reshape(shape)


def hub_from_pretrained(cls, folder, map_location="cpu", strict=False, **model_kwargs):
    """ModelHubMixin.from_pretrained + PyTorchModelHubMixin._from_pretrained / _load_as_safetensor on
    a local folder (no downloads here). Loads the state dict one tensor at a time (safetensors'
    load_model reads the whole file first: 9 GB more for blt-1b), each through the module's own
    load_state_dict, with the same strict=False result (missing and unexpected names returned in
    `model._hub_load_report`)."""
    import inspect

    assert os.path.isdir(folder), f"reference_bench shim: local folders only ({folder})"
    assert map_location == "cpu"
    params = inspect.signature(cls.__init__).parameters
    config_path = os.path.join(folder, "config.json")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        for key, value in config.items():
            ann = params[key].annotation if key in params else inspect.Parameter.empty
            if ann is inspect.Parameter.empty:
                continue
            for type_, (_encode, decode) in cls._hub_mixin_coders.items():
                if inspect.isclass(ann) and issubclass(ann, type_):
                    config[key] = decode(value)
                    break
        for name in params:
            if name not in model_kwargs and name in config:
                model_kwargs[name] = config[name]
    policy = HUB_LOAD_POLICY
    t0 = time.perf_counter()
    widen_s = 0.0
    if policy is None:
        model = cls(**model_kwargs)
    else:
        default = torch.get_default_dtype()
        torch.set_default_dtype(policy["build_dtype"])
        try:
            model = cls(**model_kwargs)
        finally:
            torch.set_default_dtype(default)
        t1 = time.perf_counter()
        for name, p in model.named_parameters():
            if not policy["keep"](name) and p.dtype != default:
                p.data = p.data.to(default)
        policy["check_buffers"](model)
        widen_s = time.perf_counter() - t1
    construct_s = time.perf_counter() - t0 - widen_s
    t0 = time.perf_counter()
    base, header = read_safetensors_header(os.path.join(folder, "model.safetensors"))
    unexpected = []
    with open(os.path.join(folder, "model.safetensors"), "rb") as f:
        for name, info in header.items():
            if name == "__metadata__":
                continue
            result = model.load_state_dict({name: read_safetensors_tensor(f, base, info)}, strict=False)
            unexpected += result.unexpected_keys
    missing = [k for k in model.state_dict() if k not in header]
    if strict and (missing or unexpected):
        raise RuntimeError(f"missing {missing}, unexpected {unexpected}")
    model._hub_load_report = {
        "missing": missing,
        "unexpected": unexpected,
        "tensors": len(header) - ("__metadata__" in header),
        "construct_seconds": construct_s,  # cls(**kwargs): the modules and their random initialisation
        "widen_seconds": widen_s,
        "read_seconds": time.perf_counter() - t0,  # the file read and load_state_dict, tensor by tensor
    }
    return model


# Above this many attention scores (B·H·Q·K), _dense_attention works in blocks of query rows, each
# against the span of keys its mask allows, so that the scores never take more than 256 MiB. Only
# long sequences reach it (the entropy model's 8192-token windows during generate_nocache: 12·8192²
# scores, 3 GiB per layer dense); every configuration of the bench and the golden cases stays under
# it, on the one-shot path below. The same math either way: a key outside the mask contributes
# exp(-inf) = 0, so leaving it out changes nothing but the order of the softmax's sums.
_DENSE_SCORES_LIMIT = 1 << 26


def _dense_attention(q, k, v, mask, scale=None):
    """softmax(q kᵀ · scale, masked) v on [B, H, Q, D] tensors; mask: bool, broadcastable to [B, H, Q, K]."""
    if q.shape[:-1].numel() * k.shape[-2] > _DENSE_SCORES_LIMIT:
        return _blocked_attention(q, k, v, mask, scale)
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if mask is not None and not bool(mask.any(-1).all()):
        probs = probs.masked_fill(~mask.any(-1, keepdim=True), 0.0)  # rows with no key: 0, as flex_attention
    return torch.matmul(probs, v)


def _blocked_attention(q, k, v, mask, scale):
    """_dense_attention by blocks of query rows; each block attends to the keys from the first to the
    last one its mask rows allow (all keys without a mask)."""
    n_q, n_k = q.shape[-2], k.shape[-2]
    # 256 rows: with a local window (the entropy model's 512) each block's keys span about 768.
    rows = max(1, min(256, _DENSE_SCORES_LIMIT // (q.shape[:-2].numel() * n_k)))
    out = []
    for q0 in range(0, n_q, rows):
        q1 = min(n_q, q0 + rows)
        k0, k1, m = 0, n_k, None
        if mask is not None:
            m = mask[..., q0:q1, :]
            cols = m.reshape(-1, m.shape[-1]).any(0).nonzero()
            if len(cols):
                k0, k1 = int(cols[0]), int(cols[-1]) + 1
            m = m[..., k0:k1]
        out.append(_dense_attention(q[..., q0:q1, :], k[..., k0:k1, :], v[..., k0:k1, :], m, scale))
    return torch.cat(out, dim=-2)


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
            # key ki visible to query qi: same block (document), ki <= qi, and with a window, qi - ki < window.
            assert q_len == kv_len == sum(self.seqlens)
            mask = torch.zeros(q_len, kv_len, dtype=torch.bool)
            start = 0
            for n in self.seqlens:
                block = torch.ones(n, n, dtype=torch.bool).tril()
                if self.window is not None:
                    block = block.triu(1 - self.window)  # ki - qi >= 1 - window
                mask[start : start + n, start : start + n] = block
                start += n
            return mask

    class BlockDiagonalCausalLocalAttentionMask(BlockDiagonalCausalMask):
        pass

    def memory_efficient_attention(query, key, value, attn_bias=None, p=0.0, scale=None, op=None):
        # xformers layout [B, M, H, K]
        assert p == 0.0
        q, k, v = (t.transpose(1, 2) for t in (query, key, value))
        mask = None
        if attn_bias is not None:
            # One bias object serves every layer of a forward: its mask is materialised once.
            masks = attn_bias.__dict__.setdefault("_dense_masks", {})
            shape = (q.shape[-2], k.shape[-2])
            if shape not in masks:
                masks[shape] = attn_bias._mask(*shape)
            mask = masks[shape]
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


def median_seconds(fn, runs=None):
    runs = runs or ARGS.runs or 5
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
        nbytes = ARGS.bytes or 512
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
    modes = (ARGS.modes or "forward,train").split(",")
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


# ---------------------------------------------------------------------------------------------
# --model-dir: a checkpoint of the released shapes (blt-1b: 4.6 G parameters), loaded through the
# reference's own hub path, forward and generate_nocache.
# ---------------------------------------------------------------------------------------------
# The built-in input: English prose of our own, repeated to the length asked for.
ENGLISH = (
    "The river ran low that summer, and the old mill stood silent for the first time in forty years. "
    "Children walked along the dry stones of the bed, looking for coins and lost fishing hooks, while "
    "their parents talked about the weather, the price of bread and the new road that would one day "
    "bring visitors from the city. In the evening the light turned gold over the fields, the swallows "
    "came down to skim the last pools of water, and somebody always played a song on the porch of the "
    "inn. Nobody hurried. "
)


def english_text(nbytes):
    text = (ENGLISH * (nbytes // len(ENGLISH) + 1)).encode("ascii")
    return text[:nbytes]


def released_input(nbytes):
    """BOS + bytes + 4 (the reference tokenizer's ids), static patches of 4 over the tokens and the
    next one (include_next_token, as generate_nocache patches), the first patch split to hold the BOS
    alone; default_input's scheme."""
    tokens, _targets, lengths = default_input_from_bytes(english_text(nbytes))
    return tokens, lengths


def default_input_from_bytes(raw):
    ids = [1] + [b + 4 for b in raw] + [2]
    tokens, targets = ids[:-1], ids[1:]
    m = len(tokens) + 1
    lengths = [4] * (m // 4) + ([m % 4] if m % 4 else [])
    if lengths[0] > 1:
        lengths = [1, lengths[0] - 1] + lengths[1:]
    return tokens, targets, lengths


def memory_figures(prefix):
    """Peak and current resident memory of this process, in GiB: getrusage's ru_maxrss and
    /proc/self/status's VmHWM (peak) and VmRSS (now)."""
    import resource

    out = {f"{prefix}_ru_maxrss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[f"{prefix}_{key.lower()}_gib"] = int(value.split()[0]) / 2**20
    return out


def is_hash_table(name):
    return name.startswith("encoder_hash_tok_embedding.")


def check_float32_buffers(model):
    """After a bfloat16 build: every floating buffer must be float32 and every RoPE table the one a
    float32 build computes (precompute_freqs_cis states its dtypes itself)."""
    from bytelatent.base_transformer import RotaryEmbedding, precompute_freqs_cis

    for name, b in model.named_buffers():
        assert not b.is_floating_point() or b.dtype == torch.float32, f"buffer {name} built as {b.dtype}"
    n = 0
    for m in model.modules():
        if isinstance(m, RotaryEmbedding):
            fresh = precompute_freqs_cis(dim=m.head_dim, end=m.max_seqlen, theta=m.theta, rope_use_fp32_in_outer_product=m.rope_use_fp32_in_outer_product)
            assert m.freqs_cis.dtype == fresh.dtype and torch.equal(m.freqs_cis, fresh), "RoPE table differs from a float32 build's"
            n += 1
    assert n > 0, "no RoPE table found"


def load_released(model_dir):
    """bytelatent/hf.py load_transformers(source="local") on a hub folder: ByteLatentTransformer.
    from_pretrained(dir), BltTokenizerAndPatcher.from_pretrained(dir) (train_args.json: tokenizer and
    patcher arguments), the tokenizer built from them. Deviations: hash tables kept bfloat16 (as the
    file stores them), every other parameter float32 (from_pretrained's dtype; hf.py would then cast
    all to train_args' model_dtype, bf16, for a GPU), the model never moved to a GPU."""
    global HUB_LOAD_POLICY
    from bytelatent.hf import BltTokenizerAndPatcher
    from bytelatent.model.blt import ByteLatentTransformer

    HUB_LOAD_POLICY = {"build_dtype": torch.bfloat16, "keep": is_hash_table, "check_buffers": check_float32_buffers}
    try:
        blt = ByteLatentTransformer.from_pretrained(model_dir, local_files_only=True)
    finally:
        HUB_LOAD_POLICY = None
    tp = BltTokenizerAndPatcher._from_pretrained(
        model_id=model_dir, revision=None, cache_dir=None, force_download=False, proxies=None, resume_download=None, local_files_only=True, token=None
    )
    tokenizer = tp.tokenizer_args.build()
    return blt.eval(), tokenizer, tp


def verify_loaded(model, model_dir):
    """The loaded parameters equal the file's values (read again, independently of the load), for a
    few tensors: slices of two hash tables, and the first, a middle and the last other tensor."""
    path = os.path.join(model_dir, "model.safetensors")
    base, header = read_safetensors_header(path)
    names = [k for k in header if k != "__metadata__"]
    hashes = sorted(k for k in names if is_hash_table(k))
    others = [k for k in names if not is_hash_table(k)]
    params = dict(model.named_parameters())
    checked = []
    with open(path, "rb") as f:
        for name in [hashes[0], hashes[-1]] if hashes else []:
            n = header[name]["shape"][0]
            for r0, r1 in ((0, min(64, n)), (max(0, n - 64), n)):
                t = read_safetensors_tensor(f, base, header[name], rows=(r0, r1))
                p = params[name].detach()[r0:r1]
                assert p.dtype == t.dtype and torch.equal(p, t), f"{name}[{r0}:{r1}] differs from the file"
                checked.append(f"{name}[{r0}:{r1}]")
        for name in (others[0], others[len(others) // 2], others[-1]):
            t = read_safetensors_tensor(f, base, header[name])
            p = params[name].detach()
            assert p.dtype == torch.float32 and torch.equal(p, t.float()), f"{name} differs from the file"
            checked.append(name)
    return checked


class _TensorCudaIsIdentity:
    """generate_nocache and bytelatent.distributed's dist_* call Tensor.cuda(): the identity while
    generating on the CPU."""

    def __enter__(self):
        self.original = torch.Tensor.cuda
        torch.Tensor.cuda = lambda self, *a, **k: self
        return self

    def __exit__(self, *exc):
        torch.Tensor.cuda = self.original


def released_bench():
    import tempfile

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden-producer"))
    sys.modules.setdefault("reference_bench", sys.modules[__name__])  # loader_shims imports this module by name
    from loader_shims import NO_CUDA_SHIM, install_loader_shims, no_cuda

    loader_shims = install_loader_shims(ARGS.reference)
    modes = (ARGS.modes or "forward,generate").split(",")
    runs = ARGS.runs or 3
    common = {
        "bench": "reference-blt-released",
        "model_dir": os.path.abspath(ARGS.model_dir),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas_threads": int(os.environ["OPENBLAS_NUM_THREADS"]),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
    }

    def emit(figure, **kw):
        # Other jobs on the machine change every figure: the 1-minute load average when each was taken.
        line = dict(common, figure=figure, **kw, loadavg_1m=os.getloadavg()[0])
        print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) and not k.startswith("logits") else v) for k, v in line.items()}), flush=True)

    if ARGS.input:
        with open(ARGS.input) as f:
            data = json.load(f)
        tokens, lengths = data["tokens"], data["patch_lengths"]
        prompt = data.get("prompt")
        source = os.path.abspath(ARGS.input)
    else:
        tokens, lengths = released_input(ARGS.bytes or 1024)
        prompt = None
        source = "built-in English text, static 4-byte patches"
    if prompt is None:
        prompt = english_text(ARGS.prompt_bytes).decode("ascii")

    t0 = time.perf_counter()
    with no_cuda():
        blt, tokenizer, tp = load_released(ARGS.model_dir)
    load_s = time.perf_counter() - t0
    report = blt._hub_load_report
    dtypes = {}
    for p in blt.parameters():
        dtypes[str(p.dtype).replace("torch.", "")] = dtypes.get(str(p.dtype).replace("torch.", ""), 0) + p.numel()
    emit(
        "load",
        seconds=load_s,
        loader="ByteLatentTransformer.from_pretrained(model_dir) + BltTokenizerAndPatcher._from_pretrained (bytelatent/hf.py)",
        tensors=report["tensors"],
        construct_seconds=report["construct_seconds"],
        widen_seconds=report["widen_seconds"],
        read_seconds=report["read_seconds"],
        missing=report["missing"],
        unexpected=report["unexpected"],
        parameters=sum(dtypes.values()),
        parameters_by_dtype=dtypes,
        **memory_figures("after_load"),
    )
    assert not report["unexpected"] and not report["missing"], report

    t0 = time.perf_counter()
    checked = verify_loaded(blt, ARGS.model_dir)
    emit("verify", ok=True, seconds=time.perf_counter() - t0, equal_to_file=checked)

    if "forward" in modes:
        tok = torch.tensor([tokens], dtype=torch.long)
        nbytes = len(tokens) - 1 if tokens[0] == 1 else len(tokens)
        out = {}

        def forward():
            with torch.no_grad():
                out["logits"] = blt(tok, patch_lengths=torch.tensor([lengths], dtype=torch.long))

        forward()  # warm-up
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            forward()
            times.append(time.perf_counter() - t)
        logits = out.pop("logits")
        med = statistics.median(times)
        emit(
            "forward",
            input=source,
            tokens=len(tokens),
            bytes=nbytes,
            patches=len(lengths),
            patch_lengths_sum=sum(lengths),
            runs=runs,
            seconds_median=med,
            seconds_all=[round(t, 3) for t in times],
            bytes_s=nbytes / med,
            best_bytes_s=nbytes / min(times),
            logits_shape=list(logits.shape),
            logits_sum=float(logits.double().sum()),
            logits_last_argmax=int(logits[0, -1].argmax()),
            **memory_figures("after_forward"),
        )
        del logits

    if "generate" in modes:
        import torch.distributed as dist

        from bytelatent.generate_blt import generate_nocache
        from layouts import build_patcher

        t0 = time.perf_counter()
        # demo.py / launch_generate: the patcher of train_args with realtime_patching and the
        # entropy model folder: Patcher loads it through bytelatent.entropy_model.load_entropy_model.
        patcher, _entropy_args = build_patcher(tp.patcher_args, os.path.join(ARGS.model_dir, "entropy_model"))
        entropy_load_s = time.perf_counter() - t0
        assert torch.get_default_dtype() == torch.float32
        # generate_nocache reduces counts over the process group (dist_sum / dist_max / dist_min), as
        # demo.py sets it up: a group of one process here (gloo, CPU).
        init_file = tempfile.NamedTemporaryFile(prefix="reference-bench-dist-", delete=False).name
        os.unlink(init_file)
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=0, world_size=1)
        prompt_tokens = len(tokenizer.encode(prompt, add_eos=False))
        timing = {"patch": [], "model": []}
        original_patch = patcher.patch

        def timed_patch(*a, **k):
            t = time.perf_counter()
            r = original_patch(*a, **k)
            timing["patch"].append(time.perf_counter() - t)
            timing["patches"] = int((r[0] != 0).sum())
            return r

        patcher.patch = timed_patch  # instrumentation only: times each call
        pre = blt.register_forward_pre_hook(lambda *_: timing.__setitem__("t", time.perf_counter()))
        post = blt.register_forward_hook(lambda *_: timing["model"].append(time.perf_counter() - timing["t"]))
        try:
            for n in [int(x) for x in ARGS.generate_bytes.split(",")]:
                timing["patch"], timing["model"] = [], []
                t0 = time.perf_counter()
                with _TensorCudaIsIdentity():
                    generated = generate_nocache([prompt], model=blt, tokenizer=tokenizer, patcher=patcher, max_gen_len=n)
                total = time.perf_counter() - t0
                emit(
                    "generate_nocache",
                    new_bytes=n,
                    prompt_bytes=len(prompt.encode()),
                    prompt_tokens=prompt_tokens,
                    greedy=True,
                    seconds=total,
                    s_per_byte=total / n,
                    patcher_s_per_step=statistics.mean(timing["patch"]),
                    model_s_per_step=statistics.mean(timing["model"]),
                    step_seconds=[round(a + b, 3) for a, b in zip(timing["patch"], timing["model"])],
                    patches_last_step=timing.get("patches"),
                    generated_tokens=generated[0],
                    entropy_model_load_seconds=entropy_load_s,
                    entropy_model_max_length=getattr(patcher.entropy_model, "max_length", 8192),
                    **memory_figures("after_generate"),
                )
        finally:
            pre.remove()
            post.remove()
            dist.destroy_process_group()

    emit(
        "end",
        shims=SHIMS + loader_shims + [NO_CUDA_SHIM, "torch.Tensor.cuda = identity during generate_nocache (CPU only)"],
        hash_tables="bfloat16 as stored in model.safetensors (lookups widened to float32 exactly where the reference adds them); every other parameter float32",
        **memory_figures("end"),
    )


# ---------------------------------------------------------------------------------------------
# --entropy-model: the reference's entropy model (LMTransformer) through its own patcher function,
# calculate_entropies (bytelatent/data/patcher.py), on the tokens ours patches.
# ---------------------------------------------------------------------------------------------
# calculate_entropies cuts the tokens into chunks of `entropy_model.max_length` ids, 8192 when the
# model has no such attribute (LMTransformer has none).
REFERENCE_CHUNK = 8192


def load_entropy_safetensors(path):
    """LMTransformer(LMTransformerArgs(**metadata["entropy_model_args"])) with the file's weights, as
    load_entropy_model builds it (attn_impl="xformers", eval(), no gradients) but in float32, the
    file's dtype (load_entropy_model builds in bfloat16 for its bf16 consolidated checkpoints)."""
    from bytelatent.transformer import LMTransformer, LMTransformerArgs

    base, header = read_safetensors_header(path)
    raw = (header.get("__metadata__") or {}).get("entropy_model_args")
    assert raw is not None, f"{path}: no entropy_model_args in the safetensors metadata"
    args = LMTransformerArgs(**dict(json.loads(raw), attn_impl="xformers"))
    torch.manual_seed(0)
    model = LMTransformer(args)
    with open(path, "rb") as f:
        state = {name: read_safetensors_tensor(f, base, info) for name, info in header.items() if name != "__metadata__"}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Every parameter must come from the file (the RoPE table is a non-persistent buffer).
    assert not missing and not unexpected, (missing, unexpected)
    model = model.eval()
    for p in model.parameters():
        p.requires_grad = False
    return model, args


def entropy_bench():
    from bytelatent.data.patcher import calculate_entropies

    with open(ARGS.input) as f:
        data = json.load(f)
    tokens = data["tokens"]
    ours = data.get("entropies")
    model, args = load_entropy_safetensors(ARGS.entropy_model)
    # The RoPE table has max_seqlen rows and the model rejects longer sequences, so a model with
    # max_seqlen < 8192 runs only with max_length <= max_seqlen: set to max_seqlen, the attribute
    # calculate_entropies reads, so that it cuts the contexts ours cuts (max_seqlen ids, each from
    # position 0).
    max_length = min(REFERENCE_CHUNK, args.max_seqlen)
    if max_length != REFERENCE_CHUNK:
        model.max_length = max_length
    tok = torch.tensor([tokens], dtype=torch.long)
    nbytes = len(tokens) - 1 if tokens[0] == 1 else len(tokens)
    runs = ARGS.runs or 5
    figures = {
        "bench": "reference-entropy-model",
        "reference": "facebookresearch/blt bytelatent.data.patcher.calculate_entropies (PyTorch, CPU)",
        "model": os.path.abspath(ARGS.entropy_model),
        "params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas_threads": int(os.environ["OPENBLAS_NUM_THREADS"]),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "tokens": len(tokens),
        "bytes": nbytes,
        "max_length": max_length,
        "runs": runs,
    }
    batch_sizes = [int(x) for x in ARGS.patching_batch_size.split(",")]
    for i, bs in enumerate(batch_sizes):
        out = {}

        def run(bs=bs, out=out):
            out["entropies"], _preds = calculate_entropies(tok, model, bs, "cpu")

        med, best = median_seconds(run, runs)
        figures[f"batch{bs}_bytes_s"] = nbytes / med
        figures[f"batch{bs}_best_bytes_s"] = nbytes / best
        if i == 0:
            figures["patching_batch_size"] = bs
            figures["seconds_median"] = med
            figures["bytes_s"] = nbytes / med
        h = out["entropies"][0]
        if ours is not None:
            assert len(ours) == h.numel(), (len(ours), h.numel())
            diff = (h.double() - torch.tensor(ours, dtype=torch.float64)).abs().max().item()
            figures[f"batch{bs}_max_abs_diff_vs_input"] = float(f"{diff:.3g}")
            figures["max_abs_diff_vs_input"] = max(figures.get("max_abs_diff_vs_input", 0.0), float(f"{diff:.3g}"))
        figures.setdefault("entropy_sum", float(h.double().sum()))
    figures["loadavg_1m"] = os.getloadavg()[0]
    figures["shims"] = len(SHIMS)
    figures["shim_list"] = "; ".join(SHIMS)
    keep = ("max_abs_diff", "entropy_sum")
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) and not any(x in k for x in keep) else v) for k, v in figures.items()}))


def main():
    install_shims(ARGS.reference)
    if ARGS.check_golden:
        sys.exit(0 if check_golden(ARGS.check_golden) else 1)
    if ARGS.entropy_model:
        assert ARGS.input, "--entropy-model needs --input {tokens: [...]}"
        entropy_bench()
        return
    if ARGS.model_dir:
        released_bench()
        return
    bench()


if __name__ == "__main__":
    main()
