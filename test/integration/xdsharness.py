"""Harness for skiff's xDS tests: the test control plane and Envoy v3 resources.

ControlPlane runs `skiff_control_plane` (test/control_plane/, Debian's libgrpc++)
as a subprocess and talks to it over stdin/stdout, one JSON object per line:
commands go in, events come out and are collected by a background thread.
The builders return Envoy v3 resources as JSON dicts with their "@type", ready
for ControlPlane.set().

    cp = ControlPlane().start()
    cp.set(CLUSTER, "1", [cluster("backend")])
    cp.set(ENDPOINT, "1", [cla("backend", [("127.0.0.1", backend_port)])])
    cp.set(LISTENER, "1", [listener("ingress", 0, "routes")])
    cp.set(ROUTE, "1", [route_config("routes", "backend")])
    # ... start skiff with an ADS bootstrap pointing at 127.0.0.1:cp.port ...
    ack = cp.wait_event(lambda e: e["event"] == "request"
                        and e["request"].get("type_url") == LISTENER
                        and e["request"].get("version_info") == "1")
    cp.stop()

Requests in events are proto3 JSON with the .proto field names (version_info,
response_nonce, error_detail, resource_names_subscribe, ...). Every event has
"t", when the control plane wrote it, in time.monotonic() seconds.

Only the Python standard library is used.
"""

import json
import os
import subprocess
import tempfile
import threading
import time

SOURCE_DIR = os.environ.get(
    "SKIFF_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
)
CONTROL_PLANE_BIN = os.environ.get("SKIFF_CONTROL_PLANE_BIN", "")
LOCALHOST = "127.0.0.1"

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def control_plane_bin():
    path = CONTROL_PLANE_BIN or os.path.join(SOURCE_DIR, "build", "test", "control_plane",
                                             "skiff_control_plane")
    if not os.access(path, os.X_OK):
        # A failure, not a skip: a suite that skips everything would pass.
        raise RuntimeError(f"control plane binary not found at {path!r} "
                           "(build skiff_control_plane, or set SKIFF_CONTROL_PLANE_BIN)")
    return path


# --------------------------------------------------------------------------
# Resource builders (Envoy v3 JSON with "@type").


def ads_config_source():
    return {"ads": {}, "resource_api_version": "V3"}


def ads_bootstrap(cp_port, delta=False, initial_fetch_timeout="5s", transport_socket=None,
                  node_cluster="test"):
    """A bootstrap (as a dict) with nothing but the ADS cluster, on the
    control plane at 127.0.0.1:cp_port: everything else comes over xDS.
    transport_socket: the ADS cluster's (TLS), if any."""
    xds_cluster = {
        "name": "xds_cluster",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": HTTP_OPTIONS_TYPE,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {"cluster_name": "xds_cluster", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": LOCALHOST,
                                                         "port_value": cp_port}}}}]}]},
    }
    if transport_socket:
        xds_cluster["transport_socket"] = transport_socket
    source = {"ads": {}, "resource_api_version": "V3",
              "initial_fetch_timeout": initial_fetch_timeout}
    return {
        "node": {"id": "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local", "cluster": node_cluster},
        "admin": {"address": {"socket_address": {"address": LOCALHOST, "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}],
            },
            "cds_config": dict(source),
            "lds_config": dict(source),
        },
        "static_resources": {"clusters": [xds_cluster]},
    }


def listener(name, port, route_config_name, address=LOCALHOST, stat_prefix=None):
    """A Listener whose HttpConnectionManager takes its routes from RDS over ADS."""
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": stat_prefix or name,
        "rds": {"route_config_name": route_config_name, "config_source": ads_config_source()},
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": ROUTER_TYPE}}],
    }
    return {
        "@type": LISTENER,
        "name": name,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}],
    }


def route(cluster=None, prefix="/", direct=None, status=200):
    """One route: to `cluster`, or a direct_response with body `direct`."""
    r = {"match": {"prefix": prefix}}
    if cluster is not None:
        r["route"] = {"cluster": cluster}
    else:
        r["direct_response"] = {"status": status, "body": {"inline_string": direct or ""}}
    return r


def route_config(name, cluster=None, domains=("*",), prefix="/", routes=None):
    """A RouteConfiguration with one virtual host: one route of `prefix` to
    `cluster`, or the given list of routes (dicts, e.g. from route())."""
    if routes is None:
        routes = [route(cluster, prefix)]
    return {
        "@type": ROUTE,
        "name": name,
        "virtual_hosts": [{"name": f"{name}_vh", "domains": list(domains), "routes": list(routes)}],
    }


def _lb_endpoints(endpoints):
    return [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": a, "port_value": p}}}}
        for a, p in endpoints
    ]}] if endpoints else []


