#!/usr/bin/python3
"""Fashion-MNIST benchmark: nnpg inside PostgreSQL against PyTorch.

Run it through test/bench/run.sh (throwaway cluster, data loaded), or by
hand against a server holding the tables of scripts/load_fashion.py and the
nnpg extension (connection from the PG* environment variables, or --dsn):

    /usr/bin/python3 test/bench/fashion_bench.py [--quick] [--epochs N]
        [--repeat N] [--wait-idle S] [--rows N] [--json PATH] [--no-torch]
        (--help for all options)

In one invocation it

  1. trains the three benchmark models (seed CNN, seed MLP, wide MLP) with
     nn_fit on the bytea layout, and each of them right after in PyTorch
     (Debian's python3-torch, in a subprocess with OPENBLAS_NUM_THREADS=1,
     torch.set_num_threads(cores), Keras-equal init, Adam eps 1e-7, the same
     batch sizes and epochs, data read from the same tables through
     psycopg2); with --repeat N this is done N times, interleaved (nnpg A,
     torch A, nnpg B, torch B, ...; the order of the two sides flips every
     round) and medians with [min-max] ranges are reported;
  2. trains the seed CNN again on the real[] layout, once more on bytea
     with nnpg.data_cache_mb below the data size (streaming), and with
     three augmentation layers in front of it;
  3. measures inference (nn_predict_batch, per-row nn_classify, PyTorch at
     batch 1000) and the cost of reading the table into training buffers
     against a plain scan;
  4. prints one table of the figures beside their targets, with
     PASS/MISS, and writes everything as JSON.

Run as root (or as the server's OS user) so the backend's /proc/PID/status
is readable: peak memory is its VmHWM, reset by a fresh connection per fit.

The machine may be shared: for every fit and epoch the script records how
many cores other processes kept busy (/proc/stat minus the measured
process), warns when that was significant, and adds an estimate from the
quiet epochs only. PyTorch's OpenMP threads in particular slow down many
times over when another process takes one of two cores.
"""

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEED = 42
RESCALE = {"type": "rescale", "scale": 0.00392156862745098}

CNN_LAYERS = [
    {"type": "reshape", "shape": [28, 28, 1]},
    {"type": "conv2d", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 64, "kernel_size": 3, "activation": "relu"},
    {"type": "flatten"},
    {"type": "dense", "units": 64, "activation": "relu"},
    {"type": "dense", "units": 10, "activation": "softmax"},
]
MLP_LAYERS = [
    {"type": "flatten"},
    {"type": "dense", "units": 128, "activation": "relu"},
    {"type": "dropout", "rate": 0.2},
    {"type": "dense", "units": 10, "activation": "softmax"},
]
WIDE_LAYERS = [
    {"type": "dense", "units": 512, "activation": "relu"},
    {"type": "dense", "units": 512, "activation": "relu"},
    {"type": "dense", "units": 10, "activation": "softmax"},
]
# In front of the seed CNN (after its reshape) for the augmentation variant.
AUGMENT_LAYERS = [
    {"type": "random_flip"},
    {"type": "random_translation", "height_factor": 0.1, "width_factor": 0.1},
    {"type": "random_rotation", "factor": 0.05},
]
TINY_LAYERS = [{"type": "dense", "units": 10, "activation": "softmax"}]

# name -> (title, layers without the rescale, batch size, accuracy target,
#          PyTorch's reference accuracy on this data)
MODELS = {
    "cnn": ("seed CNN", CNN_LAYERS, 64, 0.89, "0.893-0.902"),
    "mlp": ("seed MLP", MLP_LAYERS, 32, 0.86, "0.864-0.866"),
    "wide": ("wide MLP 784-512-512-10", WIDE_LAYERS, 128, 0.87, "0.878"),
}
MODEL_ORDER = ("cnn", "mlp", "wide")
INFER_BATCH = 1000
MEM_CACHED_MB = 600
MEM_STREAM_MB = 300
QUIET = 0.25  # others' busy cores under which an epoch counts as quiet


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def median(xs):
    return statistics.median(xs) if xs else None


