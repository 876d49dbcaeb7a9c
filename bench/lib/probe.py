#!/usr/bin/env python3
"""Quick, single-proxy measurements for working on skiff's costs (bench/probe.sh).

  probe.py mem [N]     idle RSS, then RSS with N idle keep-alive downstream
                       connections (one GET each); bytes per connection from
                       VmRSS and from RssAnon, and the idle process's memory by
                       mapping (anonymous, file-backed, thread stacks).
  probe.py cpu [R]     CPU time per request (user and sys, /proc/PID/stat) with
                       wrk -t1 -c64 on GET /64, BENCH_DURATION seconds, R runs
                       of each proxy in BENCH_PROXIES taking turns; prints
                       every run and the median.
  probe.py instr [N]   instructions per proxied request: skiff runs under
                       valgrind's callgrind, h2load sends N keep-alive GET /64
                       on 64 connections after a warm-up, and the counters
                       cover exactly those N requests. Instruction counts are
                       stable on a busy machine, where CPU time is not.
  probe.py instr-h2 [N] [CxM] [h1|h2]
                       the same with h2c prior knowledge downstream: h2load
                       -cC -mM (default 64x100) sends N GET /64 after a
                       warm-up, through a cluster that speaks h2c to the
                       backend's h2c listener (h2, the default) or HTTP/1.1 (h1).

Both start an nginx backend and skiff the same way bench.py does (same config,
same pinning). BENCH_PROXIES may name haproxy or nginx for `mem`.
"""

import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (bench.py's servers, pinning and /proc readers)

from bench import log, status_kb  # noqa: E402


def smaps_summary(pid):
    """KiB of RSS per kind of mapping: anonymous heap/arenas, thread stacks, files."""
    out = {"anon": 0, "stack": 0, "file": 0}
    files = {}
    kind, name = None, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = head[5] if len(head) > 5 else ""
                kind = "file" if name.startswith("/") else "anon"
                if name == "[stack]":
                    kind = "stack"
            elif head[0] == "Rss:":
                kb = int(head[1])
                out[kind] += kb
                if kind == "file":
                    files[name] = files.get(name, 0) + kb
    top = sorted(files.items(), key=lambda kv: -kv[1])[:8]
    return out, top


def rollup(pid):
    vals = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                vals[parts[0][:-1]] = int(parts[1])
    return vals


def mem(n):
    b = bench.Bench()
    b.start_backend()
    for name in [p for p in bench.PROXIES if p != "direct"]:
        proxy = b.start_proxy(name)
        socks = []
        try:
            time.sleep(0.5)
            pids = proxy.rss_pids()
            idle = status_kb(pids, "VmRSS")
            idle_anon = status_kb(pids, "RssAnon")
            r = rollup(pids[0])
            kinds, top = smaps_summary(pids[0])
            threads = len(os.listdir(f"/proc/{pids[0]}/task"))
            socks, ok = bench.hold_connections(proxy.port, n)
            time.sleep(1.0)
            held = status_kb(pids, "VmRSS")
            held_anon = status_kb(pids, "RssAnon")
        finally:
            for s in socks:
                s.close()
            bench.stop(proxy.proc)
        per = (held - idle) * 1024 / ok if ok else 0
        per_anon = (held_anon - idle_anon) * 1024 / ok if ok else 0
        print(f"{name}: idle VmRSS {idle} KiB (RssAnon {idle_anon}, RssFile {r.get('Rss', 0) - idle_anon}"
              f" incl. shmem; {threads} threads); mappings: anon {kinds['anon']} KiB, "
              f"stack {kinds['stack']} KiB, file {kinds['file']} KiB")
        for path, kb in top:
            print(f"    {kb:6d} KiB  {path}")
        print(f"{name}: {ok} idle conns: VmRSS {held} KiB, {per:.0f} B/conn; "
              f"RssAnon {held_anon} KiB, {per_anon:.0f} B/conn")
    bench.stop_all()
    shutil.rmtree(b.tmp, ignore_errors=True)


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise bench.BenchError(f"no totals in {path}")


def callgrind_run(n, warmup, load, cluster_options="", backend_h2=False):
    """Runs skiff under callgrind, warms it with load(warmup), zeroes the counters,
    runs load(n) and returns the instructions of that part (and the dump's path)."""
    b = bench.Bench()
    b.start_backend()
    port = bench.free_port()
    conf = bench.render("skiff.yaml.in", os.path.join(b.tmp, "skiff.yaml"), port=port,
                        admin_port=bench.free_port(),
                        backend_port=b.backend_h2_port if backend_h2 else b.backend_port,
                        cluster_options=cluster_options)
    out = os.environ.get("PROBE_CALLGRIND_OUT", "/tmp/skiff-probe-callgrind.out")
    log_path = os.path.join(b.tmp, "skiff-callgrind.log")
    out_dir, out_name = os.path.split(out)
    for old in os.listdir(out_dir):
        if old.startswith(out_name):
            os.remove(os.path.join(out_dir, old))
    proc = bench.spawn(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        "--dump-instr=no", bench.SKIFF_BIN, "-c", conf, "--concurrency", "1"],
                       bench.PROXY_CPUS, log_path)
    bench.wait_ready(proc, port, "skiff (callgrind)", log_path, timeout=120)
    url = f"http://127.0.0.1:{port}/64"
    load(url, warmup)  # Warm-up: upstream pool filled, caches and free lists at steady state.
    subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
    load(url, n)
    subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    time.sleep(0.5)
    dumps = sorted(p for p in os.listdir(out_dir) if p.startswith(out_name + "."))
    bench.stop(proc)
    bench.stop_all()
    shutil.rmtree(b.tmp, ignore_errors=True)
    if not dumps:
        raise bench.BenchError("callgrind wrote no dump")
    dump = os.path.join(os.path.dirname(out), dumps[-1])
    return callgrind_total(dump), dump


