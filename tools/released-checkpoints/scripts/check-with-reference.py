#!/usr/bin/env python3
"""Loads generated checkpoints with Meta's reference code (not run in CI: it needs torch and a
checkout of facebookresearch/blt; Debian's torch 1.13 works through tools/reference-bench's shims).

usage: /usr/bin/python3 check-with-reference.py --reference /path/to/blt-checkout --out SCRATCH_DIR
           [--pydantic-site DIR]

1. Tiny preset, consolidated and hub layouts of blt-1b, blt-7b and blt-entropy (written here with the
   CLI into SCRATCH_DIR): the reference builds each model from the written configuration exactly as
   its loaders do (TrainArgs from params.json / train_args.json; ByteLatentTransformerArgs or
   LMTransformerArgs from config.json["args"]; load_entropy_model) and loads the written state dict
   with load_state_dict(strict=True): every name and shape must match, nothing missing or extra.
2. Full sizes: the reference's state_dict() of blt-1b, blt-7b and the entropy model, built on the
   meta device (no memory), must list the same names, in the same order, with the same shapes as
   the generator's plan.
3. With a real pydantic v2 (--pydantic-site: a site-packages holding it; otherwise the shim of
   tools/reference-bench is used and this step is skipped): params.json / train_args.json are
   byte-identical to TrainArgs.model_validate_json(text).model_dump_json(), and the hub
   config.json to json.dumps({"args": args.model_dump()}, sort_keys=True, indent=2).
The transformers layout has no reference loader and is not checked here.
"""
import argparse
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(TOOL))
CLI = os.path.join(TOOL, "dist", "cli.js")


