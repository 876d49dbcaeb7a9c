"""Cluster outlier_detection (passive health) and common_lb_config's
healthy_panic_threshold, as Envoy's: consecutive 5xx, gateway failures,
local-origin failures, success rate and failure percentage eject a host for
base_ejection_time, the load balancer
skips it, it comes back on the interval timer; max_ejection_percent and
always_eject_one_host; panic mode; the outlier_detection.* stats and the
health flags of /clusters. Upstreams: Backend that answer every request with
one status, or reset it, switchable while the test runs."""

import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST


class StatusBackend(h.Backend):
    """Answers every request with `mode`: a status code (with a body), or
    "reset" (closes the connection without an answer); with `headers`
    added."""

    def __init__(self, name, mode, headers=()):
        self.mode = mode
        self.headers = headers
        super().__init__(name)

    def _respond(self, sock, req, body_iter):
        for _ in body_iter:
            pass
        if self.mode == "reset":
            return False
        self._send(sock, self.mode, f"{self.name}\n".encode(), headers=self.headers)
        return True


def config(backends, outlier, extra=None):
    c = h.cluster("web", [(LOCALHOST, b.port) for b in backends],
                  extra={"outlier_detection": outlier, **(extra or {})})
    return h.bootstrap([h.listener("ingress", [h.route("/", cluster="web")])], [c])


def od_stat(skiff, name):
    return skiff.stat(f"cluster.web.outlier_detection.{name}")


def health_flags(skiff):
    """{address: flags} of cluster web in /clusters."""
    return h.cluster_host_values(skiff, "web", "health_flags")


def outlier_lines(skiff):
    """The /clusters lines of cluster web that outlier detection adds, as
    {key: value}: outlier::<name> for the cluster's, <address>::<name> for
    each host's success rates."""
    status, body = skiff.admin_get("/clusters")
    assert status == 200, body
    out = {}
    for line in body.splitlines():
        parts = line.split("::")
        if parts[0] != "web" or len(parts) != 4:
            continue
        if parts[1] == "outlier" or parts[2] in ("success_rate", "local_origin_success_rate"):
            out[f"{parts[1]}::{parts[2]}"] = parts[3]
    return out


def addr(backend):
    return f"{LOCALHOST}:{backend.port}"


class OutlierTestCase(unittest.TestCase):
    def backends(self, *modes):
        out = []
        for i, mode in enumerate(modes):
            b = StatusBackend(f"b{i}", mode)
            self.addCleanup(b.stop)
            out.append(b)
        return out

    def start(self, text, concurrency=1):
        skiff = h.Skiff(text, concurrency=concurrency)
        self.addCleanup(skiff.stop)
        return skiff

    def request(self, skiff):
        status, headers, body = h.http_request(skiff.port(), path="/x")
        return status, headers.get("x-backend"), body

    def send_until(self, skiff, predicate, what, timeout=20):
        """Sends requests, one at a time, until predicate() holds."""
        def step():
            self.request(skiff)
            return predicate()
        return h.wait_until(step, timeout, interval=0, what=what)


