#!/usr/bin/env python3
"""Quick, single-proxy measurements for working on skiff's costs (bench/probe.sh).

  probe.py mem [N] [h1|h2]
                       idle RSS, then RSS with N idle keep-alive downstream
                       connections (one GET each; h1, the default: HTTP/1.1,
                       h2: h2c with prior knowledge, one stream each); bytes per
                       connection from VmRSS and from RssAnon, and from RssAnon
                       over the second N/2 alone (the first half also pays for
                       upstream connections and free lists); and the idle
                       process's memory by mapping (anonymous, file-backed,
                       thread stacks).
  probe.py cpu [R]     CPU time per request (user and sys, /proc/PID/stat) with
                       wrk -t1 -c64 on GET /64, BENCH_DURATION seconds, R runs
                       of each proxy in BENCH_PROXIES taking turns; prints
                       every run and the median.
  probe.py cap [R]     requests per core: each proxy in BENCH_PROXIES held to
                       BENCH_CAP (default 0.5) of a core by a cgroup CPU quota,
                       wrk -t1 -c64 on GET /64 for BENCH_DURATION seconds, R
                       rounds taking turns (bench.py's capacity runs; root).
  probe.py instr [N] [h1|h2]
                       instructions per proxied request: skiff runs under
                       valgrind's callgrind, h2load sends N keep-alive GET /64
                       on 64 connections after a warm-up, and the counters
                       cover exactly those N requests. Instruction counts are
                       stable on a busy machine, where CPU time is not. h2:
                       through a cluster that speaks h2c to the backend.
  probe.py instr-h2 [N] [CxM] [h1|h2]
                       the same with h2c prior knowledge downstream: h2load
                       -cC -mM (default 64x100) sends N GET /64 after a
                       warm-up, through a cluster that speaks h2c to the
                       backend's h2c listener (h2, the default) or HTTP/1.1 (h1).
  probe.py h2cpu [R] [CxM] [h1|h2]
                       CPU time per request with h2load -cC -mM (default
                       64x100) speaking h2c to each proxy in BENCH_PROXIES,
                       through an HTTP/1.1 or h2c (default) upstream, R rounds
                       taking turns; prints every run, the medians and each
                       round's ratio to HAProxy.
  probe.py latency [R] [RATE]
                       latency at one offered rate: h2load --h1 -c64 at RATE
                       req/s (default: half of HAProxy's wrk -c64 peak, measured
                       first) on GET /64 for BENCH_DURATION seconds, R rounds
                       taking turns; p50 and p99 of every run and their medians.
  probe.py counters [R] [RATE]
                       kernel-side counts per request for each proxy in
                       BENCH_PROXIES (wrk -c64, or h2load at RATE req/s):
                       TCP segments and ACKs, IPIs, softirqs, context switches
                       and CPU of proxy, backend and client, syscalls by kind
                       (perf stat tracepoints). Medians of R runs.
  probe.py counters-h2 [R] [CxM] [h1|h2]
                       the same with h2load -cC -mM (default 64x100) over h2c,
                       through an h2c (default) or HTTP/1.1 upstream.
  probe.py send-cost [ROUNDS] [BODY...]
                       ns per head + body sent and read back on loopback, by
                       syscall (send_cost.c): writev, sendmsg, copy + write,
                       copy + send.

They start an nginx backend and skiff the same way bench.py does (same config,
same pinning). BENCH_PROXIES may name haproxy or nginx for `mem`, `cpu`, `h2cpu`,
`latency` and `counters`, and skiff-b: a second skiff binary, SKIFF_BIN_B, to compare two builds
taking turns (before and after a change).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


def _h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


# h2c prior knowledge: the preface, an empty SETTINGS, and GET /64 on stream 1
# (END_HEADERS | END_STREAM) in HPACK with static-table names and no Huffman:
# :method GET (2), :scheme http (6), :path (4) "/64", :authority (1) "127.0.0.1".
_H2_REQUEST = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(0x4, 0, 0) +
               _h2_frame(0x1, 0x5, 1, b"\x82\x86\x04\x03/64\x01\x09127.0.0.1"))


def _h2_read_response(s):
    """Reads frames until stream 1 ends; ACKs the server's SETTINGS. True on a 200
    (HPACK static index 8, the only way a :status 200 is sent with no table entry)."""
    data, status_ok = b"", False
    while True:
        while len(data) < 9 or len(data) < 9 + int.from_bytes(data[:3], "big"):
            chunk = s.recv(65536)
            if not chunk:
                return False
            data += chunk
        size = int.from_bytes(data[:3], "big")
        kind, flags, stream = data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7fffffff
        payload, data = data[9:9 + size], data[9 + size:]
        if kind == 0x4 and not flags & 0x1:
            s.sendall(_h2_frame(0x4, 0x1, 0))
        elif kind == 0x7:  # GOAWAY
            return False
        elif stream == 1 and kind == 0x1:
            status_ok = payload[:1] == b"\x88"
        if stream == 1 and kind in (0x0, 0x1) and flags & 0x1:
            return status_ok


def hold_connections_h2(port, n, batch=200):
    """bench.hold_connections over h2c: n connections with one GET /64 answered on
    each (stream 1), kept open, in batches of `batch`."""
    return bench.hold_connections(port, n, batch, request=_H2_REQUEST, answered=_h2_read_response)


def mem(n, protocol="h1"):
    if protocol not in ("h1", "h2"):
        raise SystemExit(f"mem: protocol {protocol!r} is not h1 or h2")
    hold = bench.hold_connections if protocol == "h1" else hold_connections_h2
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
            # In two halves: what the second half adds is the cost of a connection
            # alone. The first half also pays once for what the batches of
            # requests leave behind (upstream connections, free lists) and
            # for the tables sized by descriptor count.
            socks, ok = hold(proxy.port, n // 2)
            time.sleep(1.0)
            half, half_ok = status_kb(pids, "RssAnon"), ok
            if ok == n // 2:
                more, more_ok = hold(proxy.port, n - n // 2)
                socks += more
                ok += more_ok
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
        print(f"{name}: {ok} idle {'h2c ' if protocol == 'h2' else ''}conns: VmRSS {held} KiB, {per:.0f} B/conn; "
              f"RssAnon {held_anon} KiB, {per_anon:.0f} B/conn")
        if ok > half_ok:
            print(f"{name}: the second {ok - half_ok}: RssAnon {half} -> {held_anon} KiB, "
                  f"{(held_anon - half) * 1024 / (ok - half_ok):.0f} B/conn")
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


def instr(n, upstream="h1"):
    """instructions per request with HTTP/1.1 downstream (h2load --h1 -c64), to an
    HTTP/1.1 (upstream "h1") or h2c ("h2") upstream."""
    if upstream not in ("h1", "h2"):
        raise SystemExit(f"instr: upstream {upstream!r} is not h1 or h2")
    total, dump = callgrind_run(
        n, 2000, lambda url, count: h2load_count(["--h1", "-c", "64"], url, count),
        cluster_options=bench.SKIFF_H2_UPSTREAM if upstream == "h2" else "",
        backend_h2=upstream == "h2")
    shape = "" if upstream == "h1" else ", h2 upstream"
    print(f"skiff: {total} instructions for {n} requests{shape}: {total / n:.0f} per request "
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


def _median(rs, key):
    rs = sorted(rs, key=lambda r: r[key])
    return rs[(len(rs) - 1) // 2]


def _ratio_line(label, rounds, key):
    """Each round's skiff/HAProxy ratio of key, when both ran."""
    ratios = [r["skiff"][key] / r["haproxy"][key] for r in rounds
              if "skiff" in r and "haproxy" in r and r["haproxy"][key] > 0]
    if ratios:
        ordered = sorted(ratios)
        print(f"skiff/haproxy {label}: rounds " + ", ".join(f"{x:.2f}" for x in ratios)
              + f"; median {ordered[(len(ordered) - 1) // 2]:.2f}")


