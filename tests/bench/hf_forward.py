#!/usr/bin/env python3
"""HF transformers' forward as a user would run it to extract (x0, x1).

The reference for extraction_throughput's forward and extract modes
(issue 12): GPTNeoXModel loaded from the same directory, truncated to the
first `end` layers (no LM head), bf16, sdpa attention, inference mode,
random ids [batch, seq]; tokens/s over --iters forwards after 3 warm-ups.
It keeps hidden_states[m] and [n] as a user's extraction script would
(output_hidden_states=True), and also times the full 24-layer forward with
all hidden states. Prints one "json {...}" line per shape.

  python3 tests/bench/hf_forward.py --teacher DIR --shapes 8x2048,32x512
"""
import argparse
import json
import time

import torch
from transformers import GPTNeoXConfig, GPTNeoXModel


def timed(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--teacher", required=True)
    p.add_argument("--shapes", default="8x2048,32x512")
    p.add_argument("--first", type=int, default=6)
    p.add_argument("--end", type=int, default=18)
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    config = GPTNeoXConfig.from_pretrained(a.teacher)
    full_layers = config.num_hidden_layers
    truncated = GPTNeoXConfig.from_pretrained(a.teacher, num_hidden_layers=a.end)
    kw = dict(torch_dtype=torch.bfloat16, attn_implementation="sdpa")
    model = GPTNeoXModel.from_pretrained(a.teacher, config=truncated, **kw)
    model = model.cuda().eval()
    for shape in a.shapes.split(","):
        b, s = (int(v) for v in shape.split("x"))
        ids = torch.randint(0, config.vocab_size, (b, s), device="cuda")

        def extract():
            with torch.inference_mode():
                out = model(input_ids=ids, output_hidden_states=True)
                # x1 = the last layer's output; HF hands it back after the final
                # LayerNorm, which a user undoes with a hook: same cost.
                return out.hidden_states[a.first], out.last_hidden_state

        secs = timed(extract, a.iters)
        tps = a.iters * b * s / secs
        print(f"| HF GPTNeoXModel [0, {a.end}) bf16 sdpa | {b} x {s} | "
              f"{tps:.0f} tokens/s |")
        print("json " + json.dumps({"mode": "hf_truncated", "batch": b,
                                    "seq": s, "tokens_per_second": tps}))
    del model
    torch.cuda.empty_cache()
    model = GPTNeoXModel.from_pretrained(a.teacher, **kw).cuda().eval()
    for shape in a.shapes.split(","):
        b, s = (int(v) for v in shape.split("x"))
        ids = torch.randint(0, config.vocab_size, (b, s), device="cuda")

        def full():
            with torch.inference_mode():
                return model(input_ids=ids, output_hidden_states=True)

        secs = timed(full, a.iters)
        tps = a.iters * b * s / secs
        print(f"| HF GPTNeoXModel all {full_layers} layers, all hidden states "
              f"| {b} x {s} | {tps:.0f} tokens/s |")
        print("json " + json.dumps({"mode": "hf_full", "batch": b, "seq": s,
                                    "tokens_per_second": tps}))


if __name__ == "__main__":
    main()
