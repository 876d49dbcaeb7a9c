"""Cluster health_checks (active health checking), as Envoy's: HTTP checks
over HTTP/1.1 and h2c, TCP checks with send/receive payloads; hosts start
failed until a check passes, thresholds take a host out and bring it back,
a connect failure is a network failure, x-envoy-immediate-health-check-fail
on a response fails the host at once; the health_check.* stats, the
/failed_active_hc health flag of /clusters, membership_healthy, and outlier
detection's successful_active_health_check_uneject_host. Upstreams: Backend
whose health check answer is switchable while the test runs, a small TCP
server, and nginx for h2c."""

import tempfile
import threading
import unittest

import skiffharness as h
import xdsharness as x
from skiffharness import LOCALHOST

HC_PATH = "/healthz"


class HcBackend(h.Backend):
    """Answers HC_PATH with `hc_status` (switchable), anything else with
    `status` and `headers`."""

    def __init__(self, name, hc_status=200, status=200, headers=()):
        self.hc_status = hc_status
        self.hc_gate = None  # A threading.Event that health checks wait for, when set.
        self.hc_headers = ()  # Header lines ("name: value") of health check answers.
        self.status = status
        self.headers = headers
        super().__init__(name)

    def _respond(self, sock, req, body_iter):
        if req.path == "/delay":
            return super()._respond(sock, req, body_iter)
        for _ in body_iter:
            pass
        if req.path == HC_PATH:
            if self.hc_gate is not None:
                self.hc_gate.wait(30)
            self._send(sock, self.hc_status, b"hc\n", headers=self.hc_headers)
        else:
            self._send(sock, self.status, f"{self.name}\n".encode(), headers=self.headers)
        return True

    def hc_requests(self):
        return [r for r in list(self.requests) if r.path == HC_PATH]

    def other_requests(self):
        return [r for r in list(self.requests) if r.path != HC_PATH]


class TcpServer(h.ThreadedTcpServer):
    """Accepts connections on 127.0.0.1, port 0; answers each read with
    `reply` (switchable)."""

    def __init__(self, reply):
        self.reply = reply
        self.received = []
        super().__init__()

    def serve(self, conn):
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                self.received.append(data)
                try:
                    conn.sendall(self.reply)
                except OSError:
                    return


def http_check(path=HC_PATH, **kw):
    hc = {"timeout": "2s", "interval": "0.1s", "unhealthy_threshold": 2, "healthy_threshold": 2,
          # Every test checks at this pace whether or not requests came.
          "no_traffic_interval": "0.1s",
          "http_health_check": {"path": path}}
    for k, v in kw.items():
        if k in ("host", "request_headers_to_add", "request_headers_to_remove",
                 "expected_statuses", "retriable_statuses", "codec_client_type"):
            hc["http_health_check"][k] = v
        else:
            hc[k] = v
    return hc


def config(endpoints, hc, extra=None, name="web"):
    c = h.cluster(name, endpoints, extra={"health_checks": [hc], **(extra or {})})
    return c


def bootstrap(*clusters):
    return h.bootstrap([h.listener("ingress", [h.route("/", cluster=clusters[0]["name"])])],
                       clusters)


def health_flags(skiff, cluster="web"):
    """{address: flags} of a cluster in /clusters."""
    return h.cluster_host_values(skiff, cluster, "health_flags")


def addr(port):
    return f"{LOCALHOST}:{port}"


class HealthCheckTestCase(unittest.TestCase):
    def backend(self, name, **kw):
        b = HcBackend(name, **kw)
        self.addCleanup(b.stop)
        return b

    def start(self, text, concurrency=2):
        skiff = h.Skiff(text, concurrency=concurrency)
        self.addCleanup(skiff.stop)
        return skiff

    def wait_flags(self, skiff, expected, cluster="web", timeout=20):
        h.wait_until(lambda: health_flags(skiff, cluster) == expected, timeout,
                     what=f"health flags {expected} (now {health_flags(skiff, cluster)})")

    def hc_stat(self, skiff, name, cluster="web"):
        return skiff.stat(f"cluster.{cluster}.health_check.{name}")