def _take_turns(reps, names, run, describe):
    """reps rounds in which each proxy in names runs once (run(name) -> result), printing
    describe(result) after each; returns the rounds as [{name: result}]."""
    rounds = []
    for _ in range(reps):
        row = {}
        for name in names:
            row[name] = run(name)
            print(f"{name}: {describe(row[name])}", flush=True)
        rounds.append(row)
    return rounds


def h2cpu(reps, shape="64x100", upstream="h2"):
    conns, streams = (int(x) for x in shape.split("x"))
    b = bench.Bench()
    b.start_backend()
    names = [p for p in bench.PROXIES
             if p != "direct" and (upstream == "h1" or bench.proxies_h2_upstream(p))]
    rounds = _take_turns(
        reps, names, lambda name: b.h2_run(name, upstream, conns, streams),
        lambda r: f"{r['cpu_us_per_req']:.2f} us/req ({r['cpu_user_us_per_req']:.2f} user + "
                  f"{r['cpu_sys_us_per_req']:.2f} sys), {r['rps']:.0f} req/s, failed {r['failed']}, "
                  f"preempted {r['preempted']}, load {r['load1']:.1f}")
    for name in names:
        m = _median([row[name] for row in rounds], "cpu_us_per_req")
        print(f"{name} median of {reps}: {m['cpu_us_per_req']:.2f} us/req "
              f"({m['cpu_user_us_per_req']:.2f} user + {m['cpu_sys_us_per_req']:.2f} sys), "
              f"h2c {shape}, {upstream} upstream")
    _ratio_line("CPU per request", rounds, "cpu_us_per_req")
    bench.stop_all()
    shutil.rmtree(b.tmp, ignore_errors=True)


