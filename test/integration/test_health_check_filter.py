"""The health check filter (envoy.filters.http.health_check) and the admin's
/healthcheck/fail and /healthcheck/ok, with a real upstream: a request whose
headers match is answered by skiff (200, health_check_ok) and never reaches
the backend; its response names the node's cluster
(x-envoy-upstream-healthchecked-cluster); in pass-through mode it goes
upstream. After POST /healthcheck/fail (GET is 405) health checks get 503
(flag LH, health_check_failed), pass-through ones too without reaching the
backend, other responses carry x-envoy-immediate-health-check-fail: true,
HTTP/1 responses say `connection: close` and HTTP/2 connections get a GOAWAY,
and /ready, server.live and server.state say DRAINING; /healthcheck/ok
undoes it. cluster_min_healthy_percentages judges a cluster by its healthy
hosts (one ejected by outlier detection), an empty cluster, a missing one.
The access log's not_health_check_filter leaves health checks out. Fields
skiff lacks are refused by path."""

import os
import subprocess
import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

HC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck"
HCM_PATH = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
HC_PATH = [{"name": ":path", "string_match": {"exact": "/healthz"}}]


def hc_filter(pass_through=False, headers=HC_PATH, **extra):
    config = {"@type": HC_TYPE, "pass_through_mode": pass_through, **extra}
    if headers is not None:
        config["headers"] = headers
    return {"name": "envoy.filters.http.health_check", "typed_config": config}


def listener(name, hc, cluster="backend", access_log=None):
    extra = {"http_filters": [hc, h.ROUTER]}
    if access_log:
        extra["access_log"] = access_log
    return h.listener(name, [h.route("/", cluster=cluster)], stat_prefix=name, hcm_extra=extra)


