#!/usr/bin/env python3
"""Fault campaign: kill -9 a random lft process at a random moment of a real
job, restart it after a random delay, and check that the job still ends
SUCCEEDED with the report of an uninterrupted run.

One cluster on loopback (lft-store, lft-coordinator, two teacher workers, two
trainer ranks, one evaluator; a tiny teacher pretrained by lft-pretrain and a
synthetic corpus from lft-make-corpus). First an uninterrupted reference job;
then per trial one job, during which a victim drawn from {teacher, trainer,
evaluator, coordinator, store} is killed with SIGKILL at a moment drawn
uniformly from [0, reference job time) and restarted (same flags, address and
directory) after a delay drawn from [min-down, max-down] seconds. Each
trial's report.json (job id blanked) must equal the reference's; the store's
pair count for the job (lft_store_pending_pairs: in cached mode nothing is
acknowledged, so it is the number of distinct stored pairs) must equal the
reference's (fewer = pairs lost; more = pairs duplicated). Recovery time is
the trial job's wall time minus the (warm) reference job's.

  tests/fault_campaign.py --build build --trials 20 --seed 1 [--markdown F]

Exits 0 when every trial passed, 1 otherwise; prints a table and, with
--markdown, writes it to a file. Stops starting trials after --budget-s.
Every wait is bounded.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

TOKEN = "campaign-token"


class Proc:
    """One service process, restartable with the same command line."""

    def __init__(self, name, argv, run_dir):
        self.name, self.argv, self.run_dir = name, argv, run_dir
        self.p = None
        self.starts = 0

    def start(self):
        self.starts += 1
        out = open(os.path.join(self.run_dir, f"{self.name}.out"), "ab")
        err = open(os.path.join(self.run_dir, f"{self.name}.log"), "ab")
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        self.p = subprocess.Popen(self.argv, stdout=out, stderr=err, env=env)

    def kill(self, sig=signal.SIGKILL):
        if self.p and self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)

    def log(self):
        with open(os.path.join(self.run_dir, f"{self.name}.log"), "rb") as f:
            return f.read().decode(errors="replace")


def wait_for(predicate, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"{what} not within {seconds} s")


class Cluster:
    def __init__(self, build, work):
        self.build, self.work = build, work
        self.run_dir = os.path.join(work, "run")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        os.makedirs(self.run_dir)
        self.bin = {
            "store": os.path.join(build, "latent-store/lft-store"),
            "coordinator": os.path.join(build, "coordinator/lft-coordinator"),
            "worker": os.path.join(build, "worker/lft-worker"),
            "ctl": os.path.join(build, "lftctl/lftctl"),
        }
        self.procs = {}

    def start(self):
        store_port, metrics_port, coord_port = free_ports(3)
        self.store_addr = f"127.0.0.1:{store_port}"
        self.store_metrics = metrics_port
        self.coord_addr = f"127.0.0.1:{coord_port}"
        self.procs["store"] = Proc("store", [
            self.bin["store"], "--listen", self.store_addr,
            "--insecure-loopback", "--token", TOKEN, "--db",
            os.path.join(self.run_dir, "store-db"), "--metrics-port",
            str(metrics_port)], self.run_dir)
        self.procs["coordinator"] = Proc("coordinator", [
            self.bin["coordinator"], "--db",
            os.path.join(self.run_dir, "coordinator-db"), "--listen",
            self.coord_addr, "--insecure-loopback", "--token", TOKEN,
            "--heartbeat-interval-ms", "200", "--lease-ms", "2000",
            "--tick-ms", "100", "--store-address", self.store_addr,
            "--max-task-attempts", "4"], self.run_dir)

        def worker(role, name, pause_ms):
            return Proc(name, [
                self.bin["worker"], "--role", role, "--name", name,
                "--coordinator", self.coord_addr, "--insecure-loopback",
                "--token", TOKEN, "--threads", "1", "--batch-sequences", "4",
                "--test-pause-ms-per-batch", str(pause_ms)], self.run_dir)

        self.procs["teacher"] = worker("teacher", "teacher-0", 20)
        self.procs["teacher-1"] = worker("teacher", "teacher-1", 20)
        self.procs["trainer"] = worker("trainer", "trainer-0", 20)
        self.procs["trainer-1"] = worker("trainer", "trainer-1", 20)
        self.procs["evaluator"] = worker("evaluator", "evaluator-0", 300)
        self.start_store()
        self.procs["coordinator"].start()
        wait_for(lambda: self.ctl(["list"], check=False)[0] == 0, 20,
                 "lft-coordinator answering")
        for name, p in self.procs.items():
            if name not in ("store", "coordinator"):
                p.start()

    def start_store(self):
        p = self.procs["store"]
        p.start()
        out = os.path.join(self.run_dir, "store.out")
        wait_for(lambda: read(out).count(b"listening on") >= p.starts, 20,
                 "lft-store listening")

    def restart(self, name):
        if name == "store":
            self.start_store()
        else:
            self.procs[name].start()

    def stop(self):
        for p in self.procs.values():
            p.kill(signal.SIGTERM)

    def ctl(self, args, check=True, timeout=60):
        argv = [self.bin["ctl"], "--token", TOKEN, "--server",
                self.coord_addr, "--store", self.store_addr] + args
        r = subprocess.run(argv, capture_output=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"lftctl {args[0]}: {r.stderr.decode()}")
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def state(self, job):
        code, out, _ = self.ctl(["get", job, "--json"], check=False)
        m = re.search(r'"state": "JOB_STATE_([A-Z]+)"', out)
        return m.group(1) if m else "UNKNOWN"

    def report(self, job):
        path = os.path.join(self.run_dir, f"{job}.report.json")
        self.ctl(["pull", job, "report.json", "--out", path])
        return read(path).decode().replace(job, "JOB")

    def pairs(self, job):
        try:
            body = urllib.request.urlopen(
                f"http://127.0.0.1:{self.store_metrics}/metrics",
                timeout=5).read().decode()
        except OSError:
            return None
        m = re.search(r'lft_store_pending_pairs\{[^}]*job="%s"[^}]*\} (\S+)'
                      % re.escape(job), body)
        return int(float(m.group(1))) if m else None


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def free_ports(n):
    import socket
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def prepare(build, work, trainer_ranks=2):
    """A synthetic corpus and a tiny pretrained teacher, made once."""
    corpus = os.path.join(work, "corpus")
    if not os.path.exists(os.path.join(corpus, "val.jsonl.zst")):
        subprocess.run([os.path.join(build, "common/corpus/lft-make-corpus"),
                        "--seed", "7", "--documents", "24", "--out", corpus,
                        "--train-shards", "1"], check=True,
                       capture_output=True, timeout=300)
    teacher = os.path.join(work, "teacher")
    if not os.path.exists(os.path.join(teacher, "model.safetensors")):
        tmp = teacher + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([os.path.join(build, "worker/pretrain/lft-pretrain"),
                        "--corpus", corpus, "--out", tmp, "--vocab_size",
                        "300", "--tokenizer_train_bytes", "100000",
                        "--layers", "3", "--hidden", "32", "--heads", "4",
                        "--seq", "32", "--batch", "4", "--steps", "2",
                        "--warmup", "1", "--eval_every", "0", "--threads",
                        "1"], check=True, capture_output=True, timeout=600)
        os.rename(tmp, teacher)
    spec = os.path.join(work, f"job-{trainer_ranks}.json")
    with open(spec, "w") as f:
        json.dump({
            "name": "campaign",
            "teacher": {"path": teacher, "computeDtype": "float32"},
            "corpus": {"jsonlZstPaths": [
                os.path.join(corpus, "train/00.jsonl.zst")],
                "documentsPerShard": 4},
            "block": {"firstLayer": 1, "endLayer": 3},
            "sequenceLength": 32,
            "storageDtype": "STORAGE_DTYPE_F32",
            "training": {"method": "METHOD_FW", "maxSteps": 40,
                         "globalBatchSequences": 4, "learningRate": 0.003,
                         "warmupSteps": 4, "checkpointEverySteps": 10,
                         "trainerRanks": trainer_ranks, "seed": 3},
            "evaluation": {"maxSequences": 4, "steps": [1, 3],
                           "heldoutPaths": [
                               os.path.join(corpus, "val.jsonl.zst")]},
        }, f)
    return spec


def run_job(cluster, spec):
    start = time.time()
    _, out, _ = cluster.ctl(["submit", spec])
    job = out.strip()
    return job, start


def finish(cluster, job, start, timeout):
    code, out, err = cluster.ctl(["watch", job], check=False, timeout=timeout)
    elapsed = time.time() - start
    return cluster.state(job), elapsed, (out + err)[-2000:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-down", type=float, default=0.5)
    ap.add_argument("--max-down", type=float, default=5.0)
    ap.add_argument("--budget-s", type=float, default=3600)
    ap.add_argument("--victims",
                    default="teacher,trainer,evaluator,coordinator,store")
    ap.add_argument("--markdown", default="")
    args = ap.parse_args()
    # SIGTERM (ctest's timeout) unwinds through the finally below, which
    # stops the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    build = os.path.abspath(args.build)
    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(
        prefix="lft-fault-campaign-")
    os.makedirs(work, exist_ok=True)
    rng = random.Random(args.seed)
    spec = prepare(build, work)
    cluster = Cluster(build, work)
    results = []
    began = time.time()
    try:
        cluster.start()
        # Two uninterrupted jobs: the first warms the workers' teacher
        # caches; the second is the reference (report, pairs, wall time).
        for _ in range(2):
            job, start = run_job(cluster, spec)
            state, ref_s, tail = finish(cluster, job, start, 300)
            if state != "SUCCEEDED":
                print(f"reference job {job} ended {state}:\n{tail}")
                return 1
        ref_report, ref_pairs = cluster.report(job), cluster.pairs(job)
        print(f"reference job {job}: {ref_s:.1f} s, {ref_pairs} pairs")
        victims = args.victims.split(",")
        for trial in range(args.trials):
            if time.time() - began > args.budget_s:
                print(f"budget of {args.budget_s} s spent after {trial} "
                      "trials")
                break
            victim = rng.choice(victims)
            at = rng.uniform(0, ref_s)
            down = rng.uniform(args.min_down, args.max_down)
            job, start = run_job(cluster, spec)
            time.sleep(max(0.0, start + at - time.time()))
            phase = cluster.state(job)
            cluster.procs[victim].kill(signal.SIGKILL)
            time.sleep(down)
            cluster.restart(victim)
            state, elapsed, tail = finish(cluster, job, start, 600)
            report = cluster.report(job) if state == "SUCCEEDED" else ""
            pairs = cluster.pairs(job)
            r = {
                "trial": trial + 1, "victim": victim, "phase": phase,
                "kill_at_s": round(at, 2), "down_s": round(down, 2),
                "state": state, "same_report": report == ref_report,
                "pairs": pairs,
                "pairs_delta": (None if pairs is None or ref_pairs is None
                                else pairs - ref_pairs),
                "job_s": round(elapsed, 1),
                "recovery_s": round(elapsed - ref_s, 1),
            }
            results.append(r)
            print(json.dumps(r), flush=True)
            if state != "SUCCEEDED" or not r["same_report"]:
                print(tail)
    finally:
        cluster.stop()
    ok = [r for r in results if r["state"] == "SUCCEEDED" and
          r["same_report"] and r["pairs_delta"] in (0, None)]
    lines = [
        f"{len(ok)} of {len(results)} trials passed (SUCCEEDED, report "
        f"identical, pair count equal); reference job {ref_s:.1f} s, "
        f"{ref_pairs} pairs; seed {args.seed}.",
        "",
        "| trial | victim | phase at kill | kill at s | down s | state | "
        "same report | pairs lost (-) / duplicated (+) | job s | recovery s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['trial']} | {r['victim']} | {r['phase']} | "
            f"{r['kill_at_s']} | {r['down_s']} | {r['state']} | "
            f"{'yes' if r['same_report'] else 'NO'} | "
            f"{r['pairs_delta'] if r['pairs_delta'] is not None else 'n/a'} "
            f"| {r['job_s']} | {r['recovery_s']} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if len(ok) == len(results) and results else 1


if __name__ == "__main__":
    sys.exit(main())