class ConsecutiveErrors(OutlierTestCase):
    def test_grpc_status_counts_only_for_grpc_requests(self):
        # As in Envoy's router: a gRPC request's grpc-status is its status
        # (14 UNAVAILABLE is a 503); on any other request it is an ordinary
        # field, and the 200 counts as a success.
        unavailable = StatusBackend("b0", 200, headers=("grpc-status: 14",))
        self.addCleanup(unavailable.stop)
        good, = self.backends(200)
        skiff = self.start(config([unavailable, good], {
            "consecutive_5xx": 3, "interval": "1s", "base_ejection_time": "300s",
            "max_ejection_percent": 100}))
        for _ in range(12):  # Six of them reach b0: 200s.
            self.assertEqual(self.request(skiff)[0], 200)
        seen = len(unavailable.requests)
        grpc = {"content-type": "application/grpc"}

        def grpc_step():
            h.http_request(skiff.port(), path="/x", headers=grpc)
            return od_stat(skiff, "ejections_enforced_consecutive_5xx") == 1
        h.wait_until(grpc_step, 20, interval=0, what="an ejection")
        # Had the plain requests counted, b0 would have been ejected before
        # any gRPC request reached it.
        self.assertGreaterEqual(len(unavailable.requests) - seen, 3)
        self.assertEqual(od_stat(skiff, "ejections_detected_consecutive_5xx"), 1)

    def test_consecutive_5xx_ejects_and_the_balancer_skips_the_host(self):
        bad, good = self.backends(503, 200)
        skiff = self.start(config([bad, good], {
            "consecutive_5xx": 3, "interval": "1s", "base_ejection_time": "300s",
            "max_ejection_percent": 100}))
        self.send_until(skiff, lambda: od_stat(skiff, "ejections_enforced_consecutive_5xx") == 1,
                        "an ejection")
        # The worker hears of it after the main thread decided.
        h.wait_until(lambda: skiff.stat("cluster.web.membership_healthy") == 1, 10,
                     what="membership_healthy 1")
        seen = len(bad.requests)
        for _ in range(10):
            status, backend, _ = self.request(skiff)
            self.assertEqual((status, backend), (200, "b1"))
        self.assertEqual(len(bad.requests), seen)
        self.assertEqual(health_flags(skiff), {addr(bad): "/failed_outlier_check",
                                               addr(good): "healthy"})
        # Envoy's lines; two hosts are too few for success rates (5): -1.
        self.assertEqual(outlier_lines(skiff), {
            "outlier::success_rate_average": "-1",
            "outlier::success_rate_ejection_threshold": "-1",
            "outlier::local_origin_success_rate_average": "-1",
            "outlier::local_origin_success_rate_ejection_threshold": "-1",
            f"{addr(bad)}::success_rate": "-1", f"{addr(bad)}::local_origin_success_rate": "-1",
            f"{addr(good)}::success_rate": "-1", f"{addr(good)}::local_origin_success_rate": "-1",
        })
        stats = skiff.stats()
        p = "cluster.web.outlier_detection."
        self.assertEqual(stats[p + "ejections_active"], 1)
        self.assertEqual(stats[p + "ejections_detected_consecutive_5xx"], 1)
        self.assertEqual(stats[p + "ejections_enforced_total"], 1)
        self.assertEqual(stats[p + "ejections_total"], 1)
        self.assertEqual(stats[p + "ejections_overflow"], 0)
        # 503 is a gateway error too, but enforcing_consecutive_gateway_failure
        # defaults to 0: detected, never enforced.
        self.assertEqual(stats[p + "ejections_enforced_consecutive_gateway_failure"], 0)
        self.assertEqual(stats["cluster.web.membership_total"], 2)
        # One of two healthy is 50%: not below the default panic threshold.
        self.assertEqual(stats["cluster.web.lb_healthy_panic"], 0)

    def test_strict_dns_hosts(self):
        # The detector learns a STRICT_DNS cluster's hosts from the resolver.
        bad, good = self.backends(503, 200)
        c = h.cluster("web", [("localhost", bad.port), ("localhost", good.port)],
                      type_="STRICT_DNS", extra={
                          "dns_lookup_family": "V4_ONLY",
                          "outlier_detection": {"consecutive_5xx": 2, "interval": "1s",
                                                "base_ejection_time": "300s",
                                                "max_ejection_percent": 50}})
        skiff = self.start(h.bootstrap([h.listener("ingress", [h.route("/", cluster="web")])],
                                       [c]))
        self.send_until(skiff, lambda: od_stat(skiff, "ejections_active") == 1, "an ejection")
        self.assertEqual(health_flags(skiff), {addr(bad): "/failed_outlier_check",
                                               addr(good): "healthy"})
        h.wait_until(lambda: skiff.stat("cluster.web.membership_healthy") == 1, 10,
                     what="membership_healthy 1")
        for _ in range(4):
            self.assertEqual(self.request(skiff)[:2], (200, "b1"))

    def test_a_host_comes_back_after_its_ejection_time(self):
        bad, good = self.backends(503, 200)
        skiff = self.start(config([bad, good], {
            "consecutive_5xx": 2, "interval": "0.1s", "base_ejection_time": "0.3s",
            "max_ejection_percent": 100}), concurrency=2)
        self.send_until(skiff, lambda: od_stat(skiff, "ejections_enforced_total") >= 1,
                        "an ejection")
        bad.mode = 200
        h.wait_until(lambda: od_stat(skiff, "ejections_active") == 0, 20,
                     what="the host to come back")
        self.assertEqual(health_flags(skiff), {addr(bad): "healthy", addr(good): "healthy"})
        seen = len(bad.requests)
        self.send_until(skiff, lambda: len(bad.requests) > seen, "requests to the host again")

    def test_gateway_failures(self):
        bad, good = self.backends(502, 200)
        skiff = self.start(config([bad, good], {
            "consecutive_5xx": 1000, "consecutive_gateway_failure": 2,
            "enforcing_consecutive_gateway_failure": 100, "interval": "1s",
            "base_ejection_time": "300s", "max_ejection_percent": 100}))
        self.send_until(
            skiff, lambda: od_stat(skiff, "ejections_enforced_consecutive_gateway_failure") == 1,
            "a gateway-failure ejection")
        self.assertEqual(od_stat(skiff, "ejections_detected_consecutive_5xx"), 0)
        self.assertEqual(health_flags(skiff)[addr(bad)], "/failed_outlier_check")

    def test_a_500_is_no_gateway_failure(self):
        bad, good = self.backends(500, 200)
        skiff = self.start(config([bad, good], {
            "consecutive_5xx": 1000, "consecutive_gateway_failure": 2,
            "enforcing_consecutive_gateway_failure": 100, "max_ejection_percent": 100}))
        for _ in range(10):
            self.request(skiff)
        self.assertEqual(len(bad.requests), 5)
        self.assertEqual(od_stat(skiff, "ejections_detected_consecutive_gateway_failure"), 0)
        self.assertEqual(od_stat(skiff, "ejections_active"), 0)

    def refused_and_good(self, outlier):
        refused = h.ReservedPort()
        self.addCleanup(refused.close)
        (good,) = self.backends(200)
        c = h.cluster("web", [(LOCALHOST, refused.port), (LOCALHOST, good.port)],
                      extra={"outlier_detection": outlier})
        skiff = self.start(h.bootstrap([h.listener("ingress", [h.route("/", cluster="web")])],
                                       [c]))
        return skiff, f"{LOCALHOST}:{refused.port}"

    def test_local_origin_failures_apart(self):
        # split_external_local_origin_errors: connect failures count as
        # local-origin failures, not as 5xx.
        skiff, refused = self.refused_and_good({
            "consecutive_5xx": 2, "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 2, "interval": "1s", "base_ejection_time": "300s",
            "max_ejection_percent": 100})
        self.send_until(
            skiff,
            lambda: od_stat(skiff, "ejections_enforced_consecutive_local_origin_failure") == 1,
            "a local-origin ejection")
        self.assertEqual(od_stat(skiff, "ejections_detected_consecutive_5xx"), 0)
        self.assertEqual(health_flags(skiff)[refused], "/failed_outlier_check")

    def test_resets_count_as_5xx_without_split(self):
        # As Envoy: an upstream reset is a 503 for outlier detection. (With
        # the split, a connection that was made resets the local-origin run
        # before each reset counts, so only consecutive_local_origin_failure: 1
        # would eject such a host, in Envoy as here.)
        bad, good = self.backends("reset", 200)
        skiff = self.start(config([bad, good], {
            "consecutive_5xx": 2, "interval": "1s", "base_ejection_time": "300s",
            "max_ejection_percent": 100}))
        self.send_until(skiff, lambda: od_stat(skiff, "ejections_enforced_consecutive_5xx") == 1,
                        "an ejection")
        self.assertEqual(health_flags(skiff)[addr(bad)], "/failed_outlier_check")

    def test_connect_failures_count_as_5xx_without_split(self):
        skiff, refused = self.refused_and_good({
            "consecutive_5xx": 2, "interval": "1s", "base_ejection_time": "300s",
            "max_ejection_percent": 100})
        self.send_until(skiff, lambda: od_stat(skiff, "ejections_enforced_consecutive_5xx") == 1,
                        "an ejection")
        self.assertEqual(health_flags(skiff)[refused], "/failed_outlier_check")
        h.wait_until(lambda: skiff.stat("cluster.web.membership_healthy") == 1, 10,
                     what="membership_healthy 1")
        for _ in range(4):
            self.assertEqual(self.request(skiff)[:2], (200, "b0"))


