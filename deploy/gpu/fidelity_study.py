#!/usr/bin/env python3
"""The fidelity study of issue 16, end to end, as real lft jobs.

  python3 deploy/gpu/fidelity_study.py --scale gpu [--build build-gpu]
      [--out DIR] [--no-new-eval-fields] [--dry-run]
  python3 deploy/gpu/fidelity_study.py --scale rehearsal --build build \
      --no-new-eval-fields                 # this CPU, toy scale, temp dir
  python3 deploy/gpu/fidelity_study.py --prepare-carry   # CPU side, once
  python3 deploy/gpu/fidelity_study.py --deliver $OUT --work DIR

Phases (each with a time budget; wall times printed and recorded):
  prepare   the corpus: gpu copies .carry/corpus (train shards, val, test)
            into the work directory; rehearsal cuts slices of
            ../shared/corpus with the zstd command.
  pretrain  lft-pretrain: a 24-layer Pythia-style teacher (parallel
            residual, 25% rotary) with a fixed seed and step count; its
            held-out perplexity on val.
  planner   lftctl analyze on test.jsonl.zst at 256 tokens (the paper's
            count) and at more tokens: recoupling ratio (exact assignment),
            Block Influence and angular distance of every (m, n), heatmaps;
            the best and worst block of the study's size by the ranking rule
            of fidelity_report.ranking_key, [6, 12) excluded.
  cluster   lft-store, lft-coordinator (--pair-retention-s 1: a finished
            job's pairs are deleted at once, so the disk holds the pairs of
            the jobs in flight only) and one teacher, one trainer and one
            evaluator lft-worker.
  jobs      one compress job per (block, method) for blocks [6, 12),
            [6, 18), best and worst and methods SFM, FW (k = 3), hybrid
            (FW + 0.001 SFM), all with the same training.max_tokens, cached
            mode (pairs kept; epochs over them). The FW job of each block
            also scores the regression baseline (the evaluator's, trained on
            the job's pairs for max_tokens / (batch x sequence) steps: the
            same tokens as the flow layers, no second extraction) and, with
            --with-new-eval-fields, the least-squares linear map. Every
            report scores k = 1, 2, 3, 4, 8 with Euler and midpoint and
            skip-1..3. At most `in_flight` jobs run at once; past the phase
            deadline the rest is cancelled and recorded as not run.
  export    lftctl export of the FW checkpoints of [6, 12) and [6, 18) with
            k = 3 Euler steps folded, --dump-logits of lft's compressed model
            on the evaluator's held-out sequences, then
            deploy/gpu/hf_export_check.py (HF transformers) where
            transformers imports.
  compose   fidelity.json, fidelity.md, SVG plots (fidelity_report.py).

Outputs go to --out (default: $OUT/study when $OUT is set, else
<work>/out); --scale gpu with --docs also writes docs/fidelity.json and
docs/fidelity.md of the repo. The rehearsal never writes docs/.

--with-new-eval-fields (default on) adds the evaluation spec fields the
evaluator engineer is adding (linear_baseline, linear_tokens,
regression_steps, regression_batch_sequences, score_checkpoint_curve);
until they exist lftctl refuses them as unknown fields, so run with
--no-new-eval-fields until then.

Standard library only (no numpy here); the HF check is a separate process.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import fidelity_report as fr  # noqa: E402

# ------------------------------------------------------------------ scales
#
# gpu: sized for <= 25 minutes on one H200 (16 cores, 64 GiB disk), build
# included. Estimates, from docs/benchmarks.md:
#  * pretraining: the H100 ran this teacher shape (24 x 512, seq 512,
#    batch 32, fp32 + TF32) at 112k tokens/s; 2000 steps x 16,384 tokens =
#    32.8 M tokens -> ~290 s, plus tokenizer training (16 MiB) and
#    tokenization of train/00-05 (29.4 M tokens): 14 s + 15 s measured on
#    the loaded 2-core VM. --max-seconds 330 guards the step loop (a
#    warning says so if it fires).
#  * extraction: store-bound at ~1 GB/s of payload per lft-store (H200,
#    width 1024: 249k tokens/s embedded, 172k over gRPC at 4 KiB/token).
#    A bf16 pair at width 512 is 2 x 512 x 2 = 2 KiB/token, so ~350k
#    tokens/s over gRPC; train/06 is ~5 M tokens with this tokenizer ->
#    ~15 s and ~10 GB per job. At most 3 jobs in flight and pairs deleted
#    1 s after a job ends: <= ~30 GB of the 64 GiB disk.
#  * training: FW k=3 midpoint ran 399k tokens/s at width 1024, 512 x 8;
#    width 512 has ~4x fewer FLOPs per token and batch 32 amortises the
#    per-step overhead, so >= 400k tokens/s is assumed over gRPC (SFM and
#    the regression ~2.5x faster). 16.8 M tokens (1024 steps of 32 x 512):
#    FW ~40 s, hybrid ~45 s, SFM ~20 s per block, ~105 s x 4 blocks.
#    Cached mode: ~3.4 epochs over the ~5 M extracted tokens.
#  * evaluation: 64 held-out sequences x 512, 10 flow settings, skip-1..3;
#    the regression baseline (FW jobs) 1024 steps through a regression
#    job's engine (bf16, CUDA graphs; 1.2 M tokens/s at width 1024 on the
#    H200), ~15 s.
#  * planner: Hungarian O(N^3) in doubles: 36 blocks at 1024 tokens took
#    22 s on the 2-core VM (0.6 s each); 300 blocks at 512 tokens ~25 s.
#  * jobs in all: ~12 x 15 s extraction + ~420 s training + ~4 x 30 s
#    regression, partly overlapped (3 jobs in flight on one GPU): ~550 s;
#    the phase may run until the study's 1440 s minus the export and
#    compose budgets are up (its 600 s are an estimate, not a cap), then
#    cancels what is left, which is the planner's blocks' hybrid jobs
#    first (jobs run in priority order).
#  Measured on the H200 (2026-12-01, commit 68f9a25): build 72 s,
#  pretraining 201 s (163k tokens/s), planner 15 s; per job extraction
#  ~10 s, FW training ~30 s, SFM ~25 s; the evaluator's regression baseline
#  1024 float32 steps at ~10 steps/s (~100 s per FW job) was the jobs
#  phase's bottleneck (one evaluator) before it trained through the
#  engine; export + HF check 45 s.
SCALES = {
    "gpu": {
        "device": "cuda",
        # 24 minutes, build included: the session's 30 minutes of device
        # time also pay for the machine's start and three transfers.
        "total_budget_s": 1440,
        "budgets_s": {"build": 150, "prepare": 15, "pretrain": 420,
                      "planner": 90, "cluster": 30, "jobs": 600,
                      "export": 120, "compose": 15},
        "teacher": {"layers": 24, "hidden": 512, "heads": 8, "ffn": 2048,
                    "rotary_pct": 0.25, "vocab": 16384,
                    "tokenizer_bytes": 16 << 20, "seq": 512, "batch": 32,
                    "steps": 2000, "warmup": 200, "lr": 6e-4,
                    "max_seconds": 330, "heldout_sequences": 128,
                    "eval_every": 500, "seed": 1, "threads": 0},
        # .carry/corpus (copies of ../shared/corpus): train/00-05 pretrain
        # the teacher, train/06 is distilled (never seen in pretraining),
        # val scores, test drives the planner (the blocks are not chosen on
        # the text they are scored on).
        "corpus": {"pretrain": ["train/%02d.jsonl.zst" % i for i in range(6)],
                   "distill": ["train/06.jsonl.zst"],
                   "val": "val.jsonl.zst", "test": "test.jsonl.zst"},
        "planner": {"tokens": 256, "more_tokens": 512, "seq": 512},
        "blocks": {"b25": [6, 12], "b50": [6, 18], "size": 6, "skip3": 3},
        "job": {"seq": 512, "batch": 32, "flow_tokens": 1024 * 32 * 512,
                # 8 checkpoints a job: the points of the training curve
                # (Figure 4's analogue), about 60 MB each with Adam state.
                "lr": 6e-4, "warmup": 50, "checkpoint_every": 128,
                "eval_sequences": 64, "skip_baselines": 3,
                "documents_per_shard": 400, "k": [1, 2, 3, 4, 8],
                "storage": "STORAGE_DTYPE_BF16"},
        "in_flight": 3,
        "min_free_gb": 16,
        "workers": {"teacher_batch": 32, "evaluator_batch": 16, "threads": 0},
        "export": {"k": 3, "logit_sequences": 2, "batch": 4},
    },
    # rehearsal: the same script on this 2-core CPU in <= 15 minutes: an
    # 8 x 64 teacher, blocks scaled by L / 24 ([2, 4), [2, 6), size 2,
    # skip-1 for "3 layers"), slices of the corpus.
    "rehearsal": {
        "device": "cpu",
        "total_budget_s": 900,
        # Measured on the shared 2-core VM (2026-12-01, other builds
        # running): pretrain 115 s, planner 12 s, 12 jobs 2 at a time
        # ~50-90 s each (~470 s), export 11 s; ~10 minutes in all.
        "budgets_s": {"build": 0, "prepare": 15, "pretrain": 200,
                      "planner": 60, "cluster": 30, "jobs": 480,
                      "export": 60, "compose": 15},
        "teacher": {"layers": 8, "hidden": 64, "heads": 4, "ffn": 256,
                    "rotary_pct": 0.25, "vocab": 1024,
                    "tokenizer_bytes": 1 << 20, "seq": 64, "batch": 16,
                    "steps": 300, "warmup": 30, "lr": 3e-3,
                    "max_seconds": 180, "heldout_sequences": 32,
                    # One thread: LibTorch's OpenMP threads spin-wait on a
                    # loaded 2-core machine (36 steps in 180 s with 2
                    # threads while other builds ran).
                    "eval_every": 100, "seed": 1, "threads": 1},
        # Slices (first N documents) of ../shared/corpus files.
        "corpus": {"pretrain": [("train/00.jsonl.zst", 250)],
                   "distill": [("train/01.jsonl.zst", 12)],
                   "val": ("val.jsonl.zst", 24), "test": ("test.jsonl.zst", 24)},
        "planner": {"tokens": 256, "more_tokens": 512, "seq": 64},
        "blocks": {"b25": [2, 4], "b50": [2, 6], "size": 2, "skip3": 1},
        "job": {"seq": 64, "batch": 16, "flow_tokens": 48 * 16 * 64,
                "lr": 2e-3, "warmup": 5, "checkpoint_every": 16,
                "eval_sequences": 16, "skip_baselines": 3,
                "documents_per_shard": 6, "k": [1, 2, 3, 4, 8],
                "storage": "STORAGE_DTYPE_BF16"},
        "in_flight": 2,
        "min_free_gb": 1,
        "workers": {"teacher_batch": 8, "evaluator_batch": 8, "threads": 1},
        "export": {"k": 3, "logit_sequences": 2, "batch": 4},
    },
}

METHODS = [("fw", "METHOD_FW"), ("sfm", "METHOD_SFM"),
           ("hybrid", "METHOD_HYBRID")]
ASSETS = "fidelity"  # folder beside fidelity.md
NEW_EVAL_FIELDS = ("linear_baseline", "linear_tokens", "regression_steps",
                   "regression_batch_sequences", "score_checkpoint_curve")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class StudyError(Exception):
    pass


# ------------------------------------------------------------------ phases

class Phases:
    """Per-phase wall time against its budget, and the study's deadline."""

    def __init__(self, scale, spent_s=0.0):
        self.budgets = scale["budgets_s"]
        self.start = time.time() - spent_s
        self.deadline = self.start + scale["total_budget_s"]
        self.records = []
        if spent_s:
            self.records.append({"phase": "build", "budget_s":
                                 self.budgets.get("build", 0),
                                 "wall_s": round(spent_s, 1), "status": "ok"})

    def run(self, name, fn):
        t0 = time.time()
        log(f"== phase {name} (budget {self.budgets.get(name, 0)} s, "
            f"{self.deadline - t0:.0f} s left of the study)")
        status = "ok"
        try:
            return fn()
        except Exception as e:  # recorded, then re-raised for the caller
            status = f"failed: {e}"
            raise
        finally:
            wall = time.time() - t0
            self.records.append({"phase": name,
                                 "budget_s": self.budgets.get(name, 0),
                                 "wall_s": round(wall, 1), "status": status})
            over = " OVER BUDGET" if wall > self.budgets.get(name, 1e9) else ""
            log(f"== phase {name}: {wall:.1f} s of {self.budgets.get(name, 0)}"
                f" s{over} ({status})")

    def table(self):
        s = "| phase | budget (s) | wall (s) | status |\n|---|---|---|---|\n"
        for r in self.records:
            s += f"| {r['phase']} | {r['budget_s']} | {r['wall_s']} | {r['status']} |\n"
        total = sum(r["wall_s"] for r in self.records)
        s += f"| total | {sum(self.budgets.values())} | {total:.1f} | |\n"
        return s


