#!/usr/bin/env python3
"""An independent client of lft's wire API: Python stubs generated from
proto/lft/v1/*.proto with Debian's python3-grpc-tools (libprotoc 3.5.1, the
oldest protoc a user is likely to have) drive a real cluster on 127.0.0.1
(lft-store, lft-coordinator, lft-fake-worker teacher/trainer/evaluator) with
gRPC's default client settings (4 MiB receive limit):

  JobService      Submit (with an idempotency key), Get, List, Watch, Cancel
  CheckpointService  List and Pull through the coordinator, a resumed Pull
                  from an offset, sha256 checked on the client; lftctl pull
                  through the coordinator
  LatentStoreService  an 8 MiB pair written with PutPairs in parts and read
                  back with ScanPairs: no message over 4 MiB either way

Run by ctest (tests/integration/CMakeLists.txt) with Debian's /usr/bin/python3;
exits 77 (reported as skipped) when grpcio or grpc_tools are missing, i.e.
scripts/setup.sh was not run. Every wait is bounded.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


try:
    import grpc
    from grpc_tools import protoc  # noqa: F401 (presence check)
except ImportError as e:
    print(f"skipped: {e} (scripts/setup.sh installs python3-grpcio and "
          "python3-grpc-tools)")
    sys.exit(SKIP)


class Cluster:
    """The processes of one test run; stopped (and reaped) in stop()."""

    def __init__(self, work, args):
        self.work = work
        self.args = args
        self.procs = []

    def spawn(self, name, argv):
        out = open(os.path.join(self.work, name + ".out"), "w")
        err = open(os.path.join(self.work, name + ".err"), "w")
        p = subprocess.Popen(argv, stdout=out, stderr=err)
        self.procs.append((name, p))
        return p

    def log(self, name):
        path = os.path.join(self.work, name + ".err")
        return open(path).read()[-2000:] if os.path.exists(path) else ""

    def stop(self):
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        for _, p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_for(predicate, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    fail(f"timed out after {seconds}s waiting for {what}")


def generate_stubs(proto_dir, out_dir):
    version = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "--version"],
        capture_output=True, text=True)
    print(f"grpc_tools.protoc: {version.stdout.strip()}")
    protos = sorted(
        os.path.join("lft", "v1", f)
        for f in os.listdir(os.path.join(proto_dir, "lft", "v1"))
        if f.endswith(".proto"))
    r = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir,
         f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"] + protos,
        capture_output=True, text=True)
    check(r.returncode == 0,
          f"protoc rejected the protos:\n{r.stdout}{r.stderr}")
    sys.path.insert(0, out_dir)


def make_inputs(work, fixtures):
    teacher = os.path.join(work, "teacher")
    os.makedirs(teacher)
    neox = os.path.join(fixtures, "neox", "tiny-parallel")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(neox, name), teacher)
    shutil.copy(os.path.join(fixtures, "tokenizer", "tokenizer.json"), teacher)
    corpus = os.path.join(work, "pile.jsonl")
    with open(corpus, "w") as f:
        for i in range(100):
            f.write(json.dumps({"text": f"document number {i} of the corpus"}) +
                    "\n")
    r = subprocess.run(["zstd", "-q", "-f", "--rm", corpus],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"zstd failed: {r.stderr}")
    return teacher, corpus + ".zst"


def main():
    ap = argparse.ArgumentParser()
    for flag in ("coordinator", "store", "fake-worker", "lftctl", "proto-dir",
                 "fixtures"):
        ap.add_argument(f"--{flag}", required=True)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="lft-python-client-")
    cluster = Cluster(work, args)
    try:
        run(work, args, cluster)
    finally:
        cluster.stop()
    shutil.rmtree(work, ignore_errors=True)
    print("ok: python client drove Submit, Get, List, Watch, Cancel, "
          "checkpoint List/Pull (resumed), PutPairs/ScanPairs of an 8 MiB pair")


def run(work, args, cluster):
    gen = os.path.join(work, "gen")
    os.makedirs(gen)
    generate_stubs(args.proto_dir, gen)
    from lft.v1 import checkpoint_pb2, checkpoint_pb2_grpc
    from lft.v1 import job_pb2, job_pb2_grpc
    from lft.v1 import store_pb2, store_pb2_grpc

    for var in ("LFT_AUTH_TOKEN", "LFT_STORE_ADDRESS"):
        os.environ.pop(var, None)
    teacher, corpus = make_inputs(work, args.fixtures)

    # ---- the cluster
    store = cluster.spawn("store", [
        args.store, "--db", os.path.join(work, "store"), "--listen",
        "127.0.0.1:0", "--insecure-loopback"])

    def store_port():
        check(store.poll() is None, "lft-store exited: " + cluster.log("store"))
        for line in open(os.path.join(work, "store.out")):
            if line.startswith("listening on "):
                return int(line.rsplit(":", 1)[1])
        return None

    store_address = f"127.0.0.1:{wait_for(store_port, 20, 'lft-store')}"
    port_file = os.path.join(work, "coordinator.port")
    coordinator = cluster.spawn("coordinator", [
        args.coordinator, "--db", os.path.join(work, "coordinator"),
        "--listen", "127.0.0.1:0", "--insecure-loopback",
        # The fake workers need no weights; the fixture teacher's files are
        # not what submit's checks want.
        "--skip-input-checks", "--port-file",
        port_file, "--store-address", store_address,
        "--heartbeat-interval-ms", "100", "--lease-ms", "2000",
        "--tick-ms", "50"])

    def coordinator_port():
        check(coordinator.poll() is None,
              "lft-coordinator exited: " + cluster.log("coordinator"))
        if os.path.exists(port_file):
            parts = open(port_file).read().split()
            if parts:
                return int(parts[0])
        return None

    coordinator_address = \
        f"127.0.0.1:{wait_for(coordinator_port, 20, 'lft-coordinator')}"
    for role in ("teacher", "trainer", "evaluator"):
        cluster.spawn(role, [
            args.fake_worker, "--role", role, "--name", f"py-{role}",
            "--coordinator", coordinator_address, "--ms-per-document", "5",
            "--ms-per-step", "20", "--ms-per-sequence", "20"])

    # Default channel options on purpose: gRPC's 4 MiB receive limit.
    channel = grpc.insecure_channel(coordinator_address)
    jobs = job_pb2_grpc.JobServiceStub(channel)
    checkpoints = checkpoint_pb2_grpc.CheckpointServiceStub(channel)
    store_channel = grpc.insecure_channel(store_address)
    store_stub = store_pb2_grpc.LatentStoreServiceStub(store_channel)

    def spec(name, steps):
        s = job_pb2.JobSpec()
        s.name = name
        s.kind = job_pb2.JOB_KIND_COMPRESS
        s.teacher.path = teacher
        s.corpus.jsonl_zst_paths.append(corpus)
        s.corpus.documents_per_shard = 25
        s.block.first_layer = 1
        s.block.end_layer = 2
        s.sequence_length = 32
        s.training.max_steps = steps
        s.training.checkpoint_every_steps = 10
        s.evaluation.max_sequences = 8
        s.evaluation.heldout_paths.append(corpus)
        # The one-field oneof that replaced proto3 `optional`: presence kept.
        s.evaluation.regression_baseline = False
        check(s.evaluation.HasField("regression_baseline"),
              "regression_baseline lost its presence")
        return s

    # ---- Submit (idempotent), Get, List
    request = job_pb2.SubmitJobRequest(spec=spec("py-job", 30),
                                       request_id="py-1")
    job = jobs.Submit(request, timeout=10).job
    again = jobs.Submit(request, timeout=10).job
    check(job.id and again.id == job.id,
          f"a retried Submit made another job: {job.id} vs {again.id}")
    got = jobs.Get(job_pb2.GetJobRequest(job_id=job.id), timeout=10).job
    check(got.spec.name == "py-job", f"Get returned {got.spec.name!r}")
    check(got.spec.evaluation.HasField("regression_baseline") and
          not got.spec.evaluation.regression_baseline,
          "regression_baseline=false did not survive the round trip")
    listed = jobs.List(job_pb2.ListJobsRequest(), timeout=10).jobs
    check(any(j.id == job.id for j in listed), "List does not show the job")
    try:
        jobs.Get(job_pb2.GetJobRequest(job_id="j-nope"), timeout=10)
        fail("Get of an unknown job succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND,
              f"Get of an unknown job: {e.code()}")

    # ---- Watch until the job ends (bounded by the call's deadline)
    states = []
    for event in jobs.Watch(job_pb2.WatchJobRequest(job_id=job.id),
                            timeout=120):
        states.append(event.state)
    check(states and states[-1] == job_pb2.JOB_STATE_SUCCEEDED,
          f"Watch ended in {states[-1:]}; workers: " +
          cluster.log("teacher") + cluster.log("trainer"))
    for phase in (job_pb2.JOB_STATE_EXTRACTING, job_pb2.JOB_STATE_TRAINING,
                  job_pb2.JOB_STATE_EVALUATING):
        check(phase in states, f"Watch never showed {phase}: {states}")
    print(f"ok: job {job.id} watched through {len(states)} events to SUCCEEDED")

    # ---- Cancel a second job while it runs
    slow = jobs.Submit(job_pb2.SubmitJobRequest(spec=spec("py-slow", 100000)),
                       timeout=10).job
    wait_for(lambda: jobs.Get(job_pb2.GetJobRequest(job_id=slow.id),
                              timeout=10).job.state in (
                                  job_pb2.JOB_STATE_EXTRACTING,
                                  job_pb2.JOB_STATE_TRAINING),
             30, "the second job to start")
    cancelled = jobs.Cancel(job_pb2.CancelJobRequest(job_id=slow.id),
                            timeout=10).job
    check(cancelled.state == job_pb2.JOB_STATE_CANCELLED,
          f"Cancel left state {cancelled.state}")
    try:
        jobs.Cancel(job_pb2.CancelJobRequest(job_id=slow.id), timeout=10)
        fail("cancelling a cancelled job succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.FAILED_PRECONDITION,
              f"second Cancel: {e.code()}")
    ended = list(jobs.Watch(job_pb2.WatchJobRequest(job_id=slow.id),
                            timeout=30))
    check(ended and ended[-1].state == job_pb2.JOB_STATE_CANCELLED,
          "Watch of the cancelled job did not end CANCELLED")
    only_cancelled = jobs.List(
        job_pb2.ListJobsRequest(states=[job_pb2.JOB_STATE_CANCELLED]),
        timeout=10).jobs
    check([j.id for j in only_cancelled] == [slow.id],
          f"List(CANCELLED) = {[j.id for j in only_cancelled]}")
    print(f"ok: job {slow.id} cancelled")

    # ---- A checkpoint larger than one message, written to the store the
    # way a trainer does (PutCheckpoint in 1 MiB chunks), pulled through the
    # coordinator's CheckpointService.
    # The coordinator registered the job with the store when it planned it
    # (it owns the store's per-job lifecycle): the job is there already.
    stats = store_stub.Stats(store_pb2.StoreStatsRequest(job_id=job.id),
                             timeout=10)
    check(stats is not None, "the coordinator did not register the job")
    blob = bytes((i * 131 + 7) & 0xFF for i in range(6 * 1024 * 1024 + 12345))
    digest = hashlib.sha256(blob).hexdigest()
    name = "step-0000000030"

    def upload():
        step = 1 << 20
        for offset in range(0, len(blob), step):
            chunk = store_pb2.CheckpointChunk(data=blob[offset:offset + step])
            if offset == 0:
                chunk.job_id = job.id
                chunk.name = name
                chunk.sha256 = digest
                chunk.total_bytes = len(blob)
            yield chunk

    put = store_stub.PutCheckpoint(upload(), timeout=30)
    check(put.sha256 == digest, f"PutCheckpoint sha256 {put.sha256}")
    infos = checkpoints.List(
        checkpoint_pb2.ListJobCheckpointsRequest(job_id=job.id),
        timeout=10).checkpoints
    check([(c.name, c.bytes, c.sha256) for c in infos] ==
          [(name, len(blob), digest)], f"CheckpointService.List: {infos}")
    try:
        checkpoints.List(
            checkpoint_pb2.ListJobCheckpointsRequest(job_id="j-nope"),
            timeout=10)
        fail("CheckpointService.List of an unknown job succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND,
              f"List of an unknown job: {e.code()}")

    def pull(request):
        header, data, next_offset = None, bytearray(), request.offset
        for chunk in checkpoints.Pull(request, timeout=60):
            if header is None:
                header = chunk
            check(chunk.offset == next_offset,
                  f"chunk at offset {chunk.offset}, expected {next_offset}")
            check(chunk.ByteSize() < DEFAULT_MAX_MESSAGE,
                  f"a chunk of {chunk.ByteSize()} bytes")
            data += chunk.data
            next_offset += len(chunk.data)
        return header, bytes(data)

    header, data = pull(checkpoint_pb2.PullCheckpointRequest(
        job_id=job.id, name="latest"))
    check(header.name == name and header.total_bytes == len(blob) and
          header.sha256 == digest, f"first chunk: {header}")
    check(hashlib.sha256(data).hexdigest() == digest,
          "pulled bytes do not match the sha256")
    resume_at = 5 * 1024 * 1024 + 3
    header, tail = pull(checkpoint_pb2.PullCheckpointRequest(
        job_id=job.id, name=name, offset=resume_at))
    check(header.sha256 == digest and header.total_bytes == len(blob),
          "a resumed pull must still name the whole blob's sha256 and size")
    check(hashlib.sha256(blob[:resume_at] + tail).hexdigest() == digest,
          "kept prefix + resumed bytes do not match the sha256")
    try:
        pull(checkpoint_pb2.PullCheckpointRequest(
            job_id=job.id, name=name, offset=len(blob) + 1))
        fail("a pull past the end succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.OUT_OF_RANGE,
              f"pull past the end: {e.code()}")
    print(f"ok: pulled {len(blob)} bytes through the coordinator, resumed "
          f"from byte {resume_at}")

    out = os.path.join(work, "pulled.bin")
    r = subprocess.run([args.lftctl, "--server", coordinator_address, "pull",
                        job.id, "--out", out], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode == 0, f"lftctl pull: {r.returncode} {r.stderr}")
    check(open(out, "rb").read() == blob, "lftctl pull wrote other bytes")
    print("ok: lftctl pull through the coordinator")

    # ---- An 8 MiB pair (2048 tokens x 1024 bf16, x0 and x1) through
    # PutPairs in parts and ScanPairs with the default limit.
    tokens, hidden = 2048, 1024
    store_stub.CreateJob(store_pb2.CreateStoreJobRequest(
        job_id="py-pairs", hidden=hidden, dtype=store_pb2.TENSOR_DTYPE_BF16),
        timeout=10)
    x0 = bytes((i * 7) & 0xFF for i in range(tokens * hidden * 2))
    x1 = bytes((i * 13 + 1) & 0xFF for i in range(tokens * hidden * 2))
    ids = list(range(tokens))
    part_bytes = 1 << 20

    def requests():
        small = store_pb2.LatentPair(
            shard=0, sequence=0, tokens=1, hidden=hidden,
            dtype=store_pb2.TENSOR_DTYPE_BF16, x0=x0[:2 * hidden],
            x1=x1[:2 * hidden], token_ids=[5])
        yield store_pb2.PutPairsRequest(job_id="py-pairs", pairs=[small])
        x0_at = x1_at = 0
        first = True
        while x0_at < len(x0) or x1_at < len(x1):
            part = store_pb2.LatentPair()
            if first:
                part.shard, part.sequence, part.tokens = 0, 1, tokens
                part.hidden, part.dtype = hidden, store_pb2.TENSOR_DTYPE_BF16
                part.token_ids.extend(ids)
                first = False
            room = part_bytes
            take = min(room, len(x0) - x0_at)
            part.x0 = x0[x0_at:x0_at + take]
            x0_at += take
            room -= take
            take = min(room, len(x1) - x1_at)
            part.x1 = x1[x1_at:x1_at + take]
            x1_at += take
            message = store_pb2.PutPairsRequest(
                pair_part=part,
                pair_continues=x0_at < len(x0) or x1_at < len(x1))
            check(message.ByteSize() < DEFAULT_MAX_MESSAGE,
                  f"test bug: a request of {message.ByteSize()} bytes")
            yield message

    written = store_stub.PutPairs(requests(), timeout=60)
    check(written.pairs_written == 2,
          f"PutPairs acknowledged {written.pairs_written} pairs")
    pairs, pending, messages = [], None, 0
    for response in store_stub.ScanPairs(
            store_pb2.ScanPairsRequest(job_id="py-pairs", partitions=1),
            timeout=60):
        messages += 1
        check(response.ByteSize() < DEFAULT_MAX_MESSAGE,
              f"a ScanPairs message of {response.ByteSize()} bytes")
        pairs.extend(response.pairs)
        if response.HasField("pair_part"):
            part = response.pair_part
            if pending is None:
                pending = store_pb2.LatentPair()
                pending.CopyFrom(part)
            else:
                pending.x0 += part.x0
                pending.x1 += part.x1
                pending.token_ids.extend(part.token_ids)
            if not response.pair_continues:
                pairs.append(pending)
                pending = None
    check(pending is None, "ScanPairs ended inside a pair")
    check([p.sequence for p in pairs] == [0, 1],
          f"ScanPairs returned sequences {[p.sequence for p in pairs]}")
    big = pairs[1]
    check(big.x0 == x0 and big.x1 == x1 and list(big.token_ids) == ids and
          big.tokens == tokens, "the 8 MiB pair came back different")
    check(messages >= 5, f"an 8 MiB pair in only {messages} messages")
    print(f"ok: an 8 MiB pair in and out in messages under 4 MiB "
          f"({messages} ScanPairs messages)")


if __name__ == "__main__":
    main()
