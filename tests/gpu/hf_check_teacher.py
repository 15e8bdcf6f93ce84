#!/usr/bin/env python3
"""Checks that HF transformers loads a teacher written by lft-pretrain and
computes the same logits as lft (run on the GPU host, which has transformers).

  python3 tests/gpu/hf_check_teacher.py --teacher DIR \
      --lft-dump build-gpu/worker/model/lft-dump-hidden [--device cuda]

Also loads DIR/tokenizer.json with HF `tokenizers` and prints a few encodings.
Exit status 1 if the max abs logit difference exceeds --tol (default 1e-4,
fp32, TF32 off on both sides).
"""
import argparse
import os
import subprocess
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--lft-dump", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = transformers.AutoModelForCausalLM.from_pretrained(
        args.teacher, torch_dtype=torch.float32).to(args.device).eval()
    tok = Tokenizer.from_file(os.path.join(args.teacher, "tokenizer.json"))
    text = "Question: What is 12 + 30?\nAnswer: 42\n"
    ids = tok.encode(text).ids
    print("HF tokenizers:", len(ids), "ids for", repr(text[:40]), ids[:12])
    torch.manual_seed(0)
    rand = torch.randint(0, model.config.vocab_size, (2, args.seq))
    rand[0, : len(ids)] = torch.tensor(ids[: args.seq])
    with torch.no_grad():
        hf_logits = model(input_ids=rand.to(args.device)).logits.float().cpu()
    work = "/tmp/hf_check_teacher"
    os.makedirs(work, exist_ok=True)
    save_file({"input_ids": rand.contiguous()}, f"{work}/ids.safetensors")
    subprocess.run([args.lft_dump, args.teacher, f"{work}/ids.safetensors",
                    f"{work}/lft.safetensors", "f32", args.device], check=True)
    ours = load_file(f"{work}/lft.safetensors")["logits"].float()
    diff = (ours - hf_logits).abs().max().item()
    print(f"teacher {args.teacher}: layers {model.config.num_hidden_layers} "
          f"hidden {model.config.hidden_size} vocab {model.config.vocab_size}")
    print(f"max |logits_lft - logits_hf| = {diff:.3e} (tol {args.tol:.0e}) on {args.device}")
    sys.exit(0 if diff <= args.tol else 1)


if __name__ == "__main__":
    main()
