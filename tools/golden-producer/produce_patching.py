#!/usr/bin/env python3
# Copyright (c) bytelatent contributors. MIT licence.
#
# Writes reference vectors for every patching mode of Meta's reference BLT
# (github.com/facebookresearch/blt, bytelatent/data/patcher.py): entropy with a threshold, entropy
# without one (top-k by patch_size), space, static, byte, bpe (with the reference's BPE-delimiter
# tokenizer, bytelatent/tokenizers/blt_tokenizer.py) and bpe_patcher, each with
# include_next_token True and False. The rules run in the reference's own `Patcher.patch`; the
# entropy model is the reference `LMTransformer` with the weights of a golden folder (default
# tools/golden/fixtures/mini-a); the BPE-delimiter tokenizer runs on a SentencePiece BPE model that
# this script trains with Debian's sentencepiece (identity normalization and byte fallback, as
# Llama 2's tokenizer.model, the reference's default) and writes beside the vectors.
#
# This file is OUR code only; the reference is read unmodified from --reference.
#
#   apt-get install -y python3-torch python3-sentencepiece
#   /usr/bin/python3 tools/golden-producer/produce_patching.py --reference /tmp/blt-ref --out tools/golden/fixtures/patching-modes
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def parse_args():
    p = argparse.ArgumentParser(description="Reference vectors for every patching mode.")
    p.add_argument("--reference", required=True, help="a checkout of github.com/facebookresearch/blt")
    p.add_argument("--out", required=True)
    p.add_argument("--weights-from", default=os.path.join(REPO, "tools", "golden", "fixtures", "mini-a"), help="golden folder whose entropy model is used")
    return p.parse_args()


ARGS = parse_args()
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(REPO, "tools", "reference-bench"))
sys.path.insert(0, HERE)
_argv = sys.argv
sys.argv = [_argv[0], "--reference", ARGS.reference, "--threads", "1"]
try:
    from reference_bench import install_shims  # noqa: E402
finally:
    sys.argv = _argv

import torch  # noqa: E402
from st_io import read_safetensors  # noqa: E402

# Texts: ASCII prose, leading and repeated spaces, digits, newlines and tabs, accents, CJK, emoji,
# a character the SentencePiece model has no piece for (byte fallback).
TEXTS = [
    "The quick brown fox jumps over the lazy dog, twice: 1984 and 2024.",
    "  Leading spaces, then  two  spaces between words.\nA new line\tand a tab.",
    "Café au lait, naïve façade — 日本語のテキスト and an emoji 🙂!",
    "def patch(x):\n    return [t for t in x if t > 3]\n",
    "a",
    "Ünïcödé ☃ snowman; ×÷ symbols; Ωmega.",
]

SPM_TRAINING_TEXT = (
    "All human beings are born free and equal in dignity and rights. They are endowed with reason and "
    "conscience and should act towards one another in a spirit of brotherhood. Everyone is entitled to all "
    "the rights and freedoms set forth in this Declaration, without distinction of any kind, such as race, "
    "colour, sex, language, religion, political or other opinion, national or social origin, property, "
    "birth or other status. The quick brown fox jumps over the lazy dog. Leading spaces and two spaces. "
    "def patch(x): return [t for t in x if t > 3] 1984 2024 numbers 0123456789\n"
) * 4


def train_spm(path_prefix, **options):
    import sentencepiece as spm

    text_file = path_prefix + ".txt"
    with open(text_file, "w", encoding="utf-8") as f:
        f.write(SPM_TRAINING_TEXT)
    spm.SentencePieceTrainer.train(
        input=text_file,
        model_prefix=path_prefix,
        model_type="bpe",
        vocab_size=400,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        split_digits=True,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
        **options,
    )
    os.remove(text_file)
    os.remove(path_prefix + ".vocab")
    return path_prefix + ".model"