class SuccessRate(OutlierTestCase):
    def test_success_rate_ejects_over_every_workers_requests(self):
        # Five hosts, one failing every request; runs of errors never reach
        # consecutive_5xx. Each worker's counts go to the main thread every
        # interval, which judges their sum.
        backends = self.backends(503, 200, 200, 200, 200)
        skiff = self.start(config(backends, {
            "consecutive_5xx": 100000, "interval": "1s", "base_ejection_time": "300s",
            "max_ejection_percent": 20, "success_rate_request_volume": 3}), concurrency=2)
        self.send_until(skiff, lambda: od_stat(skiff, "ejections_enforced_success_rate") == 1,
                        "a success-rate ejection", timeout=60)
        self.assertEqual(od_stat(skiff, "ejections_detected_consecutive_5xx"), 0)
        flags = health_flags(skiff)
        self.assertEqual(flags[addr(backends[0])], "/failed_outlier_check")
        self.assertEqual(sorted(flags.values()).count("healthy"), 4)
        lines = outlier_lines(skiff)
        for b in backends:  # A number, or -1 for an interval with too few requests.
            self.assertGreaterEqual(float(lines[f"{addr(b)}::success_rate"]), -1)
        self.assertGreaterEqual(float(lines["outlier::success_rate_ejection_threshold"]), -1)

    def test_failure_percentage(self):
        backends = self.backends(503, 200)
        skiff = self.start(config(backends, {
            "consecutive_5xx": 100000, "interval": "1s", "base_ejection_time": "300s",
            "max_ejection_percent": 50, "enforcing_success_rate": 0,
            "enforcing_failure_percentage": 100, "failure_percentage_minimum_hosts": 2,
            "failure_percentage_request_volume": 3}))
        self.send_until(
            skiff, lambda: od_stat(skiff, "ejections_enforced_failure_percentage") == 1,
            "a failure-percentage ejection", timeout=60)
        self.assertEqual(health_flags(skiff)[addr(backends[0])], "/failed_outlier_check")


