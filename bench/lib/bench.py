#!/usr/bin/env python3
"""skiff's HTTP/1.1 and HTTP/2 benchmark: skiff, HAProxy, nginx and no proxy, side by side.

Started by bench/run.sh, which installs the tools and builds skiff. This file
starts an nginx backend and each proxy on 127.0.0.1 (free ports only), pins the
proxy to its own core with taskset while wrk, h2load and the backend share the
other, and measures:

  * wrk keep-alive runs (64 and 256 connections x 64 B, 1 KiB, 16 KiB bodies):
    req/s, latency percentiles, the proxy's CPU time per request from
    /proc/PID/stat and its peak RSS (VmHWM). Every run gets a fresh proxy, so
    VmHWM belongs to that load alone.
  * fixed-rate h2load runs at 25/50/75% of each proxy's own wrk peak, and all
    proxies at 50% of HAProxy's peak: latency under normal load.
  * HTTP/2: h2load with h2c prior knowledge downstream at a few (connections,
    streams per connection) points, with an HTTP/1.1 and an h2c upstream: req/s,
    latency percentiles from h2load's per-request log, CPU per request, peak RSS.
  * idle RSS, and RSS while holding many idle keep-alive downstream connections.

Results go to bench/results/ (latest.md, latest.json, latency.png, machine.md,
microbench.txt). Nothing here asserts on timings: it measures and reports.
"""

import atexit
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from procs import CpuCap, cpu_ticks, free_port, spawn, status_kb, stop, stop_all, tail  # noqa: F401

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH_DIR)
CONFIGS = os.path.join(BENCH_DIR, "configs")
LUA = os.path.join(BENCH_DIR, "lib", "report.lua")


def env_list(name, default):
    return os.environ.get(name, default).split()


DURATION = int(os.environ.get("BENCH_DURATION", "10"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "1"))
RATE_DURATION = int(os.environ.get("BENCH_RATE_DURATION", str(DURATION)))
CONNS = [int(c) for c in env_list("BENCH_CONNS", "64 256")]
SIZES = env_list("BENCH_SIZES", "64 1k 16k")
PROXIES = env_list("BENCH_PROXIES", "direct skiff haproxy nginx")
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
LOAD_CPUS = os.environ.get("BENCH_LOAD_CPUS", "0")
PROXY_CPUS = os.environ.get("BENCH_PROXY_CPUS", "1")
RATE_FRACTIONS = [float(f) for f in env_list("BENCH_RATE_FRACTIONS", "0.25 0.5 0.75")]
RATE_SIZE = os.environ.get("BENCH_RATE_SIZE", "64")
RATE_CONNS = int(os.environ.get("BENCH_RATE_CONNS", "64"))
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS", "10000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "1"))
CAP = float(os.environ.get("BENCH_CAP", "0.5"))  # capacity runs: share of one core; 0: none
CAP_ROUNDS = int(os.environ.get("BENCH_CAP_ROUNDS", "3"))
H2 = os.environ.get("BENCH_H2", "1") != "0"
H2_SIZE = os.environ.get("BENCH_H2_SIZE", "64")
H2_UPSTREAMS = env_list("BENCH_H2_UPSTREAMS", "h1 h2")
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(BENCH_DIR, "results"))
SKIFF_BIN = os.environ.get("SKIFF_BIN", os.path.join(ROOT, "build-bench", "skiff"))
# A second skiff binary for before/after comparisons taking turns: the proxy named
# "skiff-b" in BENCH_PROXIES (bench/probe.sh only; the full run's tables know "skiff").
SKIFF_BIN_B = os.environ.get("SKIFF_BIN_B", "")
MICROBENCH_BIN = os.environ.get(
    "SKIFF_MICROBENCH_BIN", os.path.join(ROOT, "build-bench", "bench", "skiff_microbench"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY_BYTES = {"64": 64, "1k": 1024, "16k": 16384}
NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_h2_points(text):
    points = []
    for item in text.split():
        m = re.fullmatch(r"(\d+)x(\d+)", item)
        if not m:
            sys.exit(f"bench: BENCH_H2_POINTS: {item!r} is not CONNSxSTREAMS (like 64x100)")
        points.append((int(m.group(1)), int(m.group(2))))
    return points


H2_POINTS = parse_h2_points(os.environ.get("BENCH_H2_POINTS", "8x10 64x100"))
# HAProxy's maxconn also caps the requests in flight to its one server, and an
# h2 load point has connections x streams of them.
MAXCONN = max([IDLE_CONNS] + CONNS + [c * m for c, m in H2_POINTS]) + 500
# skiff's cluster options for an h2c upstream (indented into skiff.yaml.in's cluster).
SKIFF_H2_UPSTREAM = (
    "    typed_extension_protocol_options:\n"
    "      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n"
    "        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n"
    "        explicit_http_config: { http2_protocol_options: {} }\n")
# Template fields that a caller may leave out (bench/lib/probe.py does).
RENDER_DEFAULTS = {"cluster_options": "", "server_options": "", "maxconn": MAXCONN}


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A failure the user can act on (a server that would not start, a tool that failed)."""


# ---------------------------------------------------------------------------
# Processes (procs.py): all of them die on exit or on a signal, whatever happens.

def on_signal(signum, _frame):
    log(f"signal {signum}: stopping everything")
    stop_all()
    sys.exit(128 + signum)


def run_tool(args, timeout):
    """Runs a load generator on the load cores; returns its stdout."""
    full = ["taskset", "-c", LOAD_CPUS] + args
    try:
        res = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{args[0]} did not finish within {timeout} s: {' '.join(args)}")
    if res.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed ({res.returncode}):\n{res.stderr[-2000:]}")
    return res.stdout


def render(template, out_path, **values):
    with open(os.path.join(CONFIGS, template)) as f:
        text = f.read()
    values = {**RENDER_DEFAULTS, **values}
    for key, value in values.items():
        text = text.replace(f"@@{key.upper()}@@", str(value))
    left = re.findall(r"@@[A-Z_]+@@", text)
    if left:
        raise BenchError(f"{template}: unfilled {left}")
    with open(out_path, "w") as f:
        f.write(text)
    return out_path


def http_get(port, path, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body
    finally:
        conn.close()


def wait_ready(proc, port, name, log_path, timeout=20.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode} before it served; "
                             f"its log ({log_path}):\n{tail(log_path)}")
        try:
            status, body = http_get(port, "/64")
            if status == 200 and len(body) == 64:
                return
            last = f"status {status}, {len(body)} bytes"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise BenchError(f"{name} did not answer GET /64 on 127.0.0.1:{port} within {timeout} s "
                     f"(last: {last}); its log ({log_path}):\n{tail(log_path)}")


def wait_ready_h2(proc, port, name, log_path, timeout=20.0):
    """Waits until one h2c (prior knowledge) GET /64 through port succeeds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode} before it served h2c; "
                             f"its log ({log_path}):\n{tail(log_path)}")
        res = subprocess.run(["h2load", "-n1", "-c1", f"http://127.0.0.1:{port}/64"],
                             capture_output=True, text=True, timeout=30)
        if re.search(r"requests: 1 total, 1 started, 1 done, 1 succeeded", res.stdout) and \
                re.search(r"status codes: 1 2xx", res.stdout):
            return
        last = (res.stdout + res.stderr).strip()[-500:]
        time.sleep(0.1)
    raise BenchError(f"{name} did not answer an h2c GET /64 on 127.0.0.1:{port} within "
                     f"{timeout} s (last h2load output: {last}); its log ({log_path}):\n"
                     f"{tail(log_path)}")