def spread(xs):
    """{median, min, max, n} of a list of numbers (None when empty)."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


class CpuWatch:
    """How busy the machine was with other work while we ran: machine-wide
    busy CPU time (/proc/stat) minus our own process's, per second of wall
    time, in cores; plus hypervisor steal."""
    CLK = os.sysconf("SC_CLK_TCK")

    def __init__(self, own):
        self.own = own  # () -> CPU seconds of the process doing the work
        self.t0, self.busy0, self.steal0 = self.machine()
        self.own0 = own()

    @classmethod
    def machine(cls):
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = v
        return (time.monotonic(), (user + nice + system + irq + softirq) /
                cls.CLK, steal / cls.CLK)

    def stop(self):
        t1, busy1, steal1 = self.machine()
        own = self.own() - self.own0
        wall = max(t1 - self.t0, 1e-9)
        return {"own_cpu_s": own, "own_cores": own / wall,
                "other_cores": max(0.0, (busy1 - self.busy0 - own) / wall),
                "steal_cores": (steal1 - self.steal0) / wall}

    @classmethod
    def pid_cpu(cls, pid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                rest = f.read().rsplit(")", 1)[1].split()
            return (int(rest[11]) + int(rest[12])) / cls.CLK
        except (OSError, IndexError, ValueError):
            return 0.0

    @staticmethod
    def self_cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime


def timed_runs(fn, own, n=3, at_most=9):
    """Time fn() n times (more, up to at_most, while fewer than n runs were
    quiet); each run also measures how busy other processes kept the
    machine. The figure is the median of the quiet runs (others < QUIET
    cores), or of all runs when none was quiet."""
    runs = []
    while len(runs) < at_most:
        w = CpuWatch(own)
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        runs.append({"seconds": t, "other_cores": w.stop()["other_cores"]})
        quiet = [r["seconds"] for r in runs if r["other_cores"] < QUIET]
        if len(quiet) >= n or (quiet and len(runs) >= 2 * n):
            break
    quiet = [r["seconds"] for r in runs if r["other_cores"] < QUIET]
    return {"seconds": median(quiet or [r["seconds"] for r in runs]),
            "quiet_runs": len(quiet), "runs": runs}


def wait_idle(max_s, threshold=0.3, window=1.0):
    """Wait (up to max_s seconds) until the machine's busy CPU over a window
    is below threshold cores; return (seconds waited, last busy cores)."""
    t0 = time.monotonic()
    busy = None
    while True:
        _, b0, _ = CpuWatch.machine()
        time.sleep(window)
        _, b1, _ = CpuWatch.machine()
        busy = (b1 - b0) / window
        waited = time.monotonic() - t0
        if busy < threshold or waited >= max_s:
            return waited, busy


# --------------------------------------------------------------------------
# PyTorch side: runs in a subprocess (python3 fashion_bench.py --torch-job
# JSON) whose environment has OPENBLAS_NUM_THREADS=1 before torch loads.
# --------------------------------------------------------------------------

def torch_job(job):
    import numpy as np
    import psycopg2
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(job["threads"])
    torch.manual_seed(job["seed"])

    def build(kind):
        if kind == "cnn":
            net = nn.Sequential(
                nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(64, 64, 3), nn.ReLU(),
                nn.Flatten(),
                nn.Linear(64 * 3 * 3, 64), nn.ReLU(),
                nn.Linear(64, 10))
        elif kind == "mlp":
            net = nn.Sequential(
                nn.Flatten(),
                nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2),
                nn.Linear(128, 10))
        elif kind == "wide":
            net = nn.Sequential(
                nn.Linear(784, 512), nn.ReLU(),
                nn.Linear(512, 512), nn.ReLU(),
                nn.Linear(512, 10))
        else:
            raise ValueError(kind)
        # Keras defaults: Glorot-uniform kernels, zero biases. The softmax
        # of the last layer is folded into cross_entropy (logits), as a
        # PyTorch user writes it.
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if kind == "cnn" and cl:
            # channels-last (NHWC, as Keras and nnpg lay images out) sends
            # the convolutions, backward included, to oneDNN; NCHW takes
            # slower paths in this build: PyTorch at its best is NHWC
            net = net.to(memory_format=torch.channels_last)
        return net

    cl = job.get("cnn_layout", "channels_last") == "channels_last"

    def shape(xb):
        if job["model"] == "cnn":
            xb = xb.view(-1, 1, 28, 28)
            if cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
        return xb

    def read(query):
        """psycopg2 read-out: the rows, then one float tensor in [0, 1]."""
        t0 = time.perf_counter()
        conn = psycopg2.connect(job["dsn"])
        try:
            cur = conn.cursor()
            cur.execute(query)
            rows = cur.fetchall()
        finally:
            conn.close()
        t1 = time.perf_counter()
        x = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.uint8)
        x = torch.from_numpy(x.reshape(len(rows), 784).copy()).float()
        x.mul_(1.0 / 255.0)
        y = torch.tensor([r[1] for r in rows], dtype=torch.int64)
        t2 = time.perf_counter()
        return x, y, t2 - t0, t1 - t0

    net = build(job["model"])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    res = {"model": job["model"], "threads": torch.get_num_threads(),
           "cnn_layout": job.get("cnn_layout", "channels_last"),
           "torch_version": torch.__version__}

    watch = CpuWatch(CpuWatch.self_cpu)
    x, y, read_s, fetch_s = read(job["train_query"])
    n = len(y)
    res.update(n_train=n, read_s=read_s, read_fetch_s=fetch_s)
    bs = job["batch"]
    epochs = []
    for ep in range(job["epochs"]):
        net.train()
        if ep > 0:
            ewatch = CpuWatch(CpuWatch.self_cpu)
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        loss_sum = 0.0
        correct = 0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb = x[idx]
            yb = y[idx]
            opt.zero_grad(set_to_none=True)
            out = net(shape(xb))
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        secs = time.perf_counter() - t0
        epochs.append({"seconds": secs, "loss": loss_sum / n,
                       "accuracy": correct / n,
                       # epoch 1: from the start of the read-out
                       "other_cores": (watch if ep == 0 else ewatch).stop()[
                           "other_cores"]})
    res["epochs"] = epochs
    res["cpu"] = watch.stop()
    res["train_s"] = sum(e["seconds"] for e in epochs)
    res["total_s"] = read_s + res["train_s"]
    del x, y

    # Test accuracy and batch inference at batch INFER_BATCH: one warm-up
    # pass, then the median of three timed passes (compute only; the
    # read-out of the test table is reported beside it).
    tx, ty, tread_s, _ = read(job["test_query"])
    net.eval()

    def infer():
        preds = []
        with torch.inference_mode():
            for i in range(0, len(ty), INFER_BATCH):
                preds.append(net(shape(tx[i:i + INFER_BATCH])).argmax(1))
        return torch.cat(preds)

    pred = infer()
    tr = timed_runs(infer, CpuWatch.self_cpu)
    res.update(n_test=len(ty), test_read_s=tread_s,
               test_accuracy=float((pred == ty).float().mean()),
               infer_s=tr["seconds"], infer_runs=tr["runs"],
               infer_quiet_runs=tr["quiet_runs"],
               infer_per_s=len(ty) / tr["seconds"],
               infer_with_read_per_s=len(ty) / (tr["seconds"] + tread_s),
               peak_rss_mb=resource.getrusage(
                   resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    return res


def torch_available():
    """Whether /usr/bin/python3-style torch, numpy and psycopg2 import."""
    try:
        r = subprocess.run(
            [sys.executable, "-c",
             "import torch, numpy, psycopg2; print(torch.__version__)"],
            capture_output=True, text=True, env=torch_env(), timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["?"])[-1]
    return r.stdout.strip(), None


def torch_env():
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def run_torch(job):
    """Run one PyTorch job in a fresh subprocess; return its result dict."""
    r = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--torch-job",
         json.dumps(job)],
        capture_output=True, text=True, env=torch_env())
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("TORCHJOB "):
            return json.loads(line[len("TORCHJOB "):])
    sys.stderr.write(r.stderr)
    raise RuntimeError("PyTorch job %s failed (exit %d)"
                       % (job["model"], r.returncode))


# --------------------------------------------------------------------------
# nnpg side
# --------------------------------------------------------------------------

class Sampler(threading.Thread):
    """While a statement runs: the backend's peak VmRSS/RssAnon/RssShmem,
    and a timeline of (time, machine busy CPU s, backend CPU s) from which
    other_cores() tells how busy other processes kept the machine during
    any stretch of the statement (e.g. one epoch)."""

    def __init__(self, pid, interval=0.1):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = {}
        self.timeline = []
        self.stop_ev = threading.Event()

    def sample(self):
        t, busy, _ = CpuWatch.machine()
        self.timeline.append((t, busy, CpuWatch.pid_cpu(self.pid)))

    def run(self):
        while True:
            st = proc_status(self.pid)
            for k in ("VmRSS", "RssAnon", "RssShmem", "RssFile"):
                if k in st:
                    self.peak[k] = max(self.peak.get(k, 0), st[k])
            self.sample()
            if self.stop_ev.wait(self.interval):
                break

    def stop(self):
        self.stop_ev.set()
        self.join()
        self.sample()

    def at(self, t):
        """(busy, own) CPU seconds at time t, interpolated."""
        tl = self.timeline
        if t <= tl[0][0]:
            return tl[0][1:]
        for a, b in zip(tl, tl[1:]):
            if t <= b[0]:
                f = (t - a[0]) / max(b[0] - a[0], 1e-9)
                return (a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2]))
        return tl[-1][1:]

    def other_cores(self, t0, t1):
        if len(self.timeline) < 2 or t1 - t0 < 0.2:
            return None
        (b0, o0), (b1, o1) = self.at(t0), self.at(t1)
        return max(0.0, ((b1 - b0) - (o1 - o0)) / (t1 - t0))


def proc_status(pid):
    """The kB fields of /proc/PID/status, in MB ({} if unreadable)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                v = v.split()
                if len(v) == 2 and v[1] == "kB":
                    out[k] = int(v[0]) / 1024.0
    except OSError:
        pass
    return out


