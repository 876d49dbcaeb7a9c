#!/usr/bin/env python3
"""xDS at scale (issue 5): how long, how much CPU and how much memory skiff
spends on a large configuration pushed over ADS, and on small changes to it.

    bench/xds_scale.py                          # 5 runs of state of the world, 5 of delta
    bench/xds_scale.py --runs 1 --modes delta   # a quick look

It starts the test control plane (`skiff_control_plane`, Debian's libgrpc++,
test/control_plane/), one nginx with 20 tiny backends (each answers its own
name), 10 "blackhole" listeners whose accept queue is full (a SYN to them is
dropped, so a connect waits for its timeout), and skiff with --concurrency 2
on an ADS bootstrap (xdsharness.ads_bootstrap(), as test_xds.py's). Per run, on a fresh
control plane and skiff:

  full    1,000 EDS clusters with 10 endpoints each (10,000 distinct
          address:port pairs), one listener, one RouteConfiguration of
          10,000 routes (half prefix, half path, spread over the clusters)
          plus 3 probe routes and a catch-all. skiff starts on a small
          configuration (the listener, a marker route) and the three sets are
          pushed at once.
  eds-1   one ClusterLoadAssignment changed (cluster c0500 moves to 10 other
          backends; the new answer comes from one of those).
  cds-1   one Cluster changed: connect_timeout of c0700, whose endpoints are
          the blackholes, 10s -> 0.05s (the new answer is a 503 within 0.5 s).
  rds-1   one route changed (the marker's body) in the RouteConfiguration.

In delta mode the small updates send the one resource that changed; in state
of the world the control plane sends the type's whole set (the RouteConfiguration
is one resource either way). Figures per update:

  * served: from the control plane's `response` event for the last response
    of the update (its CLOCK_MONOTONIC "t") to the first of N (--streak, 50)
    consecutive fresh connections that all get the new answer. Fresh
    connections spread over skiff's workers (SO_REUSEPORT), so all of them
    serve it. Probes start every --interval-ms on their own connection and
    are ordered by their start; a probe's time is when its request was sent.
  * ack: from that response to skiff's ACK of it (decode, translate, publish).
  * CPU: skiff's utime+stime (/proc/PID/stat, clock ticks) over the update,
    and per thread from /proc/PID/task/TID/schedstat (ns): the main thread
    (xDS) and the workers, less what the probe connections cost the workers
    (measured after each update with the same probe, N times).
  * memory: VmRSS and RssAnon of /proc/PID/status before and after.

Each figure is reported as the median and min-max over the runs, with the
machine and load, in bench/results/xds_scale.md (--results). --sizes repeats
everything at other sizes (default: also a tenth of the size, to show what the
small updates' cost depends on). It asserts nothing.

  --profile delta:eds-1,delta:rds-1   perf record (DWARF call graphs) on skiff
                                      while that update repeats; the shares of
                                      skiff's functions on the main thread and
                                      in the workers' snapshot swaps
  --heap                              skiff under valgrind's massif for the full
                                      push: its heap by the skiff function that
                                      allocated it

Only the Python standard library, nginx; perf for --profile, valgrind for --heap.
"""

import argparse
import asyncio
import functools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))
import xdsharness as x  # noqa: E402  (control plane process and Envoy v3 builders)

CLK_TCK = os.sysconf("SC_CLK_TCK")
LOCALHOST = "127.0.0.1"
OLD_CONNECT_TIMEOUT = "10s"
NEW_CONNECT_TIMEOUT = "0.05s"
SCENARIOS = ("full", "eds-1", "cds-1", "rds-1")
PERF_HZ = 1999