# --------------------------------------------------------------- processes

class Cluster:
    """lft-store, lft-coordinator and workers on loopback (as
    scripts/run-default-job.sh starts them)."""

    def __init__(self, build, run_dir, scale):
        self.build, self.run_dir, self.scale = build, run_dir, scale
        self.procs = []
        self.store = self.coordinator = None

    def _start(self, name, argv, env=None):
        out = open(os.path.join(self.run_dir, name + ".out"), "w")
        err = open(os.path.join(self.run_dir, name + ".log"), "w")
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.Popen(argv, stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL, env=e)
        self.procs.append((name, p, out, err))
        return p

    def _wait_file(self, path, pattern, seconds, what):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read()
                if pattern in text:
                    return text
            self._check_alive()
            time.sleep(0.1)
        raise StudyError(f"{what} did not start within {seconds} s")

    def _check_alive(self):
        for name, p, _, _ in self.procs:
            if p.poll() is not None:
                raise StudyError(f"{name} exited with {p.returncode}; see "
                                 f"{self.run_dir}/{name}.log")

    def start(self):
        b = self.build
        self._start("store", [f"{b}/latent-store/lft-store", "--listen",
                              "127.0.0.1:0", "--insecure-loopback", "--db",
                              f"{self.run_dir}/store", "--sync=false"])
        text = self._wait_file(f"{self.run_dir}/store.out", "listening on",
                               30, "lft-store")
        self.store = text.split("listening on", 1)[1].split()[0]
        port_file = f"{self.run_dir}/coordinator.port"
        self._start("coordinator", [
            f"{b}/coordinator/lft-coordinator", "--db",
            f"{self.run_dir}/coordinator", "--listen", "127.0.0.1:0",
            "--insecure-loopback", "--port-file", port_file,
            "--store-address", self.store, "--pair-retention-s", "1"])
        deadline = time.time() + 30
        port = ""
        while not port:
            if os.path.exists(port_file):
                with open(port_file) as f:
                    parts = f.read().split()
                if parts and parts[0].isdigit():
                    port = parts[0]
                    break
            if time.time() > deadline:
                raise StudyError("lft-coordinator did not start within 30 s")
            self._check_alive()
            time.sleep(0.1)
        self.coordinator = f"127.0.0.1:{port}"
        w = self.scale["workers"]
        dev = self.scale["device"]
        # OpenBLAS threads on top of LibTorch's oversubscribe CPU cores
        # (docs/benchmarks.md, "Trainer").
        env = {"OPENBLAS_NUM_THREADS": "1"}
        for role, batch in (("teacher", w["teacher_batch"]), ("trainer", None),
                            ("evaluator", w["evaluator_batch"])):
            argv = [f"{b}/worker/lft-worker", "--role", role, "--name",
                    f"{role}-0", "--coordinator", self.coordinator,
                    "--insecure-loopback", "--device", dev]
            if w["threads"]:
                argv += ["--threads", str(w["threads"])]
            if batch:
                argv += ["--batch-sequences", str(batch)]
            if role == "trainer":
                # Every step-N checkpoint stays for the evaluator's training
                # curve (Figure 4's analogue), not only the newest 3.
                argv += ["--keep-checkpoints", "1000"]
            self._start(role + "-0", argv, env)
        log(f"cluster: store {self.store}, coordinator {self.coordinator}, "
            f"3 workers on {dev}")

    def stop(self):
        for _, p, _, _ in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p, out, err in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            out.close()
            err.close()
        self.procs = []


