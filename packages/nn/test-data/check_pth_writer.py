"""Checks packages/nn's torch checkpoint writer (serializePth / writePthFile) against PyTorch itself.

Not part of `npm test` (CI has no torch). Run it with a Python that has torch (Debian's torch 1.13
here) after building the package (`npx tsc -b` in packages/nn):

    /usr/bin/python3 packages/nn/test-data/check_pth_writer.py

It makes tensors of every dtype the writer knows (F64, F32, F16, BF16, I64, I32, I16, I8, U8,
BOOL) with 0-d, empty and multi-dimensional shapes and values across each type's range (NaN,
infinities, int64 extremes), has Node write them with `writePthFile` (dist/node.js) in several
variants (top key "model" and none; flavours torch2 and torch1; a state dict of 1001 tensors), and
for each file checks:
  - Python's zipfile: every record stored, its data 64-byte aligned, every CRC right (testzip);
  - torch.load(path, weights_only=True) loads it: the same names in the same order, dtypes, shapes
    and bytes as the tensors Node was given;
  - torch.save of what was loaded, into a file of the same name, gives the same data.pkl and the
    same storage records, and, for the torch1 flavour under torch < 2.1, the same file byte for byte.
Exit status 0 when everything holds.
"""
import collections
import json
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.dirname(HERE)

DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}

# Node side: reads the variants from stdin, writes each file with writePthFile.
NODE = r"""
import { writePthFile } from '%s';
let input = '';
for await (const chunk of process.stdin) input += chunk;
const ARRAYS = { F64: Float64Array, F32: Float32Array, F16: Uint16Array, BF16: Uint16Array, I64: BigInt64Array, I32: Int32Array, I16: Int16Array, I8: Int8Array, U8: Uint8Array, BOOL: Uint8Array };
for (const v of JSON.parse(input)) {
  const tensors = new Map();
  for (const t of v.tensors) {
    const bytes = Uint8Array.from(Buffer.from(t.hex, 'hex'));
    const Array_ = ARRAYS[t.dtype];
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, data: new Array_(bytes.buffer, 0, bytes.byteLength / Array_.BYTES_PER_ELEMENT) });
  }
  await writePthFile(v.path, tensors, v.options);
}
"""


def raw_bytes(t):
    c = t.detach().contiguous().reshape(-1)
    return bytes((c.to(torch.uint8) if c.dtype == torch.bool else c.view(torch.uint8)).numpy().tobytes())


def sample_tensors():
    g = torch.Generator().manual_seed(0)
    sd = collections.OrderedDict()
    sd["f64"] = torch.tensor([[0.0, -1.5, 1e300], [-1e-300, float("nan"), float("inf")]], dtype=torch.float64)
    sd["f32"] = torch.randn(3, 5, generator=g)
    sd["f32.special"] = torch.tensor([float("nan"), float("-inf"), -0.0, 1e-45], dtype=torch.float32)
    sd["f16"] = torch.randn(2, 1, 4, generator=g).to(torch.float16)
    sd["bf16"] = torch.randn(7, generator=g).to(torch.bfloat16)
    sd["bf16.scalar"] = torch.tensor(1.25, dtype=torch.bfloat16)
    sd["i64"] = torch.tensor([-(2**63), 2**63 - 1, 2**53 + 1, 0], dtype=torch.int64)
    sd["i32"] = torch.tensor([[-(2**31), 2**31 - 1], [0, 5]], dtype=torch.int32)
    sd["i16"] = torch.tensor([-32768, 32767], dtype=torch.int16)
    sd["i8"] = torch.tensor([[[[-128, 127]]]], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 128, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, False, True])
    sd["empty"] = torch.zeros(0, 3)
    sd["empty.bf16"] = torch.zeros(0, dtype=torch.bfloat16)
    sd["scalar.i64"] = torch.tensor(-3, dtype=torch.int64)
    sd["layers.0.attention.wq.weight"] = torch.randn(16, 16, generator=g)
    return sd


def spec(sd):
    return [{"name": k, "dtype": DTYPES[t.dtype], "shape": list(t.shape), "hex": raw_bytes(t).hex()} for k, t in sd.items()]