def latency(reps, rate=None):
    b = bench.Bench()
    b.start_backend()
    names = [p for p in bench.PROXIES if p != "direct"]
    if rate is None:
        peak = b.throughput_run("haproxy", bench.RATE_SIZE, bench.RATE_CONNS)
        rate = peak["rps"] * 0.5
        print(f"haproxy peak {peak['rps']:.0f} req/s (wrk -c{bench.RATE_CONNS}); offering "
              f"{rate:.0f} req/s", flush=True)

    def run(name):
        proxy = b.start_proxy(name)
        try:
            port = b.port_of(proxy)
            if bench.WARMUP > 0:
                b.wrk(port, bench.RATE_SIZE, bench.RATE_CONNS, bench.WARMUP)
            return b.measured(proxy, lambda: b.h2load_rate(
                port, bench.RATE_SIZE, bench.RATE_CONNS, rate, bench.DURATION))
        finally:
            bench.stop(proxy.proc)

    rounds = _take_turns(
        reps, names, run,
        lambda r: f"got {r['rps']:.0f} req/s, p50 {r['p50'] / 1000:.2f} ms, p99 "
                  f"{r['p99'] / 1000:.2f} ms, {r['cpu_us_per_req']:.2f} us/req, failed "
                  f"{r['failed']}, load {r['load1']:.1f}")
    for name in names:
        runs = [row[name] for row in rounds]
        p50, p99 = _median(runs, "p50")["p50"], _median(runs, "p99")["p99"]
        cpu_us = _median(runs, "cpu_us_per_req")["cpu_us_per_req"]
        print(f"{name} median of {reps} at {rate:.0f} req/s: p50 {p50 / 1000:.2f} ms, "
              f"p99 {p99 / 1000:.2f} ms, {cpu_us:.2f} us/req")
    _ratio_line("p99", rounds, "p99")
    bench.stop_all()
    shutil.rmtree(b.tmp, ignore_errors=True)


def cap(rounds):
    bench.CAP_ROUNDS = rounds
    b = bench.Bench()
    b.start_backend()
    runs = b.capacity_runs()
    for r in runs:
        print(f"{r['proxy']}: median {r['rps']:.0f} req/s at {bench.CAP:g} core = "
              f"{r['rps_per_core']:.0f} per core, {r['cpu_us_per_req']:.2f} us/req; rounds "
              + ", ".join(f"{x['rps']:.0f} ({x['throttled'] * 100:.0f}% throttled)"
                          for x in r["rounds"]))
    by = {r["proxy"]: r for r in runs}
    if "skiff" in by and "haproxy" in by:
        print(f"skiff/haproxy requests per core: {by['skiff']['rps'] / by['haproxy']['rps']:.2f}")
    bench.stop_all()
    shutil.rmtree(b.tmp, ignore_errors=True)