class Nnpg:
    def __init__(self, args):
        import psycopg2
        self.pg = psycopg2
        self.args = args
        self.admin = self.connect()

    def connect(self, settings=None):
        conn = self.pg.connect(self.args.dsn)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SET nnpg.threads = %s", (self.args.threads,))
        for k, v in (settings or {}).items():
            cur.execute("SET %s = %%s" % k, (v,))
        return conn

    def q(self, sql, params=None, conn=None):
        cur = (conn or self.admin).cursor()
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None

    def timed(self, sql, params=None, conn=None):
        t0 = time.perf_counter()
        rows = self.q(sql, params, conn)
        return time.perf_counter() - t0, rows

    def create(self, name, layers, seed):
        self.q("SELECT nn_create(%s, %s::jsonb, input_shape => '{784}', "
               "seed => %s, replace => true)",
               (name, json.dumps(layers), seed))

    def fit(self, name, layers, query, batch, epochs, test_query,
            settings=None, seed=SEED, conn=None):
        """nn_create + nn_fit on a fresh connection (or on conn, which is
        left open); figures of the fit."""
        self.create(name, layers, seed)
        own = conn is None
        if own:
            conn = self.connect(settings)
        try:
            pid = self.q("SELECT pg_backend_pid()", conn=conn)[0][0]
            before = proc_status(pid)
            sampler = Sampler(pid)
            sampler.start()
            watch = CpuWatch(lambda: CpuWatch.pid_cpu(pid))
            t_start = time.monotonic()
            try:
                wall, rows = self.timed(
                    "SELECT epoch, loss, accuracy, seconds FROM nn_fit("
                    "%s, %s, epochs => %s, batch_size => %s, "
                    "optimizer => 'adam', learning_rate => 0.001, "
                    "seed => %s, verbose => false)",
                    (name, query, epochs, batch, seed), conn=conn)
            finally:
                sampler.stop()
            cpu = watch.stop()
            after = proc_status(pid)
        finally:
            if own:
                conn.close()
        ep = [{"epoch": r[0], "loss": r[1], "accuracy": r[2],
               "seconds": r[3]} for r in rows]
        train_s = sum(e["seconds"] for e in ep)
        # Epoch windows, taking all the time outside the epochs as before
        # the first (reading the data; storing the version is short).
        t = t_start
        for i, e in enumerate(ep):
            t_end = t + e["seconds"] + (wall - train_s if i == 0 else 0)
            e["other_cores"] = sampler.other_cores(t, t_end)
            t = t_end
        res = {"wall_s": wall, "epochs": ep, "train_s": train_s,
               # what nn_fit spends outside its epochs: reading the query
               # into training buffers, planning, storing the new version
               "outside_epochs_s": wall - train_s,
               "backend_pid": pid,
               "vmhwm_mb": after.get("VmHWM"),
               "vmhwm_at_connect_mb": before.get("VmHWM"),
               "sampled_peak_mb": sampler.peak, "cpu": cpu}
        if test_query:
            res.update(self.evaluate(name, test_query))
        return res

    def evaluate(self, name, test_query):
        wall, rows = self.timed("SELECT metric, value FROM nn_evaluate(%s, %s)",
                                (name, test_query))
        m = dict(rows)
        return {"test_accuracy": m.get("accuracy"), "test_loss": m.get("loss"),
                "test_n": m.get("n"), "evaluate_s": wall}


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------

def fmt(x, digits=2):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 10000:
        return "{:,.0f}".format(x)
    if abs(x) >= 100:
        return "%.0f" % x
    return "%.*f" % (digits, x)


def fmt_spread(s, digits=2):
    """'median [min-max]' of a spread(), or the single value."""
    if s is None:
        return "-"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt(s["median"], digits)
    return "%s [%s-%s]" % (fmt(s["median"], digits), fmt(s["min"], digits),
                           fmt(s["max"], digits))


class Report:
    def __init__(self, quick):
        self.rows = []
        self.quick = quick

    def add(self, what, nnpg=None, torch=None, ratio=None, target=None,
            ok=None, digits=2):
        """One line; values are numbers, spreads or text; ok is True/False
        (PASS/MISS) or None (no target)."""
        def show(v, d=digits):
            if isinstance(v, dict):
                return fmt_spread(v, d)
            return fmt(v, d)
        status = "" if ok is None else ("PASS" if ok else "MISS")
        if status and self.quick:
            status += "*"
        self.rows.append({"figure": what, "nnpg": show(nnpg),
                          "pytorch": show(torch), "ratio": show(ratio, 2),
                          "target": target or "", "status": status,
                          "values": {"nnpg": nnpg, "pytorch": torch,
                                     "ratio": ratio, "pass": ok}})

    def section(self, title):
        self.rows.append({"section": title})

    def print(self):
        cols = ("figure", "nnpg", "pytorch", "ratio", "target", "status")
        heads = ("figure", "nnpg", "PyTorch", "nnpg/PyTorch", "target",
                 "status")
        body = [r for r in self.rows if "section" not in r]
        w = [max([len(h)] + [len(r[c]) for r in body])
             for c, h in zip(cols, heads)]
        line = "  ".join("-" * x for x in w)
        print(line)
        print("  ".join(h.ljust(x) for h, x in zip(heads, w)))
        for r in self.rows:
            if "section" in r:
                print(line)
                print(r["section"])
                continue
            print("  ".join(r[c].ljust(x) for c, x in zip(cols, w)).rstrip())
        print(line)