class HttpHealthCheck(HealthCheckTestCase):
    def test_failing_host_is_taken_out_and_comes_back(self):
        bad = self.backend("b0", hc_status=503)
        good = self.backend("b1")
        skiff = self.start(bootstrap(config(
            [(LOCALHOST, bad.port), (LOCALHOST, good.port)],
            http_check(request_headers_to_add=[{"header": {"key": "x-hc", "value": "1"}}]))))
        self.wait_flags(skiff, {addr(bad.port): "/failed_active_hc", addr(good.port): "healthy"})
        h.wait_until(lambda: skiff.stat("cluster.web.membership_healthy") == 1, 10,
                     what="membership_healthy 1")
        for _ in range(10):
            status, headers, _ = h.http_request(skiff.port(), path="/x")
            self.assertEqual((status, headers.get("x-backend")), (200, "b1"))
        self.assertEqual(bad.other_requests(), [])
        # Envoy's request: GET path, the cluster's name as host, Envoy/HC.
        req = good.hc_requests()[0]
        self.assertEqual((req.method, req.target), ("GET", HC_PATH))
        self.assertEqual(req.header("host"), "web")
        self.assertEqual(req.header("user-agent"), "Envoy/HC")
        self.assertEqual(req.header("x-hc"), "1")
        stats = skiff.stats()
        p = "cluster.web.health_check."
        self.assertEqual(stats[p + "healthy"], 1)
        self.assertEqual(stats[p + "degraded"], 0)
        self.assertGreaterEqual(stats[p + "failure"], 1)
        self.assertGreaterEqual(stats[p + "success"], 1)
        self.assertGreaterEqual(stats[p + "attempt"], stats[p + "success"] + stats[p + "failure"])
        self.assertEqual(stats[p + "network_failure"], 0)
        self.assertEqual(stats[p + "passive_failure"], 0)

        # Passing again: back after healthy_threshold (2) passes in a row.
        passes = len(bad.hc_requests())
        bad.hc_status = 200
        self.wait_flags(skiff, {addr(bad.port): "healthy", addr(good.port): "healthy"})
        self.assertGreaterEqual(len(bad.hc_requests()) - passes, 2)
        h.wait_until(lambda: skiff.stat("cluster.web.membership_healthy") == 2, 10,
                     what="membership_healthy 2")
        self.assertEqual(self.hc_stat(skiff, "healthy"), 2)
        seen = set()
        for _ in range(6):
            seen.add(h.http_request(skiff.port(), path="/x")[1].get("x-backend"))
        self.assertEqual(seen, {"b0", "b1"})

        # A non-retriable failing status takes a healthy host out at once
        # (Envoy counts only network failures and retriable statuses toward
        # unhealthy_threshold).
        bad.hc_status = 500
        self.wait_flags(skiff, {addr(bad.port): "/failed_active_hc", addr(good.port): "healthy"})

    def test_retriable_and_expected_statuses(self):
        # 404 is expected (healthy); 429 retriable: unhealthy only after
        # unhealthy_threshold checks in a row; the host header is configured.
        b = self.backend("b0", hc_status=404)
        skiff = self.start(bootstrap(config(
            [(LOCALHOST, b.port)],
            http_check(host="hc.example", unhealthy_threshold=3,
                       expected_statuses=[{"start": 200, "end": 300}, {"start": 404, "end": 405}],
                       retriable_statuses=[{"start": 429, "end": 430}]))))
        self.wait_flags(skiff, {addr(b.port): "healthy"})
        self.assertEqual(b.hc_requests()[0].header("host"), "hc.example")
        failures = self.hc_stat(skiff, "failure")
        b.hc_status = 429
        self.wait_flags(skiff, {addr(b.port): "/failed_active_hc"})
        self.assertGreaterEqual(self.hc_stat(skiff, "failure") - failures, 3)
        # reuse_connection (default true): one connection carried them all.
        self.assertEqual(b.connections, 1)

    def test_reuse_connection_false(self):
        b = self.backend("b0")
        skiff = self.start(bootstrap(config([(LOCALHOST, b.port)],
                                            http_check(reuse_connection=False))))
        h.wait_until(lambda: len(b.hc_requests()) >= 3, 10, what="three checks")
        self.assertEqual(health_flags(skiff), {addr(b.port): "healthy"})
        # A connection per check (the next one may be connecting already).
        self.assertGreaterEqual(b.connections, len(b.hc_requests()))
        self.assertEqual(self.hc_stat(skiff, "failure"), 0)

    def test_closed_port_is_a_network_failure(self):
        good = self.backend("b1")
        closed = h.ReservedPort()  # Bound, not listening: connections are refused.
        self.addCleanup(closed.close)
        skiff = self.start(bootstrap(config([(LOCALHOST, closed.port), (LOCALHOST, good.port)],
                                            http_check())))
        self.wait_flags(skiff, {addr(closed.port): "/failed_active_hc",
                                addr(good.port): "healthy"})
        h.wait_until(lambda: self.hc_stat(skiff, "network_failure") >= 2, 10,
                     what="network failures")
        for _ in range(4):
            status, headers, _ = h.http_request(skiff.port(), path="/x")
            self.assertEqual((status, headers.get("x-backend")), (200, "b1"))

    def test_timeout_is_a_network_failure(self):
        # /delay answers after 3 s, the check times out after 0.2 s.
        b = self.backend("b0")
        skiff = self.start(bootstrap(config([(LOCALHOST, b.port)],
                                            http_check(path="/delay?ms=3000", timeout="0.2s"))))
        h.wait_until(lambda: (self.hc_stat(skiff, "network_failure") or 0) >= 2, 20,
                     what="timeouts counted as network failures")
        self.assertEqual(health_flags(skiff), {addr(b.port): "/failed_active_hc"})
        self.assertEqual(self.hc_stat(skiff, "success"), 0)

    def test_immediate_health_check_fail_header(self):
        # b0's ordinary responses carry x-envoy-immediate-health-check-fail;
        # its checks pass, but healthy_threshold is too high for it to come
        # back within the test.
        marked = self.backend("b0", headers=("x-envoy-immediate-health-check-fail: true",))
        good = self.backend("b1")
        skiff = self.start(bootstrap(config(
            [(LOCALHOST, marked.port), (LOCALHOST, good.port)],
            http_check(healthy_threshold=100000, interval="0.5s", no_traffic_interval="0.5s"))))
        self.wait_flags(skiff, {addr(marked.port): "healthy", addr(good.port): "healthy"})

        def step():
            h.http_request(skiff.port(), path="/x")
            return self.hc_stat(skiff, "passive_failure") == 1
        h.wait_until(step, 20, interval=0, what="a passive failure")
        self.wait_flags(skiff, {addr(marked.port): "/failed_active_hc",
                                addr(good.port): "healthy"})
        h.wait_until(lambda: skiff.stat("cluster.web.membership_healthy") == 1, 10,
                     what="membership_healthy 1")
        seen = len(marked.other_requests())
        for _ in range(6):
            status, headers, _ = h.http_request(skiff.port(), path="/x")
            self.assertEqual((status, headers.get("x-backend")), (200, "b1"))
        self.assertEqual(len(marked.other_requests()), seen)

    def test_http2_check_against_h2c_nginx(self):
        ng = h.Nginx(http2=True)
        self.addCleanup(ng.stop)
        ok = config([(LOCALHOST, ng.port)], http_check(path="/health", codec_client_type="HTTP2"))
        missing = config([(LOCALHOST, ng.port)],
                         http_check(path="/missing", codec_client_type="HTTP2"), name="gone")
        # The same port checked over HTTP/1.1: nginx expects the h2 preface.
        h1 = config([(LOCALHOST, ng.port)], http_check(path="/health"), name="h1")
        skiff = self.start(bootstrap(ok, missing, h1))
        self.wait_flags(skiff, {addr(ng.port): "healthy"})
        self.wait_flags(skiff, {addr(ng.port): "/failed_active_hc"}, cluster="gone")
        self.wait_flags(skiff, {addr(ng.port): "/failed_active_hc"}, cluster="h1")
        h.wait_until(lambda: self.hc_stat(skiff, "success") >= 3, 10, what="h2 checks")
        self.assertEqual(self.hc_stat(skiff, "failure"), 0)
        # One connection carried them (reuse_connection).
        with open(f"{ng.tmp}/access.log") as f:
            lines = [l for l in f if "GET /health HTTP/2.0" in l]
        self.assertGreaterEqual(len(lines), 3)


    def test_checks_go_over_the_clusters_tls(self):
        certs = h.Certificates()
        self.addCleanup(certs.cleanup)
        other = h.Certificates()
        self.addCleanup(other.cleanup)
        ng = h.Nginx(tls=certs.leaf("localhost"))
        self.addCleanup(ng.stop)
        trusted = config([(LOCALHOST, ng.port)], http_check(path="/health"),
                         extra={"transport_socket": h.upstream_tls(certs.ca, "localhost")})
        # A CA that did not sign nginx's certificate: every handshake fails.
        untrusted = config([(LOCALHOST, ng.port)], http_check(path="/health"), name="untrusted",
                           extra={"transport_socket": h.upstream_tls(other.ca, "localhost")})
        skiff = self.start(bootstrap(trusted, untrusted))
        self.wait_flags(skiff, {addr(ng.port): "healthy"})
        self.wait_flags(skiff, {addr(ng.port): "/failed_active_hc"}, cluster="untrusted")
        h.wait_until(lambda: self.hc_stat(skiff, "network_failure", "untrusted") >= 2, 10,
                     what="TLS failures counted as network failures")
        self.assertEqual(self.hc_stat(skiff, "failure"), 0)


