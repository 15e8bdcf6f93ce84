#!/usr/bin/env python3
"""Compares lft's GPT-NeoX forward pass with HF transformers on the GPU host.

Builds a random GPTNeoXForCausalLM with the Pythia-410M config (24 layers,
hidden 1024, 16 heads, rotary_pct 0.25, parallel residual, untied head),
saves it with save_pretrained (fp32 and bf16), draws random token ids, runs
HF and `lft-dump-hidden` on the same ids and prints the max abs difference of
every hidden state and of the logits.

  python3 tests/gpu/hf_compare.py --lft-dump build/worker/model/lft-dump-hidden \
      --work /tmp/hf_compare [--layers 24] [--device cuda] [--seq 128] [--batch 2]

Exit status 1 if the fp32 comparison exceeds --fp32-tol (default 1e-4 on the
hidden states entering layers and on the logits, relative to HF fp32 on the
same device with TF32 disabled). bf16 is reported as a table: our bf16 vs HF
fp32 next to HF bf16 vs HF fp32, so ours should be no worse than HF's own
bf16 error.
"""
import argparse
import os
import subprocess
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file


def pythia_410m_config(layers):
    kw = dict(vocab_size=50304, hidden_size=1024, num_hidden_layers=layers,
              num_attention_heads=16, intermediate_size=4096,
              max_position_embeddings=2048, hidden_act="gelu",
              rotary_pct=0.25, rotary_emb_base=10000.0,
              partial_rotary_factor=0.25, rope_theta=10000.0,
              use_parallel_residual=True, tie_word_embeddings=False,
              layer_norm_eps=1e-5, initializer_range=0.02)
    return transformers.GPTNeoXConfig(**kw)


def hf_forward(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    return [h.float().cpu() for h in out.hidden_states], out.logits.float().cpu()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lft-dump", required=True)
    ap.add_argument("--work", default="/tmp/lft_hf_compare")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--fp32-tol", type=float, default=1e-4)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    os.makedirs(args.work, exist_ok=True)

    cfg = pythia_410m_config(args.layers)
    model = transformers.GPTNeoXForCausalLM(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), dtype=torch.long)
    ids_path = os.path.join(args.work, "ids.safetensors")
    save_file({"input_ids": ids}, ids_path)

    dirs = {}
    for name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        d = os.path.join(args.work, f"model-{name}")
        model.to(dtype).save_pretrained(d, safe_serialization=True)
        dirs[name] = d
    model = model.float()

    ref_model = transformers.GPTNeoXForCausalLM.from_pretrained(
        dirs["f32"], torch_dtype=torch.float32, attn_implementation="eager").to(args.device).eval()
    ref_h, ref_logits = hf_forward(ref_model, ids.to(args.device))
    del ref_model
    hf16 = transformers.GPTNeoXForCausalLM.from_pretrained(
        dirs["bf16"], torch_dtype=torch.bfloat16).to(args.device).eval()
    hf16_h, hf16_logits = hf_forward(hf16, ids.to(args.device))
    del hf16

    ours = {}
    for name in ("f32", "bf16"):
        out = os.path.join(args.work, f"lft-{name}.safetensors")
        subprocess.run([args.lft_dump, dirs[name], ids_path, out, name, args.device], check=True)
        ours[name] = load_file(out)

    L = args.layers
    worst32 = 0.0
    print(f"| tensor | lft f32 vs HF f32 | lft bf16 vs HF f32 | HF bf16 vs HF f32 |")
    print("|---|---|---|---|")
    names = [f"hidden_states.{i}" for i in range(L + 1)] + ["logits"]
    for i, n in enumerate(names):
        ref = ref_h[i] if n != "logits" else ref_logits
        h16 = hf16_h[i] if n != "logits" else hf16_logits
        d32 = (ours["f32"][n] - ref).abs().max().item()
        d16 = (ours["bf16"][n] - ref).abs().max().item()
        dhf = (h16 - ref).abs().max().item()
        if n != f"hidden_states.{L}":  # the final-LN'd entry is checked via logits
            worst32 = max(worst32, d32)
        print(f"| {n} | {d32:.3g} | {d16:.3g} | {dhf:.3g} |")
    ok = worst32 <= args.fp32_tol
    print(f"\nfp32 worst max abs diff {worst32:.3g} (tolerance {args.fp32_tol}): "
          f"{'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