def read_safetensors(path):
    import torch

    dtypes = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    sd = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        sd[name] = torch.frombuffer(bytearray(data[a:b]), dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return sd


def write(model, layout, out):
    folder = os.path.join(out, f"{model}-{layout}")
    subprocess.run(["node", CLI, "--model", model, "--layout", layout, "--preset", "tiny", "--out", folder, "--quiet", "--no-fsync"],
                   check=True, stdout=subprocess.DEVNULL)
    return folder


def strict_load(module, sd, what):
    import torch

    for k, t in sd.items():
        assert t.dtype == torch.bfloat16, f"{what}: {k} is {t.dtype}"
    result = module.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, f"{what}: {result}"
    return len(sd)


def planned(model):
    """The generator's reference tensors (names, shapes) for the full preset, from the built tool."""
    script = (
        "import('" + os.path.join(TOOL, "dist", "index.js") + "').then((m) => {"
        f"const p = m.planCheckpoint({{model: '{model}', layout: 'hub', preset: 'full', dtype: 'bf16', withEntropy: false}});"
        "console.log(JSON.stringify(p.tensors.map((t) => [t.name, t.shape])));})"
    )
    return json.loads(subprocess.run(["node", "-e", script], check=True, capture_output=True, text=True).stdout)


def meta_state_dict(build):
    """state_dict() of a model built with every Linear and Embedding on the meta device."""
    import torch

    originals = (torch.nn.Linear.__init__, torch.nn.Embedding.__init__)

    def linear(self, *a, **k):
        k["device"] = "meta"
        originals[0](self, *a, **k)

    def embedding(self, *a, **k):
        k["device"] = "meta"
        originals[1](self, *a, **k)

    torch.nn.Linear.__init__, torch.nn.Embedding.__init__ = linear, embedding
    try:
        return [(k, list(v.shape)) for k, v in build().state_dict().items()]
    finally:
        torch.nn.Linear.__init__, torch.nn.Embedding.__init__ = originals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pydantic-site")
    a = ap.parse_args()
    if a.pydantic_site:
        sys.path.insert(0, a.pydantic_site)
    # tools/reference-bench (model-path shims for Debian's torch 1.13) and tools/golden-producer
    # (what the reference's checkpoint loaders import on top), imported as they are.
    sys.path.insert(0, os.path.join(REPO, "tools", "reference-bench"))
    sys.path.insert(0, os.path.join(REPO, "tools", "golden-producer"))
    argv = sys.argv
    sys.argv = [argv[0], "--reference", a.reference]  # reference_bench parses its arguments on import
    try:
        from reference_bench import install_shims
    finally:
        sys.argv = argv
    install_shims(a.reference)
    from loader_shims import install_loader_shims

    install_loader_shims(a.reference)
    import pydantic
    import torch
    from bytelatent.args import TrainArgs
    from bytelatent.entropy_model import load_entropy_model
    from bytelatent.model.blt import ByteLatentTransformer, ByteLatentTransformerArgs
    from bytelatent.transformer import LMTransformer, LMTransformerArgs

    real_pydantic = hasattr(pydantic, "VERSION") and pydantic.VERSION.startswith("2.") and hasattr(pydantic.BaseModel, "model_dump_json")
    print(f"torch {torch.__version__}, pydantic {'real ' + pydantic.VERSION if real_pydantic else 'shim'}")
    torch.set_default_dtype(torch.float32)

    def same_json(text, again, what):
        if real_pydantic:
            assert text == again, f"{what}: differs from pydantic's dump:\n{text[:300]}\n{again[:300]}"

    # 1 + 3: tiny checkpoints through the reference's loaders.
    for model in ("blt-1b", "blt-7b", "blt-entropy"):
        for layout in ("consolidated", "hub"):
            folder = write(model, layout, a.out)
            n = 0
            if model != "blt-entropy":
                sub = model.replace("-", "_")
                if layout == "consolidated":
                    text = open(os.path.join(folder, sub, "params.json")).read()
                    train_args = TrainArgs.model_validate_json(text) if real_pydantic else TrainArgs(**json.loads(text))
                    same_json(text, train_args.model_dump_json() if real_pydantic else None, f"{model} params.json")
                    sd = torch.load(os.path.join(folder, sub, "consolidated.pth"), weights_only=True)["model"]
                    n += strict_load(ByteLatentTransformer(train_args.model), sd, f"{model} consolidated")
                else:
                    text = open(os.path.join(folder, "config.json")).read()
                    args = ByteLatentTransformerArgs(**json.loads(text)["args"])
                    if real_pydantic:
                        same_json(text, json.dumps({"args": args.model_dump()}, sort_keys=True, indent=2), f"{model} config.json")
                    n += strict_load(ByteLatentTransformer(args), read_safetensors(os.path.join(folder, "model.safetensors")), f"{model} hub")
                    tr = open(os.path.join(folder, "train_args.json")).read()
                    t = TrainArgs(**json.loads(tr))  # what BltTokenizerAndPatcher does
                    assert t.data.tokenizer_args.name == "blt" and t.distributed.model_dtype == "bf16"
                    same_json(tr, TrainArgs.model_validate_json(tr).model_dump_json() if real_pydantic else None, f"{model} train_args.json")
            if model == "blt-entropy" and layout == "hub":
                text = open(os.path.join(folder, "config.json")).read()
                args = LMTransformerArgs(**json.loads(text)["args"])
                if real_pydantic:
                    same_json(text, json.dumps({"args": args.model_dump()}, sort_keys=True, indent=2), "blt-entropy config.json")
                n += strict_load(LMTransformer(args), read_safetensors(os.path.join(folder, "model.safetensors")), "blt-entropy hub")
            else:
                ent = os.path.join(folder, "entropy_model")
                text = open(os.path.join(ent, "params.json")).read()
                if real_pydantic:
                    same_json(text, TrainArgs.model_validate_json(text).model_dump_json(), f"{model} entropy_model/params.json")
                pth = os.path.join(ent, "consolidated.pth")
                entropy_model, entropy_args = load_entropy_model(ent, pth)  # the reference's own loader (strict=False)
                torch.set_default_dtype(torch.float32)  # load_entropy_model sets bf16
                n += strict_load(LMTransformer(entropy_args), torch.load(pth, weights_only=True)["model"], f"{model} entropy_model")
            print(f"ok {model} {layout} (tiny): {n} tensors loaded with strict=True by the reference")

    # 2: full-size structure on the meta device.
    def blt_args(model):
        text = subprocess.run(["node", "-e", "import('" + os.path.join(TOOL, "dist", "index.js") + f"').then((m) => console.log(m.pythonJson(m.bltModelArgs('{model}', 'full'))))"],
                              check=True, capture_output=True, text=True).stdout
        return ByteLatentTransformerArgs(**json.loads(text))

    for model in ("blt-1b", "blt-7b"):
        args = blt_args(model)
        ref = meta_state_dict(lambda: ByteLatentTransformer(args))
        ours = planned(model)
        if ref != [(k, s) for k, s in ours]:
            diff = [(r, o) for r, o in zip(ref, ours) if r != tuple(o)][:5]
            raise AssertionError(f"{model}: state dicts differ ({len(ref)} vs {len(ours)} tensors): {diff}")
        print(f"ok {model} (full): reference state_dict() = generator plan, {len(ref)} tensors in the same order and shapes")
    ent_args = LMTransformerArgs(dim=768, n_layers=14, n_heads=12, max_seqlen=8192, ffn_dim_multiplier=1.0, vocab_size=260,
                                 attn_bias_type="local_block_causal", attn_impl="xformers", sliding_window=512)
    ref = meta_state_dict(lambda: LMTransformer(ent_args))
    assert ref == [(k, s) for k, s in planned("blt-entropy")], "entropy model: state dicts differ"
    print(f"ok blt-entropy (full): reference state_dict() = generator plan, {len(ref)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