def cluster(name, eds=True, http2=False, endpoints=None, connect_timeout="1s"):
    """An EDS cluster fed over ADS, or (eds=False) a STATIC one with `endpoints`
    [(address, port), ...]. http2: the upstream speaks HTTP/2."""
    c = {"@type": CLUSTER, "name": name, "connect_timeout": connect_timeout}
    if eds:
        c["type"] = "EDS"
        c["eds_cluster_config"] = {"eds_config": ads_config_source()}
    else:
        c["type"] = "STATIC"
        c["load_assignment"] = {"cluster_name": name, "endpoints": _lb_endpoints(endpoints)}
    if http2:
        c["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": HTTP_OPTIONS_TYPE,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return c


def cla(cluster_name, endpoints):
    """A ClusterLoadAssignment: endpoints is [(address, port), ...]."""
    return {"@type": ENDPOINT, "cluster_name": cluster_name, "endpoints": _lb_endpoints(endpoints)}


# --------------------------------------------------------------------------
# The control plane process.


class ControlPlane:
    """skiff_control_plane as a subprocess. Use as a context manager or call stop().

    Events (dicts) are appended to a list as they arrive. wait_event(pred)
    returns the first event, from index `since` on (default: the first ever),
    that pred accepts; mark() gives the index to pass as `since` so that only
    later events count."""

    def __init__(self, binary=None, tls_args=()):
        self.binary = binary or control_plane_bin()
        self.tls_args = list(tls_args)  # --tls-cert F --tls-key F [--tls-client-ca F]
        self.tmp = tempfile.mkdtemp(prefix="control-plane-")
        self.log_path = os.path.join(self.tmp, "control_plane.log")
        self.port = None
        self.proc = None
        self._events = []
        self._cond = threading.Condition()
        self._reader = None

    # ---- life

    def start(self, port=0, timeout=10):
        """Starts the process on 127.0.0.1:port (0 picks one) and waits until it
        listens. Returns self."""
        deadline = time.monotonic() + timeout
        while True:
            since = self.mark()
            self._spawn(port)
            event = self.wait_event(lambda e: e["event"] in ("listening", "error"),
                                    timeout=max(0.1, deadline - time.monotonic()), since=since)
            if event["event"] == "listening":
                self.port = event["port"]
                return self
            # The port may still be held for a moment after a restart.
            self._reap(timeout=2)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"control plane could not listen: {event}\n{self.log_tail()}")
            time.sleep(0.1)

    def _spawn(self, port):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "--port", str(port), *self.tls_args],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log)
        log.close()
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()

    def _read(self, proc):
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line.decode(errors="replace")}
            with self._cond:
                self._events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._events.append({"event": "process_exited"})
            self._cond.notify_all()

    def stop(self, timeout=5):
        """Asks the process to shut down (its streams end with UNAVAILABLE) and
        waits for it; kills it if it does not go."""
        if self.proc is None:
            return
        try:
            self._send({"op": "shutdown"})
        except (BrokenPipeError, OSError):
            pass
        self._reap(timeout)

    def _reap(self, timeout):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdin:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if self._reader:
            self._reader.join(timeout=5)
        if proc.stdout:
            proc.stdout.close()

    def kill(self):
        """Ends the process at once (SIGKILL): streams break without a status."""
        if self.proc is not None:
            self.proc.kill()
            self._reap(timeout=5)

    def restart(self, timeout=10):
        """Stops and starts again on the same port."""
        port = self.port
        self.stop()
        return self.start(port=port, timeout=timeout)

    def __enter__(self):
        return self if self.proc else self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- commands

    def _send(self, command):
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"control plane is not running\n{self.log_tail()}")
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()

    def set(self, type_url, version, resources):
        """Replaces every resource of type_url and pushes them to open streams."""
        self._send({"op": "set", "type_url": type_url, "version": str(version),
                    "resources": list(resources)})

    def update(self, type_url, version, resources, removed=()):
        """Adds or replaces `resources` and removes the names in `removed`,
        leaving the type's other resources (and their versions) as they were:
        delta streams get only these, state of the world ones the whole set."""
        self._send({"op": "update", "type_url": type_url, "version": str(version),
                    "resources": list(resources), "removed": list(removed)})

    def set_garbage(self, type_url, version):
        """Pushes one resource of type_url whose bytes do not decode."""
        self._send({"op": "set_garbage", "type_url": type_url, "version": str(version)})

    def disconnect(self):
        """Ends every open stream with status UNAVAILABLE (the process stays)."""
        self._send({"op": "disconnect"})

    # ---- events

    def mark(self):
        with self._cond:
            return len(self._events)

    def events(self, since=0):
        with self._cond:
            return list(self._events[since:])

    def wait_event(self, predicate, timeout=10, since=0):
        """The first event from index `since` on that predicate accepts; raises
        TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        index = since
        with self._cond:
            while True:
                while index < len(self._events):
                    event = self._events[index]
                    index += 1
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for a control plane "
                                       f"event; last events: {self._events[-5:]}")
                self._cond.wait(left)

    def requests(self, type_url=None, since=0):
        """The (Delta)DiscoveryRequests received, as dicts, oldest first."""
        return [e["request"] for e in self.events(since)
                if e["event"] == "request" and
                (type_url is None or e["request"].get("type_url") == type_url)]

    def responses(self, type_url=None, since=0):
        """The response events (type_url, version, nonce, names) sent, oldest first."""
        return [e for e in self.events(since)
                if e["event"] == "response" and (type_url is None or e["type_url"] == type_url)]

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])