def _kernel_counters():
    """Loopback TCP counters (/proc/net/snmp, netstat), IPIs and NET_RX softirqs per CPU."""
    vals = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        with open(path) as f:
            lines = f.read().splitlines()
        for head, body in zip(lines[0::2], lines[1::2]):
            names, nums = head.split()[1:], body.split()[1:]
            proto = head.split(":")[0]
            for k, v in zip(names, nums):
                vals[f"{proto}.{k}"] = int(v)
    with open("/proc/interrupts") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in ("RES:", "CAL:", "LOC:"):
                for cpu, v in enumerate(parts[1:3]):
                    vals[f"irq.{parts[0][:-1]}.cpu{cpu}"] = int(v)
    with open("/proc/softirqs") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == "NET_RX:":
                for cpu, v in enumerate(parts[1:3]):
                    vals[f"softirq.NET_RX.cpu{cpu}"] = int(v)
    return vals


def _task_counters(pids):
    """utime, stime (ticks) and voluntary/involuntary context switches over every thread of pids."""
    out = {"utime": 0, "stime": 0, "vcsw": 0, "ivcsw": 0}
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    stat = f.read()
                fields = stat[stat.rindex(")") + 2:].split()
                out["utime"] += int(fields[11])
                out["stime"] += int(fields[12])
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches:"):
                            out["vcsw"] += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches:"):
                            out["ivcsw"] += int(line.split()[1])
            except OSError:
                pass
    return out


# Counted per process with `perf stat` (tracepoints; needs root or perf_event_paranoid <= 1).
# sched_waking counts the wakeups a process *does* (it runs in the waker's context).
PERF_EVENTS = [
    "syscalls:sys_enter_read", "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_write",
    "syscalls:sys_enter_writev", "syscalls:sys_enter_sendto", "syscalls:sys_enter_sendmsg",
    "syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_epoll_pwait",
    "syscalls:sys_enter_epoll_ctl", "syscalls:sys_enter_setsockopt", "sched:sched_switch",
    "sched:sched_waking", "irq_vectors:reschedule_entry", "net:net_dev_xmit",
]