class TcpHealthCheck(HealthCheckTestCase):
    def tcp_server(self, reply):
        s = TcpServer(reply)
        self.addCleanup(s.stop)
        return s

    def test_send_receive_match_and_mismatch(self):
        match = self.tcp_server(b"..pong..")
        mismatch = self.tcp_server(b"nope")
        listening = self.tcp_server(b"")
        check = {"timeout": "0.3s", "interval": "0.1s", "no_traffic_interval": "0.1s",
                 "unhealthy_threshold": 1, "healthy_threshold": 1,
                 "tcp_health_check": {"send": {"text": "70696e67"},  # "ping"
                                      "receive": [{"text": "706f"}, {"text": "6e67"}]}}
        connect_only = {"timeout": "0.3s", "interval": "0.1s", "no_traffic_interval": "0.1s",
                        "unhealthy_threshold": 1, "healthy_threshold": 1,
                        "tcp_health_check": {}}
        closed = h.ReservedPort()
        self.addCleanup(closed.close)
        skiff = self.start(bootstrap(
            config([(LOCALHOST, match.port), (LOCALHOST, mismatch.port)], check),
            config([(LOCALHOST, listening.port), (LOCALHOST, closed.port)], connect_only,
                   name="connect")))
        self.wait_flags(skiff, {addr(match.port): "healthy",
                                addr(mismatch.port): "/failed_active_hc"})
        self.wait_flags(skiff, {addr(listening.port): "healthy",
                                addr(closed.port): "/failed_active_hc"}, cluster="connect")
        self.assertIn(b"ping", b"".join(match.received))
        h.wait_until(lambda: self.hc_stat(skiff, "network_failure") >= 2, 10,
                     what="mismatches timing out")
        self.assertEqual(listening.received, [])  # Connect only: nothing sent.
        # The mismatching server starts to answer right: healthy.
        mismatch.reply = b"pong"
        self.wait_flags(skiff, {addr(match.port): "healthy", addr(mismatch.port): "healthy"})


