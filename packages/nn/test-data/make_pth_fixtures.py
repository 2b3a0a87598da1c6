"""Writes the torch checkpoint fixtures of packages/nn's .pth reader tests (src/pth*.test.ts).

Run with a Python that has torch (Debian's torch 1.13 here):

    /usr/bin/python3 packages/nn/test-data/make_pth_fixtures.py

It writes small `torch.save` files into test-data/pth/ and test-data/pth/expected.json: for every
tensor of every readable fixture its dtype, shape, row-major little-endian bytes (hex) and, for
floating-point tensors, its values as float64 numbers; plus the non-tensor part of each file's
pickled tree. The tests compare every element and never need Python or torch themselves.
Deterministic: seeded values, fixed names. Not part of the npm package.
"""

import collections
import io
import json
import os
import sys
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "pth")

DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def tensor_record(t):
    c = t.detach().contiguous().reshape(-1)
    raw = c.view(torch.uint8) if c.dtype != torch.bool else c.to(torch.uint8)
    record = {
        "dtype": DTYPES[t.dtype],
        "shape": list(t.shape),
        "hex": bytes(raw.numpy().tobytes()).hex(),
    }
    if t.dtype.is_floating_point:
        record["values"] = [float(x) for x in c.to(torch.float64).tolist()]
    elif t.dtype == torch.int64:
        # Strings: int64 values beyond 2^53 would lose precision as JSON numbers in JS.
        record["values"] = [str(int(x)) for x in c.tolist()]
    else:
        record["values"] = [int(x) for x in c.tolist()]
    return record


