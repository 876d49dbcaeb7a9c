"""Harness for skiff's integration tests: real processes, real sockets on 127.0.0.1.

It starts skiff on a generated Envoy v3 bootstrap (listener ports 0, learned back
through the admin API), nginx as an upstream, and a small Python HTTP/1.1 backend
whose behaviour is chosen by the request path. Every wait is bounded in time and
every process started here is killed in cleanup.

Only the Python standard library is used.
"""

import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SKIFF_BIN = os.environ.get("SKIFF_BIN", "")
SOURCE_DIR = os.environ.get(
    "SKIFF_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
)
NGINX_BIN = "/usr/sbin/nginx"
READY_TIMEOUT = 10.0
LOCALHOST = "127.0.0.1"
# CI's second stage runs the suite on an ASan+UBSan build (test/CMakeLists.txt).
SANITIZED = os.environ.get("SKIFF_SANITIZED", "").lower() in ("1", "on", "true")


def skiff_bin():
    path = SKIFF_BIN or os.path.join(SOURCE_DIR, "build", "skiff")
    if not os.access(path, os.X_OK):
        # A failure, not a skip: a suite that skips everything would pass.
        raise RuntimeError(f"skiff binary not found at {path!r} (build it, or set SKIFF_BIN)")
    return path


class ReservedPort:
    """A loopback port where connections are refused, kept so for as long as
    this object is open: a socket bound to it (SO_REUSEADDR) that never
    listens. A port only bound and let go may be taken by another process's
    bind(0) before the test uses it (parallel tests bind many), and then
    "nothing listens there" no longer holds. bind(0) never picks a port a
    socket is bound to; a server that sets SO_REUSEADDR (Backend, nginx and
    skiff do) may still listen on it: that is how a server that must be told
    its port number in advance gets one no one else takes meanwhile."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOCALHOST, 0))
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Config generation: Python dicts → block-style YAML (a tiny emitter, so test
# failures print a readable config).


# A JSON access log line that access_log_entry finds by the request's
# x-test-id header.
JSON_LOG_FORMAT = {"id": "%REQ(X-TEST-ID)%", "code": "%RESPONSE_CODE%",
                   "flags": "%RESPONSE_FLAGS%", "details": "%RESPONSE_CODE_DETAILS%"}


def json_log(path, log_filter=None):
    """An HCM access_log list with one file logger writing JSON_LOG_FORMAT
    lines to path, behind log_filter if one is given."""
    log = {"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": path, "log_format": {"json_format": JSON_LOG_FORMAT}}}
    if log_filter is not None:
        log["filter"] = log_filter
    return [log]


def cluster_host_values(skiff, cluster, field):
    """{host address: value} of one per-host field (health_flags, weight,
    priority, ...) of a cluster in /clusters."""
    status, body = skiff.admin_get("/clusters")
    assert status == 200, body
    out = {}
    for line in body.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster and parts[2] == field:
            out[parts[1]] = parts[3]
    return out


def access_log_entry(path, test_id, timeout=10):
    """The JSON access log line at path whose "id" is test_id, once a
    worker's flush (every second) has written it."""
    def find():
        try:
            with open(path) as f:
                for line in f:
                    entry = json.loads(line)
                    if entry.get("id") == test_id:
                        return entry
        except FileNotFoundError:
            pass
        return None

    return wait_until(find, timeout, what=f"the access log line of {test_id}")


