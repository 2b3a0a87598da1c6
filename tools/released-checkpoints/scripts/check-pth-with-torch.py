#!/usr/bin/env python3
"""Checks generated .pth files with PyTorch itself (not run in CI: CI has no torch).

usage: python3 check-pth-with-torch.py FILE.pth[=FILE.safetensors] ...

For each .pth:
  - Python's zipfile reads it; every entry is stored, its data starts on a 64-byte boundary, CRCs match;
  - torch.load(path, weights_only=True) loads it: a dict {"model": OrderedDict[str, Tensor]};
  - with "=FILE.safetensors": the same names, shapes, dtypes and values as that safetensors file
    (read here with the standard library + torch.frombuffer, not with our TypeScript code);
  - torch.save of the loaded dict, into a file of the same name, gives the same data.pkl and the same
    storage records (files up to 2 GiB); and, for a file written with --pth-flavor torch1 and torch < 2.1, the same bytes
    from the first to the last.
Exit status 0 when everything holds.
"""
import collections
import json
import os
import struct
import sys
import tempfile
import zipfile
import zlib

import torch

# torch.save of the loaded dict is compared only for files up to this size (it needs the file twice in memory).
RESAVE_LIMIT = 2 * 1024**3

ST_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


class Safetensors:
    """A safetensors file read one tensor at a time (standard library + torch.frombuffer)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            self.header = {k: v for k, v in json.loads(f.read(n)).items() if k != "__metadata__"}
        self.base = 8 + n

    def __iter__(self):
        return iter(self.header)

    def __getitem__(self, name):
        info = self.header[name]
        a, b = info["data_offsets"]
        with open(self.path, "rb") as f:
            f.seek(self.base + a)
            buf = bytearray(f.read(b - a))
        dtype = ST_DTYPES[info["dtype"]]
        t = torch.frombuffer(buf, dtype=dtype) if b > a else torch.empty(0, dtype=dtype)
        return t.reshape(info["shape"])


def check_zip(path):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        prefix = names[0].split("/")[0]
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
        return prefix, names


def main(argv):
    failures = 0
    for arg in argv:
        pth, _, st = arg.partition("=")
        try:
            prefix, names = check_zip(pth)
            loaded = torch.load(pth, weights_only=True)
            assert isinstance(loaded, dict) and list(loaded.keys()) == ["model"], f"top level: {type(loaded)} {list(loaded)[:3]}"
            sd = loaded["model"]
            assert isinstance(sd, collections.OrderedDict), type(sd)
            params = sum(t.numel() for t in sd.values())
            if st:
                ref = Safetensors(st)
                assert set(ref) == set(sd), f"names differ: {sorted(set(ref) ^ set(sd))[:5]}"
                for k, t in sd.items():
                    r = ref[k]
                    assert t.dtype == r.dtype and tuple(t.shape) == tuple(r.shape), f"{k}: {t.dtype} {tuple(t.shape)} vs {r.dtype} {tuple(r.shape)}"
                    assert torch.equal(t, r), f"{k}: values differ"
            if os.path.getsize(pth) > RESAVE_LIMIT:
                print(f"ok {pth}: {len(sd)} tensors, {params} parameters; values equal {st or '-'}; "
                      f"(re-save comparison skipped above {RESAVE_LIMIT} bytes)")
                continue
            with tempfile.TemporaryDirectory() as tmp:
                again = os.path.join(tmp, os.path.basename(pth))
                torch.save(loaded, again)
                with zipfile.ZipFile(pth) as a, zipfile.ZipFile(again) as b:
                    assert a.read(f"{prefix}/data.pkl") == b.read(f"{prefix}/data.pkl"), "data.pkl differs from torch.save's"
                    mine = sorted(n for n in a.namelist() if "/data/" in n)
                    theirs = sorted(n for n in b.namelist() if "/data/" in n)
                    assert mine == theirs, "storage records differ"
                    for n in mine:
                        assert a.getinfo(n).CRC == b.getinfo(n).CRC, f"{n} differs"
                    order_mine = [n.split("/", 1)[1] for n in a.namelist()]
                    order_theirs = [n.split("/", 1)[1] for n in b.namelist()]
                with open(pth, "rb") as fa, open(again, "rb") as fb:
                    identical = fa.read() == fb.read()
            print(
                f"ok {pth}: {len(sd)} tensors, {params} parameters, records {order_mine[:3]}...{order_mine[-2:]}; "
                f"torch {torch.__version__} re-save: records {order_theirs[:2]}...{order_theirs[-1:]}, "
                f"byte-identical file: {identical}" + (f"; values equal {st}" if st else "")
            )
        except Exception as e:  # noqa: BLE001
            failures += 1
            print(f"FAIL {pth}: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