def check_zip(path):
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED, f"{info.filename} is compressed"
            with open(path, "rb") as f:
                f.seek(info.header_offset)
                local = f.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            data_at = info.header_offset + 30 + name_len + extra_len
            assert data_at % 64 == 0, f"{info.filename}: data at {data_at}, not 64-aligned"
        bad = z.testzip()
        assert bad is None, f"CRC mismatch in {bad}"
        return z.namelist()


def check(path, sd, top_key, flavor):
    names = check_zip(path)
    loaded = torch.load(path, weights_only=True)
    got = loaded if top_key is None else loaded[top_key]
    if top_key is not None:
        assert list(loaded.keys()) == [top_key], f"top level keys {list(loaded.keys())}"
    assert isinstance(got, collections.OrderedDict), type(got)
    assert list(got.keys()) == list(sd.keys()), "names or order differ"
    for k, t in sd.items():
        u = got[k]
        assert u.dtype == t.dtype and tuple(u.shape) == tuple(t.shape), f"{k}: {u.dtype} {tuple(u.shape)} vs {t.dtype} {tuple(t.shape)}"
        assert raw_bytes(u) == raw_bytes(t), f"{k}: values differ"
        assert not u.requires_grad and u.is_contiguous()
    with tempfile.TemporaryDirectory() as tmp:
        again = os.path.join(tmp, os.path.basename(path))
        torch.save(loaded, again)
        prefix = names[0].split("/")[0]
        with zipfile.ZipFile(path) as a, zipfile.ZipFile(again) as b:
            assert a.read(f"{prefix}/data.pkl") == b.read(f"{prefix}/data.pkl"), "data.pkl differs from torch.save's"
            mine = sorted(n for n in a.namelist() if "/data/" in n)
            theirs = sorted(n for n in b.namelist() if "/data/" in n)
            assert mine == theirs, "storage records differ"
            for n in mine:
                assert a.read(n) == b.read(n), f"{n} differs"
            theirs_all = b.namelist()
        with open(path, "rb") as fa, open(again, "rb") as fb:
            identical = fa.read() == fb.read()
    torch_major_minor = tuple(int(x) for x in torch.__version__.split(".")[:2])
    if flavor == "torch1" and torch_major_minor < (2, 1):
        assert identical, "the torch1 flavour should be byte-identical to this torch's torch.save"
    extra = sorted(set(n.split("/", 1)[1] for n in names) ^ set(n.split("/", 1)[1] for n in theirs_all))
    return f"{len(sd)} tensors, records {len(names)}, torch {torch.__version__} re-save byte-identical: {identical}" + (f" (records only one side has: {extra})" if extra else "")


def main():
    node_entry = os.path.join(PACKAGE, "dist", "node.js")
    if not os.path.exists(node_entry):
        sys.exit(f"{node_entry} is missing: build the package first (npx tsc -b in packages/nn)")
    sd = sample_tensors()
    many = collections.OrderedDict((f"t{i}", torch.arange((i % 3) + 1, dtype=torch.float32) + i) for i in range(1001))
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        variants = [
            ("consolidated.pth", sd, {}, "model", "torch2"),
            ("torch1.pth", sd, {"flavor": "torch1"}, "model", "torch1"),
            ("bare.pt", sd, {"topKey": None, "flavor": "torch1"}, None, "torch1"),
            ("bare2.pt", sd, {"topKey": None}, None, "torch2"),
            ("many.pth", many, {"flavor": "torch1"}, "model", "torch1"),
        ]
        payload = [{"path": os.path.join(tmp, name), "tensors": spec(tensors), "options": options} for name, tensors, options, _, _ in variants]
        subprocess.run(["node", "--input-type=module", "-e", NODE % node_entry.replace("\\", "/")], input=json.dumps(payload).encode(), check=True)
        for name, tensors, options, top_key, flavor in variants:
            try:
                print(f"ok {name} {json.dumps(options)}: {check(os.path.join(tmp, name), tensors, top_key, flavor)}")
            except Exception as e:  # noqa: BLE001
                failures += 1
                print(f"FAIL {name} {json.dumps(options)}: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