class Interplay(HealthCheckTestCase):
    def uneject_config(self, b, uneject):
        od = {"consecutive_5xx": 2, "interval": "1s", "base_ejection_time": "300s",
              "max_ejection_percent": 100}
        if uneject is not None:
            od["successful_active_health_check_uneject_host"] = uneject
        return bootstrap(config([(LOCALHOST, b.port)],
                                http_check(interval="0.3s", no_traffic_interval="0.3s"),
                                extra={"outlier_detection": od}))

    def eject(self, skiff):
        def step():
            h.http_request(skiff.port(), path="/x")
            return skiff.stat("cluster.web.outlier_detection.ejections_enforced_total") == 1
        h.wait_until(step, 20, interval=0, what="an ejection")

    def test_passing_check_unejects_an_outlier(self):
        # Ordinary requests get 503, checks pass: ejected by outlier
        # detection, back at the next passing check (Envoy's default).
        b = self.backend("b0", status=503)
        skiff = self.start(self.uneject_config(b, None))
        self.wait_flags(skiff, {addr(b.port): "healthy"})
        self.eject(skiff)
        h.wait_until(
            lambda: skiff.stat("cluster.web.outlier_detection.ejections_active") == 0, 10,
            what="the host unejected by a passing check")

    def test_uneject_can_be_turned_off(self):
        b = self.backend("b0", status=503)
        skiff = self.start(self.uneject_config(b, False))
        self.wait_flags(skiff, {addr(b.port): "healthy"})
        self.eject(skiff)
        successes = self.hc_stat(skiff, "success")
        h.wait_until(lambda: self.hc_stat(skiff, "success") >= successes + 3, 10,
                     what="more passing checks")
        self.assertEqual(skiff.stat("cluster.web.outlier_detection.ejections_active"), 1)
        self.assertEqual(health_flags(skiff), {addr(b.port): "/failed_outlier_check"})

    def test_both_flags(self):
        # One host failing everything: failed by its check, used all the same
        # (panic: no host is healthy), and ejected by outlier detection.
        b = self.backend("b0", hc_status=503, status=503)
        od = {"consecutive_5xx": 2, "interval": "1s", "base_ejection_time": "300s",
              "max_ejection_percent": 100}
        skiff = self.start(bootstrap(config([(LOCALHOST, b.port)], http_check(),
                                            extra={"outlier_detection": od})))
        self.eject(skiff)
        self.wait_flags(skiff, {addr(b.port): "/failed_active_hc/failed_outlier_check"})
        self.assertEqual(skiff.stat("cluster.web.membership_healthy"), 0)