def tree(value, path, tensors):
    """The pickled value as JSON; tensors are collected by dotted path and named in the tree."""
    if isinstance(value, torch.Tensor):
        tensors[path] = tensor_record(value)
        return {"__tensor__": path}
    if isinstance(value, dict):
        return {"__dict__": [[k, tree(v, f"{path}.{k}" if path else str(k), tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [tree(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [tree(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return value if abs(value) <= 2**53 - 1 else {"__int__": str(value)}
    raise TypeError(type(value))


def seeded(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g) * 3).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).to(torch.bool)
    info = torch.iinfo(dtype)
    low, high = max(info.min, -(2**31)), min(info.max, 2**31 - 1)
    return torch.randint(low, high, shape, generator=g, dtype=torch.int64).to(dtype)


class Flat(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3, 4)
        self.register_buffer("f16", seeded((2, 3), torch.float16, 1))
        self.register_buffer("bf16", seeded((5,), torch.bfloat16, 2))
        self.register_buffer("ids", torch.tensor([0, -1, 2**40, -(2**62), 2**63 - 1], dtype=torch.int64))
        self.register_buffer("i32", seeded((2, 2), torch.int32, 3))
        self.register_buffer("i16", seeded((3,), torch.int16, 4))
        self.register_buffer("i8", seeded((4,), torch.int8, 5))
        self.register_buffer("u8", torch.tensor([0, 1, 254, 255], dtype=torch.uint8))
        self.register_buffer("mask", torch.tensor([[True, False], [False, True]]))
        self.register_buffer("f64", torch.tensor([1 / 3, -1e300, 5e-324], dtype=torch.float64))
        self.register_buffer("scalar", torch.tensor(2.5))
        self.register_buffer("empty", torch.zeros(0, 3))


class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def stored_zip(path, records):
    """A zip laid out like torch's (stored entries under `archive/`), from raw records."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in records.items():
            # A fixed date keeps the file identical from run to run.
            z.writestr(zipfile.ZipInfo(f"archive/{name}", date_time=(2024, 1, 1, 0, 0, 0)), data)


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {"torch": torch.__version__, "files": {}}

    def save(name, obj, **kwargs):
        path = os.path.join(OUT, name)
        torch.save(obj, path, **kwargs)
        return path

    def record(name, obj):
        tensors = {}
        expected["files"][name] = {"tree": tree(obj, "", tensors), "tensors": tensors}

    # 1. A module's state dict (an OrderedDict with `_metadata`, set by BUILD), every dtype.
    flat = Flat().state_dict()
    save("flat.pth", flat)
    record("flat.pth", flat)

    # 2. The state dict under "model", next to other entries of every plain type.
    g = torch.Generator().manual_seed(7)
    model = collections.OrderedDict(
        [
            ("tok_embeddings.weight", torch.randn(4, 3, generator=g)),
            ("layers.0.attention.wq.weight", torch.randn(3, 3, generator=g).to(torch.bfloat16)),
            ("norm.weight", torch.ones(3, dtype=torch.float16)),
        ]
    )
    nested = {
        "model": model,
        "epoch": 3,
        "lr": 1e-3,
        "name": "blt",
        "big": 2**70,
        "neg_big": -(2**64) - 5,
        "neg": -5,
        "int32": 2**31 - 1,
        "cfg": {"dim": 8, "layers": [1, 2, 3], "flag": True, "off": False, "none": None, "pair": (1, "a"), "nested": {"x": [1.5, -0.0]}},
        "bytes": b"\x00\x01\xff",
        "no_bytes": b"",
        "empty": {"list": [], "tuple": (), "dict": {}},
    }
    save("nested.pth", nested)
    record("nested.pth", nested)

    # 3. Views: a transposed tensor, a slice with a storage offset, a row, an expanded (stride 0)
    #    tensor, all sharing the storage of `base`.
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1
    views = {
        "base": base,
        "transposed": base.t(),
        "slice": base[1:, 1:3],
        "row": base[2],
        "column": base[:, 1],
        "expanded": torch.tensor([1.0, 2.0], dtype=torch.float16).reshape(2, 1).expand(2, 3),
        "bf16_t": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3).t(),
    }
    save("views.pth", views)
    record("views.pth", views)

    # 4. Tied weights: the same tensor twice (pickle memo) and a second tensor on the same storage.
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3) + 0.25
    tied = collections.OrderedDict([("tok_embeddings.weight", w), ("output.weight", w), ("flat", w.view(6))])
    save("tied.pth", tied)
    record("tied.pth", tied)

    # 5. Pickle protocol 4 (STACK_GLOBAL, FRAME, MEMOIZE, SHORT_BINUNICODE).
    proto4 = {"model": {"a": torch.tensor([[1.0, -2.0]]), "b": torch.tensor([7], dtype=torch.int32)}, "step": 10}
    save("proto4.pth", proto4, pickle_protocol=4)
    record("proto4.pth", proto4)

    # 6. A Parameter (torch._utils._rebuild_parameter).
    param = {"p": torch.nn.Parameter(torch.tensor([0.5, 1.5]))}
    save("parameter.pth", param)
    record("parameter.pth", {"p": param["p"].detach()})

    # 7. Weights of the TS tests' tiny model (Linear "proj" 3 -> 2, RMSNorm "norm" of 3) under
    #    "model": proj.weight is a transposed view (non-contiguous) of a bf16 [3, 2] tensor.
    pw = torch.tensor([[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]], dtype=torch.bfloat16).t()
    weights = {"model": {"proj.weight": pw, "norm.weight": torch.tensor([1.0, 0.5, 2.0])}, "step": 1}
    save("weights.pth", weights)
    record("weights.pth", weights)

    # Files that must be refused.
    # 8. The legacy (pre-1.6) serialization: not a zip.
    save("legacy.pth", {"w": torch.ones(2)}, _use_new_zipfile_serialization=False)
    # 9. Pickles that would run code under torch.load(weights_only=False).
    save("evil-system.pth", {"w": torch.ones(1), "x": Evil(os.system, "echo pwned")})
    save("evil-eval.pth", {"x": Evil(eval, "1 + 1")})
    save("evil-eval-proto4.pth", {"x": Evil(eval, "1 + 1")}, pickle_protocol=4)
    # 10. An allowed global used as something else: REDUCE of the storage class torch.FloatStorage.
    evil_reduce = b"\x80\x02}q\x00X\x01\x00\x00\x00xq\x01ctorch\nFloatStorage\nq\x02)Rq\x03s."
    stored_zip(os.path.join(OUT, "evil-reduce.pth"), {"data.pkl": evil_reduce, "version": b"3\n"})

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=False)
        f.write("\n")
    for name in sorted(os.listdir(OUT)):
        print(f"{name}: {os.path.getsize(os.path.join(OUT, name))} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