# ---------------------------------------------------------------------------
# /proc readings.

def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            kids.append(int(entry))
    return kids


def involuntary_switches(pids):
    """nonvoluntary_ctxt_switches over every thread of pids: how often others took the core."""
    total = 0
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith("nonvoluntary_ctxt_switches:"):
                            total += int(line.split()[1])
            except OSError:
                pass
    return total


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class Server:
    """One running server: its process, the pids whose CPU counts, the pids whose RSS counts."""

    def __init__(self, name, proc, port, log_path, h2_port=None):
        self.name = name
        self.proc = proc
        self.port = port  # HTTP/1.1
        self.h2_port = h2_port  # h2c with prior knowledge (skiff: the same listener)
        self.log_path = log_path

    def cpu_pids(self):
        # nginx: master and workers. Others: the one process (all its threads).
        return [self.proc.pid] + children_of(self.proc.pid)

    def rss_pids(self):
        kids = children_of(self.proc.pid)
        return kids if kids else [self.proc.pid]  # nginx: the workers


# ---------------------------------------------------------------------------
# Servers.

def proxies_h2_upstream(name):
    """nginx's proxy_pass speaks HTTP/1.x only; direct has no upstream at all."""
    return name in ("skiff", "skiff-b", "haproxy")


class Bench:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="skiff-bench-")
        # nginx workers drop root for nobody/www-data and must read the bodies.
        os.chmod(self.tmp, 0o755)
        self.backend = None
        self.backend_port = None
        self.backend_h2_port = None

    def start_backend(self):
        www = os.path.join(self.tmp, "www")
        os.makedirs(www, exist_ok=True)
        for name, size in BODY_BYTES.items():
            with open(os.path.join(www, name), "wb") as f:
                f.write((b"skiff-bench-" * (size // 12 + 1))[:size - 1] + b"\n")
            os.chmod(os.path.join(www, name), 0o644)
        self.backend_port = free_port()
        self.backend_h2_port = free_port()
        conf = render("nginx-backend.conf.in", os.path.join(self.tmp, "nginx-backend.conf"),
                      tmp=self.tmp, port=self.backend_port, h2_port=self.backend_h2_port,
                      nofile=NOFILE)
        log_path = os.path.join(self.tmp, "nginx-backend.log")
        proc = spawn(["nginx", "-p", self.tmp, "-c", conf], LOAD_CPUS, log_path)
        wait_ready(proc, self.backend_port, "nginx backend", log_path)
        if H2:
            wait_ready_h2(proc, self.backend_h2_port, "nginx backend", log_path)
        self.backend = Server("backend", proc, self.backend_port, log_path, self.backend_h2_port)
        log(f"backend nginx on 127.0.0.1:{self.backend_port} (h2c on {self.backend_h2_port})")

    def start_proxy(self, name, upstream="h1", h2=False):
        """Starts a fresh proxy (or returns None for direct) and warms it with one request.

        upstream is "h1" or "h2" (h2c to the backend's h2 listener); h2 also checks
        the h2c downstream listener."""
        if name == "direct":
            return None
        if upstream not in ("h1", "h2"):
            raise BenchError(f"unknown upstream protocol {upstream!r} in BENCH_H2_UPSTREAMS")
        if upstream == "h2" and not proxies_h2_upstream(name):
            raise BenchError(f"{name} cannot proxy to an HTTP/2 upstream")
        port = free_port()
        h2_port = port
        backend_port = self.backend_h2_port if upstream == "h2" else self.backend_port
        log_path = os.path.join(self.tmp, f"{name}.log")
        if name in ("skiff", "skiff-b"):
            if name == "skiff-b" and not SKIFF_BIN_B:
                raise BenchError("BENCH_PROXIES names skiff-b but SKIFF_BIN_B is not set")
            conf = render("skiff.yaml.in", os.path.join(self.tmp, f"{name}.yaml"), port=port,
                          admin_port=free_port(), backend_port=backend_port,
                          cluster_options=SKIFF_H2_UPSTREAM if upstream == "h2" else "")
            binary = SKIFF_BIN_B if name == "skiff-b" else SKIFF_BIN
            args = [binary, "-c", conf, "--concurrency", str(WORKERS)]
        elif name == "haproxy":
            h2_port = free_port()
            conf = render("haproxy.cfg.in", os.path.join(self.tmp, "haproxy.cfg"), port=port,
                          h2_port=h2_port, backend_port=backend_port, workers=WORKERS,
                          tmp=self.tmp, maxconn=MAXCONN,
                          server_options="proto h2" if upstream == "h2" else "")
            args = ["haproxy", "-db", "-f", conf]
        elif name == "nginx":
            h2_port = free_port()
            conf = render("nginx-proxy.conf.in", os.path.join(self.tmp, "nginx-proxy.conf"),
                          port=port, h2_port=h2_port, backend_port=backend_port,
                          workers=WORKERS, tmp=self.tmp, nofile=NOFILE)
            args = ["nginx", "-p", self.tmp, "-c", conf]
        else:
            raise BenchError(f"unknown proxy {name!r} in BENCH_PROXIES")
        proc = spawn(args, PROXY_CPUS, log_path)
        wait_ready(proc, port, name, log_path)
        if h2:
            wait_ready_h2(proc, h2_port, name, log_path)
        server = Server(name, proc, port, log_path, h2_port)
        if name == "nginx":
            deadline = time.monotonic() + 5
            while len(children_of(proc.pid)) < WORKERS and time.monotonic() < deadline:
                time.sleep(0.05)
        return server

    def port_of(self, proxy):
        return proxy.port if proxy else self.backend_port

    def h2_port_of(self, proxy):
        return proxy.h2_port if proxy else self.backend_h2_port

    # -----------------------------------------------------------------------
    # Loads.

    def wrk(self, port, size, conns, duration):
        out = run_tool(["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-s", LUA,
                        f"http://127.0.0.1:{port}/{size}"], timeout=duration + 60)
        m = re.search(r"^BENCH_JSON (.*)$", out, re.M)
        if not m:
            raise BenchError(f"wrk printed no BENCH_JSON line:\n{out}")
        res = json.loads(m.group(1))
        res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
        res["wrk_text"] = out
        return res

    def h2load_logged(self, args, log_name, duration):
        """Runs h2load with args plus a per-request log; returns its output, the
        logged request times (µs, sorted), a count per status, and the
        percentiles of those times."""
        log_file = os.path.join(self.tmp, log_name)
        if os.path.exists(log_file):
            os.remove(log_file)
        out = run_tool(["h2load"] + args + [f"--log-file={log_file}"], timeout=duration + 60)
        lat = []
        statuses = {}
        with open(log_file) as f:
            for line in f:
                cols = line.split()
                if len(cols) >= 3:
                    statuses[cols[1]] = statuses.get(cols[1], 0) + 1
                    lat.append(int(cols[2]))
        lat.sort()
        if not lat:
            raise BenchError(f"h2load gave no results:\n{out}")

        def pct(p):
            return lat[min(len(lat) - 1, int(len(lat) * p / 100.0))]

        percentiles = {"p50": pct(50), "p75": pct(75), "p90": pct(90), "p99": pct(99),
                       "p999": pct(99.9), "max": lat[-1]}
        return out, lat, statuses, percentiles

    def h2load_rate(self, port, size, conns, rate, duration):
        per_client = max(rate / conns, 0.01)
        out, lat, statuses, percentiles = self.h2load_logged(
            ["--h1", "-t1", f"-c{conns}", f"--rps={per_client:.3f}", f"-D{duration}",
             f"http://127.0.0.1:{port}/{size}"], "h2load.log", duration)
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored", out)
        if not m:
            raise BenchError(f"h2load gave no results:\n{out}")
        return {"offered": per_client * conns, "requests": int(m.group(3)),
                "succeeded": int(m.group(4)), "failed": int(m.group(5)),
                "errored": int(m.group(6)), "rps": len(lat) / duration, "statuses": statuses,
                **percentiles, "h2load_text": out}

    def h2load_closed(self, port, size, conns, streams, duration):
        """h2load, h2c with prior knowledge, conns connections of `streams` concurrent
        streams each, for `duration` seconds; latency percentiles from its per-request log."""
        out, lat, statuses, percentiles = self.h2load_logged(
            ["-t1", f"-c{conns}", f"-m{streams}", f"-D{duration}",
             f"http://127.0.0.1:{port}/{size}"], "h2load-h2.log", duration)
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
        rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
        mean = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
        if not m or not rps:
            raise BenchError(f"h2load gave no results:\n{out}")
        non_2xx = sum(n for s, n in statuses.items() if not s.startswith("2"))
        return {"requests": int(m.group(3)), "succeeded": int(m.group(4)),
                "failed": int(m.group(5)), "errored": int(m.group(6)),
                "timeout": int(m.group(7)), "non_2xx": non_2xx, "statuses": statuses,
                "rps": float(rps.group(1)), "logged": len(lat),
                "mean": sum(lat) / len(lat), "h2load_mean": mean.group(3) if mean else None,
                **percentiles, "h2load_text": out}

    def measured(self, proxy, fn):
        """Runs fn(), with the proxy's CPU time around it; adds CPU and RSS figures."""
        before = cpu_ticks(proxy.cpu_pids()) if proxy else None
        preempted = involuntary_switches(proxy.cpu_pids()) if proxy else None
        res = fn()
        res["load1"] = load1()
        if proxy:
            after = cpu_ticks(proxy.cpu_pids())
            res["preempted"] = involuntary_switches(proxy.cpu_pids()) - preempted
            user_s = (after[0] - before[0]) / CLK_TCK
            sys_s = (after[1] - before[1]) / CLK_TCK
            n = max(res["requests"], 1)
            res["cpu_user_s"] = user_s
            res["cpu_sys_s"] = sys_s
            res["cpu_us_per_req"] = (user_s + sys_s) * 1e6 / n
            res["cpu_user_us_per_req"] = user_s * 1e6 / n
            res["cpu_sys_us_per_req"] = sys_s * 1e6 / n
            res["cpu_s_per_100k"] = (user_s + sys_s) * 1e5 / n
            res["peak_rss_kb"] = status_kb(proxy.rss_pids(), "VmHWM")
        return res

    def throughput_runs(self):
        """wrk at every load point. Proxies take turns at each point (and each repeat), so
        that a burst of other work on the machine hits all of them alike."""
        runs = []
        for size in SIZES:
            for conns in CONNS:
                tries = {name: [] for name in PROXIES}
                for _ in range(REPEAT):
                    for name in PROXIES:
                        tries[name].append(self.throughput_run(name, size, conns))
                for name in PROXIES:
                    res = median_run(tries[name])
                    errs = sum(res["errors"].values())
                    log(f"wrk {name:8} {size:>4} c{conns:<4} {res['rps']:9.0f} req/s  "
                        f"p99 {res['p99'] / 1000:.2f} ms  "
                        + (f"cpu {res['cpu_us_per_req']:.2f} us/req" if "cpu_us_per_req" in res
                           else "")
                        + (f"  errors {res['errors']}" if errs else ""))
                    runs.append(res)
        order = {name: i for i, name in enumerate(PROXIES)}
        runs.sort(key=lambda r: order[r["proxy"]])  # stable: size, conns order kept
        return runs

    def throughput_run(self, name, size, conns):
        proxy = self.start_proxy(name)
        try:
            port = self.port_of(proxy)
            idle = status_kb(proxy.rss_pids(), "VmRSS") if proxy else None
            if WARMUP > 0:
                self.wrk(port, size, conns, WARMUP)
            res = self.measured(proxy, lambda: self.wrk(port, size, conns, DURATION))
        finally:
            if proxy:
                stop(proxy.proc)
        res.update(proxy=name, size=size, conns=conns, idle_rss_kb=idle)
        return res

    def rate_runs(self, throughput):
        peaks = {r["proxy"]: r["rps"] for r in throughput
                 if r["size"] == RATE_SIZE and r["conns"] == RATE_CONNS}
        plan = []
        for frac in RATE_FRACTIONS:
            for name in PROXIES:
                if name in peaks:
                    plan.append((name, f"{frac * 100:.0f}% own peak", peaks[name] * frac))
        if "haproxy" in peaks:
            for name in PROXIES:
                if name in peaks and name != "haproxy":
                    plan.append((name, "50% HAProxy peak", peaks["haproxy"] * 0.5))
        runs = []
        for name, label, rate in plan:
            proxy = self.start_proxy(name)
            try:
                port = self.port_of(proxy)
                if WARMUP > 0:
                    self.wrk(port, RATE_SIZE, RATE_CONNS, WARMUP)
                res = self.measured(proxy, lambda: self.h2load_rate(
                    port, RATE_SIZE, RATE_CONNS, rate, RATE_DURATION))
            finally:
                if proxy:
                    stop(proxy.proc)
            res.update(proxy=name, label=label, size=RATE_SIZE, conns=RATE_CONNS)
            log(f"rate {name:8} {label:17} offered {res['offered']:8.0f} got {res['rps']:8.0f} req/s "
                f"p50 {res['p50'] / 1000:.2f} ms p99 {res['p99'] / 1000:.2f} ms"
                + (f"  failed {res['failed']} errored {res['errored']}"
                   if res["failed"] or res["errored"] else ""))
            runs.append(res)
        order = {name: i for i, name in enumerate(PROXIES)}
        runs.sort(key=lambda r: (r["label"].endswith("HAProxy peak"), order[r["proxy"]]))
        return runs

    def h2_runs(self):
        """h2load (h2c downstream) at every (connections, streams) point, each proxy with each
        upstream protocol it can speak, and direct. Proxies take turns at each point."""
        runs = []
        for conns, streams in H2_POINTS:
            plan = [("direct", "none")] if "direct" in PROXIES else []
            for upstream in H2_UPSTREAMS:
                plan += [(name, upstream) for name in PROXIES
                         if name != "direct" and (upstream == "h1" or proxies_h2_upstream(name))]
            tries = {key: [] for key in plan}
            for _ in range(REPEAT):
                for name, upstream in plan:
                    tries[(name, upstream)].append(self.h2_run(name, upstream, conns, streams))
            for key in plan:
                res = median_run(tries[key])
                bad = res["failed"]  # h2load: failed includes errored, errored timeout
                log(f"h2  {key[0]:8} up {key[1]:4} c{conns:<3} m{streams:<4} "
                    f"{res['rps']:9.0f} req/s  p99 {res['p99'] / 1000:.2f} ms"
                    + (f"  cpu {res['cpu_us_per_req']:.2f} us/req" if "cpu_us_per_req" in res
                       else "")
                    + (f"  failed {res['failed']} errored {res['errored']} timeout "
                       f"{res['timeout']} non-2xx {res['non_2xx']}" if bad else ""))
                runs.append(res)
        return runs

    def h2_run(self, name, upstream, conns, streams):
        proxy = self.start_proxy(name, "h1" if name == "direct" else upstream, h2=True)
        try:
            port = self.h2_port_of(proxy)
            if WARMUP > 0:
                # Not parsed: a proxy that opens thousands of upstream connections may
                # complete nothing in a short warm-up.
                run_tool(["h2load", "-t1", f"-c{conns}", f"-m{streams}", f"-D{WARMUP}",
                          f"http://127.0.0.1:{port}/{H2_SIZE}"], timeout=WARMUP + 60)
            res = self.measured(proxy, lambda: self.h2load_closed(
                port, H2_SIZE, conns, streams, DURATION))
        finally:
            if proxy:
                stop(proxy.proc)
        res.update(proxy=name, upstream=upstream, size=H2_SIZE, conns=conns, streams=streams)
        return res

    def capacity_runs(self):
        """wrk against each proxy held to CAP of one core (CpuCap), CAP_ROUNDS times taking
        turns; the median run by req/s. Closed loop with the proxy on a whole core cannot
        give a proxy's throughput: the load generator's core caps req/s near one figure for
        all of them, and a proxy below 100% of its core runs in another mix (more wakeups
        per request) than a saturated one. Capped, every proxy is the bottleneck, so req/s
        over the cap is its throughput per core."""
        if CAP <= 0:
            return []
        if not CpuCap.available():
            log("capacity runs skipped: no writable cgroup cpu controller (needs root)")
            return []
        names = [n for n in PROXIES if n != "direct"]
        tries = {name: [] for name in names}
        for _ in range(CAP_ROUNDS):
            for name in names:
                tries[name].append(self.capacity_run(name, RATE_SIZE, RATE_CONNS))
        runs = []
        for name in names:
            ranked = sorted(tries[name], key=lambda r: r["rps"])
            res = dict(ranked[len(ranked) // 2])
            res["rounds"] = [{k: r[k] for k in ("rps", "cpu_us_per_req", "throttled")}
                             for r in tries[name]]
            log(f"cap {name:8} {CAP:.2f} core {res['rps']:9.0f} req/s "
                f"= {res['rps_per_core']:.0f} per core, cpu {res['cpu_us_per_req']:.2f} us/req, "
                f"throttled in {res['throttled'] * 100:.0f}% of periods")
            runs.append(res)
        return runs

    def capacity_run(self, name, size, conns):
        cap = CpuCap(CAP)
        proxy = self.start_proxy(name)
        try:
            cap.add(proxy.cpu_pids())
            port = self.port_of(proxy)
            if WARMUP > 0:
                self.wrk(port, size, conns, WARMUP)
            periods, throttled = cap.stat()
            res = self.measured(proxy, lambda: self.wrk(port, size, conns, DURATION))
            periods2, throttled2 = cap.stat()
        finally:
            stop(proxy.proc)
            cap.close()
        # A proxy throttled in most periods used its whole share: req/s is its capacity.
        res.update(proxy=name, size=size, conns=conns, cap=CAP, rps_per_core=res["rps"] / CAP,
                   throttled=(throttled2 - throttled) / max(periods2 - periods, 1))
        return res

    def memory_runs(self):
        runs = []
        for name in PROXIES:
            if name == "direct":
                continue
            proxy = self.start_proxy(name)
            socks = []
            try:
                time.sleep(0.5)
                idle = status_kb(proxy.rss_pids(), "VmRSS")
                idle_anon = status_kb(proxy.rss_pids(), "RssAnon")
                socks, ok = hold_connections(proxy.port, IDLE_CONNS)
                time.sleep(1.0)
                held = status_kb(proxy.rss_pids(), "VmRSS")
                alive = proxy.proc.poll() is None
            finally:
                for s in socks:
                    s.close()
                stop(proxy.proc)
            res = {"proxy": name, "idle_rss_kb": idle, "idle_anon_kb": idle_anon,
                   "held_rss_kb": held, "conns": ok,
                   "bytes_per_conn": (held - idle) * 1024 / ok if ok else None, "alive": alive}
            log(f"mem  {name:8} idle {idle / 1024:.1f} MiB, with {ok} idle conns "
                f"{held / 1024:.1f} MiB, {res['bytes_per_conn'] or 0:.0f} B/conn")
            runs.append(res)
        return runs


def median_run(tries):
    """Of repeated runs, the one with the (lower) median CPU per request (req/s for direct)."""
    key = "cpu_us_per_req" if "cpu_us_per_req" in tries[0] else "rps"
    ranked = sorted(tries, key=lambda r: r[key])
    pick = dict(ranked[(len(ranked) - 1) // 2])  # lower median: noise only adds CPU
    if len(tries) > 1:
        pick["repeats"] = [{k: r.get(k) for k in ("rps", "p99", "cpu_us_per_req", "load1")}
                           for r in tries]
    return pick


_H1_REQUEST = b"GET /64 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _h1_answered(s):
    """Reads one HTTP/1.1 answer with a 64 B body from s; True if it is a 200."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 64:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.startswith(b"HTTP/1.1 200")


def hold_connections(port, n, batch=200, request=_H1_REQUEST, answered=_h1_answered):
    """Opens n keep-alive connections, sends `request` on each and keeps them open once
    `answered(sock)` has read a good answer (default: one HTTP/1.1 GET /64).

    Requests go out in batches so that the proxy never needs more than `batch`
    upstream connections: the figure is the cost of idle downstream connections.
    """
    socks = []
    ok = 0
    for start in range(0, n, batch):
        group = []
        for _ in range(min(batch, n - start)):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                s.sendall(request)
            except OSError as e:
                log(f"held connection {len(socks)}: {e}")
                s.close()
                return socks, ok
            group.append(s)
            socks.append(s)
        for s in group:
            try:
                good = answered(s)
            except OSError as e:
                log(f"held connection {ok}: {e}; stopping at {ok} connections")
                return socks, ok
            if not good:
                log(f"held connection {ok}: no good answer; stopping at {ok} connections")
                return socks, ok
            ok += 1
    return socks, ok


# ---------------------------------------------------------------------------
# Reports.

def fmt_ms(us):
    return f"{us / 1000:.2f}" if us is not None else "–"


def fmt(v, spec=".2f"):
    return format(v, spec) if v is not None else "–"


def ratio(a, b, spec=".2f"):
    return format(a / b, spec) if a is not None and b else "–"


def write_h2_report(w, h2):
    """The HTTP/2 sections of latest.md: one table of runs, one of ratios."""
    w(f"## HTTP/2: h2c downstream (prior knowledge), h2load, {H2_SIZE} B bodies\n")
    w("`h2load -t1 -cC -mM -D` with h2c prior knowledge to the proxy (direct: to the nginx "
      "backend's h2c listener), C connections of M concurrent streams each, "
      f"{WARMUP} s warm-up then {DURATION} s measured, a fresh proxy per run. `upstream` is "
      "the protocol from the proxy to the backend: HTTP/1.1 keep-alive, or h2c to the "
      "backend's h2c listener (nginx: n/a, its proxy_pass speaks HTTP/1.x only). Latency "
      "in ms from h2load's per-request log (`--log-file`), mean included. CPU µs/req is the "
      "proxy's utime+stime over the measured run divided by the requests h2load completed; "
      "peak RSS, preempted as in the HTTP/1.1 table. `failed` is h2load's count of failed "
      "requests: non-2xx/3xx answers, resets and timeouts.\n")
    w("| proxy | upstream | conns | streams/conn | req/s | mean | p50 | p90 | p99 | p99.9 "
      "| CPU µs/req (user+sys) | CPU s/100k | peak RSS MiB | preempted | failed |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    by = {(r["proxy"], r["upstream"], r["conns"], r["streams"]): r for r in h2}
    for conns, streams in H2_POINTS:
        rows = [("direct", "none")] if "direct" in PROXIES else []
        for upstream in H2_UPSTREAMS:
            rows += [(name, upstream) for name in PROXIES if name != "direct"]
        for name, upstream in rows:
            up = {"none": "–", "h1": "HTTP/1.1", "h2": "h2c"}.get(upstream, upstream)
            r = by.get((name, upstream, conns, streams))
            if r is None:
                why = "n/a: proxy_pass speaks HTTP/1.x only" if (
                    upstream == "h2" and not proxies_h2_upstream(name)) else "not run"
                w(f"| {name} | {up} | {conns} | {streams} | {why} |  |  |  |  |  |  |  |  |  |  |")
                continue
            cpu = (f"{r['cpu_us_per_req']:.2f} ({r['cpu_user_us_per_req']:.2f}+"
                   f"{r['cpu_sys_us_per_req']:.2f})" if "cpu_us_per_req" in r else "–")
            bad = r["failed"]
            w(f"| {name} | {up} | {conns} | {streams} | {r['rps']:.0f} | {fmt_ms(r['mean'])} "
              f"| {fmt_ms(r['p50'])} | {fmt_ms(r['p90'])} | {fmt_ms(r['p99'])} "
              f"| {fmt_ms(r['p999'])} | {cpu} | {fmt(r.get('cpu_s_per_100k'), '.3f')} "
              f"| {fmt(r['peak_rss_kb'] / 1024 if r.get('peak_rss_kb') else None, '.1f')} "
              f"| {r.get('preempted', '–')} | {bad} |")
    w("")
    w("### HTTP/2 ratios\n")
    w("As in the HTTP/1.1 ratios: CPU/req below 1 means skiff spends less CPU per request; "
      "`/direct` is each proxy's req/s over direct h2c to the backend. nginx has no h2c "
      "upstream, so its columns are n/a there.\n")
    w("| upstream | conns | streams/conn | skiff/HAProxy CPU/req | skiff/nginx CPU/req "
      "| skiff/HAProxy req/s | skiff/nginx req/s | skiff/HAProxy p99 | skiff/nginx p99 "
      "| skiff/direct req/s | HAProxy/direct req/s | nginx/direct req/s |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for upstream in H2_UPSTREAMS:
        for conns, streams in H2_POINTS:
            def get(p, k, up=upstream):
                if p == "nginx" and not proxies_h2_upstream(p) and up == "h2":
                    return "n/a"
                r = by.get((p, "none" if p == "direct" else up, conns, streams))
                return r.get(k) if r else None

            def rat(a, b, k):
                x, y = get(a, k), get(b, k)
                return "n/a" if "n/a" in (x, y) else ratio(x, y)
            up = {"h1": "HTTP/1.1", "h2": "h2c"}.get(upstream, upstream)
            w(f"| {up} | {conns} | {streams} "
              f"| {rat('skiff', 'haproxy', 'cpu_us_per_req')} "
              f"| {rat('skiff', 'nginx', 'cpu_us_per_req')} "
              f"| {rat('skiff', 'haproxy', 'rps')} | {rat('skiff', 'nginx', 'rps')} "
              f"| {rat('skiff', 'haproxy', 'p99')} | {rat('skiff', 'nginx', 'p99')} "
              f"| {rat('skiff', 'direct', 'rps')} | {rat('haproxy', 'direct', 'rps')} "
              f"| {rat('nginx', 'direct', 'rps')} |")
    w("")


def write_capacity_report(w, capacity):
    w(f"## Capacity: each proxy held to {CAP:g} of a core\n")
    w(f"wrk -c{RATE_CONNS} on GET /{RATE_SIZE}, with the proxy's processes in a cgroup whose CPU "
      f"bandwidth is {CAP:g} of one core (10 ms periods), so that every proxy, not the load "
      f"generator, is the bottleneck. Requests per core is req/s over that share: what one core "
      f"serves when the proxy has all the work it can take. Median of {CAP_ROUNDS} rounds by "
      f"req/s, proxies taking turns. `throttled` is the share of periods in which the proxy "
      f"used up its quota; well below 100% means it was not the bottleneck and the row is not "
      f"its capacity. Latency here is set by the throttling, so it is not shown.\n")
    w("| proxy | req/s | req/s per core | CPU µs/req (user+sys) | throttled | rounds req/s |")
    w("|---|---:|---:|---:|---:|---|")
    for r in capacity:
        w(f"| {r['proxy']} | {r['rps']:.0f} | {r['rps_per_core']:.0f} "
          f"| {r['cpu_us_per_req']:.2f} ({r['cpu_user_us_per_req']:.2f}+"
          f"{r['cpu_sys_us_per_req']:.2f}) | {r['throttled'] * 100:.0f}% "
          f"| {', '.join(str(round(x['rps'])) for x in r['rounds'])} |")
    by = {r["proxy"]: r for r in capacity}
    if "skiff" in by and "haproxy" in by:
        s, h = by["skiff"], by["haproxy"]
        w(f"\nskiff serves {ratio(s['rps'], h['rps'])}x HAProxy's requests per core"
          + (f" and {ratio(s['rps'], by['nginx']['rps'])}x nginx's" if "nginx" in by else "")
          + f"; its CPU per request is {ratio(s['cpu_us_per_req'], h['cpu_us_per_req'])}x "
          f"HAProxy's.")
    w("")


def write_report(throughput, rates, h2, memory, started, finished, capacity=()):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "latest.json"), "w") as f:
        json.dump({"throughput": throughput, "rates": rates, "h2": h2, "memory": memory,
                   "capacity": list(capacity),
                   "settings": settings()}, f, indent=1, default=str)
    lines = []
    w = lines.append
    w("# skiff HTTP/1.1 and HTTP/2 benchmark: latest run\n")
    w(f"Run {started} to {finished} with `bench/run.sh` ({settings_text()}). "
      "Machine, versions and load: [machine.md](machine.md). "
      "On 2 shared cores the figures are indicative; the proxy's CPU time per request is the "
      "figure that compares proxies, because req/s is capped by the load generator on the "
      "other core.\n")
    w("## wrk keep-alive, closed loop\n")
    w("Latency in ms. CPU is the proxy's utime+stime from `/proc/PID/stat` over the run, "
      "divided by the requests wrk completed (nginx: master + worker). Peak RSS is VmHWM "
      "of a proxy started fresh for that run (nginx: worker). `preempted` counts the proxy's "
      "involuntary context switches during the run: how often other work took its core, "
      "which inflates everything else in the row. At each load point the proxies ran one "
      f"after another{f', {REPEAT} times each (the lower median by CPU/req is shown)' if REPEAT > 1 else ''}"
      ". `direct` has no proxy.\n")
    w("| proxy | body | conns | req/s | p50 | p90 | p99 | p99.9 | CPU µs/req (user+sys) "
      "| CPU s/100k | peak RSS MiB | preempted | errors |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in throughput:
        cpu = (f"{r['cpu_us_per_req']:.2f} ({r['cpu_user_us_per_req']:.2f}+"
               f"{r['cpu_sys_us_per_req']:.2f})" if "cpu_us_per_req" in r else "–")
        w(f"| {r['proxy']} | {r['size']} | {r['conns']} | {r['rps']:.0f} | {fmt_ms(r['p50'])} "
          f"| {fmt_ms(r['p90'])} | {fmt_ms(r['p99'])} | {fmt_ms(r['p999'])} | {cpu} "
          f"| {fmt(r.get('cpu_s_per_100k'), '.3f')} "
          f"| {fmt(r['peak_rss_kb'] / 1024 if r.get('peak_rss_kb') else None, '.1f')} "
          f"| {r.get('preempted', '–')} | {sum(r['errors'].values())} |")
    w("")

    by = {(r["proxy"], r["size"], r["conns"]): r for r in throughput}
    w("## Ratios\n")
    w("CPU/req below 1 means skiff spends less CPU per request than the other proxy; "
      "req/s and p99 ratios are skiff's over the other's. `/direct` columns are each "
      "proxy's req/s over direct's (the ceiling).\n")
    w("| body | conns | skiff/HAProxy CPU/req | skiff/nginx CPU/req | skiff/HAProxy req/s "
      "| skiff/nginx req/s | skiff/HAProxy p99 | skiff/nginx p99 | skiff/direct req/s "
      "| HAProxy/direct req/s | nginx/direct req/s |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in SIZES:
        for conns in CONNS:
            def get(p, k):
                r = by.get((p, size, conns))
                return r.get(k) if r else None
            w(f"| {size} | {conns} "
              f"| {ratio(get('skiff', 'cpu_us_per_req'), get('haproxy', 'cpu_us_per_req'))} "
              f"| {ratio(get('skiff', 'cpu_us_per_req'), get('nginx', 'cpu_us_per_req'))} "
              f"| {ratio(get('skiff', 'rps'), get('haproxy', 'rps'))} "
              f"| {ratio(get('skiff', 'rps'), get('nginx', 'rps'))} "
              f"| {ratio(get('skiff', 'p99'), get('haproxy', 'p99'))} "
              f"| {ratio(get('skiff', 'p99'), get('nginx', 'p99'))} "
              f"| {ratio(get('skiff', 'rps'), get('direct', 'rps'))} "
              f"| {ratio(get('haproxy', 'rps'), get('direct', 'rps'))} "
              f"| {ratio(get('nginx', 'rps'), get('direct', 'rps'))} |")
    w("")

    if capacity:
        write_capacity_report(w, capacity)

    if rates:
        w(f"## Fixed rate (h2load --h1, {RATE_CONNS} connections, {RATE_SIZE} B bodies)\n")
        w("Offered load is a fraction of the proxy's own wrk peak above (same body and "
          "connections), and 50% of HAProxy's peak for every proxy. Latency in ms, from "
          "h2load's per-request log. Plot: [latency.png](latency.png).\n")
        w("| proxy | load | offered req/s | achieved req/s | p50 | p90 | p99 | p99.9 "
          "| CPU µs/req | failed |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rates:
            w(f"| {r['proxy']} | {r['label']} | {r['offered']:.0f} | {r['rps']:.0f} "
              f"| {fmt_ms(r['p50'])} | {fmt_ms(r['p90'])} | {fmt_ms(r['p99'])} "
              f"| {fmt_ms(r['p999'])} | {fmt(r.get('cpu_us_per_req'))} "
              f"| {r['failed']} |")
        same = {r["proxy"]: r.get("cpu_us_per_req") for r in rates
                if r["label"] == "50% HAProxy peak"
                or (r["proxy"] == "haproxy" and r["label"] == "50% own peak")}
        if same.get("skiff") and same.get("haproxy"):
            w(f"\nAt the same offered rate (50% of HAProxy's peak), skiff's CPU per request is "
              f"{ratio(same['skiff'], same['haproxy'])}x HAProxy's and "
              f"{ratio(same['skiff'], same.get('nginx'))}x nginx's. The closed-loop figure above "
              f"charges a proxy that is not saturated (it runs out of work and sleeps through "
              f"the backend's round trip) with the cost of every sleep and wakeup, which a "
              f"saturated proxy does not pay; at one offered rate every proxy sleeps.")
        w("\n![latency against offered load](latency.png)\n")

    if h2:
        write_h2_report(w, h2)

    if memory:
        w("## Memory\n")
        w(f"Idle RSS is VmRSS after start and one request (nginx: worker). Of it, anonymous is "
          f"RssAnon: heap, stacks and relocated data, the memory that is the process's own; the "
          f"rest is pages of the binary and libraries, shared with every process that maps the "
          f"same files. Held: RSS while {IDLE_CONNS} keep-alive downstream connections sit idle "
          f"after one request each.\n")
        w("| proxy | idle RSS MiB | of it anonymous MiB | held conns | RSS held MiB | bytes/conn |")
        w("|---|---:|---:|---:|---:|---:|")
        for r in memory:
            w(f"| {r['proxy']} | {r['idle_rss_kb'] / 1024:.1f} | {r['idle_anon_kb'] / 1024:.1f} "
              f"| {r['conns']} "
              f"| {r['held_rss_kb'] / 1024:.1f} | {fmt(r['bytes_per_conn'], '.0f')} |")
        w("")
    if os.path.exists(os.path.join(RESULTS, "microbench.txt")):
        w("Microbenchmarks (`skiff_microbench`): [microbench.txt](microbench.txt).\n")
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write("\n".join(lines))


def plot(rates):
    if not rates:
        return
    tmp = tempfile.mkdtemp(prefix="skiff-plot-")
    names = [p for p in PROXIES if any(r["proxy"] == p for r in rates)]
    series = []
    for name in names:
        pts = sorted((r["offered"], r["p50"] / 1000, r["p99"] / 1000)
                     for r in rates if r["proxy"] == name)
        path = os.path.join(tmp, f"{name}.dat")
        with open(path, "w") as f:
            for offered, p50, p99 in pts:
                f.write(f"{offered:.0f} {p50:.4f} {p99:.4f}\n")
        series.append((name, path))
    out = os.path.join(RESULTS, "latency.png")
    plots = []
    for i, (name, path) in enumerate(series, start=1):
        plots.append(f"'{path}' using 1:2 with linespoints lc {i} dt 1 pt 7 title '{name} p50'")
        plots.append(f"'{path}' using 1:3 with linespoints lc {i} dt 2 pt 5 title '{name} p99'")
    script = "\n".join([
        "set terminal pngcairo size 1000,650 font 'sans,10'",
        f"set output '{out}'",
        f"set title 'HTTP/1.1 keep-alive, {RATE_CONNS} connections, {RATE_SIZE} B bodies, "
        f"1 proxy core (h2load --h1 --rps)'",
        "set xlabel 'offered load (req/s)'",
        "set ylabel 'latency (ms)'",
        "set logscale xy",
        "set grid",
        "set key outside right top",
        "plot " + ", \\\n  ".join(plots),
    ])
    res = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if res.returncode != 0:
        log(f"gnuplot failed: {res.stderr}")


def settings():
    return {"duration_s": DURATION, "warmup_s": WARMUP, "rate_duration_s": RATE_DURATION,
            "conns": CONNS, "sizes": SIZES, "proxies": PROXIES, "workers": WORKERS,
            "load_cpus": LOAD_CPUS, "proxy_cpus": PROXY_CPUS, "rate_fractions": RATE_FRACTIONS,
            "rate_size": RATE_SIZE, "rate_conns": RATE_CONNS, "idle_conns": IDLE_CONNS,
            "nofile": NOFILE, "repeat": REPEAT, "h2": H2, "cap": CAP, "cap_rounds": CAP_ROUNDS,
            "h2_points": [f"{c}x{m}" for c, m in H2_POINTS], "h2_upstreams": H2_UPSTREAMS,
            "h2_size": H2_SIZE}


def settings_text():
    return (f"{WORKERS} worker, proxy on CPU {PROXY_CPUS}, wrk/h2load/backend on CPU {LOAD_CPUS}, "
            f"{DURATION} s per run after {WARMUP} s warm-up")


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except subprocess.TimeoutExpired:
        return "(timed out)"


def write_machine(uptime_start, uptime_end):
    lscpu = sh("lscpu")
    keep = ("Architecture", "Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket",
            "Socket(s)", "CPU max MHz", "L2 cache", "L3 cache", "Hypervisor vendor")
    cpu_lines = [l for l in lscpu.splitlines() if l.split(":")[0].strip() in keep]
    # The binary may be older than HEAD: name the commit that was HEAD when it was linked.
    built = os.path.getmtime(SKIFF_BIN) if os.path.exists(SKIFF_BIN) else time.time()
    built_text = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(built))
    commit = sh(f"git -C {ROOT} log -1 --format=%h --before=@{int(built)}")
    dirty = sh(f"git -C {ROOT} status --porcelain --untracked-files=no -- proxy filters xds "
               "CMakeLists.txt")
    lines = [
        "# Machine of the latest run\n",
        "```",
        *cpu_lines,
        f"Kernel:              {sh('uname -srm')}",
        f"Distribution:        {sh('. /etc/os-release && echo $PRETTY_NAME')}",
        f"Memory:              {sh('free -m | sed -n 2p')}",
        "```\n",
        "Versions:\n",
        f"- skiff: {SKIFF_BIN} linked {built_text}, when HEAD was {commit}"
        f"{' (the tree has uncommitted changes now; the build may have had some)' if dirty else ''}"
        f", run with {WORKERS} worker",
        f"- haproxy: {sh('haproxy -v | head -1')}",
        f"- nginx: {sh('nginx -v 2>&1')}",
        f"- wrk: {sh('wrk -v 2>&1 | head -1')}",
        f"- h2load: {sh('h2load --version 2>&1 | head -1')}",
        f"- gnuplot: {sh('gnuplot --version')}",
        "",
        "Machine load (`uptime`; the harness's own proxy, load generator and backend keep the "
        "1-minute average near 2 while it runs, so more than that is other work):\n",
        f"- `uptime` at start: {uptime_start}",
        f"- `uptime` at end:   {uptime_end}",
        "",
        f"Settings: {json.dumps(settings())}",
        "",
    ]
    with open(os.path.join(RESULTS, "machine.md"), "w") as f:
        f.write("\n".join(lines))


def run_microbench():
    if not os.access(MICROBENCH_BIN, os.X_OK):
        log(f"no {MICROBENCH_BIN}; skipping microbenchmarks")
        return
    try:
        res = subprocess.run(["taskset", "-c", PROXY_CPUS, MICROBENCH_BIN,
                              "--benchmark_min_time=0.2"],
                             capture_output=True, text=True, timeout=600)
        text = res.stdout + (f"\n(exit {res.returncode})\n{res.stderr}" if res.returncode else "")
    except subprocess.TimeoutExpired:
        text = "skiff_microbench did not finish within 600 s\n"
    with open(os.path.join(RESULTS, "microbench.txt"), "w") as f:
        f.write(f"# {MICROBENCH_BIN}, pinned to CPU {PROXY_CPUS}\n{text}")
    log("microbenchmarks written to microbench.txt")


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    atexit.register(stop_all)
    # The orchestrator itself (and the held-connection client) stays off the proxy's core.
    os.sched_setaffinity(0, {int(c) for c in LOAD_CPUS.split(",")})
    if "skiff" in PROXIES and not os.access(SKIFF_BIN, os.X_OK):
        raise BenchError(f"no skiff binary at {SKIFF_BIN}; build it or set SKIFF_BIN")
    if IDLE_CONNS + 500 > NOFILE:
        raise BenchError(f"BENCH_IDLE_CONNS={IDLE_CONNS} needs a descriptor limit above "
                         f"{IDLE_CONNS + 500}; `ulimit -n` is {NOFILE}")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    uptime_start = sh("uptime")
    os.makedirs(RESULTS, exist_ok=True)
    bench = Bench()
    log(f"temp dir {bench.tmp}; {settings_text()}")
    bench.start_backend()
    throughput = bench.throughput_runs()
    rates = bench.rate_runs(throughput)
    capacity = bench.capacity_runs()
    h2 = bench.h2_runs() if H2 else []
    memory = bench.memory_runs() if IDLE_CONNS > 0 else []
    stop_all()
    run_microbench()
    finished = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    write_machine(uptime_start, sh("uptime"))
    write_report(throughput, rates, h2, memory, started, finished, capacity)
    plot(rates)
    shutil.rmtree(bench.tmp, ignore_errors=True)  # kept after an error, for the logs
    log(f"results in {RESULTS}: latest.md, latency.png, machine.md, latest.json")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"error: {e}")
        stop_all()
        sys.exit(1)