class XdsUpdates(HealthCheckTestCase):
    """Hosts keep their health across EDS and CDS updates; a removed host
    stops being checked. The checks answer a retriable 503 with an
    unhealthy_threshold no test reaches: a healthy host stays healthy while
    its session lives, and a host that started again would stay failed."""

    def setUp(self):
        self.cp = x.ControlPlane().start()
        self.addCleanup(self.cp.stop)

    def web(self, path):
        c = x.cluster("web")
        c["health_checks"] = [http_check(path=path, unhealthy_threshold=1000000,
                                         retriable_statuses=[{"start": 503, "end": 504}])]
        return c

    def wait_ack(self, type_url, version, since):
        def acked(e):
            r = e.get("request", {})
            return (e["event"] == "request" and r.get("type_url") == type_url
                    and r.get("version_info") == version and "error_detail" not in r)
        self.cp.wait_event(acked, timeout=10, since=since)

    def more_checks(self, backend, n, what):
        start = len(backend.hc_requests())
        h.wait_until(lambda: len(backend.hc_requests()) >= start + n, 10, what=what)

    def test_health_survives_updates_and_removed_hosts_stop(self):
        b0 = self.backend("b0")
        b1 = self.backend("b1")
        self.cp.set(x.CLUSTER, "1", [self.web(HC_PATH)])
        self.cp.set(x.ENDPOINT, "1", [x.cla("web", [(LOCALHOST, b0.port)])])
        self.cp.set(x.LISTENER, "1", [x.listener("ingress", 0, "routes")])
        self.cp.set(x.ROUTE, "1", [x.route_config("routes", cluster="web")])
        skiff = self.start(h.to_yaml(x.ads_bootstrap(self.cp.port)) + "\n")
        self.wait_flags(skiff, {addr(b0.port): "healthy"})
        b0.hc_status = 503
        self.more_checks(b0, 3, "failing checks of b0")
        self.assertEqual(health_flags(skiff), {addr(b0.port): "healthy"})

        # EDS adds b1: b0 keeps its session and its health.
        since = self.cp.mark()
        self.cp.set(x.ENDPOINT, "2", [x.cla("web", [(LOCALHOST, b0.port), (LOCALHOST, b1.port)])])
        self.wait_ack(x.ENDPOINT, "2", since)
        self.wait_flags(skiff, {addr(b0.port): "healthy", addr(b1.port): "healthy"})
        self.more_checks(b0, 3, "more failing checks of b0")
        self.assertEqual(health_flags(skiff), {addr(b0.port): "healthy",
                                               addr(b1.port): "healthy"})

        # CDS changes the check: it starts again with the new path; the
        # hosts keep their health.
        since = self.cp.mark()
        self.cp.set(x.CLUSTER, "3", [self.web(HC_PATH + "?v=3")])
        self.cp.set(x.ENDPOINT, "3", [x.cla("web", [(LOCALHOST, b0.port), (LOCALHOST, b1.port)])])
        self.wait_ack(x.CLUSTER, "3", since)
        h.wait_until(lambda: any(r.target.endswith("?v=3") for r in b0.hc_requests()), 10,
                     what="checks with the new path")
        self.more_checks(b0, 3, "failing checks of b0 under the new config")
        self.assertEqual(health_flags(skiff), {addr(b0.port): "healthy",
                                               addr(b1.port): "healthy"})
        seen = set()
        for _ in range(6):
            status, headers, _ = h.http_request(skiff.port(), path="/x")
            self.assertEqual(status, 200)
            seen.add(headers.get("x-backend"))
        self.assertEqual(seen, {"b0", "b1"})

        # EDS removes b0: its checks stop.
        since = self.cp.mark()
        self.cp.set(x.ENDPOINT, "4", [x.cla("web", [(LOCALHOST, b1.port)])])
        self.wait_ack(x.ENDPOINT, "4", since)
        self.wait_flags(skiff, {addr(b1.port): "healthy"})
        checked = len(b0.hc_requests())
        self.more_checks(b1, 5, "checks of b1")
        self.assertLessEqual(len(b0.hc_requests()), checked + 1)  # At most one in flight.
        self.assertEqual(self.hc_stat(skiff, "healthy"), 1)


