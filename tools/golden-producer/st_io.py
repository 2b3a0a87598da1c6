# Copyright (c) bytelatent contributors. MIT licence.
#
# safetensors reading and writing (the standard format: u64 LE header length, a JSON header padded
# with spaces to a multiple of 8 bytes, then the raw little-endian data), without the `safetensors`
# package (not installable here). Our own code.
import json
import struct

import torch

DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}
TORCH_DTYPES = {v: k for k, v in DTYPES.items()}
# The order of safetensors' Rust `Dtype` enum (its serializer sorts tensors by dtype, descending,
# then by name, so that larger alignments come first).
_RUST_DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.numel() == 0:
        return b""
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None, safetensors_order=False):
    """Writes `tensors` (name -> tensor). Insertion order, unless `safetensors_order`: the order the
    safetensors library itself writes (dtype descending in its enum order, then name), as
    `safetensors.torch.save_file` / `save_model` do."""
    items = list(tensors.items())
    if safetensors_order:
        items.sort(key=lambda kv: (-_RUST_DTYPE_ORDER.index(DTYPES[kv[1].dtype]), kv[0]))
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs = []
    offset = 0
    for name, t in items:
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        assert t.dtype in DTYPES, (name, t.dtype)
        data = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def read_safetensors_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def read_safetensors(path):
    """name -> tensor, in the file's header order (the dtype as stored)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dtype = TORCH_DTYPES[info["dtype"]]
        buf = bytearray(raw[8 + n + a : 8 + n + b])
        if b == a:
            t = torch.empty(0, dtype=dtype)
        elif dtype in (torch.bfloat16, torch.float16):
            t = torch.frombuffer(buf, dtype=torch.int16).view(dtype)
        else:
            t = torch.frombuffer(buf, dtype=dtype)
        out[key] = t.reshape(info["shape"])
    return out
