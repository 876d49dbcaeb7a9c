"""The process around the proxy: --mode validate, the admin API, graceful
shutdown on SIGTERM/SIGINT and /quitquitquit."""

import json
import os
import re
import signal
import socket
import tempfile
import threading
import time
import unittest

import skiffharness as h
from skiffharness import LOCALHOST


def write_config(testcase, text):
    fd, path = tempfile.mkstemp(suffix=".yaml", prefix="skiff-validate-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    testcase.addCleanup(os.unlink, path)
    return path


def simple_config(cluster_extra=None, hcm_extra=None, http_filters=None):
    lst = h.listener("ingress", [h.route("/", cluster="backend")], hcm_extra=hcm_extra)
    if http_filters is not None:
        lst["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"] = http_filters
    return h.bootstrap([lst], [h.cluster("backend", [(LOCALHOST, 8080)], extra=cluster_extra)])


class ValidateTest(unittest.TestCase):
    def validate(self, text):
        return h.run_skiff(["--mode", "validate", "-c", write_config(self, text)])

    def test_valid_config_prints_ok(self):
        rc, out = self.validate(simple_config())
        self.assertEqual(rc, 0, out)
        self.assertIn("OK", out)

    def test_unsupported_lb_policy_names_field_path(self):
        rc, out = self.validate(simple_config(cluster_extra={"lb_policy": "LOAD_BALANCING_POLICY_CONFIG"}))
        self.assertEqual(rc, 1, out)
        self.assertIn("static_resources.clusters[0].lb_policy", out)
        self.assertIn("LOAD_BALANCING_POLICY_CONFIG", out)
        self.assertNotIn("OK", out.split())

    def test_unknown_field_is_refused(self):
        rc, out = self.validate(simple_config(cluster_extra={"no_such_field_xyz": 1}))
        self.assertEqual(rc, 1, out)
        self.assertIn("no_such_field_xyz", out)

    def test_unknown_filter_type_is_refused(self):
        bogus = {"name": "bogus", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.nonexistent.v3.Nope"}}
        rc, out = self.validate(simple_config(http_filters=[bogus, h.ROUTER]))
        self.assertEqual(rc, 1, out)
        self.assertIn("nonexistent", out)

    def test_route_to_undefined_cluster_is_refused(self):
        text = h.bootstrap([h.listener("ingress", [h.route("/", cluster="missing")])],
                           [h.cluster("backend", [(LOCALHOST, 8080)])])
        rc, out = self.validate(text)
        self.assertEqual(rc, 1, out)
        self.assertIn("missing", out)

    def test_yaml_syntax_error_is_refused(self):
        rc, out = self.validate("static_resources: [unclosed\n")
        self.assertEqual(rc, 1, out)
        self.assertTrue(out.strip(), "no error message")

    def test_missing_file_is_an_error(self):
        rc, out = h.run_skiff(["--mode", "validate", "-c", "/nonexistent/skiff.yaml"])
        self.assertNotEqual(rc, 0, out)
        self.assertIn("/nonexistent/skiff.yaml", out)

    def test_validate_does_not_listen(self):
        # Validation must not bind anything: a fixed port that is taken is fine.
        with socket.socket() as s:
            s.bind((LOCALHOST, 0))
            s.listen()
            port = s.getsockname()[1]
            text = h.bootstrap([h.listener("ingress", [h.route("/", direct="x")], port=port)])
            rc, out = self.validate(text)
            self.assertEqual(rc, 0, out)


class CommandLineTest(unittest.TestCase):
    def test_bad_command_lines_fail_with_a_message(self):
        conf = h.source_path("conf", "default.yaml")
        cases = {
            "no config": ([], "-c"),
            "unknown flag": (["-c", conf, "--bogus", "1"], "--bogus"),
            "bad log level": (["-c", conf, "--log-level", "loud"], "loud"),
            "bad concurrency": (["-c", conf, "--concurrency", "many"], "many"),
            "bad mode": (["-c", conf, "--mode", "dance"], "dance"),
        }
        for name, (args, mention) in cases.items():
            with self.subTest(case=name):
                rc, out = h.run_skiff(args, timeout=10)
                self.assertNotEqual(rc, 0, out)
                self.assertIn(mention, out)

    def test_help(self):
        rc, out = h.run_skiff(["--help"], timeout=10)
        self.assertEqual(rc, 0)
        self.assertIn("--admin-address-path", out)


class AdminTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("first", [h.route("/", direct="one\n")], stat_prefix="first_http"),
             h.listener("second", [h.route("/", direct="two\n")], stat_prefix="second_http")]))

    def test_listeners_json(self):
        status, body = self.skiff.admin_get("/listeners?format=json")
        self.assertEqual(status, 200)
        statuses = json.loads(body)["listener_statuses"]
        self.assertEqual(sorted(s["name"] for s in statuses), ["first", "second"])
        ports = self.skiff.listener_ports()
        self.assertNotEqual(ports["first"], ports["second"])
        for name, want in (("first", b"one\n"), ("second", b"two\n")):
            self.assertNotEqual(ports[name], 0)
            self.assertEqual(h.http_request(ports[name])[2], want)
        for s in statuses:
            self.assertEqual(s["local_address"]["socket_address"]["address"], LOCALHOST)

    def test_ready(self):
        self.assertEqual(self.skiff.admin_get("/ready")[0], 200)

    def test_stats_text(self):
        h.http_request(self.skiff.port("first"))
        stats = self.skiff.stats()
        self.assertGreaterEqual(stats.get("http.first_http.downstream_rq_total", 0), 1)
        self.assertIn("http.second_http.downstream_rq_total", stats)

    def test_stats_prometheus(self):
        h.http_request(self.skiff.port("first"))
        status, body = self.skiff.admin_get("/stats/prometheus")
        self.assertEqual(status, 200)
        samples = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        self.assertIn("# TYPE ", body)
        self.assertTrue(samples, "no samples")
        self.assertTrue(all(re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?", n) for n in samples),
                        [n for n in samples if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?", n)])
        self.assertTrue(any("downstream_rq_total" in n and v >= 1 for n, v in samples.items()), body)

    # Envoy's tag extraction: http.first_http.downstream_rq_total is exported as
    # envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="first_http"},
    # which Envoy dashboards and alerts expect.
    def test_stats_prometheus_envoy_tags(self):
        status, body = self.skiff.admin_get("/stats/prometheus")
        self.assertEqual(status, 200)
        self.assertIn('envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="first_http"}', body)

    def test_config_dump(self):
        status, body = self.skiff.admin_get("/config_dump")
        self.assertEqual(status, 200)
        dump = json.loads(body)
        self.assertIn("configs", dump)
        self.assertIn("first", body)

    def test_mutating_admin_endpoints_need_post(self):
        # As in Envoy, a GET (a stray link, a crawler) must not stop the server.
        status, _ = self.skiff.admin_get("/quitquitquit")
        self.assertNotEqual(status, 200)
        self.assertGreaterEqual(status, 400)
        self.assertIsNone(self.skiff.proc.poll())
        self.assertEqual(self.skiff.admin_get("/ready")[0], 200)

    def test_unknown_admin_path_is_404(self):
        self.assertEqual(self.skiff.admin_get("/no/such/admin/page")[0], 404)


class PortConflictTest(h.SkiffTestCase):
    def test_admin_port_in_use_by_another_skiff_fails(self):
        # Envoy refuses to start when its admin address is taken. SO_REUSEPORT
        # on the admin socket would let a second process share it, and admin
        # requests (stats, /quitquitquit) would reach either process at random.
        first = self.start_skiff(h.bootstrap([h.listener("ingress", [h.route("/", direct="x")])]))
        admin_port = first.admin[1]
        text = h.bootstrap([h.listener("ingress", [h.route("/", direct="x")])])
        text = text.replace("port_value: 0", f"port_value: {admin_port}", 1)  # the admin comes first
        with self.assertRaises((RuntimeError, TimeoutError)) as cm:
            self.start_skiff(text)
        self.assertIn("exited with", str(cm.exception))
        self.assertEqual(first.admin_get("/ready")[0], 200)


class ShutdownTest(h.SkiffTestCase):
    def start(self, drain="5"):
        self.backend = self.start_backend()
        self.skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="backend")])],
            [h.cluster("backend", [(LOCALHOST, self.backend.port)])]),
            extra_args=["--drain-time-s", drain])
        self.port = self.skiff.port("ingress")

    def in_flight_then_signal(self, sig):
        self.start()
        n = 20
        results = [None] * n

        def one(i):
            try:
                results[i] = h.http_request(self.port, path="/delay?ms=1000", timeout=15)[:3:2]
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                results[i] = repr(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        h.wait_until(lambda: len(self.backend.requests) >= n, 10, what="all requests upstream")
        self.skiff.signal(sig)
        # New connections are refused (or closed unanswered) while the old
        # ones drain.
        def refused():
            try:
                c = socket.create_connection((LOCALHOST, self.port), timeout=2)
            except OSError:
                return True
            try:
                c.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
                return not c.recv(100)
            except OSError:
                return True
            finally:
                c.close()

        h.wait_until(refused, 3, interval=0.1, what="skiff to stop accepting after the signal")
        for t in threads:
            t.join(timeout=15)
        self.assertEqual(results, [(200, b"delayed\n")] * n)
        rc = self.skiff.wait(timeout=10)
        self.assertEqual(rc, 0, self.skiff.log_tail())

    def test_sigterm_drains_in_flight_requests(self):
        self.in_flight_then_signal(signal.SIGTERM)

    def test_sigint_drains_in_flight_requests(self):
        self.in_flight_then_signal(signal.SIGINT)

    def test_idle_sigterm_exits_quickly(self):
        self.start(drain="8")
        # An idle keep-alive connection must not hold the process for the drain time.
        idle = socket.create_connection((LOCALHOST, self.port), timeout=5)
        self.addCleanup(idle.close)
        idle.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertRegex(idle.recv(4096), rb"^HTTP/1.1 200 ")
        start = time.monotonic()
        self.skiff.signal(signal.SIGTERM)
        rc = self.skiff.wait(timeout=10)
        self.assertEqual(rc, 0)
        self.assertLess(time.monotonic() - start, 6, "an idle connection held skiff for the drain time")

    def test_drain_time_bounds_shutdown(self):
        # A request longer than the drain time does not keep skiff alive.
        self.start(drain="1")
        result = []
        t = threading.Thread(target=lambda: result.append(
            self._try(lambda: h.http_request(self.port, path="/delay?ms=5000", timeout=10))))
        t.start()
        h.wait_until(lambda: self.backend.requests, 5, what="request upstream")
        start = time.monotonic()
        self.skiff.signal(signal.SIGTERM)
        rc = self.skiff.wait(timeout=10)
        elapsed = time.monotonic() - start
        t.join(timeout=10)
        self.assertEqual(rc, 0)
        self.assertLess(elapsed, 4, "skiff outlived its 1 s drain time by far")
        self.assertNotEqual(result[0][:1], (200,), "the 5 s request cannot have completed")

    def test_keepalive_response_during_drain_closes(self):
        # A keep-alive connection that gets its response during the drain is
        # told to go away (Connection: close) and then closed.
        self.start()
        s = socket.create_connection((LOCALHOST, self.port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(b"GET /delay?ms=500 HTTP/1.1\r\nHost: x\r\n\r\n")
        h.wait_until(lambda: self.backend.requests, 5, what="request upstream")
        self.skiff.signal(signal.SIGTERM)
        data = h.read_to_eof(s)
        [(status, headers, body)] = h.parse_responses(data)
        self.assertEqual((status, body), (200, b"delayed\n"))
        self.assertEqual(headers.get("connection"), "close")
        self.assertEqual(self.skiff.wait(timeout=10), 0)

    @staticmethod
    def _try(fn):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - the caller inspects it
            return (repr(e),)

    def test_quitquitquit(self):
        self.start()
        status, _ = self.skiff.admin_request("POST", "/quitquitquit")
        self.assertEqual(status, 200)
        self.assertEqual(self.skiff.wait(timeout=10), 0)


if __name__ == "__main__":
    unittest.main()