def to_yaml(value, indent=0):
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for k, v in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", k):
                k = json.dumps(k)  # e.g. "@type": '@' cannot start a plain YAML scalar
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:\n{to_yaml(v, indent + 1)}")
            else:
                lines.append(f"{pad}{k}: {to_yaml(v)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        lines = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                inner = to_yaml(item, indent + 1).lstrip()
                lines.append(f"{pad}- {inner}")
            else:
                lines.append(f"{pad}- {to_yaml(item)}")
        return "\n".join(lines)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(str(value))


ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def route(prefix="/", cluster=None, direct=None, status=200, timeout=None, headers=None, path=None):
    """One route entry: to `cluster`, or a direct_response with body `direct`."""
    match = {"path": path} if path is not None else {"prefix": prefix}
    if headers:
        match["headers"] = [{"name": k, "string_match": {"exact": v}} for k, v in headers.items()]
    r = {"match": match}
    if cluster is not None:
        action = {"cluster": cluster}
        if timeout is not None:
            action["timeout"] = timeout
        r["route"] = action
    else:
        r["direct_response"] = {"status": status, "body": {"inline_string": direct or ""}}
    return r


def listener(name, routes, stat_prefix="ingress_http", address=LOCALHOST, port=0, hcm_extra=None,
             domains=("*",)):
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "route_config": {
            "name": f"{name}_routes",
            "virtual_hosts": [{"name": f"{name}_vh", "domains": list(domains), "routes": routes}],
        },
        "http_filters": [ROUTER],
    }
    hcm.update(hcm_extra or {})
    return {
        "name": name,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}],
    }


def cluster(name, endpoints, type_="STATIC", connect_timeout="1s", extra=None):
    c = {
        "name": name,
        "type": type_,
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": a, "port_value": p}}}}
                for a, p in endpoints
            ]}] if endpoints else [],
        },
    }
    c.update(extra or {})
    return c


def bootstrap(listeners, clusters=()):
    return to_yaml({
        "admin": {"address": {"socket_address": {"address": LOCALHOST, "port_value": 0}}},
        "static_resources": {"listeners": list(listeners), "clusters": list(clusters)},
    }) + "\n"


# --------------------------------------------------------------------------
# skiff