def log(msg):
    print(f"xds_scale: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# /proc readings.

def read_proc(pid):
    """What the process has used so far: CPU ticks, per-thread ns, memory."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                threads[int(tid)] = int(f.read().split()[0])
        except OSError:
            pass
    mem = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                mem[key] = int(value.split()[0])
    return {"ticks": ticks, "threads": threads, "VmRSS": mem["VmRSS"], "RssAnon": mem["RssAnon"],
            "load1": load1()}


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_between(pid, before, after):
    """ms of CPU: process (ticks), main thread and other threads (schedstat)."""
    main = (after["threads"].get(pid, 0) - before["threads"].get(pid, 0)) / 1e6
    others = sum(ns - before["threads"].get(tid, 0)
                 for tid, ns in after["threads"].items() if tid != pid) / 1e6
    return {"process_ms": (after["ticks"] - before["ticks"]) * 1000.0 / CLK_TCK,
            "main_ms": main, "workers_ms": others}


# ---------------------------------------------------------------------------
# Backends: one nginx, 20 servers that answer their own name.

def free_port():
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


class Backends:
    """nginx with servers o0..o9 (the endpoints' first home) and n0..n9 (where
    eds-1 moves c0500), on 127.0.0.1; and 10 blackhole listeners whose accept
    queue is full, so that a connect to them waits for its timeout."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.old = [free_port() for _ in range(10)]
        self.new = [free_port() for _ in range(10)]
        servers = "".join(
            f"    server {{ listen {LOCALHOST}:{port}; location / {{ return 200 \"{name}\"; }} }}\n"
            for name, port in [(f"o{i}", p) for i, p in enumerate(self.old)] +
            [(f"n{i}", p) for i, p in enumerate(self.new)])
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{servers}}}
""")
        self.nginx = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        # Blackholes: listen(0) with one connection queued and never accepted;
        # Linux then drops every further SYN (the accept queue is full).
        self.blackholes, self._held = [], []
        for _ in range(10):
            s = socket.socket()
            s.bind((LOCALHOST, 0))
            s.listen(0)
            c = socket.create_connection(s.getsockname(), timeout=2)
            self.blackholes.append(s)
            self._held.append(c)
        self.blackhole_ports = [s.getsockname()[1] for s in self.blackholes]
        deadline = time.monotonic() + 10
        while True:
            try:
                if http_get(self.old[0], "/")[1] == b"o0":
                    break
            except OSError:
                pass
            if self.nginx.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start; see {tmp}/nginx-error.log")
            time.sleep(0.05)

    def stop(self):
        stop_process(self.nginx)
        for s in self._held + self.blackholes:
            s.close()


def stop_process(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def http_get(port, path, timeout=2.0):
    """(status, body) of one GET on a fresh connection."""
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as s:
        s.sendall(request(path, close=True))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    responses = parse_responses(data)
    if not responses:
        raise OSError("no response")
    return responses[0]


def request(path, close=False):
    return (f"GET {path} HTTP/1.1\r\nHost: bench\r\n" +
            ("Connection: close\r\n" if close else "") + "\r\n").encode()


def parse_responses(data):
    """[(status, body)] of the complete HTTP/1.1 responses in data (Content-Length framed)."""
    out = []
    while data:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            break
        head = data[:head_end].decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = data[head_end + 4:head_end + 4 + length]
        if len(body) < length:
            break
        out.append((status, body))
        data = data[head_end + 4 + length:]
    return out


# ---------------------------------------------------------------------------
# The configuration.

def cluster_name(i):
    return f"c{i:04d}"


def cluster_address(i):
    # A loopback address of its own per cluster: 10,000 distinct endpoints.
    return f"127.1.{i // 250}.{i % 250 + 1}"


class Config:
    def __init__(self, backends, clusters=1000, endpoints=10, routes=10000):
        self.b = backends
        self.n_clusters, self.n_endpoints, self.n_routes = clusters, endpoints, routes
        self.probe_eds = clusters // 2  # The cluster whose endpoints eds-1 changes.
        self.probe_cds = clusters * 7 // 10  # The one whose connect_timeout cds-1 changes.
        self.label = f"{clusters:,} clusters, {routes:,} routes"

    def clusters(self, probe_timeout=OLD_CONNECT_TIMEOUT):
        out = []
        for i in range(self.n_clusters):
            timeout = probe_timeout if i == self.probe_cds else "1s"
            out.append(x.cluster(cluster_name(i), connect_timeout=timeout))
        return out

    def probe_cds_cluster(self, timeout):
        return x.cluster(cluster_name(self.probe_cds), connect_timeout=timeout)

    def cla(self, i, moved=False):
        ports = self.b.old
        if i == self.probe_eds:
            # The probe cluster's endpoints answer (127.0.0.1): o0..o9, or after
            # eds-1 n0..n9.
            return x.cla(cluster_name(i), [(LOCALHOST, p)
                                           for p in (self.b.new if moved else self.b.old)])
        if i == self.probe_cds:
            return x.cla(cluster_name(i), [(LOCALHOST, p) for p in self.b.blackhole_ports])
        return x.cla(cluster_name(i), [(cluster_address(i), ports[j % len(ports)])
                                       for j in range(self.n_endpoints)])

    def clas(self):
        return [self.cla(i) for i in range(self.n_clusters)]

    def routes(self, marker, full=True):
        """The RouteConfiguration: 10,000 routes, then the probes and a
        catch-all (so that a probe walks past every route); small: the
        marker and the catch-all only."""
        rs = []
        if full:
            for k in range(self.n_routes):
                c = cluster_name(k % self.n_clusters)
                if k % 2 == 0:
                    rs.append({"match": {"prefix": f"/svc/{k:05d}/"}, "route": {"cluster": c}})
                else:
                    rs.append({"match": {"path": f"/api/{k:05d}"}, "route": {"cluster": c}})
            rs.append({"match": {"path": "/probe/endpoints"},
                       "route": {"cluster": cluster_name(self.probe_eds)}})
            rs.append({"match": {"path": "/probe/timeout"},
                       "route": {"cluster": cluster_name(self.probe_cds)}})
        rs.append({"match": {"path": "/probe/marker"},
                   "direct_response": {"status": 200, "body": {"inline_string": marker}}})
        rs.append({"match": {"prefix": "/"},
                   "direct_response": {"status": 404, "body": {"inline_string": "catch-all"}}})
        return [x.route_config("routes", routes=rs)]


def ads_bootstrap(cp_port, delta):
    """The tests' ADS bootstrap (xdsharness), as JSON (which is YAML)."""
    return json.dumps(x.ads_bootstrap(cp_port, delta=delta, initial_fetch_timeout="30s",
                                      node_cluster="bench"), indent=1) + "\n"


# ---------------------------------------------------------------------------
# skiff.

class Skiff:
    def __init__(self, binary, config_text, tmp, concurrency=2):
        self.tmp = tempfile.mkdtemp(prefix="skiff-", dir=tmp)
        path = os.path.join(self.tmp, "bootstrap.yaml")
        with open(path, "w") as f:
            f.write(config_text)
        self.admin_path = os.path.join(self.tmp, "admin-address")
        self.log_path = os.path.join(self.tmp, "skiff.log")
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(
                [binary, "-c", path, "--concurrency", str(concurrency),
                 "--admin-address-path", self.admin_path],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.pid = self.proc.pid
        self.admin_port = None

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"skiff exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with open(self.admin_path) as f:
                    text = f.read().strip()
                if text:
                    self.admin_port = int(text.rsplit(":", 1)[1])
                    if http_get(self.admin_port, "/ready")[0] == 200:
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"skiff not ready after {timeout}s:\n{self.log_tail()}")

    def listener_port(self, name):
        status, body = http_get(self.admin_port, "/listeners?format=json")
        for ls in json.loads(body)["listener_statuses"]:
            if ls["name"] == name:
                return int(ls["local_address"]["socket_address"]["port_value"])
        raise RuntimeError(f"no listener {name}: {body!r}")

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        stop_process(self.proc)