def h2load_count(args, url, count):
    """h2load args, count requests to url; fails unless every one succeeded."""
    text = bench.run_tool(["h2load"] + args + ["-n", str(count), url], timeout=900)
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", text)
    if not m or int(m.group(2)) != count:
        raise bench.BenchError(f"h2load did not complete {count} requests:\n{text[-800:]}")


def instr(n):
    total, dump = callgrind_run(n, 2000, lambda url, count: h2load_count(["--h1", "-c", "64"],
                                                                         url, count))
    print(f"skiff: {total} instructions for {n} requests: {total / n:.0f} per request "
          f"(callgrind dump {dump})")


def instr_h2(n, shape="64x100", upstream="h2"):
    """instructions per request with h2c prior knowledge downstream (h2load -cC -mM),
    to an h2c (upstream "h2") or HTTP/1.1 ("h1") upstream."""
    conns, streams = bench.parse_h2_points(shape)[0]
    if upstream not in ("h1", "h2"):
        raise SystemExit(f"instr-h2: upstream {upstream!r} is not h1 or h2")
    args = ["-t1", f"-c{conns}", f"-m{streams}"]
    # The warm-up fills every stream slot a few times over, so the upstream
    # connections the measured run needs are open and the free lists full.
    warmup = max(2000, 4 * conns * streams)
    total, dump = callgrind_run(
        n, warmup, lambda url, count: h2load_count(args, url, count),
        cluster_options=bench.SKIFF_H2_UPSTREAM if upstream == "h2" else "",
        backend_h2=upstream == "h2")
    print(f"skiff: h2c {conns}x{streams}, {upstream} upstream: {total} instructions for {n} "
          f"requests: {total / n:.0f} per request (callgrind dump {dump})")


def cpu(reps):
    b = bench.Bench()
    b.start_backend()
    names = [p for p in bench.PROXIES if p != "direct"]
    runs = {n: [] for n in names}
    for _ in range(reps):
        for name in names:
            r = b.throughput_run(name, "64", 64)
            runs[name].append(r)
            print(f"{name}: {r['cpu_us_per_req']:.2f} us/req ({r['cpu_user_us_per_req']:.2f} user + "
                  f"{r['cpu_sys_us_per_req']:.2f} sys), {r['rps']:.0f} req/s, "
                  f"preempted {r['preempted']}, load {r['load1']:.1f}", flush=True)
    for name in names:
        rs = sorted(runs[name], key=lambda r: r["cpu_us_per_req"])
        m = rs[(len(rs) - 1) // 2]
        print(f"{name} median of {len(rs)}: {m['cpu_us_per_req']:.2f} us/req "
              f"({m['cpu_user_us_per_req']:.2f} user + {m['cpu_sys_us_per_req']:.2f} sys)")
    bench.stop_all()
    shutil.rmtree(b.tmp, ignore_errors=True)


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "mem"
    if what == "mem":
        mem(int(sys.argv[2]) if len(sys.argv) > 2 else 5000)
    elif what == "instr":
        instr(int(sys.argv[2]) if len(sys.argv) > 2 else 20000)
    elif what == "instr-h2":
        instr_h2(int(sys.argv[2]) if len(sys.argv) > 2 else 64000, *sys.argv[3:5])
    elif what == "cpu":
        cpu(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    else:
        raise SystemExit(f"usage: {sys.argv[0]} mem [N] | cpu [R] | instr [N] | "
                         "instr-h2 [N] [CxM] [h1|h2]")


if __name__ == "__main__":
    try:
        main()
    except bench.BenchError as e:
        log(f"error: {e}")
        bench.stop_all()
        sys.exit(1)