def run_cmd(argv, timeout, log_path=None, env=None, check=True, echo=None):
    """Runs argv; returns (rc, output). Output (stdout and stderr) is
    appended to log_path as it comes; lines for which echo(line) is true
    are printed to the study log too. StudyError on a non-zero exit when
    check (rc -9: killed after `timeout` seconds)."""
    e = dict(os.environ)
    e.update(env or {})
    logf = open(log_path, "a") if log_path else None
    if logf:
        logf.write("$ " + " ".join(argv) + "\n")
        logf.flush()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=e,
                         errors="replace")
    lines = []

    def pump():
        for line in p.stdout:
            lines.append(line)
            if logf:
                logf.write(line)
                logf.flush()
            if echo and echo(line):
                print("    " + line.rstrip(), flush=True)
    th = threading.Thread(target=pump, daemon=True)
    th.start()
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = -9
        p.wait()
    th.join(timeout=10)
    out = "".join(lines)
    if rc == -9:
        out += f"\n(killed after {timeout} s)\n"
    if logf:
        logf.write(f"(exit {rc})\n\n")
        logf.close()
    if check and rc != 0:
        tail = "\n".join(out.strip().splitlines()[-15:])
        raise StudyError(f"{os.path.basename(argv[0])} exited {rc}:\n{tail}")
    return rc, out


# ------------------------------------------------------------------- study