# ---------------------------------------------------------------------------
# Probing with fresh connections.

class Probe:
    """What a fresh connection asks, and which answers are the new config."""

    def __init__(self, paths, is_new, timeout=2.0):
        self.payload = b"".join(request(p, close=(i == len(paths) - 1))
                                for i, p in enumerate(paths))
        self.n = len(paths)
        self.is_new = is_new  # [(status, body)] -> bool
        self.timeout = timeout


async def _probe_once(port, probe):
    """(when the request was sent, whether the answer is the new config, what
    the answer was)."""
    writer = None
    sent = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(LOCALHOST, port), probe.timeout)
        writer.write(probe.payload)  # On an idle socket, sent before write() returns.
        sent = time.monotonic()
        data = await asyncio.wait_for(reader.read(), probe.timeout)
        responses = parse_responses(data)
        what = " ".join(f"{st} {body[:12]!r}" for st, body in responses) or f"{data[:40]!r}"
        return sent, len(responses) == probe.n and probe.is_new(responses), what
    except (OSError, asyncio.TimeoutError) as e:
        return sent, False, type(e).__name__
    finally:
        if writer is not None:
            writer.close()


async def _poll(port, probe, streak, interval, deadline):
    """Opens a connection every `interval` s until `streak` consecutive ones
    (by launch order) got the new answer. served_t: when the first of them
    sent its request (its connection was accepted by then, so its worker is
    fixed)."""
    starts, results, answers = [], [], []
    pending = set()
    run_start, run_len, scanned = None, 0, 0
    t0 = time.monotonic()
    while True:
        # Fold in results in start order: the trailing run of new answers.
        while scanned < len(results) and results[scanned] is not None:
            if results[scanned]:
                if run_len == 0:
                    run_start = scanned
                run_len += 1
            else:
                run_len = 0
            scanned += 1
        if run_len >= streak:
            break
        if time.monotonic() > deadline:
            seen = {}
            for a in answers[-500:]:
                seen[a] = seen.get(a, 0) + 1
            raise TimeoutError(f"no {streak} consecutive new answers (of {len(results)} probes); "
                               f"the last 500 answers: {seen}")
        i = len(starts)
        starts.append(time.monotonic())
        results.append(None)

        async def one(i=i):
            starts[i], results[i], what = await _probe_once(port, probe)
            answers.append(what)

        task = asyncio.ensure_future(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
        await asyncio.sleep(max(0.0, t0 + len(starts) * interval - time.monotonic()))
    for task in list(pending):
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    return {"served_t": starts[run_start], "probes": len(starts),
            "old_answers": sum(1 for r in results[:run_start] if r is False)}


def poll_until_new(port, probe, streak, interval, timeout=120.0):
    return asyncio.run(_poll(port, probe, streak, interval, time.monotonic() + timeout))


def probe_cost(skiff, port, probe, n):
    """Worker CPU ms per probe, probes one after another."""
    before = read_proc(skiff.pid)

    async def run():
        for _ in range(max(1, n)):
            await _probe_once(port, probe)  # Only its cost matters here.

    asyncio.run(run())
    after = read_proc(skiff.pid)
    return cpu_between(skiff.pid, before, after)["workers_ms"] / max(1, n)


# ---------------------------------------------------------------------------
# One run.

class Run:
    def __init__(self, args, backends, cfg, delta, tmp):
        self.args, self.b, self.cfg, self.delta, self.tmp = args, backends, cfg, delta, tmp
        self.mode = "delta" if delta else "sotw"
        self.cp = x.ControlPlane(binary=args.control_plane)
        self.skiff = None
        self.port = None

    def push_initial(self):
        # Delta sends nothing for an empty set, and skiff waits for CDS: start
        # with one static cluster (the full configuration removes it).
        self.cp.set(x.CLUSTER, "0", [x.cluster("init", eds=False,
                                                endpoints=[(LOCALHOST, self.b.old[0])])])
        self.cp.set(x.ENDPOINT, "0", [])
        self.cp.set(x.LISTENER, "0", [x.listener("ingress", 0, "routes")])
        self.cp.set(x.ROUTE, "0", self.cfg.routes("m0", full=False))

    def start(self):
        self.cp.start()
        self.push_initial()
        self.skiff = Skiff(self.args.skiff, ads_bootstrap(self.cp.port, self.delta), self.tmp)
        self.skiff.wait_ready()
        self.port = self.skiff.listener_port("ingress")
        poll_until_new(self.port, marker_probe("m0"), 5, 0.01, timeout=30)

    def stop(self):
        if self.skiff:
            self.skiff.stop()
        self.cp.stop()

    def wait_acks(self, responses, timeout=120):
        """The time of skiff's ACK of each response; raises on a NACK."""
        acks = {}
        deadline = time.monotonic() + timeout
        for r in responses:
            def answers(e, r=r):
                return (e["event"] == "request" and e["request"].get("type_url") == r["type_url"]
                        and e["request"].get("response_nonce") == r["nonce"])
            e = self.cp.wait_event(answers, timeout=max(0.1, deadline - time.monotonic()))
            if "error_detail" in e["request"]:
                raise RuntimeError(f"skiff NACKed {r['type_url']} {r['version']}: "
                                   f"{e['request']['error_detail']}")
            acks[r["nonce"]] = e["t"]
        return acks

    def quiet(self, seconds=0.5, timeout=30):
        """Waits until the control plane has seen nothing for `seconds`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = self.cp.mark()
            time.sleep(seconds)
            if self.cp.mark() == n:
                return
        raise RuntimeError("the ADS stream did not go quiet")

    def measure(self, scenario, push, probe, interval, expect_names=None):
        """Pushes, probes until served, waits for the ACKs; the figures."""
        self.quiet()
        time.sleep(self.args.settle)
        before = read_proc(self.skiff.pid)
        before_t = time.monotonic()
        since = self.cp.mark()
        push()
        try:
            polled = poll_until_new(self.port, probe, self.args.streak, interval)
        except TimeoutError as e:
            events = [(round(ev["t"] - before_t, 3), ev["event"], ev.get("type_url", "")[-24:],
                       ev.get("version"), ev.get("request", {}).get("error_detail"))
                      for ev in self.cp.events(since)][:20]
            raise RuntimeError(f"{self.mode} {scenario}: {e}\ncontrol plane events: {events}\n"
                               f"skiff log:\n{self.skiff.log_tail()}") from None
        responses = [e for e in self.cp.events(since) if e["event"] == "response"]
        if not responses:
            raise RuntimeError(f"{scenario}: the control plane sent nothing")
        acks = self.wait_acks(responses)
        self.quiet()
        time.sleep(self.args.settle)
        after = read_proc(self.skiff.pid)
        per_probe = probe_cost(self.skiff, self.port, probe, self.args.calibrate)
        last = max(responses, key=lambda e: e["t"])
        first = min(responses, key=lambda e: e["t"])
        cpu = cpu_between(self.skiff.pid, before, after)
        probes_ms = per_probe * polled["probes"]
        sent = sum(len(r.get("names", [])) for r in responses)
        if expect_names is not None and sent != expect_names:
            raise RuntimeError(f"{scenario}: expected {expect_names} resources sent, got {sent}: "
                               f"{[(r['type_url'], len(r['names'])) for r in responses]}")
        result = {
            "scenario": scenario, "mode": self.mode, "size": self.cfg.label,
            "served_ms": (polled["served_t"] - last["t"]) * 1000,
            "span_ms": (polled["served_t"] - first["t"]) * 1000,
            "ack_ms": (acks[last["nonce"]] - last["t"]) * 1000,
            "responses": len(responses), "resources_sent": sent,
            "probes": polled["probes"], "old_answers": polled["old_answers"],
            "cpu_process_ms": cpu["process_ms"], "cpu_main_ms": cpu["main_ms"],
            "cpu_workers_ms": max(0.0, cpu["workers_ms"] - probes_ms),
            "cpu_probes_ms": probes_ms,
            "rss_before_kib": before["VmRSS"], "rss_after_kib": after["VmRSS"],
            "anon_before_kib": before["RssAnon"], "anon_after_kib": after["RssAnon"],
            "load1": (before["load1"] + after["load1"]) / 2,
        }
        log(f"{self.mode} {scenario}: served {result['served_ms']:.1f} ms after the last "
            f"response (ack {result['ack_ms']:.1f} ms), CPU main {cpu['main_ms']:.1f} ms, "
            f"workers {result['cpu_workers_ms']:.1f} ms, process {cpu['process_ms']:.0f} ms; "
            f"RSS {before['VmRSS']} -> {after['VmRSS']} KiB; {sent} resources in "
            f"{len(responses)} responses; {polled['probes']} probes")
        return result

    def full(self):
        cfg = self.cfg

        def push():
            self.cp.set(x.CLUSTER, "1", cfg.clusters())
            self.cp.set(x.ENDPOINT, "1", cfg.clas())
            self.cp.set(x.ROUTE, "1", cfg.routes("m1"))

        probe = Probe(["/probe/marker", "/probe/endpoints"],
                      lambda rs: rs[0] == (200, b"m1") and rs[1][0] == 200
                      and rs[1][1].startswith(b"o"))
        return self.measure("full", push, probe, self.args.interval_ms / 1000)

    def eds_1(self, version, moved=True):
        probe = Probe(["/probe/endpoints"],
                      lambda rs: rs[0][0] == 200 and rs[0][1].startswith(b"n" if moved else b"o"))
        def push():
            self.cp.update(x.ENDPOINT, version, [self.cfg.cla(self.cfg.probe_eds, moved)])

        expect = 1 if self.delta else self.cfg.n_clusters
        return self.measure("eds-1", push, probe, self.args.interval_ms / 1000, expect)

    def cds_1(self, version, timeout=NEW_CONNECT_TIMEOUT):
        # New: a 503 from the connect timeout within 0.5 s; old (10s): no answer by then.
        probe = Probe(["/probe/timeout"], lambda rs: rs[0][0] == 503, timeout=0.5)
        def push():
            self.cp.update(x.CLUSTER, version, [self.cfg.probe_cds_cluster(timeout)])

        expect = 1 if self.delta else self.cfg.n_clusters
        return self.measure("cds-1", push, probe, max(self.args.interval_ms, 5) / 1000, expect)

    def rds_1(self, version):
        marker = f"m{version}"
        def push():
            self.cp.set(x.ROUTE, version, self.cfg.routes(marker))

        return self.measure("rds-1", push, marker_probe(marker), self.args.interval_ms / 1000, 1)


def marker_probe(marker):
    return Probe(["/probe/marker"], lambda rs: rs[0] == (200, marker.encode()))


# ---------------------------------------------------------------------------
# Profile: perf record on skiff while one small update repeats.

def profile(args, backends, cfg, tmp, scenario, delta):
    """Where skiff's time goes while `scenario` repeats: perf record with DWARF
    call graphs, folded here into inclusive and self shares of skiff's main
    thread (xDS) and of its workers' snapshot swaps; and VmRSS along the way."""
    run = Run(args, backends, cfg, delta, tmp)
    env = dict(os.environ, DEBUGINFOD_URLS="")  # perf must not wait on the network.
    data = os.path.join(tmp, f"perf-{scenario}.data")
    try:
        run.start()
        run.full()
        workers = [int(t) for t in os.listdir(f"/proc/{run.skiff.pid}/task")
                   if int(t) != run.skiff.pid]
        perf = subprocess.Popen(["perf", "record", "--call-graph", "dwarf,32768",
                                 "-F", str(PERF_HZ), "-o", data, "-p", str(run.skiff.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(1)
        rss = [read_proc(run.skiff.pid)["VmRSS"]]
        saved = args.settle, args.calibrate
        args.settle, args.calibrate = 0.2, 1
        cpu = []
        try:
            for i in range(args.profile_repeat):
                version = str(100 + i)
                if scenario == "eds-1":
                    r = run.eds_1(version, moved=(i % 2 == 0))
                elif scenario == "cds-1":
                    r = run.cds_1(version, NEW_CONNECT_TIMEOUT if i % 2 == 0 else "0.06s")
                else:
                    r = run.rds_1(version)
                cpu.append(r["cpu_main_ms"])
                rss.append(read_proc(run.skiff.pid)["VmRSS"])
        finally:
            args.settle, args.calibrate = saved
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=120)
    finally:
        run.stop()

    def stacks(tids):
        out = subprocess.run(["perf", "script", "-i", data, "--tid", ",".join(map(str, tids)),
                              "-F", "tid,ip,sym"], capture_output=True, text=True,
                             timeout=1800, env=env).stdout
        return parse_stacks(out)

    main = fold(stacks([run.skiff.pid]), "AdsClient::on")
    swaps = fold(stacks(workers), "Worker::applySnapshot")
    per_update = 1000.0 / PERF_HZ / max(1, args.profile_repeat)
    return {"main": main, "workers": swaps, "rss": rss,
            "cpu_main_ms": statistics.median(cpu) if cpu else 0,
            "main_ms": main["samples"] * per_update,
            "worker_ms": swaps["samples"] * per_update / max(1, len(workers))}


def parse_stacks(text):
    """perf script output → [[frame, ...] leaf first] (inlined frames kept)."""
    samples, cur = [], None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                samples.append(cur)
            cur = None
        elif not line.startswith("\t"):  # " TID": a new sample; its frames follow, tab-indented.
            cur = []
        elif cur is not None:
            parts = line.strip().split(None, 1)
            cur.append(parts[1].removesuffix(" (inlined)") if len(parts) > 1 else "?")
    if cur:
        samples.append(cur)
    return samples


def short_symbol(sym):
    sym = sym.replace("std::__cxx11::basic_string<char, std::char_traits<char>, "
                      "std::allocator<char> >", "std::string")
    sym = sym.replace("(anonymous namespace)", "{anon}")
    if "(" in sym and not sym.startswith(("non-virtual", "operator")):
        sym = sym[:sym.index("(")]
    return sym[:110]


@functools.lru_cache(maxsize=None)
def source_file(sym):
    """The .cc under ROOT that defines skiff function `sym` (a guess by name)."""
    parts = sym.split("<")[0].replace("{anon}::", "").split("::")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        needle = "::".join(parts[-2:])  # Class::method
    else:
        needle = parts[-1]
    if not needle or "operator" in needle:
        return ""
    definition = re.compile(r"^(?:[\w:<>,*& ]+[ *&])?" + re.escape(needle) + r"\(")
    for folder in ("xds", "proxy", "filters"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in files:
                if not f.endswith(".cc"):
                    continue
                path = os.path.join(dirpath, f)
                with open(path, errors="replace") as fh:
                    for line in fh:
                        if definition.match(line) and not line.rstrip().endswith(";"):
                            return os.path.relpath(path, ROOT)
    if "::" in needle:  # Defined in its class (or implicitly): where the class is.
        declaration = re.compile(r"^\s*(?:class|struct) " + re.escape(needle.split("::")[0]) +
                                 r"\b[^;]*$")
        for folder in ("xds", "proxy", "filters"):
            for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
                for f in sorted(files):
                    if f.endswith((".h", ".cc")):
                        with open(os.path.join(dirpath, f), errors="replace") as fh:
                            if any(declaration.match(line) for line in fh):
                                return os.path.relpath(os.path.join(dirpath, f), ROOT)
    return ""


def fold(samples, root):
    """Inclusive and self shares of the samples under `root`, skiff's own
    functions with their file, and the top self symbols."""
    under = [s for s in samples if any(root in f for f in s)]
    n = len(under) or 1
    incl, self_ = {}, {}
    for s in under:
        seen = set()
        for f in s:
            k = short_symbol(f)
            if k not in seen:
                seen.add(k)
                incl[k] = incl.get(k, 0) + 1
        k = short_symbol(s[0])
        self_[k] = self_.get(k, 0) + 1
    top = []
    for k, v in sorted(incl.items(), key=lambda kv: -kv[1]):
        if v / n < 0.03:
            break
        # The frames above the response handler (event loop, HTTP/2, gRPC) are in every sample.
        if k.startswith("skiff::") and v / n < 0.99:
            top.append(f"{100 * v / n:5.1f}%  {k}  ({source_file(k) or '?'})")
    selfs = [f"{100 * v / n:5.1f}%  {k}"
             for k, v in sorted(self_.items(), key=lambda kv: -kv[1])[:12]]
    return {"samples": len(under), "inclusive": "\n".join(top[:25]), "self": "\n".join(selfs)}


# ---------------------------------------------------------------------------
# Heap: what the full configuration's memory is, by the skiff function that
# allocated it (valgrind's massif).

def heap(args, backends, cfg, tmp, delta):
    if not shutil.which("valgrind"):
        raise RuntimeError("--heap needs valgrind")
    out = os.path.join(tmp, "massif.out")
    wrapper = os.path.join(tmp, "skiff-massif.sh")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec valgrind --tool=massif --massif-out-file={out} "
                f"--threshold=0.2 --detailed-freq=1 --max-snapshots=400 {args.skiff} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    saved = args.skiff
    args.skiff = wrapper
    run = Run(args, backends, cfg, delta, tmp)
    try:
        run.cp.start()
        run.push_initial()
        run.skiff = Skiff(args.skiff, ads_bootstrap(run.cp.port, delta), tmp)
        run.skiff.wait_ready(timeout=300)
        run.cp.set(x.CLUSTER, "1", cfg.clusters())
        run.cp.set(x.ENDPOINT, "1", cfg.clas())
        run.cp.set(x.ROUTE, "1", cfg.routes("m1"))
        run.port = run.skiff.listener_port("ingress")
        probe = Probe(["/probe/marker", "/probe/endpoints"],
                      lambda rs: rs[0] == (200, b"m1") and rs[1][0] == 200, timeout=20)
        poll_until_new(run.port, probe, 10, 0.05, timeout=600)
        run.quiet(5.0, timeout=600)
        # massif writes its file when skiff exits; SIGTERM drains and exits.
        run.skiff.proc.send_signal(signal.SIGTERM)
        run.skiff.proc.wait(timeout=300)
    finally:
        args.skiff = saved
        run.stop()
    return massif_breakdown(out)


def massif_breakdown(path):
    """Heap bytes by the innermost skiff function on each allocation's stack,
    at the largest snapshot taken after the configuration was complete (the
    last one before shutdown starts freeing)."""
    with open(path) as f:
        text = f.read().split("\n")
    snapshots, i = [], 0
    while i < len(text):
        if text[i].startswith("snapshot="):
            heap_b = int(text[i + 3].split("=")[1])
            tree = None
            j = i + 1
            while j < len(text) and not text[j].startswith("snapshot="):
                if text[j].startswith(("heap_tree=detailed", "heap_tree=peak")):
                    tree = j + 1
                j += 1
            snapshots.append((heap_b, tree))
            i = j
        else:
            i += 1
    # Shutdown frees: the configuration at rest is the peak of the last
    # rising stretch before the heap falls for good.
    end = len(snapshots) - 1
    while end > 0 and snapshots[end - 1][0] >= snapshots[end][0]:
        end -= 1
    total, start = snapshots[end][0], snapshots[end][1]
    nodes = []
    for line in text[start:]:
        m = re.match(r"^( *)n(\d+): (\d+) (.*)$", line)
        if not m:
            break
        nodes.append((int(m.group(2)), int(m.group(3)), m.group(4)))
    by_site = {}

    def walk(k, site):
        nch, b, desc = nodes[k]
        k += 1
        # "0xADDR: function(args) (file:line)": the first frame, from the
        # allocation outwards, whose function is skiff's own.
        m = re.match(r"0x[0-9A-Fa-f]+: (skiff::[\w:~]+)\(",
                     desc.replace("(anonymous namespace)::", ""))
        file_m = re.search(r"\((\w+\.(?:cc|h)):\d+\)$", desc)
        if site is None and m:
            where = source_file(m.group(1)) or (file_m.group(1) if file_m else "?")
            site = f"{m.group(1)} ({where})"
        if nch == 0:
            key = site or ("below massif's threshold" if "threshold" in desc else "outside skiff")
            by_site[key] = by_site.get(key, 0) + b
        child_sum = 0
        for _ in range(nch):
            child_b = nodes[k][1]
            child_sum += child_b
            k = walk(k, site)
        if nch and b > child_sum:
            key = site or "outside skiff"
            by_site[key] = by_site.get(key, 0) + b - child_sum
        return k

    nch, _, _ = nodes[0]
    k = 1
    for _ in range(nch):
        k = walk(k, None)
    rows = sorted(by_site.items(), key=lambda kv: -kv[1])
    return total, [(site, b) for site, b in rows if b >= total * 0.01]


# ---------------------------------------------------------------------------
# Report.

def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def fmt(values, spec=".1f"):
    s = summary(values)
    if s is None:
        return "—"
    med, lo, hi = s
    return f"{med:{spec}} ({lo:{spec}}–{hi:{spec}})"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=20).stdout.strip()
    except subprocess.SubprocessError:
        return ""


def write_report(path, args, results, loads, started, finished, command, profiles, heap_rows):
    cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    commit = sh(f"git -C {ROOT} rev-parse --short HEAD")
    dirty = sh(f"git -C {ROOT} status --porcelain --untracked-files=no -- proxy xds filters")
    lines = []
    w = lines.append
    w("# xDS at scale")
    w("")
    w("Written by `bench/xds_scale.py` (bench/README.md says how it measures). Each figure is the "
      f"median, then min–max, over {args.runs} runs; each run is a fresh skiff "
      "(`--concurrency 2`) "
      "and a fresh control plane (`skiff_control_plane`, Debian's libgrpc++).")
    w("")
    w("- **served**: from the control plane's `response` event for the last response of the "
      f"update (CLOCK_MONOTONIC) to the first of {args.streak} consecutive fresh connections "
      f"(one every {args.interval_ms:g} ms) that all got the new answer. **span**: the same from "
      "the first response (a full push takes several responses; the control plane's own JSON "
      "work spaces them out).")
    w("- **ack**: from that response to the control plane receiving skiff's ACK of it.")
    w("- **CPU**: skiff's main thread (xDS decode, translate, snapshot, publish) and its other "
      "threads (workers swapping the snapshot; what the probe connections cost them, measured "
      f"after each update over {args.calibrate} probes, is taken off) from "
      "`/proc/PID/task/*/schedstat`; process utime+stime from `/proc/PID/stat` "
      f"({1000 // CLK_TCK} ms ticks).")
    w("- **memory**: VmRSS and RssAnon from `/proc/PID/status` before and after.")
    w("")
    w(f"Configurations: N EDS clusters × {args.endpoints} endpoints (distinct address:port), one "
      "listener, one RouteConfiguration of M routes (half prefix, half path, spread over the "
      "clusters) + 3 probe routes + a catch-all, placed after the M routes. **full**: from a "
      "listener with 2 routes and 1 static cluster to all of it (CDS, EDS and RDS pushed at "
      "once). **eds-1**: one ClusterLoadAssignment changed (10 new endpoints). **cds-1**: one "
      "Cluster's connect_timeout changed. **rds-1**: one route changed (a RouteConfiguration "
      "is one resource, in delta too). In state of the world every update sends the type's "
      "whole set; in delta only what changed.")
    w("")
    w("| size | mode | update | resources sent | served (ms) | span (ms) | ack (ms) | "
      "CPU main (ms) | CPU workers (ms) | CPU process (ms) | VmRSS before → after (MiB) | "
      "RssAnon before → after (MiB) |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    sizes = []
    for r in results:
        if r["size"] not in sizes:
            sizes.append(r["size"])
    for size in sizes:
        for mode in args.modes:
            for sc in SCENARIOS:
                rs = [r for r in results
                      if r["size"] == size and r["mode"] == mode and r["scenario"] == sc]
                if not rs:
                    continue
                mib = lambda k: [r[k] / 1024 for r in rs]  # noqa: E731
                sent = summary([r["resources_sent"] for r in rs])[0]
                span = fmt([r["span_ms"] for r in rs]) if sc == "full" else ""
                w(f"| {size} | {mode} | {sc} | {sent:,.0f} | {fmt([r['served_ms'] for r in rs])} "
                  f"| {span} | {fmt([r['ack_ms'] for r in rs])} | "
                  f"{fmt([r['cpu_main_ms'] for r in rs])} | "
                  f"{fmt([r['cpu_workers_ms'] for r in rs])} | "
                  f"{fmt([r['cpu_process_ms'] for r in rs], '.0f')} | "
                  f"{summary(mib('rss_before_kib'))[0]:.1f} → {fmt(mib('rss_after_kib'))} | "
                  f"{summary(mib('anon_before_kib'))[0]:.1f} → {fmt(mib('anon_after_kib'))} |")
    w("")
    for title, prof in profiles.items():
        rss = prof["rss"]
        w(f"## Profile: {title}")
        w("")
        w(f"`perf record --call-graph dwarf -F {PERF_HZ} -p <skiff>` while the update repeated "
          f"{args.profile_repeat} times (main thread CPU per update: median "
          f"{prof['cpu_main_ms']:.1f} ms from schedstat, {prof['main_ms']:.1f} ms handling the "
          f"response from the samples; each worker {prof['worker_ms']:.2f} ms in "
          f"`Worker::applySnapshot`; VmRSS {rss[0] / 1024:.1f} MiB before, "
          f"{rss[len(rss) // 2] / 1024:.1f} halfway, {rss[-1] / 1024:.1f} after). Shares of the "
          "samples under the handling of a response on the main thread "
          f"({prof['main']['samples']} samples), inclusive, skiff's functions (file by name):")
        w("")
        w("```")
        w(prof["main"]["inclusive"])
        w("```")
        w("")
        w("Self time, same samples:")
        w("")
        w("```")
        w(prof["main"]["self"])
        w("```")
        w("")
        w(f"Workers, under `Worker::applySnapshot` ({prof['workers']['samples']} samples), "
          "inclusive:")
        w("")
        w("```")
        w(prof["workers"]["inclusive"])
        w("```")
        w("")
    if heap_rows:
        total, rows = heap_rows
        clusters, routes = args.sizes[0]
        w(f"## Heap after the full push ({clusters:,} clusters, {routes:,} routes, delta)")
        w("")
        w(f"`valgrind --tool=massif`: {total / 1e6:.1f} MB of heap once the configuration was "
          "in, by the innermost skiff function on each allocation's stack (≥ 1%):")
        w("")
        w("| MB | share | allocated under |")
        w("|---:|---:|---|")
        for site, b in rows:
            w(f"| {b / 1e6:.2f} | {100 * b / total:.0f}% | `{site}` |")
        w("")
    w("## Every run")
    w("")
    w("| run | size | mode | update | served | ack | main | workers | probes' cost | process | "
      "VmRSS KiB | RssAnon KiB | probes (old answers) | load1 |")
    w("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        w(f"| {r['run']} | {r['size']} | {r['mode']} | {r['scenario']} | {r['served_ms']:.1f} | "
          f"{r['ack_ms']:.1f} | {r['cpu_main_ms']:.1f} | {r['cpu_workers_ms']:.1f} | "
          f"{r['cpu_probes_ms']:.1f} | {r['cpu_process_ms']:.0f} | "
          f"{r['rss_before_kib']} → {r['rss_after_kib']} | "
          f"{r['anon_before_kib']} → {r['anon_after_kib']} | {r['probes']} "
          f"({r['old_answers']}) | {r['load1']:.2f} |")
    w("")
    w("## Machine")
    w("")
    w(f"- CPU: {cpu_model}, nproc {os.cpu_count()}; kernel {platform.release()}")
    linked = os.path.getmtime(args.skiff)
    head_then = sh(f"git -C {ROOT} rev-list -1 --before=@{int(linked)} HEAD")[:7]
    w(f"- skiff: {os.path.relpath(args.skiff, ROOT)}, linked "
      f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(linked))}, when HEAD was "
      f"{head_then or commit} (the working tree may have held others' uncommitted changes); "
      f"results written at HEAD {commit}" + (" with local changes in proxy/ xds/ filters/"
                                              if dirty else ""))
    if loads:
        w(f"- load average (1 min) during the runs: median {statistics.median(loads):.2f}, "
          f"{min(loads):.2f}–{max(loads):.2f}, on {os.cpu_count()} cores shared with other "
          "work (compiles), so times are indicative; CPU figures are steadier than times")
    w(f"- `uptime` at start: {started}")
    w(f"- `uptime` at end: {finished}")
    w("")
    w("Command:")
    w("")
    w("```sh")
    w(command)
    w("```")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------

def parse_sizes(text):
    sizes = []
    for item in text.split(","):
        clusters, _, routes = item.strip().partition("x")
        sizes.append((int(clusters), int(routes)))
    return sizes


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    build = os.environ.get("SKIFF_BUILD_DIR", os.path.join(ROOT, "build"))
    p.add_argument("--skiff", default=os.environ.get("SKIFF_BIN", os.path.join(build, "skiff")))
    p.add_argument("--control-plane", default=os.environ.get(
        "SKIFF_CONTROL_PLANE_BIN", os.path.join(build, "test", "control_plane",
                                                "skiff_control_plane")))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--modes", default="sotw,delta")
    p.add_argument("--sizes", default="1000x10000,100x1000",
                   help="clusters x routes, comma-separated; the smaller one shows how the "
                        "small updates' cost depends on the size of the configuration")
    p.add_argument("--endpoints", type=int, default=10)
    p.add_argument("--streak", type=int, default=50)
    p.add_argument("--interval-ms", type=float, default=2.0,
                   help="one new probe connection every this many ms")
    p.add_argument("--calibrate", type=int, default=200,
                   help="probes sent after each update to measure what one costs the workers")
    p.add_argument("--settle", type=float, default=1.0, help="s of quiet before each reading")
    p.add_argument("--profile", default="",
                   help="comma-separated updates to run under perf record on the first size, "
                        "each [sotw:|delta:]eds-1, cds-1 or rds-1 (delta if no mode)")
    p.add_argument("--profile-repeat", type=int, default=20)
    p.add_argument("--heap", action="store_true",
                   help="also run skiff under valgrind's massif for the full push (first size, "
                        "delta) and break its heap down by the skiff function that allocated it")
    p.add_argument("--results", default=os.path.join(BENCH_DIR, "results", "xds_scale.md"))
    args = p.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in args.modes:
        if m not in ("sotw", "delta"):
            p.error(f"--modes: unknown mode {m}")
    args.sizes = parse_sizes(args.sizes)
    args.profile = [(item.split(":")[0] if ":" in item else "delta", item.split(":")[-1])
                    for item in (s.strip() for s in args.profile.split(",")) if item]
    for mode, sc in args.profile:
        if mode not in ("sotw", "delta") or sc not in ("eds-1", "cds-1", "rds-1"):
            p.error(f"--profile: unknown update {mode}:{sc}")
    if args.heap and not shutil.which("valgrind"):
        p.error("--heap needs valgrind (apt-get install valgrind)")
    if args.profile and not shutil.which("perf"):
        p.error("--profile needs perf (apt-get install linux-perf)")
    for path in (args.skiff, args.control_plane):
        if not os.access(path, os.X_OK):
            p.error(f"{path} is not an executable (build skiff and skiff_control_plane, or "
                    "pass --skiff / --control-plane or SKIFF_BUILD_DIR)")
    if not shutil.which("nginx"):
        p.error("nginx is not installed (.ci/setup installs nginx-light)")

    command = "bench/xds_scale.py " + " ".join(sys.argv[1:])
    for var in ("SKIFF_BUILD_DIR", "SKIFF_BIN", "SKIFF_CONTROL_PLANE_BIN"):
        if os.environ.get(var):
            command = f"{var}={os.path.relpath(os.environ[var], ROOT)} {command}"
    started = sh("uptime")
    tmp = tempfile.mkdtemp(prefix="xds-scale-")
    backends = Backends(tmp)
    results, loads, profiles, heap_rows = [], [], {}, None
    try:
        for run_index in range(1, args.runs + 1):
            for clusters, routes in args.sizes:
                cfg = Config(backends, clusters, args.endpoints, routes)
                for mode in args.modes:
                    run = Run(args, backends, cfg, mode == "delta", tmp)
                    try:
                        run.start()
                        batch = [run.full(), run.eds_1("2"), run.cds_1("3"), run.rds_1("4")]
                    finally:
                        run.stop()
                    for r in batch:
                        r["run"] = run_index
                        loads.append(r["load1"])
                    results.extend(batch)
        for mode, sc in args.profile:
            clusters, routes = args.sizes[0]
            cfg = Config(backends, clusters, args.endpoints, routes)
            log(f"profiling {mode} {sc} ({args.profile_repeat} times)")
            profiles[f"{mode} {sc}, {cfg.label}"] = profile(args, backends, cfg, tmp, sc,
                                                            mode == "delta")
        if args.heap:
            clusters, routes = args.sizes[0]
            log("heap profile of the full push under massif")
            heap_rows = heap(args, backends, Config(backends, clusters, args.endpoints, routes),
                             tmp, True)
    finally:
        backends.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    finished = sh("uptime")
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    write_report(args.results, args, results, loads, started, finished, command, profiles,
                 heap_rows)
    log(f"wrote {args.results}")


if __name__ == "__main__":
    main()
