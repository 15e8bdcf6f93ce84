#!/usr/bin/env python3
"""Turns extraction_bench.sh's JSON lines into the issue-12 table and JSON.

  extraction_summary.py LINES.jsonl OUT.json GPU COMMIT

Ratios: each lft figure over HF's truncated forward at the same shape, and
over the disk ceiling in tokens/s (ceiling bytes/s / payload bytes per
token of that codec): the fastest plain write of the whole run, and, for
a row followed by a disk line marked "adjacent", that write's too.
"""
import datetime
import json
import sys


def main():
    lines, out, gpu, commit = sys.argv[1:5]
    rows = [json.loads(l) for l in open(lines) if l.strip()]

    def pick(**kw):
        for r in rows:
            if all(r.get(k) == v for k, v in kw.items()):
                return r
        return None

    # The ceiling is the fastest plain write the disk showed in this run
    # (one writer or several, before or after the extractions): the
    # stricter reading for the store's ratio.
    disks = [r for r in rows if r["mode"] == "disk"]
    disk = max(r["bytes_per_second"] for r in disks)
    hf = {(r["batch"], r["seq"]): r["tokens_per_second"]
          for r in rows if r["mode"] == "hf_truncated"}
    fwd = {(r["batch"], r["seq"]): r["tokens_per_second"]
           for r in rows if r["mode"] == "forward"}
    # The disk line right after a row, when the script marked it adjacent.
    adjacent = {}
    for i, r in enumerate(rows):
        if (r["mode"] == "extract" and i + 1 < len(rows)
                and rows[i + 1]["mode"] == "disk"
                and rows[i + 1].get("adjacent")):
            adjacent[i] = rows[i + 1]["bytes_per_second"]
    print("| what | shape | tokens/s | / HF truncated | / disk ceiling "
          "| / adjacent ceiling |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["mode"] == "hf_full":
            print(f"| HF full forward, all hidden states | {r['batch']} x "
                  f"{r['seq']} | {r['tokens_per_second']:.0f} | "
                  f"{r['tokens_per_second'] / hf[(r['batch'], r['seq'])]:.2f} | - | - |")
    for k, v in hf.items():
        print(f"| (a) HF truncated [0, 18) | {k[0]} x {k[1]} | {v:.0f} | 1.00 | - | - |")
    for k, v in fwd.items():
        print(f"| (b) lft forward | {k[0]} x {k[1]} | {v:.0f} | {v / hf[k]:.2f} | - | - |")
    result = {
        "date": datetime.date.today().isoformat(), "gpu": gpu,
        "commit": commit, "disk_write_bytes_per_second": disk,
        "disk_write_runs": [{"writers": r.get("writers", 1),
                             "bytes_per_second": r["bytes_per_second"],
                             "adjacent": bool(r.get("adjacent"))}
                            for r in disks],
        "hf_truncated_tokens_per_second": hf.get((8, 2048)),
        "lft_forward_tokens_per_second": fwd.get((8, 2048)),
        "hf_truncated_b32_s512_tokens_per_second": hf.get((32, 512)),
        "lft_forward_b32_s512_tokens_per_second": fwd.get((32, 512)),
    }
    # The default number of store writers is the first extraction's; rows
    # of a sweep over other numbers get their own names and keys.
    extracts = [r for r in rows if r["mode"] == "extract"]
    default_writers = extracts[0].get("store_writers") if extracts else None
    default_channels = extracts[0].get("store_channels") if extracts else None
    for i, r in enumerate(rows):
        if r["mode"] not in ("extract", "long"):
            continue
        sweep = (r.get("store_writers", default_writers) != default_writers
                 or r.get("store_channels", default_channels)
                 != default_channels)
        ceiling = disk / r["payload_bytes_per_token"]
        key = (r["batch"], r["seq"])
        name = f"({'c' if r['store'] == 'embedded' else 'd'}) {r['store']} {r['codec']}"
        if r["store"] == "grpc2":
            name = f"(d) two lft-store processes {r['codec']}"
        if sweep:
            name += (f", {r['store_writers']} store writers, "
                     f"{r['store_channels']} connection(s)")
        variant = r.get("variant")
        if variant:
            name += ", " + variant.replace("_", " ")
        if r["mode"] == "long":
            name = f"long ingest {r['tokens'] * r['payload_bytes_per_token'] / 1e9:.0f} GB"
        near = "-"
        if i in adjacent:
            near = (f"{r['tokens_per_second'] * r['payload_bytes_per_token'] / adjacent[i]:.2f}"
                    f" ({adjacent[i] / 1e9:.2f} GB/s)")
        print(f"| {name} | {key[0]} x {key[1]} | {r['tokens_per_second']:.0f} | "
              f"{r['tokens_per_second'] / hf[key]:.2f} | "
              f"{r['tokens_per_second'] / ceiling:.2f} | {near} |")
        codec = "fp8" if r["codec"] == "fp8" else "bf16"
        result[f"{codec}_bytes_per_token"] = r["payload_bytes_per_token"]
        if i in adjacent and not variant and not sweep:
            shape = "" if key == (8, 2048) else f"_b{key[0]}_s{key[1]}"
            result[f"lft_{r['store']}_{codec}{shape}_adjacent_disk_bytes_per_second"] = (
                adjacent[i])
        if r["mode"] == "long":
            result["long_ingest_bytes"] = r["tokens"] * r["payload_bytes_per_token"]
            result["long_ingest_first_tokens_per_second"] = r["first_tokens_per_second"]
            result["long_ingest_last_tokens_per_second"] = r["last_tokens_per_second"]
            result["disk_footprint_ratio"] = r["disk_footprint_ratio"]
        elif variant:
            result[f"lft_{r['store']}_{codec}_{variant}_tokens_per_second"] = (
                r["tokens_per_second"])
        elif sweep:
            result[f"lft_{r['store']}_{codec}_w{r['store_writers']}"
                   f"_c{r['store_channels']}_tokens_per_second"] = (
                       r["tokens_per_second"])
        elif key != (8, 2048):
            result[f"lft_{r['store']}_{codec}_b{key[0]}_s{key[1]}"
                   "_tokens_per_second"] = r["tokens_per_second"]
        else:
            result[f"lft_{r['store']}_{codec}_tokens_per_second"] = r["tokens_per_second"]
            if r["store"] == "embedded" and codec == "bf16":
                result.setdefault("disk_footprint_ratio", r["disk_footprint_ratio"])
    print(f"disk ceiling: {disk / 1e9:.2f} GB/s, the fastest of "
          + ", ".join(f"{r['bytes_per_second'] / 1e9:.2f} "
                      f"({r.get('writers', 1)} writer(s))" for r in disks))
    json.dump(result, open(out, "w"), indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