def bootstrap(listeners, clusters):
    return h.to_yaml({
        "node": {"id": "skiff-1", "cluster": "edge-proxies"},
        "admin": {"address": {"socket_address": {"address": LOCALHOST, "port_value": 0}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }) + "\n"


class HealthCheckFilterTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend()
        cls.dir = tempfile.mkdtemp(prefix="skiff-hc-")
        cls.all_log = os.path.join(cls.dir, "all.json")
        cls.not_hc_log = os.path.join(cls.dir, "not-hc.json")

        def cleanup():
            for p in (cls.all_log, cls.not_hc_log):
                if os.path.exists(p):
                    os.remove(p)
            os.rmdir(cls.dir)
        cls.addClassCleanup(cleanup)
        backend = h.cluster("backend", [(LOCALHOST, cls.backend.port)])
        empty = h.cluster("empty", [])
        cls.skiff = cls.class_skiff(bootstrap([
            listener("ingress", hc_filter(), access_log=(
                h.json_log(cls.all_log)
                + h.json_log(cls.not_hc_log, {"not_health_check_filter": {}}))),
            listener("passthrough", hc_filter(pass_through=True)),
            # Every request is a health check when no header is named.
            listener("every", hc_filter(headers=None)),
            listener("clusters", hc_filter(cluster_min_healthy_percentages={
                "backend": {"value": 100}, "empty": {"value": 0}}),
                access_log=h.json_log(cls.all_log)),
            listener("empty", hc_filter(cluster_min_healthy_percentages={
                "backend": {"value": 0}, "empty": {"value": 0.5}}),
                access_log=h.json_log(cls.all_log)),
            listener("missing", hc_filter(cluster_min_healthy_percentages={
                "nowhere": {"value": 10}}), access_log=h.json_log(cls.all_log)),
        ], [backend, empty]), concurrency=2)

    def get(self, listener, path, test_id, method="GET"):
        return h.http_request(self.skiff.port(listener), method=method, path=path,
                              headers={"x-test-id": test_id})

    def reached_backend(self, test_id):
        return any(r.header("x-test-id") == test_id for r in self.backend.requests)

    def fail_health_checks(self):
        status, body = self.skiff.admin_request("POST", "/healthcheck/fail")
        self.assertEqual((status, body), (200, "OK\n"))
        self.addCleanup(self.skiff.admin_request, "POST", "/healthcheck/ok")

    def test_health_check_is_answered_by_skiff(self):
        status, headers, body = self.get("ingress", "/healthz", "hc-ok")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers.get("x-envoy-upstream-healthchecked-cluster"), "edge-proxies")
        self.assertNotIn("x-envoy-immediate-health-check-fail", headers)
        self.assertFalse(self.reached_backend("hc-ok"))
        line = h.access_log_entry(self.all_log, "hc-ok")
        self.assertEqual((line["code"], line["flags"], line["details"]),
                         (200, None, "health_check_ok"))
        # The header matcher: another path, or a query, is not a health check.
        for path in ("/healthz?full=1", "/healthzz", "/other"):
            status, headers, body = self.get("ingress", path, "not-hc")
            backend_path = path.split("?")[0]  # The backend echoes the path without its query.
            self.assertEqual((status, body), (200, f"backend:{backend_path}\n".encode()), path)
            self.assertNotIn("x-envoy-upstream-healthchecked-cluster", headers)
        # A HEAD health check too; with no headers configured, every request is one.
        self.assertEqual(self.get("ingress", "/healthz", "hc-head", method="HEAD")[0], 200)
        status, headers, _ = self.get("every", "/anything", "hc-every")
        self.assertEqual(status, 200)
        self.assertIn("x-envoy-upstream-healthchecked-cluster", headers)
        self.assertFalse(self.reached_backend("hc-every"))

    def test_not_health_check_filter_leaves_health_checks_out(self):
        self.assertEqual(self.get("ingress", "/healthz", "log-hc")[0], 200)
        self.assertEqual(self.get("ingress", "/app", "log-app")[0], 200)
        # Lines are written in order: once log-app is in the filtered log,
        # log-hc would be there before it.
        h.access_log_entry(self.not_hc_log, "log-app")
        with open(self.not_hc_log) as f:
            self.assertNotIn('"log-hc"', f.read())
        h.access_log_entry(self.all_log, "log-hc")

    def test_pass_through_goes_upstream(self):
        status, headers, body = self.get("passthrough", "/healthz", "pt-ok")
        self.assertEqual((status, body), (200, b"backend:/healthz\n"))
        self.assertEqual(headers.get("x-envoy-upstream-healthchecked-cluster"), "edge-proxies")
        self.assertTrue(self.reached_backend("pt-ok"))

    def test_admin_endpoints_want_post(self):
        for path in ("/healthcheck/fail", "/healthcheck/ok"):
            status, _ = self.skiff.admin_get(path)
            self.assertEqual(status, 405, path)
        self.assertEqual(self.get("ingress", "/healthz", "still-ok")[0], 200)

    def test_fail_then_ok(self):
        self.fail_health_checks()
        status, headers, body = self.get("ingress", "/healthz", "hc-failed")
        self.assertEqual((status, body), (503, b""))
        self.assertEqual(headers.get("x-envoy-upstream-healthchecked-cluster"), "edge-proxies")
        line = h.access_log_entry(self.all_log, "hc-failed")
        self.assertEqual((line["code"], line["flags"], line["details"]),
                         (503, "LH", "health_check_failed"))
        # Pass-through health checks are answered too, and never forwarded.
        status, _, _ = self.get("passthrough", "/healthz", "pt-failed")
        self.assertEqual(status, 503)
        self.assertFalse(self.reached_backend("pt-failed"))
        # Other requests are served, saying that this proxy is going away.
        status, headers, body = self.get("ingress", "/app", "app-failed")
        self.assertEqual((status, body), (200, b"backend:/app\n"))
        self.assertEqual(headers.get("x-envoy-immediate-health-check-fail"), "true")
        status, body = self.skiff.admin_get("/ready")
        self.assertEqual((status, body), (503, "DRAINING\n"))
        stats = self.skiff.stats()
        self.assertEqual((stats["server.live"], stats["server.state"]), (0, 1))

        status, body = self.skiff.admin_request("POST", "/healthcheck/ok")
        self.assertEqual((status, body), (200, "OK\n"))
        status, headers, _ = self.get("ingress", "/healthz", "hc-back")
        self.assertEqual(status, 200)
        status, headers, _ = self.get("ingress", "/app", "app-back")
        self.assertEqual(status, 200)
        self.assertNotIn("x-envoy-immediate-health-check-fail", headers)
        self.assertEqual(self.skiff.admin_get("/ready"), (200, "LIVE\n"))
        stats = self.skiff.stats()
        self.assertEqual((stats["server.live"], stats["server.state"]), (1, 0))

    def test_failed_server_closes_http1_connections(self):
        two = (b"GET /app HTTP/1.1\r\nhost: a\r\n\r\n"
               b"GET /app HTTP/1.1\r\nhost: a\r\n\r\n")
        port = self.skiff.port("ingress")
        data, closed = h.raw_exchange(port, two, until_close=True)
        self.assertEqual(len(h.parse_responses(data)), 2)  # Keep-alive while healthy.
        before = self.skiff.stat("http.ingress.downstream_cx_drain_close") or 0
        self.fail_health_checks()
        data, closed = h.raw_exchange(port, two, until_close=True)
        responses = h.parse_responses(data)
        self.assertEqual(len(responses), 1, data)
        status, headers, _ = responses[0]
        self.assertEqual((status, headers.get("connection")), (200, "close"))
        self.assertTrue(closed)
        self.assertEqual(self.skiff.stat("http.ingress.downstream_cx_drain_close"), before + 1)

    def test_failed_server_sends_http2_goaway(self):
        port = self.skiff.port("ingress")
        url = f"http://{LOCALHOST}:{port}/app"
        out = subprocess.run(["nghttp", "-nv", url], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertNotIn("recv GOAWAY", out.stdout)
        self.fail_health_checks()
        out = subprocess.run(["nghttp", "-nv", url], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(":status: 200", out.stdout)
        self.assertIn("recv GOAWAY", out.stdout)

    def test_cluster_min_healthy_percentages(self):
        # backend: its one host is healthy (100% wanted); empty: no host, 0% wanted.
        status, _, _ = self.get("clusters", "/healthz", "cl-healthy")
        self.assertEqual(status, 200)
        line = h.access_log_entry(self.all_log, "cl-healthy")
        self.assertEqual((line["code"], line["flags"], line["details"]),
                         (200, None, "health_check_ok_cluster_healthy"))
        # Envoy truncates 0.5% to 0%, and an empty cluster of which 0% is
        # wanted passes.
        status, _, _ = self.get("empty", "/healthz", "cl-empty")
        line = h.access_log_entry(self.all_log, "cl-empty")
        self.assertEqual((status, line["flags"], line["details"]),
                         (200, None, "health_check_ok_cluster_healthy"))
        status, _, _ = self.get("missing", "/healthz", "cl-missing")
        line = h.access_log_entry(self.all_log, "cl-missing")
        self.assertEqual((status, line["flags"], line["details"]),
                         (503, "LH", "health_check_failed_no_cluster_found"))


class StatusBackend(h.Backend):
    """Answers every request with one status."""

    def __init__(self, name, status):
        self.status = status
        super().__init__(name)

    def _respond(self, sock, req, body_iter):
        for _ in body_iter:
            pass
        self._send(sock, self.status, f"{self.name}\n".encode())
        return True


class ClusterHealthTest(unittest.TestCase):
    def test_an_ejected_host_makes_the_cluster_unhealthy(self):
        good, bad = StatusBackend("good", 200), StatusBackend("bad", 500)
        self.addCleanup(good.stop)
        self.addCleanup(bad.stop)
        other = StatusBackend("other", 200)
        self.addCleanup(other.stop)
        web = h.cluster("web", [(LOCALHOST, good.port), (LOCALHOST, bad.port)], extra={
            "outlier_detection": {"consecutive_5xx": 2, "interval": "1s",
                                  "base_ejection_time": "300s", "max_ejection_percent": 100}})
        single = h.cluster("single", [(LOCALHOST, other.port)])
        none = h.cluster("none", [])
        config = bootstrap([
            listener("all", hc_filter(cluster_min_healthy_percentages={
                "web": {"value": 100}}), cluster="web"),
            listener("half", hc_filter(cluster_min_healthy_percentages={
                "web": {"value": 50.9}, "single": {"value": 100}}), cluster="single"),
            listener("empty", hc_filter(cluster_min_healthy_percentages={
                "none": {"value": 1}}), cluster="single"),
        ], [web, single, none])
        skiff = h.Skiff(config, concurrency=1)
        self.addCleanup(skiff.stop)

        def hc(listener):
            return h.http_request(skiff.port(listener), path="/healthz")[0]

        self.assertEqual((hc("all"), hc("half"), hc("empty")), (200, 200, 503))

        def ejected():
            h.http_request(skiff.port("all"), path="/app")
            return skiff.stat("cluster.web.outlier_detection.ejections_active") == 1
        h.wait_until(ejected, 20, interval=0, what="the failing host's ejection")
        # One host of two is healthy: 50%, short of 100% but not of 50.9%
        # (Envoy truncates the percentage to 50).
        self.assertEqual((hc("all"), hc("half")), (503, 200))


class HealthCheckConfigTest(unittest.TestCase):
    def validate(self, http_filters):
        config = h.bootstrap([h.listener("ingress", [h.route("/", direct="x")],
                                         hcm_extra={"http_filters": http_filters})])
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(config)
        self.addCleanup(os.remove, f.name)
        return h.run_skiff(["--mode", "validate", "-c", f.name])

    def test_cache_time_is_refused(self):
        rc, out = self.validate([hc_filter(pass_through=True, cache_time="5s"), h.ROUTER])
        self.assertEqual(rc, 1, out)
        self.assertIn(HCM_PATH + ".http_filters[0].typed_config.cache_time: not supported yet",
                      out)

    def test_pass_through_mode_is_required(self):
        f = hc_filter()
        del f["typed_config"]["pass_through_mode"]
        rc, out = self.validate([f, h.ROUTER])
        self.assertEqual(rc, 1, out)
        self.assertIn(HCM_PATH + ".http_filters[0].typed_config.pass_through_mode: is required",
                      out)

    def test_percentage_over_100_is_refused(self):
        rc, out = self.validate([hc_filter(cluster_min_healthy_percentages={
            "c": {"value": 101}}), h.ROUTER])
        self.assertEqual(rc, 1, out)
        self.assertIn(HCM_PATH + '.http_filters[0].typed_config.cluster_min_healthy_percentages'
                      '["c"].value: must be within [0, 100]', out)

    def test_no_per_route_config(self):
        route = dict(h.route("/", direct="x"), typed_per_filter_config={
            "envoy.filters.http.health_check": hc_filter()["typed_config"]})
        config = h.bootstrap([h.listener("ingress", [route], hcm_extra={
            "http_filters": [hc_filter(), h.ROUTER]})])
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(config)
        self.addCleanup(os.remove, f.name)
        rc, out = h.run_skiff(["--mode", "validate", "-c", f.name])
        self.assertEqual(rc, 1, out)
        self.assertIn("does not support virtual host or route specific configuration", out)


if __name__ == "__main__":
    unittest.main()