def main():
    ap = argparse.ArgumentParser(
        description="nnpg vs PyTorch on Fashion-MNIST. Connects "
                    "as the PG* environment variables say.")
    ap.add_argument("--epochs", type=int,
                    help="epochs per fit (default 5; 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 epoch on the first 5,000 training "
                         "rows, 1 round (explicit flags still win)")
    ap.add_argument("--rows", type=int,
                    help="train on the rows with id <= N (default: all)")
    ap.add_argument("--test-rows", type=int,
                    help="test on the rows with id <= N (default: all)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="interleaved rounds of the training comparison; "
                         "medians and ranges are reported (default 1)")
    ap.add_argument("--models", default=",".join(MODEL_ORDER),
                    help="comma-separated subset of cnn,mlp,wide")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="nnpg.threads and torch.set_num_threads "
                         "(default: the machine's cores)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S",
                    help="before each timed fit, wait up to S seconds for "
                         "the machine to be idle (< 0.3 busy cores over 1 s); "
                         "default 0: do not wait")
    ap.add_argument("--torch-cnn-layout", default="channels_last",
                    choices=("channels_last", "nchw"),
                    help="memory format of PyTorch's CNN (default "
                         "channels_last, its fastest here)")
    ap.add_argument("--no-torch", action="store_true",
                    help="skip the PyTorch side")
    ap.add_argument("--no-extras", action="store_true",
                    help="skip the real[] and streaming CNN fits")
    ap.add_argument("--dsn", default="",
                    help="libpq connection string (default: PG* variables)")
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"),
                    help="where to write the figures (default: %(default)s)")
    ap.add_argument("--torch-job", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.torch_job:
        print("TORCHJOB " + json.dumps(torch_job(json.loads(args.torch_job))))
        return 0

    if args.epochs is None:
        args.epochs = 1 if args.quick else 5
    if args.quick and args.rows is None:
        args.rows = 5000
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in MODELS:
            ap.error("unknown model %r (cnn, mlp, wide)" % m)
    if args.epochs < 1 or args.repeat < 1 or args.threads < 1:
        ap.error("--epochs, --repeat and --threads must be at least 1")

    if importlib.util.find_spec("psycopg2") is None:
        sys.exit("fashion_bench: needs python3-psycopg2 (scripts/setup.sh "
                 "--bench installs it); run with Debian's /usr/bin/python3")

    def where(limit):
        return "" if limit is None else " WHERE id <= %d" % limit

    train_q = "SELECT img, label FROM fashion_train" + where(args.rows)
    test_q = "SELECT img, label FROM fashion_test" + where(args.test_rows)
    train_real_q = ("SELECT pixels, label FROM fashion_train_real"
                    + where(args.rows))
    test_real_q = ("SELECT pixels, label FROM fashion_test_real"
                   + where(args.test_rows))

    db = Nnpg(args)
    db.q("SET client_min_messages = warning")
    db.q("CREATE EXTENSION IF NOT EXISTS nnpg")
    n_train = db.q("SELECT count(*) FROM (%s) s" % train_q)[0][0]
    n_test = db.q("SELECT count(*) FROM (%s) s" % test_q)[0][0]
    has_real = db.q("SELECT to_regclass('fashion_train_real') IS NOT NULL "
                    "AND to_regclass('fashion_test_real') IS NOT NULL")[0][0]
    data_mb = n_train * (784 + 4) / 2.0 ** 20
    stream_cache_mb = max(1, int(data_mb // 3))

    torch_version, why = (None, "--no-torch") if args.no_torch \
        else torch_available()
    if torch_version:
        log("PyTorch %s found; comparing against it" % torch_version)
    else:
        log("PyTorch side skipped: %s" % why)

    info = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(), "cores": os.cpu_count(),
        "threads": args.threads, "epochs": args.epochs,
        "repeat": args.repeat, "quick": args.quick,
        "n_train": n_train, "n_test": n_test,
        "train_query": train_q, "test_query": test_q,
        "loadavg_start": os.getloadavg(),
        "server_version": db.q("SHOW server_version")[0][0],
        "nnpg_version": db.q("SELECT extversion FROM pg_extension "
                             "WHERE extname = 'nnpg'")[0][0],
        "torch_version": torch_version, "torch_skipped_because": why,
        "torch_cnn_layout": args.torch_cnn_layout,
        "openblas": {k: os.environ.get(k) for k in
                     ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        "method": ("interleaved: every round trains each model in nnpg and "
                   "then in PyTorch (order of the two flipped on even "
                   "rounds), models one after another; figures are medians "
                   "over the rounds with [min-max] (round r seeds both "
                   "sides with 42+r-1); nnpg epoch 1 includes "
                   "nn_fit's time outside its epochs (reading the table "
                   "into training buffers, storing the version), PyTorch "
                   "epoch 1 its psycopg2 read-out and tensor conversion; "
                   "'other processes' CPU' is the machine's busy CPU time "
                   "(/proc/stat) minus the measured process's, per second"),
    }
    log("%d training rows, %d test rows, %d epochs, %d round(s), %d threads, "
        "load average %.2f" % (n_train, n_test, args.epochs, args.repeat,
                               args.threads, info["loadavg_start"][0]))

    def settle():
        if args.wait_idle > 0:
            waited, busy = wait_idle(args.wait_idle)
            if busy >= 0.3:
                log("machine still busy (%.2f cores) after waiting %.0f s"
                    % (busy, waited))

    # ---- 1. training, interleaved -------------------------------------
    nnpg_runs = {m: [] for m in models}
    torch_runs = {m: [] for m in models}
    for r in range(args.repeat):
        sides = ("nnpg", "torch") if r % 2 == 0 else ("torch", "nnpg")
        for m in models:
            title, layers, batch, _, _ = MODELS[m]
            for side in sides:
                settle()
                if side == "nnpg":
                    res = db.fit("bench_" + m, [RESCALE] + layers, train_q,
                                 batch, args.epochs, test_q, seed=SEED + r)
                    nnpg_runs[m].append(res)
                    log("round %d nnpg  %-4s %6.1f s (epochs %s s, outside "
                        "%.2f s) test acc %.4f, VmHWM %.0f MB, others' load "
                        "%.2f cores"
                        % (r + 1, m, res["wall_s"],
                           " ".join("%.1f" % e["seconds"]
                                    for e in res["epochs"]),
                           res["outside_epochs_s"], res["test_accuracy"],
                           res["vmhwm_mb"] or -1,
                           res["cpu"]["other_cores"]))
                elif torch_version:
                    res = run_torch({
                        "model": m, "batch": batch, "epochs": args.epochs,
                        "threads": args.threads, "seed": SEED + r,
                        "cnn_layout": args.torch_cnn_layout,
                        "dsn": args.dsn, "train_query": train_q,
                        "test_query": test_q})
                    torch_runs[m].append(res)
                    log("round %d torch %-4s %6.1f s (epochs %s s, read-out "
                        "%.2f s) test acc %.4f, inference %.0f/s, others' "
                        "load %.2f cores"
                        % (r + 1, m, res["total_s"],
                           " ".join("%.1f" % e["seconds"]
                                    for e in res["epochs"]),
                           res["read_s"], res["test_accuracy"],
                           res["infer_per_s"], res["cpu"]["other_cores"]))

    # ---- 2. the seed CNN on real[] and streaming ----------------------
    # The machine's speed drifts over minutes, so each variant is compared
    # with a cached bytea fit run beside it, not with the rounds above.
    extras = {}
    if "cnn" in models and not args.no_extras:
        settle()
        res = db.fit("bench_cnn_ref", [RESCALE] + CNN_LAYERS, train_q, 64,
                     args.epochs, test_q)
        extras["cnn_ref"] = res
        log("nnpg cnn bytea   %6.1f s (epochs %s s), beside the variants"
            % (res["wall_s"], " ".join("%.1f" % e["seconds"]
                                       for e in res["epochs"])))
        if has_real:
            settle()
            res = db.fit("bench_cnn_real", CNN_LAYERS, train_real_q, 64,
                         args.epochs, test_real_q)
            extras["cnn_real"] = res
            log("nnpg cnn real[]  %6.1f s (epochs %s s, outside %.2f s) test "
                "acc %.4f, VmHWM %.0f MB, others' load %.2f cores"
                % (res["wall_s"], " ".join("%.1f" % e["seconds"]
                                           for e in res["epochs"]),
                   res["outside_epochs_s"], res["test_accuracy"],
                   res["vmhwm_mb"] or -1, res["cpu"]["other_cores"]))
        else:
            log("no fashion_*_real tables: real[] fit skipped")
        settle()
        res = db.fit("bench_cnn_stream", [RESCALE] + CNN_LAYERS, train_q, 64,
                     args.epochs, test_q,
                     settings={"nnpg.data_cache_mb": stream_cache_mb})
        res["data_cache_mb"] = stream_cache_mb
        res["data_mb"] = data_mb
        extras["cnn_stream"] = res
        log("nnpg cnn stream  %6.1f s (epochs %s s; data_cache_mb %d < data "
            "%.1f MB) test acc %.4f, VmHWM %.0f MB, others' load %.2f cores"
            % (res["wall_s"], " ".join("%.1f" % e["seconds"]
                                       for e in res["epochs"]),
               stream_cache_mb, data_mb, res["test_accuracy"],
               res["vmhwm_mb"] or -1, res["cpu"]["other_cores"]))

        settle()
        res = db.fit("bench_cnn_aug", [RESCALE] + CNN_LAYERS[:1] + AUGMENT_LAYERS
                     + CNN_LAYERS[1:], train_q, 64, args.epochs, test_q)
        extras["cnn_aug"] = res
        log("nnpg cnn augment %6.1f s (epochs %s s) test acc %.4f, others' "
            "load %.2f cores"
            % (res["wall_s"], " ".join("%.1f" % e["seconds"]
                                       for e in res["epochs"]),
               res["test_accuracy"], res["cpu"]["other_cores"]))

    # ---- 3. inference ---------------------------------------------------
    # Each statement once to warm up (model cache, table in shared buffers),
    # then the median of three timed runs, on a fresh connection.
    infer = {}
    test_ids = "SELECT id, img FROM fashion_test" + where(args.test_rows)
    test_imgs = "SELECT img FROM fashion_test" + where(args.test_rows)
    settle()
    conn = db.connect()
    pid = db.q("SELECT pg_backend_pid()", conn=conn)[0][0]
    try:
        for m in models:
            name = "bench_" + m
            out = {}
            for kind, sql, params in (
                    ("predict_batch",
                     "SELECT count(*) FROM nn_predict_batch(%s, %s)",
                     (name, test_ids)),
                    ("classify",
                     "SELECT nn_classify(%s, img) FROM (" + test_imgs +
                     ") t", (name,))):
                db.q(sql, params, conn=conn)
                tr = timed_runs(lambda: db.q(sql, params, conn=conn),
                                lambda: CpuWatch.pid_cpu(pid))
                out[kind] = dict(tr, per_s=n_test / tr["seconds"])
            infer[m] = out
            log("inference %-4s nn_predict_batch %.0f/s, nn_classify %.0f/s "
                "(quiet runs %d/%d, %d/%d)"
                % (m, out["predict_batch"]["per_s"], out["classify"]["per_s"],
                   out["predict_batch"]["quiet_runs"],
                   len(out["predict_batch"]["runs"]),
                   out["classify"]["quiet_runs"],
                   len(out["classify"]["runs"])))
    finally:
        conn.close()

    # ---- 4. reading the table into training buffers --------------------
    # nnpg: nn_fit(epochs => 1) of a tiny model (rescale, dense 10 softmax):
    # the call's wall time minus its epoch's seconds is the time outside the
    # epoch (planning, the cursor reading every row into the training
    # buffers, checking them, storing the version). The same on 256 rows
    # gives the fixed part. Plain: SELECT sum(length(img)). Each the median
    # of three after a warm-up.
    admin_pid = db.q("SELECT pg_backend_pid()")[0][0]

    def scan(sql):
        db.q(sql)
        return timed_runs(lambda: db.q(sql),
                          lambda: CpuWatch.pid_cpu(admin_pid))["seconds"]

    def fresh_scan(sql):
        """sql as the first statement of a new backend, as nn_fit runs
        here: the backend maps shared buffers page by page on first touch."""
        runs = []
        for _ in range(5):
            conn = db.connect()
            try:
                runs.append(db.timed(sql, conn=conn)[0])
            finally:
                conn.close()
        return median(runs)

    def load_fit(name, layers, query, warm=True):
        """Seconds nn_fit spends outside its epoch. warm: every fit on one
        backend, which the warm-up fit has had map the table's shared
        buffers, as the plain scans run; else each on a new backend, which
        pays for that mapping as fresh_scan does."""
        conn = db.connect() if warm else None
        try:
            db.fit(name, layers, query, 256, 1, None, conn=conn)  # warm-up
            outs = []
            while len(outs) < 9:
                outs.append(db.fit(name, layers, query, 256, 1, None,
                                   conn=conn))
                quiet = [o["outside_epochs_s"] for o in outs
                         if o["cpu"]["other_cores"] < QUIET]
                if len(quiet) >= 3 or (len(outs) >= 6 and quiet):
                    break
        finally:
            if conn is not None:
                conn.close()
        return median(quiet or [o["outside_epochs_s"] for o in outs])

    settle()
    read = {
        "method": "nnpg: nn_fit(epochs => 1, batch_size => 256) of rescale + "
                  "dense 10 softmax, wall time minus the epoch's seconds "
                  "(includes planning and storing the version; 'fixed' is "
                  "the same on 256 rows), in one warm backend as the scans "
                  "(and in new backends against the scan in a new backend); "
                  "plain: SELECT sum(length(img)); medians of 3 quiet runs "
                  "after a warm-up",
        "plain_scan_s": scan("SELECT sum(length(img)) FROM fashion_train"
                             + where(args.rows)),
        # context, no target: length() takes the size from the value's
        # header, so the plain scan touches only the start of each row
        "label_scan_s": scan("SELECT sum(label) FROM fashion_train"
                             + where(args.rows)),
        "bytes_scan_s": scan("SELECT sum(length(img || ''::bytea)) FROM "
                             "fashion_train" + where(args.rows)),
        "fresh_scan_s": fresh_scan("SELECT sum(length(img)) FROM "
                                   "fashion_train" + where(args.rows)),
        "nnpg_load_s": load_fit("bench_load", [RESCALE] + TINY_LAYERS,
                                train_q),
        "nnpg_fixed_s": load_fit("bench_load", [RESCALE] + TINY_LAYERS,
                                 "SELECT img, label FROM fashion_train "
                                 "WHERE id <= 256"),
        "nnpg_load_fresh_s": load_fit("bench_load", [RESCALE] + TINY_LAYERS,
                                      train_q, warm=False),
        "nnpg_fixed_fresh_s": load_fit("bench_load", [RESCALE] + TINY_LAYERS,
                                       "SELECT img, label FROM fashion_train "
                                       "WHERE id <= 256", warm=False),
    }
    if has_real:
        read["plain_scan_real_s"] = scan(
            "SELECT sum(cardinality(pixels)) FROM fashion_train_real"
            + where(args.rows))
        read["nnpg_load_real_s"] = load_fit("bench_load_real", TINY_LAYERS,
                                            train_real_q)
    log("reading %d rows: nnpg %.3f s (fixed part %.3f s), plain scan %.3f s;"
        " in new backends %.3f s (%.3f s), %.3f s"
        % (n_train, read["nnpg_load_s"], read["nnpg_fixed_s"],
           read["plain_scan_s"], read["nnpg_load_fresh_s"],
           read["nnpg_fixed_fresh_s"], read["fresh_scan_s"]))

    for m in models:
        db.q("SELECT nn_drop(%s)", ("bench_" + m,))
    for name in ("bench_cnn_ref", "bench_cnn_real", "bench_cnn_stream",
                 "bench_load",
                 "bench_load_real"):
        db.q("SELECT nn_drop(name) FROM nn_models WHERE name = %s "
             "GROUP BY name", (name,))
    info["loadavg_end"] = os.getloadavg()
    db.admin.close()

    # ---- 5. the table -------------------------------------------------
    rep = Report(args.quick)
    summary = {}
    for m in models:
        title, _, batch, acc_target, torch_ref = MODELS[m]
        nr, tr = nnpg_runs[m], torch_runs[m]
        rep.section("%s, bytea, batch %d, %d epochs, %d rows%s"
                    % (title, batch, args.epochs, n_train,
                       "" if args.repeat == 1 else
                       " (%d interleaved rounds: median [min-max])"
                       % args.repeat))

        def nnpg_epoch(run, e):
            s = run["epochs"][e]["seconds"]
            return s + run["outside_epochs_s"] if e == 0 else s

        def torch_epoch(run, e):
            s = run["epochs"][e]["seconds"]
            return s + run["read_s"] if e == 0 else s

        s = {"epochs": []}
        for e in range(args.epochs):
            ne = spread([nnpg_epoch(x, e) for x in nr])
            te = spread([torch_epoch(x, e) for x in tr])
            ra = spread([nnpg_epoch(a, e) / torch_epoch(b, e)
                         for a, b in zip(nr, tr)])
            rep.add("epoch %d s%s" % (e + 1, " (incl. reading the table)"
                                      if e == 0 else ""), ne, te, ra)
            s["epochs"].append({"nnpg_s": ne, "torch_s": te, "ratio": ra})
        nt = spread([x["wall_s"] for x in nr])
        tt = spread([x["total_s"] for x in tr])
        ra = spread([a["wall_s"] / b["total_s"] for a, b in zip(nr, tr)])
        rep.add("training total s (nnpg: nn_fit wall; PyTorch: read-out + "
                "epochs)", nt, tt, ra, "ratio <= 1.0",
                None if ra is None else ra["median"] <= 1.0)
        rep.add("  of which reading the table s",
                spread([x["outside_epochs_s"] for x in nr]),
                spread([x["read_s"] for x in tr]))

        # Noise-robust view: only the epochs during which other processes
        # kept less than QUIET cores busy, and the total they imply.
        def quiet(runs):
            return [e["seconds"] for x in runs for e in x["epochs"]
                    if e.get("other_cores") is not None and
                    e["other_cores"] < QUIET]
        nq, tq = quiet(nr), quiet(tr)
        s.update(nnpg_quiet_epochs=nq, torch_quiet_epochs=tq)
        if nq and tq:
            n_est = (median([x["outside_epochs_s"] for x in nr]) +
                     args.epochs * median(nq))
            t_est = (median([x["read_s"] for x in tr]) +
                     args.epochs * median(tq))
            rep.add("epoch s on a quiet machine (others < %.2f cores; "
                    "%d+%d of %d+%d epochs)" % (QUIET, len(nq), len(tq),
                                                 len(nr) * args.epochs,
                                                 len(tr) * args.epochs),
                    spread(nq), spread(tq), median(nq) / median(tq))
            rep.add("  total estimated from them (read + %d x median epoch)"
                    % args.epochs, n_est, t_est, n_est / t_est,
                    "ratio <= 1.0 (est.)", n_est / t_est <= 1.0)
            s.update(nnpg_quiet_total_s=n_est, torch_quiet_total_s=t_est,
                     ratio_quiet_total=n_est / t_est)
        ns = spread([n_train / median([e["seconds"] for e in x["epochs"]])
                     for x in nr])
        ts = spread([n_train / median([e["seconds"] for e in x["epochs"]])
                     for x in tr])
        rep.add("training samples/s (median epoch, w/o reading)", ns, ts,
                None if not tr else spread([a / b for a, b in zip(
                    [n_train / median([e["seconds"] for e in x["epochs"]])
                     for x in nr],
                    [n_train / median([e["seconds"] for e in x["epochs"]])
                     for x in tr])]))
        na = spread([x["test_accuracy"] for x in nr])
        ta = spread([x["test_accuracy"] for x in tr])
        rep.add("test accuracy (PyTorch reference: %s)" % torch_ref, na, ta,
                None, ">= %.2f" % acc_target, na["median"] >= acc_target,
                digits=4)
        rep.add("other processes' CPU during the fit, cores of %d"
                % info["cores"],
                spread([x["cpu"]["other_cores"] for x in nr]),
                spread([x["cpu"]["other_cores"] for x in tr]))
        nm = spread([x["vmhwm_mb"] for x in nr])
        tm = spread([x["peak_rss_mb"] for x in tr])
        rep.add("peak memory MB (backend VmHWM; PyTorch maxrss)", nm, tm,
                None, "< %d" % MEM_CACHED_MB if m == "cnn" else None,
                (nm["median"] < MEM_CACHED_MB) if m == "cnn" and nm else None,
                digits=0)
        s.update(nnpg_total_s=nt, torch_total_s=tt, ratio_total=ra,
                 nnpg_samples_per_s=ns, torch_samples_per_s=ts,
                 nnpg_test_accuracy=na, torch_test_accuracy=ta,
                 nnpg_vmhwm_mb=nm, torch_peak_rss_mb=tm)
        summary[m] = s

    if extras:
        rep.section("seed CNN variants (nnpg, one run each, each against "
                    "a cached bytea fit run beside them: ratio column)")
        cnn_acc = summary["cnn"]["nnpg_test_accuracy"]["median"]
        ref = extras["cnn_ref"]
        rep.add("bytea beside them: training total s", ref["wall_s"])
        if "cnn_real" in extras:
            x = extras["cnn_real"]
            vs_ref = x["wall_s"] / ref["wall_s"]
            rep.add("real[] layout: training total s", x["wall_s"], None,
                    vs_ref)
            if torch_runs["cnn"]:
                # real[]/bytea here times bytea/PyTorch in the rounds
                rep.add("real[] layout: estimated total vs PyTorch", None,
                        None, vs_ref * summary["cnn"]["ratio_total"]["median"])
            rep.add("real[] layout: of which reading the table s",
                    x["outside_epochs_s"])
            rep.add("real[] layout: median epoch s",
                    median([e["seconds"] for e in x["epochs"]]), None,
                    median([e["seconds"] for e in x["epochs"]]) /
                    median([e["seconds"] for e in ref["epochs"]]))
            rep.add("real[] layout: test accuracy", x["test_accuracy"],
                    target=">= 0.89", ok=x["test_accuracy"] >= 0.89, digits=4)
            rep.add("real[] layout: peak memory MB (VmHWM)", x["vmhwm_mb"],
                    target="< %d" % MEM_CACHED_MB,
                    ok=x["vmhwm_mb"] is not None and
                    x["vmhwm_mb"] < MEM_CACHED_MB, digits=0)
        x = extras["cnn_stream"]
        rep.add("streaming (data_cache_mb=%d < %.0f MB data): total s"
                % (x["data_cache_mb"], x["data_mb"]), x["wall_s"], None,
                x["wall_s"] / ref["wall_s"])
        rep.add("streaming: median epoch s",
                median([e["seconds"] for e in x["epochs"]]), None,
                median([e["seconds"] for e in x["epochs"]]) /
                median([e["seconds"] for e in ref["epochs"]]))
        rep.add("streaming: test accuracy (same as cached: within 0.01)",
                x["test_accuracy"], target=">= 0.89, ~%.4f" % cnn_acc,
                ok=x["test_accuracy"] >= 0.89 and
                abs(x["test_accuracy"] - cnn_acc) <= 0.01, digits=4)
        rep.add("streaming: peak memory MB (VmHWM)", x["vmhwm_mb"],
                target="< %d" % MEM_STREAM_MB,
                ok=x["vmhwm_mb"] is not None and
                x["vmhwm_mb"] < MEM_STREAM_MB, digits=0)
        x = extras["cnn_aug"]
        aug_ratio = (median([e["seconds"] for e in x["epochs"]]) /
                     median([e["seconds"] for e in ref["epochs"]]))
        rep.add("with random_flip + random_translation 0.1 + random_rotation "
                "0.05: median epoch s",
                median([e["seconds"] for e in x["epochs"]]), None, aug_ratio,
                target="ratio <= 1.15", ok=aug_ratio <= 1.15)
        rep.add("with augmentation: test accuracy", x["test_accuracy"],
                digits=4)

    rep.section("inference over the %d test rows, samples/s (a warm-up, then "
                "the median of 3 quiet runs: nnpg one statement, PyTorch one "
                "pass at batch %d, compute only; targets on the seed CNN)"
                % (n_test, INFER_BATCH))
    for m in models:
        title = MODELS[m][0]
        tr = torch_runs[m]
        tps = spread([x["infer_per_s"] for x in tr])
        twr = spread([x["infer_with_read_per_s"] for x in tr])
        pb = infer[m]["predict_batch"]["per_s"]
        cl = infer[m]["classify"]["per_s"]
        target = m == "cnn" and tps is not None
        rep.add("%s: nn_predict_batch vs PyTorch batch %d"
                % (title, INFER_BATCH), pb, tps,
                None if tps is None else pb / tps["median"],
                ">= 1.0" if target else None,
                (pb >= tps["median"]) if target else None, digits=0)
        rep.add("%s: nn_classify per row vs PyTorch batch %d"
                % (title, INFER_BATCH), cl, tps,
                None if tps is None else cl / tps["median"],
                ">= 0.25 of PyTorch's" if target else None,
                (cl >= 0.25 * tps["median"]) if target else None, digits=0)
        if m == "cnn":
            rep.add("%s: nn_classify per row vs nn_predict_batch" % title,
                    cl, None, cl / pb, digits=0)
        if tps is not None:
            rep.add("%s: (PyTorch incl. psycopg2 read-out of the test table)"
                    % title, None, twr, pb / twr["median"], digits=0)
        summary.setdefault(m, {})["inference"] = {
            "nnpg_predict_batch_per_s": pb, "nnpg_classify_per_s": cl,
            "torch_batch_per_s": tps, "torch_batch_with_read_per_s": twr}

    rep.section("reading the %d training rows into training buffers (%s)"
                % (n_train, "nn_fit(epochs => 1) of rescale + dense 10: wall "
                   "minus the epoch's seconds, minus the same on 256 rows; "
                   "medians of 3 quiet runs"))
    net = read["nnpg_load_s"] - read["nnpg_fixed_s"]
    ratio = net / read["plain_scan_s"]
    read.update(nnpg_net_s=net, ratio_net=ratio,
                ratio_gross=read["nnpg_load_s"] / read["plain_scan_s"])
    rep.add("bytea: nnpg reading the rows (minus fixed part) vs scan s", net,
            None, ratio, "ratio <= 2.0", ratio <= 2.0, digits=3)
    rep.add("  nnpg outside the epoch, all of it s", read["nnpg_load_s"],
            None, read["ratio_gross"], digits=3)
    rep.add("  nnpg fixed part (the same fit on 256 rows) s",
            read["nnpg_fixed_s"], digits=3)
    rep.add("  plain scan SELECT sum(length(img)) s", read["plain_scan_s"],
            digits=3)
    for key, what in (("label_scan_s", "sum(label), reads each row's end"),
                      ("bytes_scan_s", "sum(length(img || '')), reads and "
                       "copies every byte")):
        read["ratio_net_" + key[:-2]] = net / read[key]
        rep.add("  vs scan %s s" % what, read[key], None,
                read["ratio_net_" + key[:-2]], digits=3)

    def net_vs_scan(name, label, load, fixed, scan, scan_label):
        """nnpg's read minus its fixed part, against a scan: two rows."""
        net = read[load] - read[fixed]
        read["nnpg_net_%s_s" % name] = net
        read["ratio_net_" + name] = net / read[scan]
        rep.add(label, net, None, read["ratio_net_" + name], digits=3)
        rep.add(scan_label, read[scan], digits=3)

    net_vs_scan("fresh", "  in a new backend each: nnpg reading the rows "
                "(minus fixed) s", "nnpg_load_fresh_s", "nnpg_fixed_fresh_s",
                "fresh_scan_s", "  in a new backend: scan sum(length(img)) s")
    if "nnpg_load_real_s" in read:
        net_vs_scan("real", "real[]: nnpg reading the rows (minus fixed part) "
                    "vs scan s", "nnpg_load_real_s", "nnpg_fixed_s",
                    "plain_scan_real_s",
                    "  plain scan SELECT sum(cardinality(pixels)) s")

    print()
    print("nnpg %s on PostgreSQL %s vs PyTorch %s (CNN %s): Fashion-MNIST, "
          "%d train / %d test rows, %d epochs, %d threads on %d cores, load "
          "average %.2f at start, %.2f at end"
          % (info["nnpg_version"], info["server_version"],
             torch_version or "(skipped)", args.torch_cnn_layout,
             n_train, n_test, args.epochs,
             args.threads, info["cores"], info["loadavg_start"][0],
             info["loadavg_end"][0]))
    print("How: " + info["method"] + ".")
    if args.quick:
        print("QUICK RUN: the targets are for the full data and 5 "
              "epochs; statuses marked * are indicative only.")
    rep.print()
    others = [x["cpu"]["other_cores"] for runs in (nnpg_runs, torch_runs)
              for rs in runs.values() for x in rs]
    info["other_cores_median"] = median(others)
    noisy = sum(1 for o in others if o >= QUIET)
    info["noisy_fits"] = noisy
    if noisy:
        print("WARNING: %d of the %d compared fits ran while other processes "
              "kept >= %.2f of the %d cores busy (median over all fits %.2f): "
              "their times are inflated, by up to tens of times (both "
              "PyTorch's OpenMP threads and nnpg's kernel threads wait on "
              "each other when a core is taken); trust the quiet-machine "
              "rows, or rerun on an idle machine (--wait-idle S, --repeat N)"
              % (noisy, len(others), QUIET, info["cores"], median(others)))
    misses = [r["figure"] for r in rep.rows
              if r.get("status", "").startswith("MISS")]
    print("%d targets checked, %d missed" % (
        sum(1 for r in rep.rows if r.get("status")), len(misses)))

    out = {"info": info, "summary": summary, "extras": extras,
           "inference": infer, "read": read,
           "nnpg_runs": nnpg_runs, "torch_runs": torch_runs,
           "table": rep.rows}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1, default=str)
    print("figures written to %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