def main():
    install_shims(ARGS.reference)
    from bytelatent.data.patcher import Patcher, PatcherArgs, calculate_entropies
    from bytelatent.tokenizers.blt_tokenizer import BltTokenizer
    from bytelatent.transformer import LMTransformer, LMTransformerArgs

    os.makedirs(ARGS.out, exist_ok=True)
    with open(os.path.join(ARGS.weights_from, "config.json"), encoding="utf-8") as f:
        entropy_args = json.load(f)["entropy_model_args"]
    model = LMTransformer(LMTransformerArgs(**entropy_args))
    missing, unexpected = model.load_state_dict(read_safetensors(os.path.join(ARGS.weights_from, "entropy_model.safetensors")), strict=False)
    assert not unexpected and all("freqs_cis" in k for k in missing), (missing, unexpected)
    model.eval()

    # The BPE patcher: the same model with its output row for the delimiter (id 3) scaled so that it
    # predicts a delimiter at some positions (a random model never does). Only this copy is changed.
    bpe_model = LMTransformer(LMTransformerArgs(**entropy_args))
    bpe_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        bpe_model.output.weight[3] *= 12.0
    bpe_model.eval()

    spm_path = train_spm(os.path.join(ARGS.out, "bpe-delimiter"), remove_extra_whitespaces=False, byte_fallback=True)
    # A second model with the other settings our reader supports: extra whitespace removed, no byte
    # fallback (unknown characters become one unknown id per run).
    plain_spm_path = train_spm(os.path.join(ARGS.out, "bpe-no-fallback"), remove_extra_whitespaces=True, byte_fallback=False)
    import sentencepiece as spm

    sp_models = {name: spm.SentencePieceProcessor(model_file=path) for name, path in (("bpe-delimiter.model", spm_path), ("bpe-no-fallback.model", plain_spm_path))}
    plain = BltTokenizer(vocab_size_unit_1=256, add_bos=True, add_eos=False)
    delimited = BltTokenizer(vocab_size_unit_1=256, bpe_delim=True, bpe_tokenizer_path=spm_path, add_bos=True, add_eos=False)

    cases = []
    for text in TEXTS:
        tokens = plain.encode(text)
        bpe_tokens = delimited.encode(text)
        t = torch.tensor([tokens])
        with torch.no_grad():
            entropies, _ = calculate_entropies(t, model, 1, "cpu")
            # What the BPE patcher predicts after reading tokens[1..j+1] (the reference feeds it tokens[:, 1:]).
            logits = bpe_model(torch.tensor([tokens[1:]])) if len(tokens) > 1 else torch.zeros(1, 0, 260)
        top2 = torch.topk(logits[0], 2, dim=-1).values
        predictions = logits[0].argmax(-1).tolist()
        margin = float((top2[:, 0] - top2[:, 1]).min()) if len(tokens) > 1 else None
        ent = entropies[0].tolist()
        srt = sorted(ent[1:])
        entropy_gap = min((b - a for a, b in zip(srt, srt[1:])), default=None)
        threshold = sorted(ent[1:])[len(ent[1:]) // 2] + 1e-3 if len(ent) > 1 else 1.0
        results = []

        def run(label, options, ids, **patch_kw):
            for include in (True, False):
                p = Patcher(PatcherArgs(patching_device="cpu", device="cpu", **options))
                if options.get("patching_mode") in ("entropy",):
                    p.entropy_model = model
                if options.get("patching_mode") == "bpe_patcher":
                    p.entropy_model = bpe_model
                try:
                    lengths, _ = p.patch(torch.tensor([ids]), include_next_token=include, **patch_kw)
                    out = {"lengths": [int(x) for x in lengths[0].tolist()]}
                except Exception as e:  # the reference refuses some inputs: record it
                    out = {"error": f"{type(e).__name__}: {e}"}
                results.append({"mode": label, "options": options, "include_next_token": include, **out})

        run("entropy", {"patching_mode": "entropy", "threshold": threshold}, tokens)
        run("entropy-max", {"patching_mode": "entropy", "threshold": threshold, "max_patch_length": 3}, tokens)
        for k in (2, 3, 4):
            run(f"entropy-top-k-{k}", {"patching_mode": "entropy", "threshold": None, "patch_size": k}, tokens)
        run("space", {"patching_mode": "space"}, tokens)
        run("space-max", {"patching_mode": "space", "max_patch_length": 4}, tokens)
        run("static", {"patching_mode": "static", "patch_size": 4}, tokens)
        run("byte", {"patching_mode": "byte"}, tokens)
        run("bpe", {"patching_mode": "bpe"}, bpe_tokens)
        run("bpe-max", {"patching_mode": "bpe", "max_patch_length": 3}, bpe_tokens)
        run("bpe-patcher", {"patching_mode": "bpe_patcher"}, tokens)
        cases.append(
            {
                "text": text,
                "tokens": tokens,
                "bpe_tokens": bpe_tokens,
                "entropies": ent,
                "min_entropy_gap": entropy_gap,
                "min_abs_entropy_minus_threshold": min((abs(h - threshold) for h in ent[1:]), default=None),
                "bpe_patcher_predictions": predictions,
                "bpe_patcher_min_logit_margin": margin,
                "sentencepiece_ids": {name: sp.encode(text) for name, sp in sp_models.items()},
                "results": results,
            }
        )

    doc = {
        "produced_by": "tools/golden-producer/produce_patching.py",
        "reference_functions": [
            "bytelatent/data/patcher.py: Patcher.patch, calculate_entropies, find_entropy_patch_start_ids, find_space_patch_start_ids, find_bpe_delim_patch_start_ids, find_bpe_patcher_patch_start_ids",
            "bytelatent/tokenizers/blt_tokenizer.py: BltTokenizer.encode, text2bytes_bpe_delims",
        ],
        "entropy_model": {"weights_from": os.path.relpath(ARGS.weights_from, ARGS.out), "args": entropy_args},
        "bpe_patcher_model": "the entropy model with output.weight[3] multiplied by 12",
        "bpe_tokenizer": "bpe-delimiter.model (SentencePiece BPE, vocabulary 400, identity normalization, byte fallback)",
        "sentencepiece_ids": "SentencePieceProcessor.encode(text) of bpe-delimiter.model and bpe-no-fallback.model (extra whitespace removed, no byte fallback)",
        "cases": cases,
    }
    with open(os.path.join(ARGS.out, "patching.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {ARGS.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