class Initialization(HealthCheckTestCase):
    def test_listeners_wait_for_the_first_round_of_checks(self):
        # As Envoy's cluster initialization: until every host was checked
        # once, the server is not ready and routes nothing (else every host
        # would start failed and panic mode would route to all of them).
        b0 = self.backend("b0")
        b0.hc_gate = threading.Event()
        self.addCleanup(b0.hc_gate.set)
        b1 = self.backend("b1", hc_status=503)
        skiff = h.Skiff(bootstrap(config([(LOCALHOST, b0.port), (LOCALHOST, b1.port)],
                                         http_check(timeout="20s"))), wait_ready=False)
        self.addCleanup(skiff.stop)
        h.wait_until(lambda: b0.hc_requests() and b1.hc_requests(), 10,
                     what="the first checks of both hosts")
        self.assertEqual(skiff.admin_get("/ready"), (503, "PRE_INITIALIZING\n"))
        b0.hc_gate.set()
        h.wait_until(lambda: skiff.admin_get("/ready")[0] == 200, 10, what="/ready 200")
        for _ in range(4):
            status, headers, _ = h.http_request(skiff.port(), path="/x")
            self.assertEqual((status, headers.get("x-backend")), (200, "b0"))
        self.assertEqual(skiff.stat("cluster.web.lb_healthy_panic"), 0)


class Degraded(HealthCheckTestCase):
    def test_x_envoy_degraded_makes_a_passing_host_degraded(self):
        # Envoy's HTTP checker: a passing check whose answer carries
        # x-envoy-degraded degrades the host (/degraded_active_hc); a
        # degraded host takes what the healthy ones cannot carry.
        b0 = self.backend("b0")
        b1 = self.backend("b1")
        b1.hc_headers = ("x-envoy-degraded: true",)
        skiff = self.start(bootstrap(config([(LOCALHOST, b0.port), (LOCALHOST, b1.port)],
                                            http_check())), concurrency=1)
        self.wait_flags(skiff, {addr(b0.port): "healthy", addr(b1.port): "/degraded_active_hc"})
        h.wait_until(lambda: self.hc_stat(skiff, "degraded") == 1, 10, what="degraded gauge 1")
        h.wait_until(lambda: skiff.stat("cluster.web.membership_degraded") == 1, 10,
                     what="membership_degraded 1")
        # b0 fails: b1, degraded, takes every request, without panic.
        b0.hc_status = 503
        self.wait_flags(skiff, {addr(b0.port): "/failed_active_hc",
                                addr(b1.port): "/degraded_active_hc"})
        h.wait_until(lambda: skiff.stat("cluster.web.membership_healthy") == 0, 10,
                     what="membership_healthy 0")
        for _ in range(6):
            status, headers, _ = h.http_request(skiff.port(), path="/x")
            self.assertEqual((status, headers.get("x-backend")), (200, "b1"))
        self.assertEqual(skiff.stat("cluster.web.lb_healthy_panic"), 0)
        # Its checks no longer say it: healthy again.
        b1.hc_headers = ()
        self.wait_flags(skiff, {addr(b0.port): "/failed_active_hc", addr(b1.port): "healthy"})
        h.wait_until(lambda: self.hc_stat(skiff, "degraded") == 0, 10, what="degraded gauge 0")


