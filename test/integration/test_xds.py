"""xDS end to end: skiff takes listeners, routes, clusters and endpoints over
ADS (state of the world and delta) from skiff_control_plane, a control plane
built on Debian's libgrpc++, and swaps them under load without failing a
request. Backends are skiffharness's Python HTTP/1.1 servers, which name
themselves in an x-backend header."""

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import skiffharness as h
import xdsharness as x


SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def ads_bootstrap(cp_port, **kw):
    """xdsharness.ads_bootstrap() as YAML: the ADS cluster only."""
    return h.to_yaml(x.ads_bootstrap(cp_port, **kw)) + "\n"


def get(port, path="/", timeout=5):
    return h.http_request(port, path=path, timeout=timeout)


class Wrk:
    """wrk in the background for `seconds`; result() waits and parses it."""

    def __init__(self, port, seconds, connections=16, path="/"):
        self.proc = subprocess.Popen(
            ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s",
             f"http://{h.LOCALHOST}:{port}{path}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self, timeout=120):
        out, _ = self.proc.communicate(timeout=timeout)
        requests = 0
        for line in out.splitlines():
            if "requests in" in line:
                requests = int(line.split()[0])
        non2xx = 0
        for line in out.splitlines():
            if "Non-2xx or 3xx responses" in line:
                non2xx = int(line.split(":")[1])
        errors = ""
        for line in out.splitlines():
            if "Socket errors" in line:
                errors = line.strip()
        return requests, non2xx, errors, out


class XdsTestCase(unittest.TestCase):
    delta = False

    def setUp(self):
        if not x.CONTROL_PLANE_BIN and not shutil.which("skiff_control_plane"):
            self.skipTest("SKIFF_CONTROL_PLANE_BIN is not set")
        # The control plane's port stays reserved for the whole test: one that
        # kills and restarts it must find the port free, whatever tests running
        # beside it bind meanwhile.
        reserved = h.ReservedPort()
        self.addCleanup(reserved.close)
        self.cp = x.ControlPlane(tls_args=self.control_plane_tls_args()).start(port=reserved.port)
        self.addCleanup(self.cp.stop)
        self.backend_a = h.Backend("a")
        self.addCleanup(self.backend_a.stop)
        self.backend_b = h.Backend("b")
        self.addCleanup(self.backend_b.stop)

    def control_plane_tls_args(self):
        return ()

    def push_initial(self, route_to="a", version="1"):
        self.cp.set(x.CLUSTER, version, [x.cluster("a"), x.cluster("b")])
        self.cp.set(x.ENDPOINT, version, [x.cla("a", [(h.LOCALHOST, self.backend_a.port)]),
                                          x.cla("b", [(h.LOCALHOST, self.backend_b.port)])])
        self.cp.set(x.LISTENER, version, [x.listener("ingress", 0, "routes")])
        self.cp.set(x.ROUTE, version, [x.route_config("routes", cluster=route_to)])

    def start_skiff(self, config=None, **kw):
        skiff = h.Skiff(config or ads_bootstrap(self.cp.port, delta=self.delta, **kw))
        self.addCleanup(skiff.stop)
        return skiff

    def wait_ack(self, type_url, version, since=0, timeout=10):
        """The request that ACKs `version` of type_url."""
        def acked(e):
            if e["event"] != "request" or e["request"].get("type_url") != type_url:
                return False
            r = e["request"]
            if "error_detail" in r:
                return False
            if self.delta:
                return bool(r.get("response_nonce"))
            return r.get("version_info") == version
        return self.cp.wait_event(acked, timeout=timeout, since=since)["request"]

    def acked_within(self, type_url, version, since, seconds):
        """Whether `version` of type_url is ACKed within `seconds`."""
        try:
            self.wait_ack(type_url, version, since=since, timeout=seconds)
            return True
        except TimeoutError:
            return False

    def wait_nack(self, type_url, since=0, timeout=10):
        return self.cp.wait_event(
            lambda e: e["event"] == "request" and e["request"].get("type_url") == type_url
            and "error_detail" in e["request"], timeout=timeout, since=since)["request"]


class StateOfTheWorld(XdsTestCase):
    def test_initial_config_is_served_and_acked(self):
        self.push_initial()
        skiff = self.start_skiff()
        status, headers, body = get(skiff.port("ingress"))
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("x-backend"), "a")
        for type_url in (x.CLUSTER, x.ENDPOINT, x.LISTENER, x.ROUTE):
            ack = self.wait_ack(type_url, "1")
            self.assertTrue(ack.get("response_nonce"), ack)
        first = self.cp.requests()[0]
        self.assertEqual(first["node"]["id"], "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local")
        self.assertEqual(first["node"]["user_agent_name"], "skiff")
        stats = skiff.stats()
        self.assertGreaterEqual(stats.get("cluster_manager.cds.update_success", 0), 1)
        self.assertGreaterEqual(stats.get("listener_manager.lds.update_success", 0), 1)
        self.assertGreaterEqual(stats.get("http.ingress.rds.routes.update_success", 0), 1)
        self.assertGreaterEqual(stats.get("cluster.a.update_success", 0), 1)
        self.assertEqual(stats.get("control_plane.connected_state"), 1)
        self.assertEqual(stats.get("cluster_manager.warming_clusters"), 0)
        _, dump = skiff.admin_get("/config_dump")
        for section in ("ClustersConfigDump", "ListenersConfigDump", "RoutesConfigDump",
                        "EndpointsConfigDump", "dynamic_active_clusters", "last_updated"):
            self.assertIn(section, dump)

    def test_bad_resource_is_nacked_by_path_and_old_config_serves(self):
        self.push_initial()
        skiff = self.start_skiff()
        self.wait_ack(x.CLUSTER, "1")
        since = self.cp.mark()
        bad = x.cluster("c")
        bad["lb_policy"] = "LOAD_BALANCING_POLICY_CONFIG"
        # d is good: Envoy takes the good clusters of a refused response, and so does skiff.
        good = x.cluster("d", eds=False, endpoints=[(h.LOCALHOST, self.backend_b.port)])
        self.cp.set(x.CLUSTER, "2", [x.cluster("a"), x.cluster("b"), bad, good])
        nack = self.wait_nack(x.CLUSTER, since=since)
        self.assertIn("clusters[c].lb_policy: LOAD_BALANCING_POLICY_CONFIG is not supported yet",
                      nack["error_detail"]["message"])
        if not self.delta:
            self.assertEqual(nack["version_info"], "1")
        self.assertEqual(get(skiff.port("ingress"))[0], 200)
        h.wait_until(lambda: skiff.stat("cluster_manager.cds.update_rejected") == 1, 5,
                     what="update_rejected counted")
        since = self.cp.mark()
        self.cp.set(x.ROUTE, "2", [x.route_config("routes", cluster="d")])
        self.wait_ack(x.ROUTE, "2", since=since)
        h.wait_until(lambda: get(skiff.port("ingress"))[1].get("x-backend") == "b", 5,
                     what="the route to d, the good cluster of the refused response")
        _, dump = skiff.admin_get("/config_dump")
        self.assertIn('"name":"d"', dump.replace(" ", ""))
        self.assertNotIn("LOAD_BALANCING_POLICY_CONFIG", dump)
        since = self.cp.mark()
        self.cp.set(x.ROUTE, "3", [x.route_config("routes", cluster="a")])
        self.wait_ack(x.ROUTE, "3", since=since)
        # Garbage bytes are refused too, and nothing changes.
        since = self.cp.mark()
        self.cp.set_garbage(x.ROUTE, "4")
        self.wait_nack(x.ROUTE, since=since)
        self.assertEqual(get(skiff.port("ingress"))[1].get("x-backend"), "a")

    def test_routes_move_under_load_without_a_failed_request(self):
        if not shutil.which("wrk"):
            self.skipTest("wrk not installed")
        self.push_initial()
        skiff = self.start_skiff()
        port = skiff.port("ingress")
        self.wait_ack(x.ROUTE, "1")
        load = Wrk(port, seconds=6)
        for i in range(100):
            version = str(i + 2)
            since = self.cp.mark()
            self.cp.set(x.ROUTE, version,
                        [x.route_config("routes", cluster="b" if i % 2 == 0 else "a")])
            self.wait_ack(x.ROUTE, version, since=since)
        requests, non2xx, errors, out = load.result()
        self.assertGreater(requests, 0, out)
        self.assertEqual(non2xx, 0, out)
        self.assertEqual(errors, "", out)
        stats = skiff.stats()
        self.assertGreater(stats.get("cluster.a.upstream_rq_total", 0), 0)
        self.assertGreater(stats.get("cluster.b.upstream_rq_total", 0), 0)

    def test_endpoints_change_under_load_without_a_failed_request(self):
        if not shutil.which("wrk"):
            self.skipTest("wrk not installed")
        self.push_initial()
        skiff = self.start_skiff()
        port = skiff.port("ingress")
        self.wait_ack(x.ENDPOINT, "1")
        a = (h.LOCALHOST, self.backend_a.port)
        b = (h.LOCALHOST, self.backend_b.port)
        sets = [[b], [a, b], [a]]
        load = Wrk(port, seconds=6)
        for i in range(100):
            version = str(i + 2)
            since = self.cp.mark()
            self.cp.set(x.ENDPOINT, version, [x.cla("a", sets[i % 3]),
                                              x.cla("b", [b])])
            self.wait_ack(x.ENDPOINT, version, since=since)
        requests, non2xx, errors, out = load.result()
        self.assertGreater(requests, 0, out)
        self.assertEqual(non2xx, 0, out)
        self.assertEqual(errors, "", out)

    def test_control_plane_restart_keeps_serving_and_resubscribes(self):
        self.push_initial()
        skiff = self.start_skiff()
        port = skiff.port("ingress")
        self.wait_ack(x.ROUTE, "1")
        self.cp.kill()
        port_cp = self.cp.port
        h.wait_until(lambda: skiff.stat("control_plane.connected_state") == 0, 10,
                     what="the ADS stream noticed as lost")
        for _ in range(20):
            self.assertEqual(get(port)[0], 200)
        since = self.cp.mark()
        self.cp.start(port=port_cp)
        # The restarted control plane knows nothing until told; skiff asks again.
        self.cp.wait_event(lambda e: e["event"] == "stream_open", timeout=30, since=since)
        for type_url in (x.CLUSTER, x.LISTENER):
            self.cp.wait_event(lambda e, t=type_url: e["event"] == "request" and
                               e["request"].get("type_url") == t, timeout=10, since=since)
        self.assertEqual(get(port)[0], 200)
        # A control plane that restarts with the same resources sends them
        # again; one with new ones (here) changes what skiff serves.
        self.push_initial(route_to="b", version="2")
        self.wait_ack(x.ROUTE, "2", since=since)
        h.wait_until(lambda: get(port)[1].get("x-backend") == "b", 5,
                     what="the new routes served after the restart")
        self.assertEqual(skiff.stat("control_plane.connected_state"), 1)

    def test_strict_dns_cluster_over_cds(self):
        # A name resolved by skiff (localhost), re-resolved when the cluster
        # changes, and no longer listed once removed.
        self.push_initial()
        skiff = self.start_skiff()
        self.wait_ack(x.ROUTE, "1")

        def dns_cluster(port):
            c = x.cluster("dns", eds=False, endpoints=[("localhost", port)])
            c["type"] = "STRICT_DNS"
            c["dns_lookup_family"] = "V4_ONLY"
            return c

        since = self.cp.mark()
        self.cp.set(x.CLUSTER, "2", [x.cluster("a"), x.cluster("b"),
                                     dns_cluster(self.backend_b.port)])
        self.wait_ack(x.CLUSTER, "2", since=since)
        self.cp.set(x.ROUTE, "2", [x.route_config("routes", cluster="dns")])
        h.wait_until(lambda: get(skiff.port("ingress"))[1].get("x-backend") == "b", 5,
                     what="the STRICT_DNS cluster serving")
        since = self.cp.mark()
        self.cp.set(x.CLUSTER, "3", [x.cluster("a"), x.cluster("b"),
                                     dns_cluster(self.backend_a.port)])
        self.wait_ack(x.CLUSTER, "3", since=since)
        h.wait_until(lambda: get(skiff.port("ingress"))[1].get("x-backend") == "a", 5,
                     what="the changed STRICT_DNS cluster resolved again")
        _, clusters = skiff.admin_get("/clusters")
        self.assertIn(f"dns::127.0.0.1:{self.backend_a.port}::", clusters)
        since = self.cp.mark()
        self.cp.set(x.ROUTE, "3", [x.route_config("routes", cluster="a")])
        self.cp.set(x.CLUSTER, "4", [x.cluster("a"), x.cluster("b")])
        self.wait_ack(x.CLUSTER, "4", since=since)
        h.wait_until(lambda: "dns::" not in skiff.admin_get("/clusters")[1], 5,
                     what="the removed cluster gone from /clusters")
        self.assertEqual(get(skiff.port("ingress"))[1].get("x-backend"), "a")

    def start_skiff_with_dns_gate(self, **kw):
        """skiff with test/dns_gate preloaded: gate.skiff.test resolves (as
        localhost) only once the returned function is called, fail.skiff.test
        never does."""
        tmp = tempfile.mkdtemp(prefix="dns-gate-")
        self.addCleanup(shutil.rmtree, tmp, True)
        gate = os.path.join(tmp, "open")

        def open_gate():
            with open(gate, "w"):
                pass
        skiff = self.start_skiff_with_gate_file(gate, **kw)
        return skiff, open_gate

    def start_skiff_with_gate_file(self, gate, **kw):
        """The same, gate.skiff.test held until the file `gate` exists."""
        lib = os.environ.get("SKIFF_DNS_GATE_LIB")
        if not lib or os.environ.get("SKIFF_SANITIZED", "").lower() in ("1", "on", "true"):
            # The sanitizers' own getaddrinfo would come before the preloaded one.
            self.skipTest("SKIFF_DNS_GATE_LIB is not set, or skiff is sanitized")
        saved = {k: os.environ.get(k) for k in ("LD_PRELOAD", "SKIFF_TEST_DNS_GATE")}
        os.environ["LD_PRELOAD"] = lib
        os.environ["SKIFF_TEST_DNS_GATE"] = gate

        def open_gate():
            with open(gate, "w"):
                pass
        try:
            skiff = self.start_skiff(**kw)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.addCleanup(open_gate)  # Before skiff stops: no lookup left blocked.
        return skiff

    def test_strict_dns_cluster_warms_until_its_first_resolution(self):
        # Envoy: a cluster from CDS is warming until it is initialized, for
        # STRICT_DNS at the end of its first DNS round (failed or not); until
        # then the version before it serves, and (once the server is
        # initialized) the CDS ACK waits for it, as Envoy's does.
        self.push_initial()
        skiff, open_gate = self.start_skiff_with_dns_gate()
        self.wait_ack(x.ROUTE, "1")
        port = skiff.port("ingress")

        def dns_cluster(name, host, port):
            c = x.cluster(name, eds=False, endpoints=[(host, port)])
            c["type"] = "STRICT_DNS"
            c["dns_lookup_family"] = "V4_ONLY"
            return c

        since = self.cp.mark()
        self.cp.set(x.CLUSTER, "2", [x.cluster("a"), x.cluster("b"),
                                     dns_cluster("dns", "localhost", self.backend_a.port)])
        self.wait_ack(x.CLUSTER, "2", since=since)
        self.cp.set(x.ROUTE, "2", [x.route_config("routes", cluster="dns")])
        h.wait_until(lambda: get(port)[1].get("x-backend") == "a", 5,
                     what="the STRICT_DNS cluster serving")

        # A new version whose name is held in the resolver: it warms, and
        # the one before keeps serving every request.
        since = self.cp.mark()
        self.cp.set(x.CLUSTER, "3", [x.cluster("a"), x.cluster("b"),
                                     dns_cluster("dns", "gate.skiff.test", self.backend_b.port)])
        h.wait_until(lambda: skiff.stat("cluster_manager.warming_clusters") == 1, 5,
                     what="the changed cluster warming")
        for _ in range(10):
            status, headers, _ = get(port)
            self.assertEqual((status, headers.get("x-backend")), (200, "a"))
        _, dump = skiff.admin_get("/config_dump")
        clusters = next(c for c in json.loads(dump)["configs"]
                        if c["@type"].endswith("ClustersConfigDump"))
        self.assertEqual([c["cluster"]["name"] for c in clusters["dynamic_warming_clusters"]],
                         ["dns"])
        self.assertIn(f"dns::127.0.0.1:{self.backend_a.port}::", skiff.admin_get("/clusters")[1])
        self.assertFalse(self.acked_within(x.CLUSTER, "3", since, 0.5),
                         "CDS ACKed while a cluster warms")

        # Resolved: it serves, with its hosts from the first request on,
        # and the CDS ACK goes out.
        open_gate()
        self.wait_ack(x.CLUSTER, "3", since=since)
        h.wait_until(lambda: skiff.stat("cluster_manager.warming_clusters") == 0, 5,
                     what="the cluster warm once resolved")
        for _ in range(10):
            status, headers, _ = get(port)
            self.assertEqual((status, headers.get("x-backend")), (200, "b"))

        # A name that does not resolve ends the warming too: the new cluster
        # starts with no hosts (503 UH), as Envoy's does.
        since = self.cp.mark()
        self.cp.set(x.CLUSTER, "4", [x.cluster("a"), x.cluster("b"),
                                     dns_cluster("dns", "gate.skiff.test", self.backend_b.port),
                                     dns_cluster("nowhere", "fail.skiff.test", 1)])
        self.wait_ack(x.CLUSTER, "4", since=since)
        h.wait_until(lambda: skiff.stat("cluster_manager.warming_clusters") == 0, 5,
                     what="the unresolvable cluster warm after its failed round")
        self.assertIn("nowhere::observability_name::nowhere", skiff.admin_get("/clusters")[1])
        self.cp.set(x.ROUTE, "3", [x.route_config("routes", cluster="nowhere")])
        h.wait_until(lambda: get(port)[0] == 503, 5, what="no hosts: 503")

    def test_listeners_wait_for_the_clusters_first_dns_round_at_startup(self):
        # Envoy initializes the cluster manager before anything else: LDS is
        # asked for once the clusters of the first CDS response are
        # initialized (for STRICT_DNS, its first DNS round ended), and
        # initial_fetch_timeout, disarmed by the CDS response, does not end
        # that wait. Until then the server is not ready.
        dns = x.cluster("dns", eds=False, endpoints=[("gate.skiff.test", self.backend_b.port)])
        dns["type"] = "STRICT_DNS"
        dns["dns_lookup_family"] = "V4_ONLY"
        self.push_initial()
        self.cp.set(x.CLUSTER, "1", [x.cluster("a"), x.cluster("b"), dns])
        self.cp.set(x.ROUTE, "1", [x.route_config("routes", cluster="dns")])
        # A static listener opens only then too (Envoy: no listener accepts
        # before initialization ends). Its port stays reserved until the end:
        # skiff binds it seconds after it was picked, and a port let go meanwhile
        # may be taken by a test running beside this one.
        reserved = h.ReservedPort()
        self.addCleanup(reserved.close)
        static_port = reserved.port
        static = x.listener("static", static_port, "unused")
        del static["@type"]
        hcm = static["filter_chains"][0]["filters"][0]["typed_config"]
        del hcm["rds"]
        hcm["route_config"] = x.route_config("inline", routes=[x.route(direct="static")])
        del hcm["route_config"]["@type"]
        bootstrap = x.ads_bootstrap(self.cp.port, delta=self.delta, initial_fetch_timeout="1s")
        bootstrap["static_resources"]["listeners"] = [static]
        seen = {}

        def static_listener_open():
            try:
                socket.create_connection((h.LOCALHOST, static_port), timeout=1).close()
                return True
            except OSError:
                return False

        def hold_then_open():
            try:
                self.wait_ack(x.CLUSTER, "1")
                time.sleep(2.0)  # Twice initial_fetch_timeout.
                seen["lds_before"] = any(
                    e["event"] == "request" and e["request"].get("type_url") == x.LISTENER
                    for e in self.cp.events())
                seen["static_open_before"] = static_listener_open()
                seen["mark"] = self.cp.mark()
            finally:
                opener = seen.get("open")
                if opener:
                    opener()
        # skiff is not ready until the gate opens, so the gate is this
        # test's own file, opened from a thread while skiff starts.
        gate_dir = tempfile.mkdtemp(prefix="dns-gate-")
        self.addCleanup(shutil.rmtree, gate_dir, True)
        gate = os.path.join(gate_dir, "open")

        def open_gate():
            with open(gate, "w"):
                pass
        seen["open"] = open_gate
        thread = threading.Thread(target=hold_then_open, daemon=True)
        thread.start()
        skiff = self.start_skiff_with_gate_file(gate, config=h.to_yaml(bootstrap) + "\n")
        thread.join(10)
        self.assertFalse(seen["lds_before"], "LDS asked for before the cluster warmed")
        self.assertFalse(seen["static_open_before"], "a listener open before initialization")
        status, _, body = get(static_port)
        self.assertEqual((status, body), (200, b"static"))
        self.wait_ack(x.LISTENER, "1", since=seen["mark"])
        self.assertEqual(skiff.admin_get("/ready")[0], 200)
        status, headers, _ = get(skiff.port("ingress"))
        self.assertEqual((status, headers.get("x-backend")), (200, "b"))

    def test_route_to_a_new_cluster_still_warming_gets_no_cluster_found(self):
        # Envoy: a cluster is not known to the workers until it has warmed,
        # so a route naming a brand-new one that still warms gets 503 with
        # response flag NC (cluster_not_found), and the first request after
        # it warms goes to its hosts.
        self.push_initial()
        skiff, open_gate = self.start_skiff_with_dns_gate()
        self.wait_ack(x.ROUTE, "1")
        port = skiff.port("ingress")
        fresh = x.cluster("fresh", eds=False, endpoints=[("gate.skiff.test", self.backend_b.port)])
        fresh["type"] = "STRICT_DNS"
        fresh["dns_lookup_family"] = "V4_ONLY"
        since = self.cp.mark()
        self.cp.set(x.CLUSTER, "2", [x.cluster("a"), x.cluster("b"), fresh])
        self.cp.set(x.ROUTE, "2", [x.route_config("routes", cluster="fresh")])
        self.wait_ack(x.ROUTE, "2", since=since)
        h.wait_until(lambda: skiff.stat("cluster_manager.warming_clusters") == 1, 5,
                     what="the new cluster warming")
        self.assertNotIn("fresh::", skiff.admin_get("/clusters")[1])
        for _ in range(5):
            status, headers, body = get(port)
            self.assertEqual((status, body), (503, b""))
            self.assertNotIn("x-backend", headers)
        self.assertEqual(skiff.stat("cluster_manager.warming_clusters"), 1)
        # Envoy holds the CDS ACK while a cluster warms: a control plane
        # that waits for it before the route would not have sent this one.
        self.assertFalse(self.acked_within(x.CLUSTER, "2", since, 0.5),
                         "CDS ACKed while a cluster warms")

        open_gate()
        self.wait_ack(x.CLUSTER, "2", since=since)
        h.wait_until(lambda: skiff.stat("cluster_manager.warming_clusters") == 0, 5,
                     what="the new cluster warm once resolved")
        for _ in range(5):
            status, headers, _ = get(port)
            self.assertEqual((status, headers.get("x-backend")), (200, "b"))

    def test_rds_route_to_an_unknown_cluster_answers_its_cluster_not_found_response_code(self):
        self.push_initial()
        skiff = self.start_skiff()
        self.wait_ack(x.ROUTE, "1")
        port = skiff.port("ingress")
        gone = x.route("nowhere")
        gone["route"]["cluster_not_found_response_code"] = "NOT_FOUND"
        since = self.cp.mark()
        self.cp.set(x.ROUTE, "2", [x.route_config("routes", routes=[gone])])
        self.wait_ack(x.ROUTE, "2", since=since)
        status, headers, body = get(port)
        self.assertEqual((status, body), (404, b""))
        self.assertNotIn("x-backend", headers)
        counts = [v for n, v in skiff.stats().items() if n.endswith(".no_cluster")]
        self.assertEqual(sum(counts), 1, counts)

    def test_listener_added_and_removed(self):
        self.push_initial()
        skiff = self.start_skiff()
        self.wait_ack(x.LISTENER, "1")
        since = self.cp.mark()
        self.cp.set(x.LISTENER, "2", [x.listener("ingress", 0, "routes"),
                                      x.listener("extra", 0, "routes")])
        self.wait_ack(x.LISTENER, "2", since=since)
        h.wait_until(lambda: "extra" in skiff.listener_ports(), 5, what="listener extra")
        extra = skiff.port("extra")
        h.wait_until(lambda: self._status(extra) == 200, 5, what="extra serving")
        since = self.cp.mark()
        self.cp.set(x.LISTENER, "3", [x.listener("ingress", 0, "routes")])
        self.wait_ack(x.LISTENER, "3", since=since)
        h.wait_until(lambda: self._status(extra) is None, 5, what="extra closed")
        self.assertNotIn("extra", skiff.listener_ports())
        self.assertEqual(get(skiff.port("ingress"))[0], 200)

    def test_lds_listener_stats_are_0_before_any_connection(self):
        # As Envoy's, from the moment the workers take the listener: when it
        # is added, and when it is updated in place with a new stat_prefix.
        self.push_initial()
        skiff = self.start_skiff()
        self.wait_ack(x.LISTENER, "1")

        def zeros(names):
            return lambda: {n: skiff.stat(n) for n in names} == {n: 0 for n in names}

        since = self.cp.mark()
        self.cp.set(x.LISTENER, "2", [x.listener("ingress", 0, "routes"),
                                      x.listener("extra", 0, "routes", stat_prefix="extra_http")])
        self.wait_ack(x.LISTENER, "2", since=since)
        h.wait_until(lambda: "extra" in skiff.listener_ports(), 5, what="listener extra")
        extra = skiff.port("extra")
        h.wait_until(zeros(["http.extra_http.downstream_rq_total",
                            f"listener.{h.LOCALHOST}_{extra}.downstream_cx_total"]),
                     5, what="the new listener's stats at 0")
        since = self.cp.mark()
        self.cp.set(x.LISTENER, "3", [x.listener("ingress", 0, "routes"),
                                      x.listener("extra", 0, "routes", stat_prefix="renamed")])
        self.wait_ack(x.LISTENER, "3", since=since)
        h.wait_until(zeros(["http.renamed.downstream_rq_total"]), 5,
                     what="the updated listener's stats at 0")
        self.assertEqual(skiff.port("extra"), extra)  # Updated in place, same socket.

    def test_listener_that_binds_no_port_on_a_service_address_is_acked(self):
        # Istio's outbound listeners sit on services' virtual IPs, which are
        # not local: with bind_to_port false nothing binds them.
        self.push_initial()
        skiff = self.start_skiff()
        self.wait_ack(x.LISTENER, "1")
        service = x.listener("10.255.0.1_80", 80, "routes", address="10.255.0.1")
        service["bind_to_port"] = False
        service["traffic_direction"] = "OUTBOUND"
        outbound = x.listener("virtualOutbound", 0, "routes")
        outbound["use_original_dst"] = True
        since = self.cp.mark()
        self.cp.set(x.LISTENER, "2", [x.listener("ingress", 0, "routes"), service, outbound])
        self.wait_ack(x.LISTENER, "2", since=since)
        h.wait_until(lambda: "virtualOutbound" in skiff.listener_ports(), 5,
                     what="listener virtualOutbound")
        self.assertEqual(skiff.listener_ports()["10.255.0.1_80"], 80)
        self.assertEqual(get(skiff.port("virtualOutbound"))[0], 200)

    def test_listener_update_drains_only_connections_whose_chain_changed(self):
        self.push_initial()
        skiff = self.start_skiff()
        self.wait_ack(x.LISTENER, "1")
        port = skiff.port("ingress")
        sock = socket.create_connection((h.LOCALHOST, port), timeout=5)
        self.addCleanup(sock.close)
        reader = h._Reader(sock)

        def exchange():
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            status = reader.line()
            headers = {}
            while True:
                line = reader.line()
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            reader.chunks(int(headers.get("content-length", "0")))
            return status, headers

        self.assertIn(b"200", exchange()[0])
        # Outside the filter chain: the connection keeps going.
        changed = x.listener("ingress", port, "routes")
        changed["per_connection_buffer_limit_bytes"] = 65536
        since = self.cp.mark()
        self.cp.set(x.LISTENER, "2", [changed])
        self.wait_ack(x.LISTENER, "2", since=since)
        time.sleep(0.2)  # Let every worker apply it.
        status, headers = exchange()
        self.assertIn(b"200", status)
        self.assertNotEqual(headers.get("connection"), "close")
        # The chain itself: this connection drains (an idle one closes).
        chain_changed = x.listener("ingress", port, "routes", stat_prefix="ingress_v3")
        since = self.cp.mark()
        self.cp.set(x.LISTENER, "3", [chain_changed])
        self.wait_ack(x.LISTENER, "3", since=since)
        sock.settimeout(5)
        self.assertEqual(sock.recv(1), b"", "the drained idle connection should close")
        self.assertEqual(get(port)[0], 200)

    def test_sds_secret_warms_the_listener_and_rotates_without_a_restart(self):
        certs = h.Certificates()
        self.addCleanup(certs.cleanup)
        self.push_initial()
        secure = x.listener("secure", 0, "routes")
        secure["filter_chains"][0]["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                         "DownstreamTlsContext",
                "common_tls_context": {"tls_certificate_sds_secret_configs": [
                    {"name": "server_cert", "sds_config": x.ads_config_source()}]}}}
        self.cp.set(x.LISTENER, "1", [x.listener("ingress", 0, "routes"), secure])
        skiff = self.start_skiff(initial_fetch_timeout="1s")
        # The listener warms until its secret comes.
        self.cp.wait_event(lambda e: e["event"] == "request"
                           and e["request"].get("type_url") == SECRET, timeout=10)
        self.assertNotIn("secure", skiff.listener_ports())

        def secret(version, name):
            cert, key = certs.leaf(name)
            with open(cert) as f:
                cert_pem = f.read()
            with open(key) as f:
                key_pem = f.read()
            since = self.cp.mark()
            self.cp.set(SECRET, version, [{
                "@type": SECRET, "name": "server_cert",
                "tls_certificate": {"certificate_chain": {"inline_string": cert_pem},
                                    "private_key": {"inline_string": key_pem}}}])
            self.wait_ack(SECRET, version, since=since)
            return cert_pem

        first = secret("1", "one.test")
        h.wait_until(lambda: "secure" in skiff.listener_ports(), 5, what="secure listener")
        port = skiff.port("secure")
        context = ssl.create_default_context(cafile=certs.ca)

        def served_cert():
            with socket.create_connection((h.LOCALHOST, port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    head = tls.recv(64)
                    der = tls.getpeercert(binary_form=True)
            return ssl.DER_cert_to_PEM_cert(der), head

        pem, head = served_cert()
        self.assertIn(b"200", head)
        self.assertEqual(ssl.PEM_cert_to_DER_cert(pem), ssl.PEM_cert_to_DER_cert(first))
        second = secret("2", "two.test")
        h.wait_until(lambda: ssl.PEM_cert_to_DER_cert(served_cert()[0]) ==
                     ssl.PEM_cert_to_DER_cert(second), 5, what="the rotated certificate served")
        self.assertGreaterEqual(skiff.stat("sds.server_cert.update_success"), 2)
        # /config_dump shows the secret as Envoy does: the private key redacted.
        _, dump = skiff.admin_get("/config_dump")
        secrets = [c for c in json.loads(dump)["configs"]
                   if c["@type"].endswith("SecretsConfigDump")][0]["dynamic_active_secrets"]
        self.assertEqual([(s["name"], s["version_info"]) for s in secrets], [("server_cert", "2")])
        tls_certificate = secrets[0]["secret"]["tls_certificate"]
        self.assertEqual(tls_certificate["private_key"], {"inline_string": "[redacted]"})
        self.assertEqual(tls_certificate["certificate_chain"]["inline_string"], second)
        self.assertNotIn("PRIVATE KEY", dump)

    def test_changing_one_filter_chain_keeps_connections_on_the_others(self):
        certs = h.Certificates()
        self.addCleanup(certs.cleanup)
        self.push_initial()

        def chain(server_name, stat_prefix):
            cert, key = certs.leaf(server_name)
            c = x.listener("sni", 0, "routes", stat_prefix=stat_prefix)["filter_chains"][0]
            c["filter_chain_match"] = {"server_names": [server_name]}
            c["transport_socket"] = h.downstream_tls(cert, key)
            return c

        def sni_listener(b_prefix):
            l = x.listener("sni", 0, "routes")
            l["filter_chains"] = [chain("a.test", "chain_a"), chain("b.test", b_prefix)]
            return l

        self.cp.set(x.LISTENER, "1", [x.listener("ingress", 0, "routes"), sni_listener("chain_b")])
        skiff = self.start_skiff()
        port = skiff.port("sni")
        context = ssl.create_default_context(cafile=certs.ca)
        conns = {}
        for name in ("a.test", "b.test"):
            raw = socket.create_connection((h.LOCALHOST, port), timeout=5)
            tls = context.wrap_socket(raw, server_hostname=name)
            self.addCleanup(tls.close)
            conns[name] = tls

        def exchange(tls):
            tls.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                piece = tls.recv(4096)
                if not piece:
                    return None
                data += piece
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            while len(rest) < length:
                rest += tls.recv(4096)
            return head

        for tls in conns.values():
            self.assertIn(b"200", exchange(tls))
        # Only chain b changes (its stat_prefix): its connection drains, a's goes on.
        since = self.cp.mark()
        self.cp.set(x.LISTENER, "2", [x.listener("ingress", 0, "routes"), sni_listener("chain_b2")])
        self.wait_ack(x.LISTENER, "2", since=since)
        time.sleep(0.3)  # Every worker applies it.
        conns["b.test"].settimeout(5)
        self.assertIn(conns["b.test"].recv(1), (b"",), "b's idle connection should close")
        for _ in range(3):
            self.assertIn(b"200", exchange(conns["a.test"]))
        stats = skiff.stats()
        self.assertGreaterEqual(stats.get("http.chain_a.downstream_rq_completed", 0), 4)

    @staticmethod
    def _status(port):
        try:
            return get(port, timeout=2)[0]
        except OSError:
            return None


class Delta(StateOfTheWorld):
    delta = True

    def test_removed_resources_and_unsubscribe(self):
        self.push_initial()
        skiff = self.start_skiff()
        self.wait_ack(x.CLUSTER, "1")
        first = [r for r in self.cp.requests(x.CLUSTER)][0]
        self.assertIn("node", first)
        since = self.cp.mark()
        # Cluster b goes: skiff unsubscribes from its endpoints.
        self.cp.set(x.CLUSTER, "2", [x.cluster("a")])
        self.cp.wait_event(
            lambda e: e["event"] == "request" and e["request"].get("type_url") == x.ENDPOINT
            and "b" in e["request"].get("resource_names_unsubscribe", []), timeout=10,
            since=since)
        h.wait_until(lambda: "cluster.b.upstream_cx_total" not in skiff.admin_get("/clusters")[1]
                     and "b::" not in skiff.admin_get("/clusters")[1], 5, what="cluster b gone")
        self.assertEqual(get(skiff.port("ingress"))[0], 200)




class OverMutualTls(XdsTestCase):
    """The ADS cluster over mutual TLS, as a mesh's control plane is reached:
    the test control plane (libgrpc++) requires a client certificate from its
    CA and h2 by ALPN; skiff checks the control plane's certificate against
    the CA and the SAN it expects."""

    def control_plane_tls_args(self):
        self.certs = h.Certificates()
        self.addCleanup(self.certs.cleanup)
        cert, key = self.certs.leaf("xds.mesh.local")
        return ("--tls-cert", cert, "--tls-key", key, "--tls-client-ca", self.certs.ca)

    def transport_socket(self, san, client_cert=True):
        context = {"validation_context": {
            "trusted_ca": {"filename": self.certs.ca},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": san}}]},
            "alpn_protocols": ["h2"]}
        if client_cert:
            cert, key = self.certs.leaf("sidecar.mesh.local")
            context["tls_certificates"] = [{"certificate_chain": {"filename": cert},
                                            "private_key": {"filename": key}}]
        return {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "UpstreamTlsContext",
            "sni": "xds.mesh.local", "common_tls_context": context}}

    def test_config_arrives_over_mutual_tls(self):
        self.push_initial()
        skiff = h.Skiff(ads_bootstrap(self.cp.port, transport_socket=self.transport_socket(
            "xds.mesh.local")))
        self.addCleanup(skiff.stop)
        status, headers, body = get(skiff.port("ingress"))
        self.assertEqual((status, headers.get("x-backend")), (200, "a"), body)
        self.wait_ack(x.ROUTE, "1")
        self.assertGreaterEqual(skiff.stat("cluster.xds_cluster.ssl.handshake"), 1)
        self.assertEqual(skiff.stat("control_plane.connected_state"), 1)

    def test_control_plane_with_the_wrong_name_is_refused(self):
        # The certificate is the CA's but names another host: skiff does not
        # talk to it, counts why, and starts on what it has once
        # initial_fetch_timeout passes.
        self.push_initial()
        skiff = h.Skiff(ads_bootstrap(self.cp.port, initial_fetch_timeout="1s",
                                      transport_socket=self.transport_socket("istiod.other")))
        self.addCleanup(skiff.stop)
        h.wait_until(lambda: skiff.stat("cluster.xds_cluster.ssl.fail_verify_san") >= 1, 10,
                     what="ssl.fail_verify_san counted")
        self.assertEqual(skiff.stat("control_plane.connected_state"), 0)
        self.assertEqual(self.cp.requests(), [])


if __name__ == "__main__":
    unittest.main()