class EjectionLimits(OutlierTestCase):
    def test_max_ejection_percent(self):
        backends = self.backends(503, 503, 503, 200)
        skiff = self.start(config(backends, {
            "consecutive_5xx": 2, "interval": "1s", "base_ejection_time": "300s",
            "max_ejection_percent": 50}))
        self.send_until(skiff, lambda: od_stat(skiff, "ejections_overflow") >= 1,
                        "an ejection refused")
        self.assertEqual(od_stat(skiff, "ejections_active"), 2)
        flags = health_flags(skiff)
        self.assertEqual(sorted(flags.values()),
                         ["/failed_outlier_check", "/failed_outlier_check", "healthy", "healthy"])
        self.assertEqual(flags[addr(backends[3])], "healthy")

    def test_default_percent_ejects_none_of_two_hosts(self):
        # Envoy: one of two hosts is 50%, over the default 10%.
        bad, good = self.backends(503, 200)
        skiff = self.start(config([bad, good], {"consecutive_5xx": 2}))
        self.send_until(skiff, lambda: od_stat(skiff, "ejections_overflow") >= 1,
                        "an ejection refused")
        self.assertEqual(od_stat(skiff, "ejections_active"), 0)
        self.assertEqual(od_stat(skiff, "ejections_detected_consecutive_5xx"),
                         od_stat(skiff, "ejections_overflow"))
        self.assertEqual(health_flags(skiff)[addr(bad)], "healthy")

    def test_always_eject_one_host(self):
        bad, good = self.backends(503, 200)
        skiff = self.start(config([bad, good], {"consecutive_5xx": 2,
                                                "always_eject_one_host": True}))
        self.send_until(skiff, lambda: od_stat(skiff, "ejections_active") == 1, "an ejection")
        self.assertEqual(health_flags(skiff)[addr(bad)], "/failed_outlier_check")