class EndpointHealthCheckConfig(HealthCheckTestCase):
    def test_port_value_and_disable_active_health_check(self):
        # b0's own checks fail, but its endpoint sends them to hc's port,
        # where they pass; b1's fail, but its endpoint disables them.
        b0 = self.backend("b0", hc_status=503)
        b1 = self.backend("b1", hc_status=503)
        hc = self.backend("hc")
        c = config([], http_check())
        c["load_assignment"]["endpoints"] = [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": LOCALHOST,
                                                         "port_value": b0.port}},
                          "health_check_config": {"port_value": hc.port}}},
            {"endpoint": {"address": {"socket_address": {"address": LOCALHOST,
                                                         "port_value": b1.port}},
                          "health_check_config": {"disable_active_health_check": True}}},
        ]}]
        skiff = self.start(bootstrap(c))
        self.wait_flags(skiff, {addr(b0.port): "healthy", addr(b1.port): "healthy"})
        h.wait_until(lambda: len(hc.hc_requests()) >= 3, 10, what="checks on the other port")
        self.assertEqual(b0.hc_requests(), [])
        self.assertEqual(b1.hc_requests(), [])
        self.assertEqual(self.hc_stat(skiff, "failure"), 0)
        self.assertEqual(self.hc_stat(skiff, "healthy"), 1)  # Only checked hosts count.
        seen = set()
        for _ in range(6):
            status, headers, _ = h.http_request(skiff.port(), path="/x")
            self.assertEqual(status, 200)
            seen.add(headers.get("x-backend"))
        self.assertEqual(seen, {"b0", "b1"})


class Config(HealthCheckTestCase):
    def validate(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(text)
            f.flush()
            return h.run_skiff(["--mode", "validate", "-c", f.name])

    def test_what_is_not_implemented_is_refused_by_path(self):
        p = "static_resources.clusters[0].health_checks"
        grpc = {"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1,
                "healthy_threshold": 1, "grpc_health_check": {}}
        for checks, extra, expected in [
            ([grpc], {}, f"{p}[0].grpc_health_check: not supported yet"),
            ([http_check(), http_check()], {},
             f"{p}[1]: more than one health checker per cluster is not supported yet"),
            ([{**http_check(), "event_log_path": "/tmp/x"}], {},
             f"{p}[0].event_log_path: not supported yet"),
            ([{**http_check(), "tls_options": {"alpn_protocols": ["h2"]}}], {},
             f"{p}[0].tls_options: not supported yet"),
            ([{k: v for k, v in http_check().items() if k != "timeout"}], {},
             f"{p}[0].timeout: is required"),
            ([http_check(expected_statuses=[{"start": 200, "end": 700}])], {},
             f"{p}[0].http_health_check.expected_statuses[0]: [200, 700) is not a range"),
            ([http_check(codec_client_type="HTTP3")], {},
             f"{p}[0].http_health_check.codec_client_type: HTTP3 is not supported"),
            ([{"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1,
               "healthy_threshold": 1, "tcp_health_check": {"send": {"text": "zz"}}}], {},
             f"{p}[0].tcp_health_check.send.text: 'zz' is not hex"),
            ([http_check()], {"load_assignment": {"cluster_name": "web", "endpoints": [
                {"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": LOCALHOST, "port_value": 1}},
                    "health_check_config": {"hostname": "x"}}}]}]}},
             "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0]"
             ".endpoint.health_check_config.hostname: not supported yet"),
            ([http_check()], {"type": "STRICT_DNS", "load_assignment": {
                "cluster_name": "web", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "localhost", "port_value": 1}},
                    "health_check_config": {"port_value": 2}}}]}]}},
             "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0]"
             ".endpoint.health_check_config: is not supported on a STRICT_DNS cluster yet"),
            ([http_check()], {"type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
                              "load_assignment": None},
             f"{p}[0]: is not supported on an ORIGINAL_DST cluster"),
        ]:
            c = h.cluster("web", [], extra={"health_checks": checks, **extra})
            if "load_assignment" in extra and extra["load_assignment"] is None:
                del c["load_assignment"]
            rc, out = self.validate(bootstrap(c))
            self.assertNotEqual(rc, 0, out)
            self.assertIn(expected, out)

    def test_accepted(self):
        c = h.cluster("web", [(LOCALHOST, 1)], extra={"health_checks": [http_check(
            initial_jitter="1s", interval_jitter="1s", interval_jitter_percent=10,
            unhealthy_interval="2s", unhealthy_edge_interval="3s", healthy_edge_interval="4s",
            no_traffic_healthy_interval="5s", reuse_connection=False,
            always_log_health_check_failures=True,
            request_headers_to_remove=["x-a"], codec_client_type="HTTP1")]})
        rc, out = self.validate(bootstrap(c))
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