class Study:
    def __init__(self, args, scale_name):
        self.args = args
        self.scale_name = scale_name
        self.S = SCALES[scale_name]
        self.build = os.path.abspath(args.build)
        self.work = os.path.abspath(args.work)
        self.out = os.path.abspath(args.out)
        # Plots, heatmaps, reports and HF checks: fidelity.md links them
        # as fidelity/..., so out/ and docs/ take the same layout.
        self.assets = os.path.join(self.out, ASSETS)
        self.corpus = {}
        self.teacher_dir = os.path.join(self.work, "teacher")
        self.teacher = {}
        self.planner = {}
        self.blocks = []  # [{"block", "role"}]
        self.jobs = []    # dicts, see plan_jobs
        self.exports = []
        self.notes = []
        self.lftctl = f"{self.build}/lftctl/lftctl"
        self.cluster = None

    # ---------------------------------------------------------- prepare
    def prepare(self):
        c = self.S["corpus"]
        dst = os.path.join(self.work, "corpus")
        os.makedirs(os.path.join(dst, "train"), exist_ok=True)
        src = os.path.abspath(self.args.corpus)
        if self.scale_name == "gpu":
            def get(rel):
                s = os.path.join(src, rel)
                if not os.path.exists(s):
                    raise StudyError(f"{s} is missing: carry .carry/corpus "
                                     "(python3 deploy/gpu/fidelity_study.py "
                                     "--prepare-carry on the CPU side)")
                d = os.path.join(dst, rel)
                shutil.copyfile(s, d)
                return d
        else:
            if not shutil.which("zstd"):
                raise StudyError("the rehearsal slices the corpus with the "
                                 "zstd command, which is not installed")

            def get(spec):
                rel, docs = spec
                s = os.path.join(src, rel)
                d = os.path.join(dst, rel.replace(".jsonl.zst", "")
                                 + f".first{docs}.jsonl.zst")
                subprocess.run(f"zstd -dc '{s}' | head -n {docs} | "
                               f"zstd -q -3 -f -o '{d}'", shell=True,
                               check=True)
                return d
        self.corpus = {"pretrain": [get(x) for x in c["pretrain"]],
                       "distill": [get(x) for x in c["distill"]],
                       "val": get(c["val"]), "test": get(c["test"])}
        for k, v in self.corpus.items():
            log(f"corpus {k}: {v}")

    # --------------------------------------------------------- pretrain
    def pretrain(self):
        t = self.S["teacher"]
        if os.path.exists(os.path.join(self.teacher_dir, "model.safetensors")) \
                and self.args.reuse_teacher:
            log(f"reusing teacher {self.teacher_dir}")
            with open(os.path.join(self.work, "pretrain.json")) as f:
                self.teacher = json.load(f)
            return
        shutil.rmtree(self.teacher_dir + ".tmp", ignore_errors=True)
        argv = [f"{self.build}/worker/pretrain/lft-pretrain",
                "--corpus", ",".join(self.corpus["pretrain"]),
                "--heldout", self.corpus["val"],
                "--out", self.teacher_dir + ".tmp",
                "--vocab-size", str(t["vocab"]),
                "--tokenizer-train-bytes", str(t["tokenizer_bytes"]),
                "--layers", str(t["layers"]), "--hidden", str(t["hidden"]),
                "--heads", str(t["heads"]), "--ffn", str(t["ffn"]),
                "--rotary-pct", str(t["rotary_pct"]), "--seq", str(t["seq"]),
                "--batch", str(t["batch"]), "--steps", str(t["steps"]),
                "--warmup", str(t["warmup"]), "--lr", str(t["lr"]),
                "--max-seconds", str(t["max_seconds"]),
                "--heldout-sequences", str(t["heldout_sequences"]),
                "--eval-every", str(t["eval_every"]),
                "--seed", str(t["seed"]), "--device", self.S["device"]]
        if t["threads"]:
            argv += ["--threads", str(t["threads"])]
        def worth_echoing(line):
            return any(w in line for w in ("held-out", "WARNING", "tokenized",
                                           "trained tokenizer")) \
                or line.startswith("|")
        _, out = run_cmd(argv, self.S["budgets_s"]["pretrain"] + 120,
                         os.path.join(self.work, "logs", "pretrain.log"),
                         env={"OPENBLAS_NUM_THREADS": "1"},
                         echo=worth_echoing)
        os.replace(self.teacher_dir + ".tmp", self.teacher_dir)
        self.teacher = parse_pretrain_table(out, t)
        self.teacher["stopped_by_time_guard"] = "WARNING: the --max-seconds" in out
        if self.teacher["stopped_by_time_guard"]:
            self.notes.append("Teacher pretraining hit its --max-seconds guard "
                              "before the planned steps: the teacher is "
                              "undertrained relative to the plan.")
        with open(os.path.join(self.work, "pretrain.json"), "w") as f:
            json.dump(self.teacher, f, indent=1)
        log(f"teacher: {json.dumps(self.teacher)}")

    # ---------------------------------------------------------- planner
    def run_planner(self):
        p = self.S["planner"]
        pdir = os.path.join(self.assets, "planner")
        os.makedirs(pdir, exist_ok=True)
        mats = {}
        for tokens in (p["tokens"], p["more_tokens"]):
            j = os.path.join(pdir, f"recoupling-{tokens}.json")
            png = os.path.join(pdir, f"recoupling-{tokens}.png")
            run_cmd([self.lftctl, "analyze", "--teacher", self.teacher_dir,
                     "--heldout", self.corpus["test"], "--tokens", str(tokens),
                     "--seq", str(p["seq"]), "--device", self.S["device"],
                     "--out-json", j, "--out-png", png],
                    self.S["budgets_s"]["planner"] + 60,
                    os.path.join(pdir, f"analyze-{tokens}.txt"))
            with open(j) as f:
                mats[tokens] = json.load(f)
        blocks = fr.planner_blocks(mats[p["tokens"]], mats[p["more_tokens"]])
        B = self.S["blocks"]
        best, worst = fr.pick_best_worst(blocks, B["size"], exclude=[B["b25"]])
        self.planner = {
            "tokens": mats[p["tokens"]]["tokens"],
            "more_tokens": mats[p["more_tokens"]]["tokens"],
            "heldout": os.path.basename(self.corpus["test"]),
            "solver": mats[p["more_tokens"]].get("solver"),
            "heatmaps": [f"{ASSETS}/planner/recoupling-{p['tokens']}.png",
                         f"{ASSETS}/planner/recoupling-{p['more_tokens']}.png"],
            "size": B["size"], "best": best, "worst": worst,
            "rule": ("lowest recoupling ratio over the larger token count "
                     "first, ties broken by R over 256 tokens, then angular "
                     "distance, then m; best = first, worst = last among "
                     f"blocks of {B['size']} layers other than "
                     f"[{B['b25'][0]}, {B['b25'][1]})"),
            "blocks": blocks,
        }
        log(f"planner: best {best}, worst {worst} of size {B['size']}")

    # ------------------------------------------------------------- jobs
    def plan_blocks(self):
        B = self.S["blocks"]
        self.blocks = [{"block": B["b25"], "role": "25% compression"},
                       {"block": B["b50"], "role": "50% compression"}]
        if self.planner:
            self.blocks += [
                {"block": self.planner["best"],
                 "role": f"planner's best of {B['size']} layers"},
                {"block": self.planner["worst"],
                 "role": f"planner's worst of {B['size']} layers"}]

    def job_spec(self, block, method, enum, baselines):
        J = self.S["job"]
        steps = J["flow_tokens"] // (J["batch"] * J["seq"])
        training = {
            "method": enum, "flow_walking_steps": 3,
            "solver": "SOLVER_MIDPOINT", "max_tokens": J["flow_tokens"],
            "global_batch_sequences": J["batch"],
            "learning_rate": J["lr"], "warmup_steps": J["warmup"],
            "gradient_clip_norm": 1.0,
            "checkpoint_every_steps": J["checkpoint_every"],
            "trainer_ranks": 1, "seed": 1234}
        if method == "hybrid":
            training["hybrid_alpha"] = 0.001
        evaluation = {
            "steps": J["k"], "solvers": ["SOLVER_EULER", "SOLVER_MIDPOINT"],
            "heldout_paths": [self.corpus.get("val", "val.jsonl.zst")],
            "max_sequences": J["eval_sequences"],
            "skip_baselines": J["skip_baselines"],
            "regression_baseline": baselines}
        if self.args.with_new_eval_fields:
            evaluation.update({
                "linear_baseline": baselines,
                "linear_tokens": J["flow_tokens"],
                "regression_steps": steps,
                "regression_batch_sequences": J["batch"],
                "score_checkpoint_curve": True})
        return {
            "name": f"fid-{block[0]}-{block[1]}-{method}",
            "teacher": {"path": self.teacher_dir},
            "corpus": {"jsonl_zst_paths": self.corpus.get("distill", []),
                       "documents_per_shard": J["documents_per_shard"]},
            "block": {"first_layer": block[0], "end_layer": block[1]},
            "sequence_length": J["seq"],
            "storage_dtype": J["storage"],
            "training": training,
            "evaluation": evaluation,
        }

    def plan_jobs(self):
        """Priority order, so that a deadline cuts what the claims need
        least: FW and SFM of [6, 18) and [6, 12) (claims 1-4 and 6), FW of
        the planner's blocks (claim 5), then the hybrids of [6, 18) and
        [6, 12), SFM and hybrid of the planner's blocks."""
        b25, b50 = self.blocks[0]["block"], self.blocks[1]["block"]
        extras = [b["block"] for b in self.blocks[2:]]
        order = [(b50, "fw"), (b50, "sfm"), (b25, "fw"), (b25, "sfm")]
        order += [(b, "fw") for b in extras]
        order += [(b50, "hybrid"), (b25, "hybrid")]
        order += [(b, "sfm") for b in extras] + [(b, "hybrid") for b in extras]
        enums = dict(METHODS)
        self.jobs = []
        for block, method in order:
            self.jobs.append({
                "block": list(block), "method": method,
                "baselines": method == "fw",
                "spec": self.job_spec(block, method, enums[method],
                                      method == "fw"),
                "id": None, "state": "not run", "error": "",
                "wall_s": None})

    def lftctl_json(self, *argv):
        _, out = run_cmd([self.lftctl, "--server", self.cluster.coordinator]
                         + list(argv), 30)
        return json.loads(out)

    def run_jobs(self, deadline):
        os.makedirs(os.path.join(self.work, "specs"), exist_ok=True)
        pending = list(self.jobs)
        inflight = []
        last_print = 0.0
        while pending or inflight:
            now = time.time()
            if now > deadline:
                for j in inflight:
                    run_cmd([self.lftctl, "--server", self.cluster.coordinator,
                             "cancel", j["id"]], 30, check=False)
                    j["state"] = "cancelled (time budget)"
                for j in pending:
                    j["state"] = "not run (time budget)"
                self.notes.append(
                    f"The jobs phase reached its deadline: {len(inflight)} "
                    f"job(s) cancelled, {len(pending)} not run.")
                log(self.notes[-1])
                return
            while pending and len(inflight) < self.S["in_flight"]:
                free_gb = shutil.disk_usage(self.work).free / 2**30
                if inflight and free_gb < self.S["min_free_gb"]:
                    break  # wait for a job to end and its pairs to go
                j = pending.pop(0)
                path = os.path.join(self.work, "specs", j["spec"]["name"] + ".json")
                with open(path, "w") as f:
                    json.dump(j["spec"], f, indent=1)
                rc, out = run_cmd([self.lftctl, "--server",
                                   self.cluster.coordinator, "submit", path],
                                  60, os.path.join(self.work, "logs",
                                                   "lftctl.log"), check=False)
                if rc != 0:
                    j["state"] = "refused"
                    j["error"] = out.strip()
                    log(f"submit {j['spec']['name']}: refused: {out.strip()}")
                    if rc == 2 and self.args.with_new_eval_fields and any(
                            f in out for f in NEW_EVAL_FIELDS):
                        raise StudyError(
                            "lftctl refused the new evaluation fields; this "
                            "tree's evaluator does not have them yet: run "
                            "with --no-new-eval-fields")
                    continue
                j["id"] = out.strip().split()[-1]
                j["submitted"] = time.time()
                j["state"] = "submitted"
                inflight.append(j)
                log(f"submitted {j['id']} {j['spec']['name']}")
            for j in list(inflight):
                try:
                    job = self.lftctl_json("get", j["id"], "--json")
                except (StudyError, ValueError) as e:
                    log(f"get {j['id']}: {e}")
                    continue
                state = job.get("state", "?").replace("JOB_STATE_", "")
                j["state"] = state
                j["progress"] = job.get("progress", [])
                if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    inflight.remove(j)
                    j["wall_s"] = round(time.time() - j["submitted"], 1)
                    j["error"] = job.get("error", "")
                    log(f"{j['id']} {j['spec']['name']}: {state} after "
                        f"{j['wall_s']} s {j['error']}")
                    if state == "SUCCEEDED":
                        self.collect(j)
            if time.time() - last_print > 20 and inflight:
                last_print = time.time()
                for j in inflight:
                    log(f"  {j['id']} {j['spec']['name']}: {j['state']} "
                        f"{progress_line(j.get('progress', []))}")
            time.sleep(1.0 if self.scale_name == "gpu" else 2.0)

    def collect(self, j):
        d = os.path.join(self.assets, "reports", j["spec"]["name"])
        os.makedirs(d, exist_ok=True)
        for blob in ("report.json", "report.md", "loss.png", "kl_vs_k.png"):
            rc, out = run_cmd([self.lftctl, "--store", self.cluster.store,
                               "pull", j["id"], blob, "--out",
                               os.path.join(d, blob)], 120, check=False)
            if rc != 0:
                log(f"pull {j['id']} {blob}: {out.strip()}")
        try:
            with open(os.path.join(d, "report.json")) as f:
                j["report"] = json.load(f)
        except (OSError, ValueError) as e:
            j["error"] = f"no report.json: {e}"
        if j["method"] == "fw" and j["block"] in (self.blocks[0]["block"],
                                                 self.blocks[1]["block"]):
            ck = os.path.join(self.work, "checkpoints",
                              j["spec"]["name"] + ".safetensors")
            os.makedirs(os.path.dirname(ck), exist_ok=True)
            rc, out = run_cmd([self.lftctl, "--store", self.cluster.store,
                               "pull", j["id"], "--out", ck], 300, check=False)
            if rc == 0:
                j["checkpoint_file"] = ck
            else:
                log(f"pull checkpoint of {j['id']}: {out.strip()}")

    # ----------------------------------------------------------- export
    def export_and_check(self):
        E = self.S["export"]
        J = self.S["job"]
        hf_ok = subprocess.run(
            [sys.executable, "-c", "import torch, transformers, safetensors"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        for j in self.jobs:
            if "checkpoint_file" not in j:
                continue
            name = j["spec"]["name"]
            d = os.path.join(self.work, "exports", name)
            dump = d + ".dump.safetensors"
            rec = {"block": j["block"], "method": j["method"], "k": E["k"],
                   "solver": "euler", "export_dir": d, "job": j["id"]}
            self.exports.append(rec)
            try:
                _, out = run_cmd(
                    [self.lftctl, "export", "--teacher", self.teacher_dir,
                     "--checkpoint", j["checkpoint_file"], "--k", str(E["k"]),
                     "--out", d, "--dump-logits", dump,
                     "--heldout", self.corpus["val"], "--seq", str(J["seq"]),
                     "--max-sequences", str(J["eval_sequences"]),
                     "--logit-sequences", str(E["logit_sequences"]),
                     "--batch", str(E["batch"]),
                     "--device", self.S["device"]],
                    self.S["budgets_s"]["export"],
                    os.path.join(self.assets, "hf", name + "-export.txt"))
            except StudyError as e:
                rec["error"] = str(e)
                log(f"export {name}: {e}")
                continue
            for line in out.splitlines():
                if line.startswith("dump "):
                    rec["lft_dump"] = json.loads(line[5:])
            report_row = fr.find_row(
                fr.rows_from_report(j.get("report", {}), {
                    "block": j["block"], "scored_baselines": False}),
                j["block"], j["method"], E["k"], "euler")
            rec["report_ppl"] = report_row["ppl"] if report_row else None
            if rec.get("lft_dump") and rec["report_ppl"]:
                rec["lft_fp32_vs_report_ppl_rel"] = abs(
                    rec["lft_dump"]["ppl_lft"] / rec["report_ppl"] - 1)
            if not hf_ok:
                rec["hf"] = ("not run: transformers is not importable here "
                             f"({sys.executable})")
                log(f"export {name}: HF check skipped ({rec['hf']})")
                continue
            hf_json = os.path.join(self.assets, "hf", name + "-hf.json")
            rc, out = run_cmd(
                [sys.executable, os.path.join(HERE, "hf_export_check.py"),
                 "--export", d, "--dump", dump, "--report-ppl",
                 str(rec["report_ppl"] or 0), "--device",
                 "cuda" if self.S["device"] == "cuda" else "cpu",
                 "--out-json", hf_json], self.S["budgets_s"]["export"],
                os.path.join(self.assets, "hf", name + "-hf.txt"), check=False)
            try:
                with open(hf_json) as f:
                    rec["hf"] = json.load(f)
            except (OSError, ValueError):
                rec["hf"] = f"failed (exit {rc}): " + "\n".join(
                    out.strip().splitlines()[-5:])
            log(f"export {name}: HF check exit {rc}")

    # ---------------------------------------------------------- compose
    def compose(self, phases):
        rows = []
        scored_blocks = []
        for b in self.blocks:
            js = [j for j in self.jobs if j["block"] == b["block"]
                  and j.get("report")]
            if not js:
                continue
            scored_blocks.append(b["block"])
            src = next((j for j in js if j["baselines"]), js[0])
            for j in js:
                rows += fr.rows_from_report(j["report"], {
                    "id": j["id"], "block": j["block"], "method": j["method"],
                    "batch_sequences": self.S["job"]["batch"],
                    "sequence_length": self.S["job"]["seq"],
                    "scored_baselines": j is src})
        B = self.S["blocks"]
        cfg = {"block25": B["b25"], "block50": B["b50"], "skip3": B["skip3"],
               "scored_blocks": scored_blocks}
        claims = fr.decide_claims(rows, self.planner.get("blocks", []), cfg)
        teacher = dict(self.teacher)
        eval_ppls = [j["report"].get("teacher_perplexity") for j in self.jobs
                     if j.get("report")]
        teacher["eval_ppl"] = eval_ppls[0] if eval_ppls else None
        meta = {
            "scale": self.scale_name,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "commit": os.environ.get("LFT_COMMIT") or git_commit(),
            "device": self.S["device"],
            "gpu": gpu_name(),
            "with_new_eval_fields": self.args.with_new_eval_fields,
            "sizes": {k: self.S[k] for k in ("teacher", "planner", "blocks",
                                              "job", "in_flight")},
            "corpus": {k: (v if isinstance(v, str) else v)
                       for k, v in self.corpus.items()},
            "blocks": self.blocks,
            "phases": phases.records,
            "jobs": [{"name": j["spec"]["name"], "id": j["id"],
                      "block": j["block"], "method": j["method"],
                      "state": j["state"], "error": j["error"],
                      "wall_s": j["wall_s"],
                      "training_tokens": (j.get("report") or {}).get(
                          "checkpoint_tokens"),
                      "regression_tokens": (j.get("report") or {}).get(
                          "regression_tokens")}
                     for j in self.jobs],
            "exports": self.exports,
            "notes": self.notes,
            "paper_tokens": fr.PAPER_TOKENS,
        }
        doc = fr.compose_json(teacher, rows, self.planner, claims, meta)
        plots = self.write_plots(rows, claims)
        intro = self.intro_markdown(phases, plots)
        extra = [("Export and HF transformers check", self.hf_markdown()),
                 ("Jobs", self.jobs_markdown())]
        if self.notes:
            extra.append(("Notes", "\n".join(f"- {n}" for n in self.notes)))
        md = fr.compose_markdown(doc, intro, extra)
        with open(os.path.join(self.out, "fidelity.json"), "w") as f:
            json.dump(doc, f, indent=1, default=str)
            f.write("\n")
        with open(os.path.join(self.out, "fidelity.md"), "w") as f:
            f.write(md)
        if self.args.docs and self.scale_name == "gpu":
            for n in ("fidelity.json", "fidelity.md"):
                shutil.copyfile(os.path.join(self.out, n),
                                os.path.join(ROOT, "docs", n))
            dst = os.path.join(ROOT, "docs", ASSETS)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(self.assets, dst)
        log(f"wrote {self.out}/fidelity.json and fidelity.md")
        return doc

    def write_plots(self, rows, claims):
        pdir = os.path.join(self.assets, "plots")
        os.makedirs(pdir, exist_ok=True)
        files = []
        for b in self.blocks:
            blk = b["block"]
            name = f"fig5_block_{blk[0]}_{blk[1]}.svg"
            with open(os.path.join(pdir, name), "w") as f:
                f.write(fr.kl_nmse_vs_k_svg(
                    rows, blk, f"Figure 5 analogue: block [{blk[0]}, {blk[1]}) "
                    f"({b['role']})"))
            files.append(f"{ASSETS}/plots/" + name)
        curves, measured = [], False
        per_step = self.S["job"]["batch"] * self.S["job"]["seq"]
        for j in self.jobs:
            rep = j.get("report")
            if not rep:
                continue
            label = f"{j['method']} [{j['block'][0]},{j['block'][1]})"
            curve = rep.get("curve")
            if curve:
                measured = True
                sel = [c for c in curve if c.get("k") == 3
                       and c.get("solver") in ("midpoint", None)] or curve
                curves.append({"label": label, "ylabel": "NMSE (k=3)",
                               "points": [(c["tokens"], c["nmse"])
                                          for c in sel]})
            elif rep.get("losses"):
                curves.append({"label": label,
                               "ylabel": "training loss (evaluator curve "
                                         "not measured)",
                               "points": [((i + 1) * per_step, v) for i, v in
                                          enumerate(rep["losses"])]})
        if curves and not measured:
            self.notes.append(
                "Figure 4's analogue shows the training loss per step: the "
                "reports carry no NMSE-vs-tokens curve (evaluation."
                "score_checkpoint_curve was not set or not supported).")
        with open(os.path.join(pdir, "fig4_nmse_vs_tokens.svg"), "w") as f:
            f.write(fr.nmse_vs_tokens_svg(
                curves, "Figure 4 analogue: against training tokens"))
        files.append(f"{ASSETS}/plots/fig4_nmse_vs_tokens.svg")
        pts = next((c["numbers"].get("points", []) for c in claims
                    if c["id"] == "recoupling_orders_nmse"), [])
        with open(os.path.join(pdir, "planner_vs_nmse.svg"), "w") as f:
            f.write(fr.planner_vs_nmse_svg(
                pts, "Recoupling ratio against achieved NMSE"))
        files.append(f"{ASSETS}/plots/planner_vs_nmse.svg")
        return files

    def intro_markdown(self, phases, plots):
        S = self.S
        J = S["job"]
        steps = J["flow_tokens"] // (J["batch"] * J["seq"])
        cmd = ("`bash deploy/gpu/fidelity_study.sh` (then `bash "
               "deploy/gpu/fidelity_study.sh --wait` until done)"
               if self.scale_name == "gpu" else
               "`python3 deploy/gpu/fidelity_study.py --scale rehearsal "
               "--build build`")
        s = (f"Run by {cmd} at scale `{self.scale_name}` on "
             f"{S['device']}, commit {os.environ.get('LFT_COMMIT') or git_commit()}, "
             f"{datetime.date.today().isoformat()}. Every number below comes "
             "from lft jobs submitted with lftctl (lft-store, "
             "lft-coordinator, one teacher, one trainer and one evaluator "
             "lft-worker) and from lftctl analyze / export. How the study "
             "is run and how each claim is decided: "
             "[fidelity-method.md](fidelity-method.md).\n\n")
        s += (f"**Budget.** Every flow method trains on "
              f"{fr._tokens(J['flow_tokens'])} tokens ({steps} steps of "
              f"{J['batch']} x {J['seq']}; "
              f"{100.0 * J['flow_tokens'] / fr.PAPER_TOKENS:.3f}% of the "
              "paper's 2.6 B distillation tokens) in cached mode (epochs "
              "over the pairs of the distilled text). The regression "
              "baseline is the evaluator's, trained on the FW job's pairs "
              f"for {steps} steps of the same batch, i.e. the same tokens "
              "(a METHOD_REGRESSION job would extract the pairs a second "
              "time for the same number). The linear map is "
              "`evaluation.linear_baseline` "
              "(" + ("asked for" if self.args.with_new_eval_fields else
                     "not asked for: --no-new-eval-fields") + ").\n\n")
        s += (f"**Held-out text.** The planner ranks blocks on "
              f"{os.path.basename(self.corpus.get('test', 'test'))}; every "
              f"table is scored on the first {J['eval_sequences']} sequences "
              f"of {J['seq']} tokens of "
              f"{os.path.basename(self.corpus.get('val', 'val'))}; the "
              "teacher never saw the distilled text "
              "(" + ", ".join(os.path.basename(x) for x in
                              self.corpus.get("distill", [])) + ").\n\n")
        s += ("**KL columns.** KL_x is the report's KL of the teacher's tail "
              "fed x1 vs x1_hat (equal to KL_PQ for one replaced block, "
              "docs/algorithms.md); KL_x (softmax) and KL_x (lens) are the "
              "evaluator's local measures where the report has them, `n/m` "
              "(not measured) otherwise.\n\n")
        s += "**Phases.**\n\n" + phases.table() + "\n"
        s += ("**Plots.** " + ", ".join(f"[{p}]({p})" for p in plots)
              + ", planner heatmaps " + ", ".join(
                  f"[{p}]({p})" for p in self.planner.get("heatmaps", []))
              + f", and per job `{ASSETS}/reports/<job>/` (report.json, "
              "report.md, loss.png, kl_vs_k.png).\n")
        return s

    def hf_markdown(self):
        if not self.exports:
            return ("No export was made (no FW checkpoint of [6, 12) / "
                    "[6, 18) came back).")
        s = ("`lftctl export --k 3` folds the FW flow layer into 3 plain "
             "GPT-NeoX layers; `--dump-logits` runs lft's compressed model "
             "(layers 0..m-1, 3 Euler steps of the flow layer, layers "
             "n..L-1) in float32 on the evaluator's held-out sequences; "
             "`deploy/gpu/hf_export_check.py` loads the export with HF "
             "`GPTNeoXForCausalLM`. Tolerances (stated in the script): "
             "logits max abs <= 1e-3 in float32 (TF32 off) on both sides; "
             "HF's perplexity within 1e-4 relative of lft's float32 "
             "perplexity of the same model; within 2% of the report's PPL, "
             "which the evaluator computes with the teacher's layers in "
             "bf16 on the GPU.\n\n")
        s += ("| block | k | lft fp32 PPL | lft export PPL | max abs logit "
              "(lft export vs lft) | report PPL | HF fp32 PPL | max abs logit "
              "(HF vs lft) | HF bf16 PPL | verdict |\n"
              "|---|---|---|---|---|---|---|---|---|---|\n")
        for e in self.exports:
            d = e.get("lft_dump") or {}
            h = e.get("hf") if isinstance(e.get("hf"), dict) else {}
            verdict = (h.get("verdict") if h else
                       (e.get("hf") or e.get("error") or "n/m"))
            s += (f"| [{e['block'][0]}, {e['block'][1]}) | {e['k']} | "
                  f"{fr._f(d.get('ppl_lft'), 4)} | "
                  f"{fr._f(d.get('ppl_export_lft'), 4)} | "
                  f"{fr._f(d.get('max_abs_logit_diff_export_vs_lft'))} | "
                  f"{fr._f(e.get('report_ppl'), 4)} | "
                  f"{fr._f(h.get('ppl_hf_fp32'), 4)} | "
                  f"{fr._f(h.get('max_abs_logit_diff_hf_vs_lft'))} | "
                  f"{fr._f(h.get('ppl_hf_bf16'), 4)} | {verdict} |\n")
        return s

    def jobs_markdown(self):
        s = ("| job | id | block | method | state | wall (s) | training tokens "
             "| error |\n|---|---|---|---|---|---|---|---|\n")
        for j in self.jobs:
            s += (f"| {j['spec']['name']} | {j['id'] or '-'} | "
                  f"[{j['block'][0]}, {j['block'][1]}) | {j['method']} | "
                  f"{j['state']} | {j['wall_s'] or '-'} | "
                  f"{fr._tokens((j.get('report') or {}).get('checkpoint_tokens'))} | "
                  f"{(j['error'] or '').splitlines()[0] if j['error'] else ''} |\n")
        return s

    # ------------------------------------------------------------- main
    def run(self, phases):
        os.makedirs(os.path.join(self.work, "logs"), exist_ok=True)
        os.makedirs(os.path.join(self.assets, "hf"), exist_ok=True)
        failed = None
        try:
            phases.run("prepare", self.prepare)
            phases.run("pretrain", self.pretrain)
            try:
                phases.run("planner", self.run_planner)
            except StudyError as e:
                self.notes.append(f"planner failed: {e}; the planner's best "
                                  "and worst blocks were not run")
            self.plan_blocks()
            self.plan_jobs()
            run_dir = os.path.join(self.work, "run")
            shutil.rmtree(run_dir, ignore_errors=True)
            os.makedirs(run_dir)
            self.cluster = Cluster(self.build, run_dir, self.S)
            phases.run("cluster", self.cluster.start)
            reserve = (self.S["budgets_s"]["export"]
                       + self.S["budgets_s"]["compose"])
            # The jobs' budget is an estimate, not a cap: the phase may
            # use whatever the earlier phases left of the study's total
            # (the first GPU run stopped at a 600 s cap with 500 s unused
            # and cancelled 4 of its 12 jobs).
            deadline = phases.deadline - reserve
            phases.run("jobs", lambda: self.run_jobs(deadline))
        except Exception as e:
            failed = e
            log(f"study stopped: {e}")
        finally:
            if self.cluster:
                self.cluster.stop()
                self.keep_logs()
        if self.jobs:
            try:
                phases.run("export", self.export_and_check)
            except Exception as e:
                self.notes.append(f"export phase failed: {e}")
        if failed:
            self.notes.append(f"The study stopped early: {failed}")
        t0 = time.time()
        doc = self.compose(phases)
        phases.records.append({"phase": "compose", "budget_s":
                               self.S["budgets_s"]["compose"],
                               "wall_s": round(time.time() - t0, 1),
                               "status": "ok"})
        # Rewrite with the compose phase recorded too.
        doc["meta"]["phases"] = phases.records
        with open(os.path.join(self.out, "fidelity.json"), "w") as f:
            json.dump(doc, f, indent=1, default=str)
            f.write("\n")
        log("phase wall times:\n" + phases.table())
        for c in doc["claims"]:
            log(f"claim: {c['claim']}: {fr.verdict_word(c['holds'])}")
        return 1 if failed else 0

    def keep_logs(self):
        """Tails of the service logs into the outputs (full logs stay in
        the work directory)."""
        d = os.path.join(self.out, "logs")
        os.makedirs(d, exist_ok=True)
        run_dir = os.path.join(self.work, "run")
        for n in sorted(os.listdir(run_dir)):
            if n.endswith(".log") or n.endswith(".out"):
                with open(os.path.join(run_dir, n), errors="replace") as f:
                    lines = f.readlines()[-300:]
                with open(os.path.join(d, n), "w") as f:
                    f.writelines(lines)
        for n in ("pretrain.log", "lftctl.log"):
            p = os.path.join(self.work, "logs", n)
            if os.path.exists(p):
                shutil.copyfile(p, os.path.join(d, n))


def progress_line(progress):
    if not progress:
        return ""
    p = progress[-1]
    done, total = int(p.get("unitsDone", 0)), int(p.get("unitsTotal", 0))
    rate = float(p.get("unitsPerSecond", 0))
    stage = p.get("stage", "")
    return (f"{p.get('phase', '').replace('JOB_STATE_', '').lower()} "
            f"{done}/{total} {p.get('unit', '')} {rate:.0f}/s {stage}").strip()


def parse_pretrain_table(out, t):
    """The table row lft-pretrain prints at the end:
    | 24L x 512 | params | steps | tokens | seconds | tokens/s | loss | ppl | unigram |"""
    info = {"layers": t["layers"], "hidden": t["hidden"], "heads": t["heads"],
            "ffn": t["ffn"], "vocab": t["vocab"], "rotary_pct": t["rotary_pct"],
            "parallel_residual": True, "seq": t["seq"], "batch": t["batch"],
            "planned_steps": t["steps"], "seed": t["seed"]}
    for line in out.splitlines():
        if line.startswith(f"| {t['layers']}L x {t['hidden']} |"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            info.update({"parameters": int(cells[1]), "steps": int(cells[2]),
                         "pretraining_tokens": int(cells[3]),
                         "pretrain_seconds": float(cells[4]),
                         "tokens_per_second": float(cells[5]),
                         "heldout_loss": float(cells[6]),
                         "heldout_ppl": float(cells[7]),
                         "unigram_entropy": float(cells[8])})
    if "heldout_ppl" not in info:
        raise StudyError("lft-pretrain printed no result table")
    return info


def gpu_name():
    """nvidia-smi's name and memory of the first GPU, or None."""
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
             "--format=csv,noheader"], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, timeout=20,
            check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short",
                               "HEAD"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --------------------------------------------------------------- dry run

def print_plan(scale_name, S, args):
    J, T = S["job"], S["teacher"]
    steps = J["flow_tokens"] // (J["batch"] * J["seq"])
    hidden = T["hidden"]
    print(f"fidelity study, scale {scale_name}, device {S['device']}")
    print(f"  total budget {S['total_budget_s']} s; phase budgets (s): "
          + ", ".join(f"{k} {v}" for k, v in S["budgets_s"].items())
          + f" (sum {sum(S['budgets_s'].values())})")
    print(f"  teacher: {T['layers']} layers x {hidden}, {T['heads']} heads, "
          f"ffn {T['ffn']}, rotary {T['rotary_pct']}, parallel residual, "
          f"vocab {T['vocab']}; {T['steps']} steps x {T['batch']} x "
          f"{T['seq']} = {T['steps'] * T['batch'] * T['seq']:,} tokens, "
          f"seed {T['seed']}, guard {T['max_seconds']} s")
    print(f"  corpus: {json.dumps(S['corpus'])}")
    print(f"  planner: exact assignment over {S['planner']['tokens']} and "
          f"{S['planner']['more_tokens']} tokens, every (m, n)")
    B = S["blocks"]
    print(f"  blocks: {B['b25']} and {B['b50']}, plus the best and worst of "
          f"{B['size']} layers by the planner; skip-{B['skip3']} stands for "
          "'3 layers'")
    print(f"  jobs: 4 blocks x (fw, sfm, hybrid) = 12 compress jobs, each "
          f"max_tokens {J['flow_tokens']:,} ({steps} steps of {J['batch']} x "
          f"{J['seq']}; {100.0 * J['flow_tokens'] / fr.PAPER_TOKENS:.3f}% of "
          f"2.6 B), lr {J['lr']}, checkpoint every {J['checkpoint_every']}, "
          f"k {J['k']} x euler/midpoint, {J['eval_sequences']} held-out "
          f"sequences; regression (and linear) in the FW job; "
          f"{S['in_flight']} in flight")
    print(f"  pairs: bf16, {2 * hidden * 2} bytes/token; jobs wait while "
          f"< {S['min_free_gb']} GiB are free; pairs deleted 1 s after a job "
          "ends (--pair-retention-s 1)")
    print(f"  new evaluation fields: "
          f"{'on' if args.with_new_eval_fields else 'off'} "
          f"({', '.join(NEW_EVAL_FIELDS)})")
    print(f"  export: FW checkpoints of {B['b25']} and {B['b50']}, k = "
          f"{S['export']['k']} Euler, HF check on {S['device']}")


# ------------------------------------------------------------ carry, deliver

def prepare_carry(args):
    """CPU side: copies the GPU scale's corpus files into .carry/corpus and
    checks the 64 MiB the device tool carries (tree + carried paths)."""
    src = os.path.abspath(args.corpus or os.path.join(ROOT, "..", "shared",
                                                      "corpus"))
    dst = os.path.join(ROOT, ".carry", "corpus")
    c = SCALES["gpu"]["corpus"]
    for rel in c["pretrain"] + c["distill"] + [c["val"], c["test"]]:
        os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
        shutil.copyfile(os.path.join(src, rel), os.path.join(dst, rel))
    total = 0
    for base in (os.path.join(ROOT, ".carry"),):
        for dp, _, fs in os.walk(base):
            total += sum(os.path.getsize(os.path.join(dp, f)) for f in fs)
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT,
                            stdout=subprocess.PIPE, check=True).stdout
    tree = sum(os.path.getsize(os.path.join(ROOT, p.decode()))
               for p in listed.split(b"\0")
               if p and os.path.isfile(os.path.join(ROOT, p.decode())))
    print(f".carry: {total / 2**20:.1f} MiB, tracked tree {tree / 2**20:.1f} "
          f"MiB, together {(total + tree) / 2**20:.1f} of 64 MiB")
    if not os.path.isdir(os.path.join(ROOT, ".carry", "debs")):
        print("warning: .carry/debs is missing (deploy/gpu/README.md step 1)")
    return 0 if total + tree < 64 * 2**20 else 1


def deliver(work, dest):
    """Copies what the device tool can bring back (8 files, 2 levels) from
    <work>/out into dest: fidelity.json, fidelity.md, study.log and
    results.tar.gz of the whole output tree."""
    out = os.path.join(work, "out")
    os.makedirs(dest, exist_ok=True)
    for n in ("fidelity.json", "fidelity.md"):
        if os.path.exists(os.path.join(out, n)):
            shutil.copyfile(os.path.join(out, n), os.path.join(dest, n))
    if os.path.exists(os.path.join(work, "study.log")):
        shutil.copyfile(os.path.join(work, "study.log"),
                        os.path.join(dest, "study.log"))
    if os.path.isdir(out):
        with tarfile.open(os.path.join(dest, "results.tar.gz"), "w:gz") as t:
            t.add(out, arcname="fidelity-study")
    print(f"delivered to {dest}: {sorted(os.listdir(dest))}")
    return 0


# ------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="gpu")
    ap.add_argument("--build", default=None,
                    help="build tree (default build-gpu for gpu, build for "
                         "rehearsal)")
    ap.add_argument("--work", default=None,
                    help="work directory (default /tmp/lft-fidelity for gpu, "
                         "a new temporary directory for rehearsal)")
    ap.add_argument("--out", default=None,
                    help="output tree (default <work>/out)")
    ap.add_argument("--corpus", default=None,
                    help="corpus directory (default .carry/corpus for gpu, "
                         "../shared/corpus for rehearsal)")
    ap.add_argument("--with-new-eval-fields", dest="with_new_eval_fields",
                    action="store_true", default=True)
    ap.add_argument("--no-new-eval-fields", dest="with_new_eval_fields",
                    action="store_false")
    ap.add_argument("--docs", action="store_true",
                    help="gpu: also write docs/fidelity.json and .md")
    ap.add_argument("--build-seconds", type=float, default=0.0,
                    help="time already spent building (counted in the total)")
    ap.add_argument("--reuse-teacher", action="store_true",
                    help="keep a teacher already in the work directory")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the plan, sizes and phase budgets; run nothing")
    ap.add_argument("--prepare-carry", action="store_true")
    ap.add_argument("--deliver", metavar="DIR")
    args = ap.parse_args()

    if args.prepare_carry:
        return prepare_carry(args)
    S = SCALES[args.scale]
    if args.deliver:
        return deliver(os.path.abspath(args.work or "/tmp/lft-fidelity"),
                       args.deliver)
    if args.dry_run:
        print_plan(args.scale, S, args)
        return 0
    if args.build is None:
        args.build = os.path.join(ROOT, "build-gpu" if args.scale == "gpu"
                                  else "build")
    if args.corpus is None:
        args.corpus = (os.path.join(ROOT, ".carry", "corpus")
                       if args.scale == "gpu"
                       else os.path.join(ROOT, "..", "shared", "corpus"))
    if args.work is None:
        args.work = ("/tmp/lft-fidelity" if args.scale == "gpu" else
                     tempfile.mkdtemp(prefix="lft-fidelity-rehearsal-"))
    os.makedirs(args.work, exist_ok=True)
    if args.out is None:
        args.out = os.path.join(args.work, "out")
    docs = os.path.realpath(os.path.join(ROOT, "docs"))
    if args.scale == "rehearsal" and (
            os.path.realpath(args.out).startswith(docs) or args.docs):
        print("fidelity_study: the rehearsal never writes docs/", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    for b in ("latent-store/lft-store", "coordinator/lft-coordinator",
              "worker/lft-worker", "lftctl/lftctl",
              "worker/pretrain/lft-pretrain", "worker/evaluator/lft-analyze",
              "worker/evaluator/lft-export"):
        if not os.access(os.path.join(args.build, b), os.X_OK):
            print(f"fidelity_study: missing {args.build}/{b} (build first)",
                  file=sys.stderr)
            return 2
    print_plan(args.scale, S, args)
    log(f"work {args.work}, outputs {args.out}")
    phases = Phases(S, args.build_seconds)
    rc = Study(args, args.scale).run(phases)
    log(f"done (exit {rc}); outputs in {args.out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
