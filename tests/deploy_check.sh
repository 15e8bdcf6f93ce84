#!/bin/bash
# Checks the deployment files in deploy/ against the tools that consume them
# and against the sources:
#   - promtool check config on both Prometheus configurations (this also
#     checks the rule file they load), promtool check rules, and the alert
#     unit tests (promtool test rules deploy/prometheus/alerts_test.yml);
#   - the Grafana dashboard parses as JSON, has the datasource and job
#     variables, unique panel ids, and every query is valid PromQL (checked
#     by promtool as recording rules, Grafana variables substituted);
#   - every lft_* metric named in the alerts, their tests and the dashboard
#     is exported by the sources (common, latent-store, coordinator, worker),
#     and every state="..." / role="..." value exists;
#   - every Kubernetes manifest parses (needs python3's yaml module; that part
#     is skipped without it) and passes only flags that lft-coordinator,
#     lft-store and lft-worker accept;
#   - the SLURM script passes bash -n (and shellcheck when installed).
# Skips (exit 0, "skipped: ...") only when promtool is absent.
# Run: LFT_TEST_SRCDIR=$PWD bash tests/deploy_check.sh
set -uo pipefail

SRC=${LFT_TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
DEPLOY=$SRC/deploy
if ! command -v promtool >/dev/null 2>&1; then
  echo "skipped: promtool not installed (Debian package prometheus)"
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "FAIL: python3 is needed to check the dashboard" >&2
  exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
ok() { echo "ok: $*"; }

# Runs a command quietly; on failure prints its output and records it.
check() {
  local what=$1
  shift
  if "$@" >"$TMP/out" 2>&1; then
    ok "$what"
  else
    cat "$TMP/out" >&2
    fail "$what"
  fi
}

# ---- Prometheus.
PROM=$DEPLOY/prometheus
check "promtool check config prometheus.yml" promtool check config "$PROM/prometheus.yml"
check "promtool check rules alerts.yml" promtool check rules "$PROM/alerts.yml"
check "promtool test rules alerts_test.yml" promtool test rules "$PROM/alerts_test.yml"
if promtool check config "$PROM/prometheus-kubernetes.yml" >"$TMP/out" 2>&1; then
  ok "promtool check config prometheus-kubernetes.yml"
elif grep -q "field kubernetes_sd_configs not found" "$TMP/out"; then
  # Debian's prometheus is built without Kubernetes service discovery.
  echo "note: this promtool has no kubernetes_sd; prometheus-kubernetes.yml gets the YAML checks below only"
  K8S_PROM_UNCHECKED=1
else
  cat "$TMP/out" >&2
  fail "promtool check config prometheus-kubernetes.yml"
fi

# ---- Everything else in one Python pass: prints "FAIL: ..." lines.
python3 - "$SRC" "$TMP" "${K8S_PROM_UNCHECKED:-0}" >"$TMP/py.out" 2>&1 <<'PY'
import glob, json, os, re, subprocess, sys

src, tmp, k8s_prom_unchecked = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
deploy = os.path.join(src, "deploy")
problems = []

def fail(msg):
    problems.append(msg)

def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()

# Metric names the sources export, and histogram series names.
exported = set()
for folder in ("common", "latent-store", "coordinator", "worker"):
    for root, _, files in os.walk(os.path.join(src, folder)):
        for name in files:
            if name.endswith((".cc", ".h")):
                exported.update(re.findall(r'"(lft_[a-z0-9_]+)"', read(os.path.join(root, name))))
exported = {m for m in exported if not m.startswith("lft_invalid_")}
if len(exported) < 10:
    fail(f"found only {len(exported)} metric names in the sources; is LFT_TEST_SRCDIR right?")
allowed = set(exported)
for m in exported:
    allowed.update({m + "_bucket", m + "_sum", m + "_count"})

# State and role values.
states = set()
for proto in glob.glob(os.path.join(src, "proto", "lft", "v1", "*.proto")):
    for prefix, name in re.findall(r"\b(JOB_STATE|TASK_STATE)_([A-Z]+)\s*=", read(proto)):
        if name != "UNSPECIFIED":
            states.add(name)
roles = {"teacher", "trainer", "evaluator"}

def check_names(text, where):
    for m in sorted(set(re.findall(r"\blft_[a-z0-9_]+", text))):
        if m not in allowed:
            fail(f"{where}: metric {m} is not exported by the sources")
    for v in sorted(set(re.findall(r'\bstate\s*=~?\s*\\?"([^"\\]*)', text))):
        for alt in v.split("|"):
            if alt and alt not in states:
                fail(f'{where}: state="{alt}" is not a job or task state {sorted(states)}')
    for v in sorted(set(re.findall(r'\brole\s*=~?\s*\\?"([^"\\]*)', text))):
        for alt in v.split("|"):
            if alt and alt not in roles:
                fail(f'{where}: role="{alt}" is not one of {sorted(roles)}')

prom = os.path.join(deploy, "prometheus")
for name in ("alerts.yml", "alerts_test.yml"):
    # Metric names in comments count too: they are documentation.
    check_names(read(os.path.join(prom, name)), f"deploy/prometheus/{name}")

# Grafana dashboard.
dash_path = os.path.join(deploy, "grafana", "lft-dashboard.json")
try:
    dash = json.loads(read(dash_path))
except (OSError, ValueError) as e:
    fail(f"deploy/grafana/lft-dashboard.json: {e}")
    dash = None
if dash is not None:
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        fail(f"dashboard schemaVersion {dash.get('schemaVersion')!r}: expected >= 36")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource" or \
            variables["datasource"].get("query") != "prometheus":
        fail("dashboard: no Prometheus datasource variable named 'datasource'")
    if "job" not in variables:
        fail("dashboard: no 'job' variable")
    panels = []
    def walk(ps):
        for p in ps:
            panels.append(p)
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)) or None in ids:
        fail("dashboard: panel ids are missing or not unique")
    titles = {p.get("title") for p in panels if p.get("type") == "row"}
    for row in ("Extraction", "store", "Training", "Evaluation", "Coordinator"):
        if not any(row.lower() in (t or "").lower() for t in titles):
            fail(f"dashboard: no row about {row}")
    exprs = []
    for p in panels:
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            fail(f"dashboard panel {p.get('title')!r} has no queries")
        for t in p.get("targets", []):
            ds = t.get("datasource", p.get("datasource", {}))
            if ds.get("uid") != "${datasource}":
                fail(f"dashboard panel {p.get('title')!r}: datasource is not the variable")
            if not t.get("expr"):
                fail(f"dashboard panel {p.get('title')!r}: empty query")
            else:
                exprs.append(t["expr"])
    job_query = variables.get("job", {}).get("query", "")
    if isinstance(job_query, dict):
        job_query = job_query.get("query", "")
    m = re.match(r"label_values\((.*),\s*job\)$", job_query)
    if not m:
        fail(f"dashboard: job variable query {job_query!r} is not label_values(SELECTOR, job)")
    else:
        exprs.append(m.group(1))
    check_names(json.dumps(dash), "deploy/grafana/lft-dashboard.json")
    # Every query as a recording rule: promtool parses the PromQL.
    rules = os.path.join(tmp, "dashboard_rules.yml")
    with open(rules, "w") as f:
        f.write("groups:\n  - name: dashboard\n    rules:\n")
        for i, e in enumerate(exprs):
            e = e.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            e = e.replace("$__range", "1h").replace("$job", ".+")
            if "$" in e.replace("$1", ""):
                fail(f"dashboard query uses an unknown variable: {e}")
            f.write(f"      - record: dashboard_query_{i}\n        expr: {json.dumps(e)}\n")
    r = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True)
    if r.returncode != 0:
        fail("dashboard queries are not valid PromQL:\n" + r.stdout + r.stderr)
    else:
        print(f"ok: {len(exprs)} dashboard queries parse as PromQL")

