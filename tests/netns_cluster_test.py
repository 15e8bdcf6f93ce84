#!/usr/bin/env python3
"""Several hosts, simulated: lft-coordinator, lft-store and each worker
(teacher, trainer, evaluator) run in a network namespace of their own, joined
by veth pairs to a bridge in a further namespace; addresses exist only inside
those namespaces (10.77.0.0/24), TLS and bearer tokens on every endpoint.

  1. a job completes (the reference);
  2. a second job: mid-training the trainer's link is cut (its veth on the
     bridge set down) for longer than a lease, then restored; the job still
     completes, with a report.json identical to the reference's.

Needs root and `ip netns` (iproute2), openssl; prints "skipped: <reason>"
and exits 0 otherwise (ctest skips on that line). Every wait is bounded.

  tests/netns_cluster_test.py --build build
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fault_campaign as fc  # noqa: E402

TOKEN = fc.TOKEN
SUBNET = "10.77.0"


def sh(*argv, check=True):
    r = subprocess.run(list(argv), capture_output=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.decode().strip()}")
    return r


def skip(reason):
    print(f"skipped: {reason}")
    sys.exit(0)


class Network:
    """A bridge namespace and one namespace per host, 10.77.0.N each."""

    def __init__(self):
        self.tag = f"{os.getpid() % 100000}"
        self.switch = f"lftsw{self.tag}"
        self.hosts = {}

    def create(self):
        sh("ip", "netns", "add", self.switch)
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")

    def add_host(self, name, index):
        ns = f"lft{name}{self.tag}"
        inner, outer = f"v{name}{self.tag}", f"b{name}{self.tag}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        sh("ip", "link", "set", inner, "netns", ns)
        sh("ip", "link", "set", outer, "netns", self.switch)
        sh("ip", "-n", self.switch, "link", "set", outer, "master", "br0")
        sh("ip", "-n", self.switch, "link", "set", outer, "up")
        sh("ip", "-n", ns, "addr", "add", f"{SUBNET}.{index}/24", "dev", inner)
        sh("ip", "-n", ns, "link", "set", inner, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.hosts[name] = (ns, f"{SUBNET}.{index}", outer)
        return ns, f"{SUBNET}.{index}"

    def set_link(self, name, up):
        sh("ip", "-n", self.switch, "link", "set", self.hosts[name][2],
           "up" if up else "down")

    def destroy(self):
        for ns, _, _ in self.hosts.values():
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "netns", "del", self.switch, check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default="")
    ap.add_argument("--cut-s", type=float, default=6.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        skip("needs root for ip netns")
    if shutil.which("ip") is None or shutil.which("openssl") is None:
        skip("needs iproute2 (ip) and openssl")
    probe = f"lftprobe{os.getpid() % 100000}"
    r = sh("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        skip(f"ip netns add is not permitted here: {r.stderr.decode().strip()}")
    sh("ip", "netns", "del", probe, check=False)

    build = os.path.abspath(args.build)
    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(
        prefix="lft-netns-")
    os.makedirs(work, exist_ok=True)
    spec = fc.prepare(build, work, trainer_ranks=1)
    run = os.path.join(work, "run")
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    net = Network()
    procs = []
    try:
        net.create()
        coord_ns, coord_ip = net.add_host("co", 2)
        store_ns, store_ip = net.add_host("st", 3)
        teacher_ns, teacher_ip = net.add_host("te", 4)
        trainer_ns, trainer_ip = net.add_host("tr", 5)
        eval_ns, eval_ip = net.add_host("ev", 6)
        cert, key = os.path.join(run, "cert.pem"), os.path.join(run, "key.pem")
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
           "1", "-subj", "/CN=lft-netns", "-addext",
           f"subjectAltName=IP:{coord_ip},IP:{store_ip}", "-keyout", key,
           "-out", cert)
        coord_addr, store_addr = f"{coord_ip}:7070", f"{store_ip}:7071"
        b = {
            "store": os.path.join(build, "latent-store/lft-store"),
            "coordinator": os.path.join(build, "coordinator/lft-coordinator"),
            "worker": os.path.join(build, "worker/lft-worker"),
            "ctl": os.path.join(build, "lftctl/lftctl"),
        }

        def start(name, ns, argv):
            p = fc.Proc(name, ["ip", "netns", "exec", ns] + argv, run)
            p.start()
            procs.append(p)
            return p

        start("store", store_ns, [
            b["store"], "--listen", store_addr, "--tls-cert", cert,
            "--tls-key", key, "--token", TOKEN, "--db",
            os.path.join(run, "store-db")])
        start("coordinator", coord_ns, [
            b["coordinator"], "--db", os.path.join(run, "coordinator-db"),
            "--listen", coord_addr, "--tls-cert", cert, "--tls-key", key,
            "--token", TOKEN, "--heartbeat-interval-ms", "200", "--lease-ms",
            "2000", "--tick-ms", "100", "--store-address", store_addr,
            # The coordinator registers jobs with the store itself (TLS).
            "--store-tls-ca", cert])

        def ctl(*a, check=True, timeout=60):
            r = subprocess.run(
                ["ip", "netns", "exec", coord_ns, b["ctl"], "--token", TOKEN,
                 "--tls-ca", cert, "--server", coord_addr, "--store",
                 store_addr] + list(a), capture_output=True, timeout=timeout)
            if check and r.returncode != 0:
                raise RuntimeError(f"lftctl {a[0]}: {r.stderr.decode()}")
            return r.returncode, r.stdout.decode(), r.stderr.decode()

        fc.wait_for(lambda: ctl("list", check=False)[0] == 0, 30,
                    "the coordinator answering over TLS")

        def worker(role, ns, ip, pause):
            return start(role, ns, [
                b["worker"], "--role", role, "--name", role, "--coordinator",
                coord_addr, "--tls-ca", cert, "--token", TOKEN, "--threads",
                "1", "--batch-sequences", "4", "--listen-host", ip,
                "--test-pause-ms-per-batch", str(pause)])

        worker("teacher", teacher_ns, teacher_ip, 40)
        trainer = worker("trainer", trainer_ns, trainer_ip, 60)
        worker("evaluator", eval_ns, eval_ip, 300)

        def state_and_step(job):
            _, out, _ = ctl("get", job, "--json", check=False)
            import re
            st = re.search(r'"state": "JOB_STATE_([A-Z]+)"', out)
            sp = re.search(r'"latestStep": "?([0-9]+)', out)
            return (st.group(1) if st else "?", int(sp.group(1)) if sp else 0)

        def report(job):
            path = os.path.join(run, f"{job}.report.json")
            ctl("pull", job, "report.json", "--out", path)
            return fc.read(path).decode().replace(job, "JOB")

        _, out, _ = ctl("submit", spec)
        ref = out.strip()
        code, out, err = ctl("watch", ref, check=False, timeout=300)
        if code != 0:
            raise RuntimeError(f"reference job failed: {out}{err}")
        ref_report = report(ref)
        print(f"reference job {ref} SUCCEEDED across 5 namespaces over TLS")

        _, out, _ = ctl("submit", spec)
        job = out.strip()
        fc.wait_for(lambda: state_and_step(job)[0] == "TRAINING" and
                    state_and_step(job)[1] >= 5, 120, "training under way")
        cut_at = state_and_step(job)[1]
        net.set_link("tr", up=False)
        time.sleep(args.cut_s)
        net.set_link("tr", up=True)
        code, out, err = ctl("watch", job, check=False, timeout=300)
        if code != 0:
            raise RuntimeError(f"job with a cut link failed: {out}{err}\n"
                               f"{trainer.log()[-3000:]}")
        same = report(job) == ref_report
        print(f"job {job}: trainer link cut at step {cut_at} for "
              f"{args.cut_s} s; SUCCEEDED; report identical: {same}")
        if not same:
            return 1
        return 0
    finally:
        for p in procs:
            p.kill(signal.SIGTERM)
        net.destroy()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
