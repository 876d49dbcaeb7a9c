#!/usr/bin/env python3
"""HTTP/2 through skiff, h2c and h2 over TLS, against h2load direct to nginx (issue 4).

Started by bench/h2_tls.sh. Makes a throwaway CA and server certificate with the openssl CLI,
starts one nginx backend (64 B body; HTTP/1.1, h2c with prior knowledge, h2 over TLS) and, per
skiff run, a fresh skiff with --concurrency 1 pinned to CPU 1 with two listeners (plaintext,
codec_type AUTO; TLS with ALPN h2,http/1.1), routing /64 to the backend's HTTP/1.1 listener and
/u2/64 to its h2c listener. h2load runs pinned to CPU 0 (with the backend). Prints a markdown
table; it measures and asserts nothing.
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

from procs import cpu_ticks, free_port, spawn, status_kb, stop, stop_all, tail, track

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH_DIR)
DURATION = int(os.environ.get("H2TLS_DURATION", "10"))
WARMUP = int(os.environ.get("H2TLS_WARMUP", "1"))
POINTS = os.environ.get("H2TLS_POINTS", "8x10 64x100").split()
WRITE = os.environ.get("H2TLS_WRITE", "0") == "1"
SKIFF_BIN = os.environ.get("SKIFF_BIN", os.path.join(ROOT, "build", "skiff"))
LOAD_CPUS = os.environ.get("H2TLS_LOAD_CPUS", "0")
PROXY_CPUS = os.environ.get("H2TLS_PROXY_CPUS", "1")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"h2_tls: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def on_signal(signum, _frame):
    log(f"signal {signum}: stopping everything")
    stop_all()
    sys.exit(128 + signum)


def wait_port(proc, port, name, log_path, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited ({proc.returncode}):\n{tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{name} did not listen on {port} within {timeout} s:\n{tail(log_path)}")


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=30)


def make_certs(tmp):
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, P-256 keys."""
    ca_key, ca = os.path.join(tmp, "ca.key"), os.path.join(tmp, "ca.pem")
    key, csr = os.path.join(tmp, "server.key"), os.path.join(tmp, "server.csr")
    cert, ext = os.path.join(tmp, "server.pem"), os.path.join(tmp, "server.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
            "-subj", "/CN=skiff-bench-ca")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)
    os.chmod(key, 0o644)  # nginx workers read it as an unprivileged user
    return ca, cert, key


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    http2_max_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    server {{
        listen 127.0.0.1:{h1} backlog=4096;
        listen 127.0.0.1:{h2c} http2 backlog=4096;
        listen 127.0.0.1:{tls} ssl http2 backlog=4096;
        root {tmp}/www;
        location / {{ }}
    }}
}}
"""


def skiff_config(tmp, plain, tls, admin, h1, h2c, cert, key, limit):
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
                 ".v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "route_config": {"name": "bench", "virtual_hosts": [{
            "name": "all", "domains": ["*"], "routes": [
                {"match": {"prefix": "/u2/"},
                 "route": {"cluster": "backend_h2", "timeout": "30s"}},
                {"match": {"prefix": "/"},
                 "route": {"cluster": "backend_h1", "timeout": "30s"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    filters = [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    tls_socket = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
                 ".DownstreamTlsContext",
        "common_tls_context": {
            "tls_certificates": [{"certificate_chain": {"filename": cert},
                                  "private_key": {"filename": key}}],
            "alpn_protocols": ["h2", "http/1.1"]}}}

    def listener(name, port, chain_extra):
        chain = {"filters": filters}
        chain.update(chain_extra)
        return {"name": name, "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}}, "filter_chains": [chain]}

    def cluster(name, port, h2):
        c = {"name": name, "type": "STATIC", "connect_timeout": "2s",
             "circuit_breakers": {"thresholds": [{"max_connections": limit,
                                                  "max_pending_requests": limit,
                                                  "max_requests": limit}]},
             "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                 {"endpoint": {"address": {"socket_address": {
                     "address": "127.0.0.1", "port_value": port}}}}]}]}}
        if h2:
            c["typed_extension_protocol_options"] = {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3"
                             ".HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}}}
        return c

    conf = {"admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                     "port_value": admin}}},
            "static_resources": {
                "listeners": [listener("plain", plain, {}),
                              listener("tls", tls, {"transport_socket": tls_socket})],
                "clusters": [cluster("backend_h1", h1, False),
                             cluster("backend_h2", h2c, True)]}}
    path = os.path.join(tmp, "skiff.yaml")
    with open(path, "w") as f:
        json.dump(conf, f, indent=1)  # JSON is YAML
    return path


def h2load(url, conns, streams, duration):
    args = ["taskset", "-c", LOAD_CPUS, "h2load", "-t1", f"-c{conns}", f"-m{streams}",
            f"-D{duration}", url]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    track(proc)  # so that a signal stops it too
    try:
        out, err = proc.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"h2load did not finish: {' '.join(args)}")
    finally:
        stop(proc)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    t = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if proc.returncode != 0 or not m or not rps or not t:
        raise BenchError(f"{' '.join(args)} failed ({proc.returncode}):\n{out}\n{err}")
    return {"cmd": " ".join(args[3:]), "done": int(m.group(3)), "succeeded": int(m.group(4)),
            "failed": int(m.group(5)), "errored": int(m.group(6)), "timeout": int(m.group(7)),
            # h2load counts a status when its headers arrive, so the 2xx count can pass "done".
            "non2xx": sum(int(st.group(i)) for i in (2, 3, 4)) if st else None,
            "rps": float(rps.group(1)),
            "min": t.group(1), "max": t.group(2), "mean": t.group(3), "sd": t.group(4),
            "text": out}


def bad_count(r):
    """failed + errored + timeout + non-2xx; a missing status line counts as all bad."""
    non2xx = r["non2xx"] if r["non2xx"] is not None else r["done"]
    return r["failed"] + r["errored"] + r["timeout"] + non2xx


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not os.access(SKIFF_BIN, os.X_OK):
        raise BenchError(f"no skiff binary at {SKIFF_BIN} (set SKIFF_BIN or build build/skiff)")
    points = []
    for p in POINTS:
        c, _, m = p.partition("x")
        points.append((int(c), int(m)))
    limit = max(c * m for c, m in points) + 500
    tmp = tempfile.mkdtemp(prefix="skiff-h2tls-")
    os.chmod(tmp, 0o755)  # nginx workers (www-data) read the bodies and the key here
    try:
        return run(tmp, points, limit)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp, points, limit):
    _ca, cert, key = make_certs(tmp)  # h2load does not verify; the CA is only the issuer
    for d in ("www", "www/u2"):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
        with open(os.path.join(tmp, d, "64"), "wb") as f:
            f.write(b"skiff-bench-" * 5 + b"abc\n")
        os.chmod(os.path.join(tmp, d), 0o755)
        os.chmod(os.path.join(tmp, d, "64"), 0o644)
    ports = {"h1": free_port(), "h2c": free_port(), "tls": free_port()}
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, cert=cert, key=key, **ports))
    nlog = os.path.join(tmp, "nginx.log")
    nginx = spawn(["nginx", "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "nginx-error.log")],
                  LOAD_CPUS, nlog)
    for p in ports.values():
        wait_port(nginx, p, "nginx backend", nlog)
    log(f"nginx backend: http/1.1 {ports['h1']}, h2c {ports['h2c']}, h2+tls {ports['tls']}")

    # (label, proxied?, scheme, listener key, path)
    cases = [("direct nginx", False, "h2c", "/64", "-"),
             ("skiff", True, "h2c", "/64", "HTTP/1.1"),
             ("skiff", True, "h2c", "/u2/64", "h2c"),
             ("direct nginx", False, "h2+TLS", "/64", "-"),
             ("skiff", True, "h2+TLS", "/64", "HTTP/1.1"),
             ("skiff", True, "h2+TLS", "/u2/64", "h2c")]
    rows = []
    for conns, streams in points:
        for label, proxied, proto, path, upstream in cases:
            scheme = "https" if proto == "h2+TLS" else "http"
            skiff = None
            if proxied:
                plain, tls, admin = free_port(), free_port(), free_port()
                sconf = skiff_config(tmp, plain, tls, admin, ports["h1"], ports["h2c"], cert,
                                     key, limit)
                slog = os.path.join(tmp, "skiff.log")
                skiff = spawn([SKIFF_BIN, "-c", sconf, "--concurrency", "1"], PROXY_CPUS, slog)
                wait_port(skiff, plain, "skiff", slog)
                wait_port(skiff, tls, "skiff", slog)
                port = tls if proto == "h2+TLS" else plain
            else:
                port = ports["tls"] if proto == "h2+TLS" else ports["h2c"]
            url = f"{scheme}://127.0.0.1:{port}{path}"
            log(f"{label} {proto} upstream {upstream} {conns}x{streams}: {url}")
            try:
                if WARMUP > 0:
                    h2load(url, conns, streams, WARMUP)
                before = sum(cpu_ticks([skiff.pid])) if skiff else None
                r = h2load(url, conns, streams, DURATION)
                if skiff:
                    ticks = sum(cpu_ticks([skiff.pid])) - before
                    r["cpu_us"] = ticks * 1e6 / CLK_TCK / r["done"] if r["done"] else None
                    r["hwm_kb"] = status_kb([skiff.pid], "VmHWM")
            finally:
                if skiff:
                    stop(skiff)
            r.update(label=label, proto=proto, upstream=upstream, point=f"{conns}x{streams}",
                     url=url)
            if bad_count(r):
                log(f"h2load reported failures: {r['cmd']}\n{r['text']}")
            rows.append(r)
    return rows


def report(rows):
    load = open("/proc/loadavg").read().split()[:3]
    up = subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    out = []
    w = out.append
    w("# HTTP/2 through skiff: h2c and h2 over TLS, against direct to nginx\n")
    w(f"Machine: {os.cpu_count()} CPUs (nproc), load average {' '.join(load)} at the end "
      f"(`uptime`: {up}). skiff commit {git_commit()}, `--concurrency 1` pinned to CPU "
      f"{PROXY_CPUS}; h2load `-t1` and the nginx backend (1 worker) pinned to CPU {LOAD_CPUS}. "
      f"64 B body, {WARMUP} s warm-up then `h2load -D {DURATION}`, a fresh skiff per run.\n")
    w("| load | downstream | via | upstream | req/s | skiff/direct req/s | mean ± sd | "
      "min / max | skiff CPU µs/req | skiff peak RSS | failed |")
    w("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    direct = {(r["point"], r["proto"]): r["rps"] for r in rows if r["label"] != "skiff"}
    for r in rows:
        d = direct.get((r["point"], r["proto"]))
        ratio = f"{r['rps'] / d:.2f}" if r["label"] == "skiff" and d else "-"
        cpu = f"{r['cpu_us']:.1f}" if r.get("cpu_us") is not None else "-"
        hwm = f"{r['hwm_kb'] / 1024:.1f} MiB" if r.get("hwm_kb") else "-"
        bad = bad_count(r)
        w(f"| {r['point']} | {r['proto']} | {r['label']} | {r['upstream']} | {r['rps']:.0f} | "
          f"{ratio} | {r['mean']} ± {r['sd']} | {r['min']} / {r['max']} | {cpu} | {hwm} | "
          f"{bad} |")
    w("\nload = h2load connections x concurrent streams per connection; failed = h2load's "
      "failed + errored + timeout + non-2xx. Produced by `bench/h2_tls.sh`.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    try:
        rows = main()
    except (BenchError, subprocess.CalledProcessError) as e:
        msg = getattr(e, "stderr", None) or ""
        log(f"error: {e}\n{msg}")
        sys.exit(1)
    text = report(rows)
    print(text)
    if WRITE:
        path = os.path.join(BENCH_DIR, "results", "h2_tls.md")
    else:
        path = os.path.join(tempfile.mkdtemp(prefix="skiff-h2tls-report-"), "h2_tls.md")
    with open(path, "w") as f:
        f.write(text)
    log(f"wrote {path}")