# Flags each binary accepts.
def flags_in_parse_call(path):
    text = read(path)
    m = re.search(r"Flags::Parse\((.*?)\);", text, re.S)
    return set(re.findall(r'"([a-z][a-z0-9-]*)"', m.group(1))) if m else set()

# A main file declares FlagSpecs ({"name", "VALUE", "help"}) or names its
# flags in its Flags::Parse call.
def accepted_flags(path):
    text = read(path)
    if "FlagSpec" not in text:
        return flags_in_parse_call(path)
    return set(re.findall(r'\{"([a-z][a-z0-9-]*)", "', text))

accepted = {
    "lft-coordinator": accepted_flags(os.path.join(src, "coordinator", "coordinator_main.cc")),
    "lft-worker": accepted_flags(os.path.join(src, "worker", "worker_main.cc")),
    "lft-store": accepted_flags(os.path.join(src, "latent-store", "main.cc")),
}
for binary, names in accepted.items():
    if len(names) < 5:
        fail(f"could not read the flags of {binary} from its main file")

# Kubernetes manifests.
try:
    import yaml
except ImportError:
    yaml = None
    print("note: python3 has no yaml module; Kubernetes manifests not parsed")
if yaml is not None:
    manifests = sorted(glob.glob(os.path.join(deploy, "k8s", "*.yaml")))
    if not manifests:
        fail("no manifests in deploy/k8s")
    kinds = []
    for path in manifests:
        rel = os.path.relpath(path, src)
        try:
            docs = [d for d in yaml.safe_load_all(read(path)) if d is not None]
        except yaml.YAMLError as e:
            fail(f"{rel}: {e}")
            continue
        for d in docs:
            if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
                fail(f"{rel}: a document without apiVersion/kind")
                continue
            kinds.append(d["kind"])
            if d["kind"] == "Kustomization":
                for r in d.get("resources", []):
                    if not os.path.exists(os.path.join(os.path.dirname(path), r)):
                        fail(f"{rel}: resource {r} does not exist")
            spec = d.get("spec", {}).get("template", {}).get("spec", {})
            for c in spec.get("containers", []):
                binary = (c.get("command") or [""])[0]
                if binary not in accepted:
                    continue
                for arg in c.get("args", []):
                    if not str(arg).startswith("--"):
                        continue
                    name = str(arg)[2:].split("=", 1)[0]
                    if binary == "lft-store":
                        name = name.replace("_", "-")
                    if name not in accepted[binary]:
                        fail(f"{rel}: {binary} does not accept --{name}")
                limits = c.get("resources", {}).get("limits", {})
                if binary == "lft-worker" and "--device=cuda" in c.get("args", []) \
                        and "nvidia.com/gpu" not in limits:
                    fail(f"{rel}: GPU worker without an nvidia.com/gpu limit")
    for kind in ("Deployment", "StatefulSet", "Service", "Secret", "PersistentVolumeClaim"):
        if kind not in kinds:
            fail(f"deploy/k8s: no {kind}")
    print(f"ok: {len(manifests)} Kubernetes manifests parse ({len(kinds)} objects)")
    if k8s_prom_unchecked:
        try:
            cfg = yaml.safe_load(read(os.path.join(prom, "prometheus-kubernetes.yml")))
            assert cfg["scrape_configs"][0]["kubernetes_sd_configs"]
            print("ok: prometheus-kubernetes.yml parses as YAML")
        except Exception as e:  # noqa: BLE001 - any problem is a failure here
            fail(f"deploy/prometheus/prometheus-kubernetes.yml: {e}")

for p in problems:
    print("FAIL: " + p)
sys.exit(1 if problems else 0)
PY
py_status=$?
cat "$TMP/py.out"
if ((py_status != 0)); then
  fail "dashboard, metric names or manifests ($(grep -c '^FAIL' "$TMP/py.out") problem(s) above)"
fi

# ---- SLURM script.
SBATCH=$DEPLOY/slurm/lft-job.sbatch
check "bash -n lft-job.sbatch" bash -n "$SBATCH"
if command -v shellcheck >/dev/null 2>&1; then
  check "shellcheck lft-job.sbatch" shellcheck "$SBATCH"
fi

if ((failures > 0)); then
  echo "deploy_check: $failures check(s) failed" >&2
  exit 1
fi
echo "deploy_check: all checks passed"