class PanicThreshold(OutlierTestCase):
    OUTLIER = {"consecutive_5xx": 2, "interval": "1s", "base_ejection_time": "300s",
               "max_ejection_percent": 100}

    def eject_both(self, skiff):
        self.send_until(skiff, lambda: od_stat(skiff, "ejections_active") == 2,
                        "both hosts ejected")
        h.wait_until(lambda: skiff.stat("cluster.web.membership_healthy") == 0, 10,
                     what="membership_healthy 0")

    def test_panic_balances_over_every_host(self):
        backends = self.backends(503, 503)
        skiff = self.start(config(backends, self.OUTLIER))
        self.eject_both(skiff)
        panics = skiff.stat("cluster.web.lb_healthy_panic")
        seen = [len(b.requests) for b in backends]
        for _ in range(4):
            status, backend, _ = self.request(skiff)
            self.assertEqual(status, 503)
            self.assertIsNotNone(backend)  # The upstream's 503, not skiff's.
        self.assertEqual([len(b.requests) - s for b, s in zip(backends, seen)], [2, 2])
        self.assertEqual(skiff.stat("cluster.web.lb_healthy_panic"), panics + 4)

    def test_no_panic_at_zero_means_no_healthy_upstream(self):
        backends = self.backends(503, 503)
        skiff = self.start(config(backends, self.OUTLIER, {
            "common_lb_config": {"healthy_panic_threshold": {"value": 0}}}))
        self.eject_both(skiff)
        status, backend, body = self.request(skiff)
        self.assertEqual((status, backend, body), (503, None, b"no healthy upstream"))
        self.assertEqual(skiff.stat("cluster.web.upstream_cx_none_healthy"), 1)
        self.assertEqual(skiff.stat("cluster.web.lb_healthy_panic"), 0)


class Refused(unittest.TestCase):
    def validate(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(text)
            f.flush()
            return h.run_skiff(["--mode", "validate", "-c", f.name])

    def test_what_is_not_implemented_is_refused_by_path(self):
        p = "static_resources.clusters[0]"
        for outlier, cluster_extra, expected in [
            ({"monitors": [{"name": "m"}]}, {},
             f"{p}.outlier_detection.monitors: not supported yet"),
            ({"failure_percentage_threshold": 101}, {},
             f"{p}.outlier_detection.failure_percentage_threshold: must be at most 100"),
            ({"consecutive_5xx": 3}, {"type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
                                      "load_assignment": None},
             f"{p}.outlier_detection: is not supported on an ORIGINAL_DST cluster yet"),
        ]:
            c = h.cluster("web", [], extra={"outlier_detection": outlier, **cluster_extra})
            if "load_assignment" in cluster_extra:
                del c["load_assignment"]
            text = h.bootstrap([h.listener("ingress", [h.route("/", cluster="web")])], [c])
            with self.subTest(expected=expected):
                rc, out = self.validate(text)
                self.assertNotEqual(rc, 0, out)
                self.assertIn(expected, out)
        # What Istio sends for a DestinationRule's outlierDetection loads.
        c = h.cluster("web", [(LOCALHOST, 1)], extra={
            "outlier_detection": {"consecutive_5xx": 5, "consecutive_gateway_failure": 0,
                                  "enforcing_consecutive_gateway_failure": 0,
                                  "enforcing_success_rate": 0, "interval": "10s",
                                  "base_ejection_time": "30s", "max_ejection_percent": 100},
            "common_lb_config": {"healthy_panic_threshold": {}}})
        rc, out = self.validate(h.bootstrap([h.listener("ingress", [h.route("/", cluster="web")])],
                                            [c]))
        self.assertEqual(rc, 0, out)
