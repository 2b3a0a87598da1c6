#!/usr/bin/env python3
# Copyright (c) bytelatent contributors. MIT licence.
#
# Round-trip check of an exported checkpoint: loads a folder in one of the published layouts the
# way the reference loads it (layouts.py: consolidated -> load_consolidated_model_and_tokenizer +
# load_entropy_model; hub -> ByteLatentTransformer(args) + model.safetensors, train_args.json,
# entropy_model/ or a blt-entropy folder; transformers -> the converter's mapping reversed into the
# reference model, blt-1b values for what the HF config lacks), runs a golden folder's cases
# through it and compares with the golden vectors:
#   entropies (max abs), patch lengths (exactly, from the loaded patcher and its settings),
#   logits (max abs, the BLT fed the golden patch lengths) and the loss.
# Exit status 0 when every case is within --tolerance (default 1e-4) and every patch length equal,
# and the folder has none of the problems the loaders report (e.g. a train_args.json that the
# reference's hf.py cannot build a patcher from); 1 otherwise.
#
#   /usr/bin/python3 tools/golden-producer/check_export.py --reference /tmp/blt-ref \
#       --golden tools/golden/fixtures/layout-hub --model /tmp/exported/blt
#   # without --model: the golden folder's own pretrained/ (config.json "pretrained")
#
# This file is OUR code only; the reference is imported at run time from --reference.
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Loads an exported BLT folder as the reference does and compares its outputs with a golden folder.")
    p.add_argument("--reference", required=True, help="a checkout of github.com/facebookresearch/blt (commit 9774ed4)")
    p.add_argument("--golden", required=True, help="a golden folder (e.g. tools/golden/fixtures/layout-hub)")
    p.add_argument("--model", help="the exported model folder (hub: config.json {args} + model.safetensors; transformers: config.json model_type blt; "
                   "consolidated: params.json + consolidated.pth). Default: the golden folder's pretrained model")
    p.add_argument("--entropy-model", help="the entropy model folder when not found from --model (hub: a blt-entropy folder, config.json + model.safetensors; "
                   "consolidated: default <model>/../entropy_model; hub default: <model>/entropy_model)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed for logits and entropies (default 1e-4)")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tools", "reference-bench"))
_argv = sys.argv
sys.argv = [_argv[0], "--reference", ARGS.reference if ARGS else ".", "--threads", str(ARGS.threads if ARGS else 1)]
try:
    from reference_bench import install_shims  # noqa: E402
finally:
    sys.argv = _argv

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from st_io import read_safetensors  # noqa: E402


def main():
    torch.set_num_threads(ARGS.threads)
    install_shims(ARGS.reference)
    from loader_shims import install_loader_shims

    install_loader_shims(ARGS.reference)
    import layouts
    from bytelatent.data.patcher import calculate_entropies

    with open(os.path.join(ARGS.golden, "config.json"), encoding="utf-8") as f:
        golden_config = json.load(f)
    with open(os.path.join(ARGS.golden, "index.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    model_dir, entropy_dir = ARGS.model, ARGS.entropy_model
    if model_dir is None:
        contract = golden_config.get("pretrained")
        if not contract:
            sys.exit(f"{ARGS.golden}: no config.json 'pretrained' and no --model")
        model_dir = os.path.join(ARGS.golden, contract["model"])
        if entropy_dir is None and contract.get("entropy_model"):
            entropy_dir = os.path.join(ARGS.golden, contract["entropy_model"])
    layout, loaded = layouts.load_any(model_dir, entropy_dir)
    notes = []
    for name, model in (("BLT", loaded.blt), ("entropy model", loaded.entropy_model)):
        dtypes = {p.dtype for p in model.parameters()}
        if dtypes != {torch.float32}:
            notes.append(f"{name} loaded as {sorted(str(d) for d in dtypes)} (the file's model_dtype); compared in float32")
            model.float()
    expected_args = golden_config.get("blt_args", {})
    got_args = layouts.jsonable_args(loaded.blt_args)
    differ = sorted(k for k in expected_args if k in got_args and got_args[k] != expected_args[k])
    if differ:
        notes.append("blt_args differing from the golden config.json (informational): " + ", ".join(f"{k}: {got_args[k]!r} vs {expected_args[k]!r}" for k in differ))

    report = {"layout": layout, "model": model_dir, "entropy_model": entropy_dir, "tolerance": ARGS.tolerance, "cases": {}, "notes": notes, "problems": loaded.problems}
    ok = not loaded.problems
    for case in cases:
        t = read_safetensors(os.path.join(ARGS.golden, "cases", f"{case['name']}.safetensors"))
        tokens = t["tokens"]
        with torch.no_grad():
            entropies, _ = calculate_entropies(tokens, loaded.entropy_model, 1, "cpu")
            patch_lengths, _ = loaded.patcher.patch(tokens, include_next_token=True)
            logits = loaded.blt(tokens, patch_lengths=t["patch_lengths"].clone())
            loss = F.cross_entropy(logits.flatten(0, 1), t["targets"].flatten(), reduction="none").mean()
        r = {
            "entropies_max_abs_diff": float((entropies - t["entropies"]).abs().max()),
            "patch_lengths_equal": patch_lengths.shape == t["patch_lengths"].shape and bool(torch.equal(patch_lengths, t["patch_lengths"])),
            "logits_max_abs_diff": float((logits - t["logits"]).abs().max()),
            "loss_abs_diff": abs(float(loss) - float(t["loss"])),
        }
        if not r["patch_lengths_equal"]:
            r["patch_lengths"] = patch_lengths[0].tolist()
            r["expected_patch_lengths"] = t["patch_lengths"][0].tolist()
        r["ok"] = r["patch_lengths_equal"] and r["entropies_max_abs_diff"] <= ARGS.tolerance and r["logits_max_abs_diff"] <= ARGS.tolerance
        ok = ok and r["ok"]
        report["cases"][case["name"]] = r
    report["max_logits_abs_diff"] = max((r["logits_max_abs_diff"] for r in report["cases"].values()), default=0.0)
    report["ok"] = ok
    print(json.dumps(report, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