def _perf_stat(pid, out_path):
    """perf stat counting PERF_EVENTS in pid (a comma list; all their threads) until stopped
    with SIGINT."""
    if shutil.which("perf") is None:
        return None
    return subprocess.Popen(["perf", "stat", "-x,", "-o", out_path, "-p", str(pid), "-e",
                             ",".join(PERF_EVENTS)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _perf_read(proc, out_path):
    if proc is None:
        return {}
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    vals = {}
    with open(out_path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                vals[parts[2]] = float(parts[0])
    return vals


COUNTER_KEYS = [
    "Tcp.OutSegs", "TcpExt.TCPPureAcks", "TcpExt.TCPHPAcks", "TcpExt.TCPHPHits",
    "TcpExt.DelayedACKs", "TcpExt.DelayedACKLocked", "TcpExt.DelayedACKLost",
    "TcpExt.TCPAutoCorking", "TcpExt.TCPBacklogCoalesce", "TcpExt.TCPRcvCoalesce",
    "TcpExt.TCPOFOQueue", "TcpExt.TCPWantZeroWindowAdv", "TcpExt.TCPFromZeroWindowAdv",
    "irq.RES.cpu0", "irq.RES.cpu1", "irq.CAL.cpu0", "irq.CAL.cpu1", "irq.LOC.cpu0", "irq.LOC.cpu1",
    "softirq.NET_RX.cpu0", "softirq.NET_RX.cpu1",
]


def counters(reps, rate=None, h2=None):
    """Per-request counters while wrk -t1 -c64 (or h2load --h1 -c64 at `rate` req/s, or with
    h2=(conns, streams, upstream) h2load -cC -mM over h2c through an h1 or h2c upstream) GETs /64
    through each proxy (BENCH_DURATION s, proxies taking turns): TCP segments and ACK kinds,
    IPIs and NET_RX softirqs per CPU (machine-wide: other work on the machine adds to them),
    context switches and CPU of the proxy, the client and the nginx backend worker, and
    syscalls and scheduler events of the proxy and the backend (perf stat)."""
    b = bench.Bench()
    b.start_backend()
    backend_pids = bench.children_of(b.backend.proc.pid)
    names = [p for p in bench.PROXIES
             if p != "direct" and (not h2 or h2[2] == "h1" or bench.proxies_h2_upstream(p))]
    rows = {n: [] for n in names}
    for _ in range(reps):
        for name in names:
            proxy = b.start_proxy(name, h2[2] if h2 else "h1", h2=bool(h2))
            if h2:
                url = f"http://127.0.0.1:{proxy.h2_port}/64"
                load = ["h2load", "-t1", f"-c{h2[0]}", f"-m{h2[1]}", f"-D{bench.DURATION}", url]
            elif rate:
                url = f"http://127.0.0.1:{proxy.port}/64"
                load = ["h2load", "--h1", "-t1", "-c64", f"--rps={rate / 64:.3f}",
                        f"-D{bench.DURATION}", url]
            else:
                url = f"http://127.0.0.1:{proxy.port}/64"
                load = ["wrk", "-t1", "-c64", f"-d{bench.DURATION}s", "-s", bench.LUA, url]
            try:
                if bench.WARMUP > 0 and h2:
                    bench.run_tool(load[:4] + [f"-D{bench.WARMUP}", url],
                                   timeout=bench.WARMUP + 60)
                elif bench.WARMUP > 0:
                    b.wrk(proxy.port, "64", 64, bench.WARMUP)
                pids = proxy.cpu_pids()
                perf = {who: (_perf_stat(pid, os.path.join(b.tmp, f"perf-{who}.txt")),
                              os.path.join(b.tmp, f"perf-{who}.txt"))
                        for who, pid in (("proxy", ",".join(map(str, pids))),
                                         ("backend", ",".join(map(str, backend_pids))))}
                time.sleep(0.3)  # perf attaches
                k0, p0, n0 = _kernel_counters(), _task_counters(pids), _task_counters(backend_pids)
                client = subprocess.Popen(["taskset", "-c", bench.LOAD_CPUS] + load,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                _, status, ru = os.wait4(client.pid, 0)  # its rusage: CPU, context switches
                client.returncode = os.waitstatus_to_exitcode(status)
                out = client.stdout.read().decode()
                k1, p1, n1 = _kernel_counters(), _task_counters(pids), _task_counters(backend_pids)
                perf_vals = {who: _perf_read(*pr) for who, pr in perf.items()}
            finally:
                bench.stop(proxy.proc)
            if rate or h2:
                m = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out)
                if not m:
                    raise bench.BenchError(f"h2load gave no results:\n{out}")
                n = max(int(m.group(1)), 1)
            else:
                m = re.search(r"^BENCH_JSON (.*)$", out, re.M)
                if not m:
                    raise bench.BenchError(f"wrk printed no BENCH_JSON line:\n{out}")
                n = max(json.loads(m.group(1))["requests"], 1)
            tck = bench.CLK_TCK
            row = {k: (k1.get(k, 0) - k0.get(k, 0)) / n for k in COUNTER_KEYS}
            for who, a, z in (("proxy", p0, p1), ("backend", n0, n1)):
                row[f"{who}.user_us"] = (z["utime"] - a["utime"]) / tck * 1e6 / n
                row[f"{who}.sys_us"] = (z["stime"] - a["stime"]) / tck * 1e6 / n
                row[f"{who}.vcsw"] = (z["vcsw"] - a["vcsw"]) / n
                row[f"{who}.ivcsw"] = (z["ivcsw"] - a["ivcsw"]) / n
            for who, vals in perf_vals.items():
                for ev in PERF_EVENTS:
                    if ev in vals:
                        row[f"{who}.{ev.split(':')[1].replace('sys_enter_', '')}"] = vals[ev] / n
            row["client.user_us"] = ru.ru_utime * 1e6 / n
            row["client.sys_us"] = ru.ru_stime * 1e6 / n
            row["client.vcsw"] = ru.ru_nvcsw / n
            row["client.ivcsw"] = ru.ru_nivcsw / n
            row["rps"] = n / bench.DURATION
            row["load1"] = bench.load1()
            rows[name].append(row)
            print(f"{name}: {n} requests, {row['rps']:.0f} req/s, load {row['load1']:.1f}",
                  flush=True)
    keys = list(dict.fromkeys(k for name in names for r in rows[name] for k in r))
    print("per request, median of %d (each proxy's column)" % reps)
    print(f"{'counter':28}" + "".join(f"{n:>12}" for n in names))
    for k in keys:
        meds = []
        for name in names:
            v = sorted(r.get(k, float("nan")) for r in rows[name])
            meds.append(v[(len(v) - 1) // 2])
        print(f"{k:28}" + "".join(f"{m:12.4f}" for m in meds))
    bench.stop_all()
    shutil.rmtree(b.tmp, ignore_errors=True)


def send_cost(rounds, sizes):
    """Compiles send_cost.c and runs it on the proxy's CPU for each body size."""
    tmp = tempfile.mkdtemp(prefix="skiff-send-cost-")
    try:
        exe = os.path.join(tmp, "send_cost")
        subprocess.run(["cc", "-O2", "-o", exe, os.path.join(os.path.dirname(__file__), "send_cost.c"),
                        "-lpthread"], check=True)
        for size in sizes:
            subprocess.run(["taskset", "-c", bench.PROXY_CPUS, exe, str(size), str(rounds)],
                           check=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "mem"
    if what == "mem":
        mem(int(sys.argv[2]) if len(sys.argv) > 2 else 5000, *sys.argv[3:4])
    elif what == "instr":
        instr(int(sys.argv[2]) if len(sys.argv) > 2 else 20000, *sys.argv[3:4])
    elif what == "instr-h2":
        instr_h2(int(sys.argv[2]) if len(sys.argv) > 2 else 64000, *sys.argv[3:5])
    elif what == "cpu":
        cpu(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    elif what == "h2cpu":
        h2cpu(int(sys.argv[2]) if len(sys.argv) > 2 else 3, *sys.argv[3:5])
    elif what == "latency":
        latency(int(sys.argv[2]) if len(sys.argv) > 2 else 3,
                float(sys.argv[3]) if len(sys.argv) > 3 else None)
    elif what == "cap":
        cap(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    elif what == "send-cost":
        send_cost(int(sys.argv[2]) if len(sys.argv) > 2 else 15,
                  [int(x) for x in sys.argv[3:]] or [64, 1024, 2048, 16384])
    elif what == "counters":
        counters(int(sys.argv[2]) if len(sys.argv) > 2 else 3,
                 float(sys.argv[3]) if len(sys.argv) > 3 else None)
    elif what == "counters-h2":
        shape = sys.argv[3] if len(sys.argv) > 3 else "64x100"
        conns, streams = (int(x) for x in shape.split("x"))
        counters(int(sys.argv[2]) if len(sys.argv) > 2 else 3,
                 h2=(conns, streams, sys.argv[4] if len(sys.argv) > 4 else "h2"))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} mem [N] [h1|h2] | cpu [R] | cap [R] | instr [N] [h1|h2] | "
                         "instr-h2 [N] [CxM] [h1|h2] | h2cpu [R] [CxM] [h1|h2] | "
                         "latency [R] [RATE] | counters [R] [RATE] | counters-h2 [R] [CxM] [h1|h2] | "
                         "send-cost [ROUNDS] [BODY...]")


if __name__ == "__main__":
    try:
        main()
    except bench.BenchError as e:
        log(f"error: {e}")
        bench.stop_all()
        sys.exit(1)