class Skiff:
    """A running skiff process. Use as a context manager or call stop()."""

    def __init__(self, config_text, concurrency=2, extra_args=(), name="skiff", wait_ready=True):
        """wait_ready=False: returns once the admin is up, without waiting for /ready."""
        binary = skiff_bin()  # before any temp dir, so that a missing binary leaks nothing
        self.tmp = tempfile.mkdtemp(prefix=f"{name}-")
        self.config_path = os.path.join(self.tmp, "config.yaml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.admin_path = os.path.join(self.tmp, "admin-address")
        self.log_path = os.path.join(self.tmp, "skiff.log")
        self.log = open(self.log_path, "wb")
        args = [binary, "-c", self.config_path, "--concurrency", str(concurrency),
                "--admin-address-path", self.admin_path, *extra_args]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.admin = None
        try:
            self._wait_ready(wait_ready)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, ready_too=True):
        def admin_written():
            if self.proc.poll() is not None:
                raise RuntimeError(f"skiff exited with {self.proc.returncode} before its admin "
                                   f"was up\n{self.log_tail()}")
            try:
                with open(self.admin_path) as f:
                    text = f.read().strip()
            except FileNotFoundError:
                return None
            return text if re.fullmatch(r".+:\d+", text) else None

        try:
            text = wait_until(admin_written, READY_TIMEOUT, what="--admin-address-path file")
            host, port = text.rsplit(":", 1)
            self.admin = (host.strip("[]"), int(port))
            if not ready_too:
                return

            def ready():
                try:
                    return self.admin_get("/ready")[0] == 200
                except OSError:
                    return False

            wait_until(ready, READY_TIMEOUT, what="admin /ready → 200")
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.log_tail()}") from None

    # --- admin API ---

    def admin_request(self, method, path, timeout=5):
        conn = http.client.HTTPConnection(*self.admin, timeout=timeout)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def admin_get(self, path):
        return self.admin_request("GET", path)

    def listener_ports(self):
        status, body = self.admin_get("/listeners?format=json")
        if status != 200:
            raise AssertionError(f"/listeners?format=json → {status}: {body}")
        ports = {}
        for ls in json.loads(body)["listener_statuses"]:
            ports[ls["name"]] = int(ls["local_address"]["socket_address"]["port_value"])
        return ports

    def port(self, name="ingress"):
        return self.listener_ports()[name]

    def stats(self):
        """Counters and gauges from /stats as {name: int}."""
        status, body = self.admin_get("/stats")
        if status != 200:
            raise AssertionError(f"/stats → {status}: {body}")
        out = {}
        for line in body.splitlines():
            name, sep, value = line.partition(": ")
            if sep and re.fullmatch(r"-?\d+", value.strip()):
                out[name.strip()] = int(value)
        return out

    def stat(self, name):
        return self.stats().get(name)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def log_tail(self, n=40):
        try:
            self.log.flush()
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "--- skiff log (last lines) ---\n" + "\n".join(lines[-n:])
        except OSError:
            return "(no skiff log)"

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        rc = self.proc.poll()
        if rc is not None and rc != 0:
            # It died on its own (crash, abort, fatal error): say so, or later
            # failures read as mere "connection refused".
            print(f"\nskiff (pid {self.proc.pid}) exited with {rc} before cleanup\n{self.log_tail()}",
                  file=sys.stderr)
        report = None
        if rc is None and SANITIZED:
            # A leak shows only at exit: under the sanitizers skiff leaves the
            # way an operator stops it, and what LeakSanitizer (or ASan, UBSan
            # on the way out) prints fails the test.
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            self.log.flush()
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            if "Sanitizer" in text or "runtime error" in text:
                report = f"skiff (pid {self.proc.pid}) exited with {rc} on SIGTERM:\n{text[-6000:]}"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if report:
            raise AssertionError(report)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_skiff(args, timeout=20):
    """Runs skiff to completion (e.g. --mode validate); returns (rc, output)."""
    p = subprocess.run([skiff_bin(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


# --------------------------------------------------------------------------
# nginx upstream


class Nginx:
    """nginx serving static files of known sizes from its own temp prefix.

    /b64, /b16k, /b1m: files of 64 B, 16 KiB, 1 MiB (deterministic content,
    see body_of). /health: 200 "ok"."""

    SIZES = {"/b64": 64, "/b16k": 16 * 1024, "/b1m": 1024 * 1024}

    @staticmethod
    def body_of(size):
        block = bytes(range(256))
        return (block * (size // 256 + 1))[:size]

    def __init__(self, http2=False, tls=None, locations=""):
        """http2: the port speaks h2c with prior knowledge only (nginx's
        `listen ... http2` without TLS), not HTTP/1.1. tls: (cert, key) file
        paths to serve HTTPS instead. locations: more nginx configuration for
        the server block."""
        if not os.access(NGINX_BIN, os.X_OK):
            raise unittest.SkipTest("nginx not installed")
        self.tmp = tempfile.mkdtemp(prefix="nginx-")
        os.chmod(self.tmp, 0o755)  # nginx workers run as an unprivileged user when started as root
        root = os.path.join(self.tmp, "html")
        os.mkdir(root)
        for path, size in self.SIZES.items():
            with open(root + path, "wb") as f:
                f.write(self.body_of(size))
        self.proc = None
        last_err = ""
        for _ in range(5):  # each try on a port of its own
            # Held while nginx runs, so that no other bind(0) takes the port
            # before nginx listens on it (nginx sets SO_REUSEADDR).
            self.reserved = ReservedPort()
            self.port = self.reserved.port
            conf = os.path.join(self.tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(f"""
worker_processes 1;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log {self.tmp}/access.log;
  client_body_temp_path {self.tmp}/client_body;
  proxy_temp_path {self.tmp}/proxy;
  fastcgi_temp_path {self.tmp}/fastcgi;
  uwsgi_temp_path {self.tmp}/uwsgi;
  scgi_temp_path {self.tmp}/scgi;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{self.port}{" ssl" if tls else ""}{" http2" if http2 else ""};
    {f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};" if tls else ""}
    root {root};
    default_type application/octet-stream;
    location = /health {{ return 200 "ok"; }}
    {locations}
  }}
}}
""")
            # Its own process group, so that cleanup reaches the workers too.
            self.proc = subprocess.Popen(
                [NGINX_BIN, "-p", self.tmp, "-c", conf, "-g", "daemon off;"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                start_new_session=True)
            try:
                wait_until(lambda: self.proc.poll() is not None or self._connectable(), 5,
                           what="nginx to listen")
            except TimeoutError:
                pass
            if self.proc.poll() is None and self._connectable():
                return
            last_err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
            self._kill()
            self.reserved.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        raise RuntimeError(f"nginx did not start: {last_err}")

    def _connectable(self):
        try:
            socket.create_connection((LOCALHOST, self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def _kill(self):
        if not self.proc:
            return
        # SIGTERM is nginx's fast shutdown: the master stops its workers. A
        # SIGKILL to the master alone would orphan them.
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def stop(self):
        self._kill()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        self.reserved.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# Python backend


class _Request:
    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # list of (name, value), names lower-case

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def path(self):
        return self.target.split("?", 1)[0]

    def query(self, key, default=None):
        if "?" not in self.target:
            return default
        for part in self.target.split("?", 1)[1].split("&"):
            k, _, v = part.partition("=")
            if k == key:
                return v
        return default


class _Reader:
    """Buffered reads from a socket for the backend's HTTP/1.1 parser."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("peer closed")
        self.buf += data

    def line(self, limit=1 << 16):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._fill()

    def chunks(self, n):
        """Yields exactly n bytes in pieces, without holding them all."""
        while n > 0:
            if not self.buf:
                data = self.sock.recv(min(n, 1 << 20))  # straight through, no buffer copy
                if not data:
                    raise ConnectionError("peer closed")
                n -= len(data)
                yield data
                continue
            take = min(n, len(self.buf))
            out = bytes(self.buf[:take])
            del self.buf[:take]
            n -= take
            yield out


class Backend:
    """A threaded HTTP/1.1 origin on 127.0.0.1, port 0. Behaviour by path:

      /echo            200, body = request body (Content-Length)
      /sha             200, JSON {"length": n, "sha256": hex} of the request body
      /discard         like /sha without hashing (for very large uploads)
      /slow?rate=R     like /discard, reading at most R MiB/s (default 128) through a
                       256 KiB receive buffer: an upstream slower than skiff
      /headers         200, JSON {"method", "target", "headers": [[k, v], ...]}
      /chunked?n=K     200, chunked response of K chunks "chunk-<i>\\n"
                       (&size=S: K chunks of Nginx.body_of(S) each, no pauses)
      /bigheader?n=N   200 with an N-byte x-big response header
      /delay?ms=M      sleeps M ms, then 200 "delayed\\n"
      /close           closes the connection without a response
      /garbage         answers with bytes that are not HTTP, then closes
      /stall?ms=M      head + 10 of 100 body bytes, sleeps M ms, then the rest
      /eof?n=N         200 with N bytes delimited by connection close
      /status?code=C   a bodiless response (204, 304) with no framing headers
      /early           200 "early\\n" before reading the request body, then closes
      /ambiguous       a response with both Content-Length and chunked
      /gzip-chunked    a response with Transfer-Encoding: gzip, chunked
      /last            200 "last\\n" with connection: close, then closes
      /stream?n=N      200, N bytes of 0xcd written 1 MiB at a time (not held in memory)
      /size?n=N        200, N bytes of Nginx.body_of(N)
      anything else    200 "backend:<path>\\n"

    Every response carries `x-backend: <name>`. `requests` records each request
    (method, target, headers); `connections` counts accepted connections."""

    def __init__(self, name="backend", port=0, idle_timeout=None):
        self.name = name
        self.idle_timeout = idle_timeout  # seconds before an idle connection is closed
        self.requests = []
        self.connections = 0
        self._socks = set()  # open connections, closed by stop()
        self._lock = threading.Lock()
        backend = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                with backend._lock:
                    backend.connections += 1
                    backend._socks.add(self.request)
                self.request.settimeout(30)
                try:
                    backend._serve(self.request)
                except (OSError, ConnectionError, ValueError):
                    pass
                finally:
                    with backend._lock:
                        backend._socks.discard(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 256

        self.server = Server((LOCALHOST, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def _serve(self, sock):
        reader = _Reader(sock)
        while True:
            try:
                if self.idle_timeout is not None and not reader.buf:
                    sock.settimeout(self.idle_timeout)
                line = reader.line()
                sock.settimeout(30)
            except (ConnectionError, socket.timeout):
                return  # idle keep-alive connection: close it, as servers do
            if not line:
                continue
            method, target, version = line.decode("latin-1").split(" ", 2)
            headers = []
            while True:
                h = reader.line()
                if not h:
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers.append((k.strip().lower(), v.strip()))
            req = _Request(method, target, version, headers)
            with self._lock:
                self.requests.append(req)
            if (req.header("expect") or "").lower() == "100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            body_iter = self._body(reader, req)
            keep = self._respond(sock, req, body_iter)
            if not keep:
                return
            for _ in body_iter:  # drain whatever the handler did not read
                pass
            conn_hdr = (req.header("connection") or "").lower()
            if not keep or conn_hdr == "close" or version == "HTTP/1.0":
                return

    def _body(self, reader, req):
        te = (req.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            while True:
                size = int(reader.line().split(b";")[0], 16)
                if size == 0:
                    while reader.line():
                        pass
                    return
                yield from reader.chunks(size)
                reader.line()
        cl = req.header("content-length")
        if cl:
            yield from reader.chunks(int(cl))

    def _send(self, sock, status, body=b"", headers=(), head=False):
        reason = {200: "OK", 404: "Not Found"}.get(status, "X")
        lines = [f"HTTP/1.1 {status} {reason}", f"x-backend: {self.name}",
                 f"content-length: {len(body)}", *headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else body))

    def _respond(self, sock, req, body_iter):
        path = req.path
        head = req.method == "HEAD"
        if path == "/echo":
            body = b"".join(body_iter)
            self._send(sock, 200, body, head=head)
        elif path in ("/sha", "/discard"):
            h = hashlib.sha256() if path == "/sha" else None
            n = 0
            for piece in body_iter:
                n += len(piece)
                if h:
                    h.update(piece)
            out = {"length": n}
            if h:
                out["sha256"] = h.hexdigest()
            self._send(sock, 200, json.dumps(out).encode(), ["content-type: application/json"])
        elif path == "/slow":
            # A small receive buffer, so that the kernel holds little of what
            # skiff sends and skiff's own write queue takes the backlog.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
            rate = float(req.query("rate", "128")) * (1 << 20)
            start = time.monotonic()
            n = 0
            for piece in body_iter:
                n += len(piece)
                ahead = n / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
            self._send(sock, 200, json.dumps({"length": n}).encode(),
                       ["content-type: application/json"])
        elif path == "/headers":
            for _ in body_iter:
                pass
            out = {"method": req.method, "target": req.target, "headers": req.headers}
            self._send(sock, 200, json.dumps(out).encode(), ["content-type: application/json"],
                       head=head)
        elif path == "/chunked":
            for _ in body_iter:
                pass
            n = int(req.query("n", "5"))
            size = int(req.query("size", "0"))  # 0: "chunk-<i>\n" pieces, 10 ms apart
            sock.sendall(f"HTTP/1.1 200 OK\r\nx-backend: {self.name}\r\n"
                         "transfer-encoding: chunked\r\n\r\n".encode())
            for i in range(n):
                piece = Nginx.body_of(size) if size else f"chunk-{i}\n".encode()
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                if not size:
                    time.sleep(0.01)
            sock.sendall(b"0\r\n\r\n")
        elif path == "/delay":
            for _ in body_iter:
                pass
            time.sleep(int(req.query("ms", "1000")) / 1000.0)
            self._send(sock, 200, b"delayed\n", head=head)
        elif path == "/close":
            return False
        elif path == "/garbage":
            for _ in body_iter:
                pass
            sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
            return False
        elif path == "/stall":
            # Head and 10 bytes of a 100-byte body, then silence.
            for _ in body_iter:
                pass
            sock.sendall(f"HTTP/1.1 200 OK\r\nx-backend: {self.name}\r\n"
                         "content-length: 100\r\n\r\n0123456789".encode())
            time.sleep(int(req.query("ms", "3000")) / 1000.0)
            sock.sendall(b"x" * 90)
        elif path == "/eof":
            # A body delimited by closing the connection (no length, not chunked).
            for _ in body_iter:
                pass
            n = int(req.query("n", "100000"))
            sock.sendall(f"HTTP/1.1 200 OK\r\nx-backend: {self.name}\r\n\r\n".encode())
            sock.sendall(Nginx.body_of(n))
            return False
        elif path == "/status":
            for _ in body_iter:
                pass
            code = int(req.query("code", "204"))
            sock.sendall(f"HTTP/1.1 {code} X\r\nx-backend: {self.name}\r\n\r\n".encode())
        elif path == "/early":
            # Answers before reading the request body, then closes the way
            # nginx does (lingering close): shut the write side, then read and
            # drop what the client still sends for a moment. Closing with
            # unread bytes would send an RST that can destroy the response
            # before the proxy has read it, which no server should do.
            self._send(sock, 200, b"early\n", ["connection: close"])
            try:
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(2)
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and sock.recv(65536):
                    pass
            except OSError:
                pass
            return False
        elif path == "/ambiguous":
            # Response smuggling: both framings at once.
            for _ in body_iter:
                pass
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"0\r\n\r\n")
            return False
        elif path == "/gzip-chunked":
            # A transfer coding other than chunked, which a proxy cannot
            # pass on as it is (it is hop-by-hop) nor remove.
            for _ in body_iter:
                pass
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                         b"5\r\nhello\r\n0\r\n\r\n")
            return False
        elif path == "/bigheader":
            for _ in body_iter:
                pass
            n = int(req.query("n", "81920"))
            self._send(sock, 200, b"big\n", [f"x-big: {'b' * n}"], head=head)
        elif path == "/last":
            for _ in body_iter:
                pass
            self._send(sock, 200, b"last\n", ["connection: close"], head=head)
            return False
        elif path == "/stream":
            for _ in body_iter:
                pass
            n = int(req.query("n", "0"))
            sock.sendall(f"HTTP/1.1 200 OK\r\nx-backend: {self.name}\r\n"
                         f"content-length: {n}\r\n\r\n".encode())
            block = b"\xcd" * (1 << 20)
            while n > 0:
                piece = block if n >= len(block) else block[:n]
                sock.sendall(piece)
                n -= len(piece)
        elif path == "/size":
            for _ in body_iter:
                pass
            self._send(sock, 200, Nginx.body_of(int(req.query("n", "0"))), head=head)
        else:
            for _ in body_iter:
                pass
            self._send(sock, 200, f"backend:{path}\n".encode(), head=head)
        return True

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:  # keep-alive connections would outlive the server
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# Clients


def http_request(port, method="GET", path="/", body=None, headers=None, timeout=10, host=LOCALHOST):
    """One request on a fresh connection: (status, headers dict lower-case, body bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


class ThreadedTcpServer:
    """A TCP server on 127.0.0.1, port 0, for a test's own upstream that
    speaks raw bytes: each accepted connection is counted in `connections`,
    passed to accepted(peer) on the accept thread, then to serve(conn) on a
    thread of its own. stop() closes the listening socket, which ends the
    accept thread. A subclass sets what serve() uses before calling this
    __init__, which starts accepting."""

    def __init__(self, backlog=64):
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOCALHOST, 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.accepted(peer)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def accepted(self, peer):
        """A connection from peer was accepted (before serve() runs)."""

    def serve(self, conn):
        raise NotImplementedError

    def stop(self):
        self.sock.close()


def read_to_eof(sock):
    """Everything sock receives until the peer's FIN (within the socket's
    timeout)."""
    data = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(data)
        data += chunk


def raw_exchange(port, data, timeout=5, until_close=True, expect_bytes=None):
    """Sends raw bytes and reads the reply: until the peer closes, until
    `expect_bytes` bytes arrived, or until `timeout`. Returns (bytes, closed)."""
    s = socket.create_connection((LOCALHOST, port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy may answer and close before reading everything
        out = bytearray()
        deadline = time.monotonic() + timeout
        closed = False
        while time.monotonic() < deadline:
            if expect_bytes is not None and len(out) >= expect_bytes and not until_close:
                break
            r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
        return bytes(out), closed
    finally:
        s.close()


def parse_responses(data):
    """Splits raw HTTP/1.1 bytes into [(status, headers dict, body)] (Content-Length
    or chunked bodies; HEAD is not handled)."""
    out = []
    rest = data
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"incomplete response head: {head[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if 100 <= status < 200:
            continue
        if "chunked" in headers.get("transfer-encoding", ""):
            body = bytearray()
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    _, _, rest = rest.partition(b"\r\n")
                    break
                body += rest[:size]
                rest = rest[size + 2:]
            body = bytes(body)
        else:
            n = int(headers.get("content-length", "0"))
            body, rest = rest[:n], rest[n:]
        out.append((status, headers, body))
    return out


def curl(*args, timeout=60, input_bytes=None):
    """Runs curl -sS; returns (rc, stdout bytes, stderr str). `input_bytes` goes
    to curl's stdin (use "@-" as the data argument)."""
    if not shutil.which("curl"):
        raise unittest.SkipTest("curl not installed")
    p = subprocess.run(["curl", "-sS", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       input=input_bytes if input_bytes is not None else b"", timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def source_path(*parts):
    return os.path.join(SOURCE_DIR, *parts)


class SkiffTestCase(unittest.TestCase):
    """Starts processes that are cleaned up with the test (or the class, from
    setUpClass)."""

    @classmethod
    def class_skiff(cls, config, **kw):
        s = Skiff(config, **kw)
        cls.addClassCleanup(s.stop)
        return s

    @classmethod
    def class_backend(cls, name="backend"):
        b = Backend(name)
        cls.addClassCleanup(b.stop)
        return b

    @classmethod
    def class_nginx(cls):
        n = Nginx()
        cls.addClassCleanup(n.stop)
        return n

    def start_skiff(self, config, **kw):
        s = Skiff(config, **kw)
        self.addCleanup(s.stop)
        return s

    def start_backend(self, name="backend"):
        b = Backend(name)
        self.addCleanup(b.stop)
        return b

    def start_nginx(self):
        n = Nginx()
        self.addCleanup(n.stop)
        return n


BACKEND_PATHS = ("/echo", "/sha", "/discard", "/slow", "/headers", "/chunked", "/delay", "/close", "/size",
                 "/last", "/stream", "/garbage",
                 "/stall", "/eof", "/status", "/early", "/ambiguous",
                 "/gzip-chunked", "/bigheader")


def backend_routes(cluster_name, timeout=None):
    """Routes for each of Backend's paths to `cluster_name`."""
    return [route(p, cluster=cluster_name, timeout=timeout) for p in BACKEND_PATHS]


class Certificates:
    """A throwaway CA and leaf certificates made with the openssl CLI (P-256,
    valid two days) in a temp dir. leaf(name) returns (cert, key) paths for a
    certificate with SAN DNS:name (and IP:127.0.0.1), or the subjectAltName
    value `san` ("URI:spiffe://...")."""

    def __init__(self):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("openssl not installed")
        self.dir = tempfile.mkdtemp(prefix="skiff-certs-")
        os.chmod(self.dir, 0o755)
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.ca = os.path.join(self.dir, "ca.pem")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                      "-subj", "/CN=skiff test CA")

    def _openssl(self, *args):
        subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=30)

    def leaf(self, name, san=None):
        key = os.path.join(self.dir, f"{name}.key")
        csr = os.path.join(self.dir, f"{name}.csr")
        cert = os.path.join(self.dir, f"{name}.pem")
        ext = os.path.join(self.dir, f"{name}.ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName={san or f'DNS:{name},IP:127.0.0.1'}\n")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                      "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
        os.chmod(key, 0o644)  # nginx workers read it as an unprivileged user
        return cert, key

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def downstream_tls(cert, key, alpn=None):
    ctx = {"tls_certificates": [{"certificate_chain": {"filename": cert},
                                 "private_key": {"filename": key}}]}
    if alpn:
        ctx["alpn_protocols"] = list(alpn)
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": ctx}}


def upstream_tls(ca, sni):
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": sni,
        "common_tls_context": {"validation_context": {"trusted_ca": {"filename": ca}}}}}
