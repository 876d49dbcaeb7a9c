"""The fault injection filter (envoy.filters.http.fault) in front of the
router, with a real upstream: header-driven aborts and delays (the
x-envoy-fault-* headers work only because header_abort / header_delay are
configured), per-route, per-virtual-host overrides through
typed_per_filter_config, gRPC aborts, the upstream_cluster, downstream node
and header conditions, max_active_faults, a delay cut short by the stream
idle timeout, a client that goes away during a delay, and Envoy's flags (FI,
DI), details (fault_filter_abort) and http.<stat_prefix>.fault.* stats.
Nothing here asserts on time: a delay shows in the access log, in the stats,
and in a timeout that fires first."""

import os
import socket
import struct
import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
HCM_PATH = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"

def fault_filter(config):
    return {"name": "envoy.filters.http.fault", "typed_config": dict({"@type": FAULT_TYPE}, **config)}


def per_route(config):
    return {"envoy.filters.http.fault": dict({"@type": FAULT_TYPE}, **config)}


def reset_on_close(sock):
    """close() then sends a TCP RST: the client is gone at once (a FIN alone
    would be a half-close, after which HTTP/1 still answers)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return sock


def all_of(numerator=100):
    return {"numerator": numerator}


class FaultTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend()
        cls.dir = tempfile.mkdtemp(prefix="skiff-fault-")
        cls.log_path = os.path.join(cls.dir, "access.json")
        cls.addClassCleanup(lambda: (os.path.exists(cls.log_path) and os.remove(cls.log_path),
                                     os.rmdir(cls.dir)))
        top = fault_filter({
            "abort": {"header_abort": {}, "percentage": all_of()},
            "delay": {"header_delay": {}, "percentage": all_of()},
            "max_active_faults": 1,
            "abort_percent_runtime": "never.read",
        })
        routes = [
            dict(h.route("/fixed", cluster="backend"),
                 typed_per_filter_config=per_route(
                     {"abort": {"http_status": 418, "percentage": all_of()}})),
            dict(h.route("/grpc", cluster="backend"),
                 typed_per_filter_config=per_route(
                     {"abort": {"grpc_status": 14, "percentage": all_of()}})),
            dict(h.route("/other-cluster", cluster="backend"),
                 typed_per_filter_config=per_route(
                     {"abort": {"http_status": 503, "percentage": all_of()},
                      "upstream_cluster": "elsewhere"})),
            dict(h.route("/own-cluster", cluster="backend"),
                 typed_per_filter_config=per_route(
                     {"abort": {"http_status": 502, "percentage": all_of()},
                      "upstream_cluster": "backend"})),
            dict(h.route("/chaos", cluster="backend"),
                 typed_per_filter_config=per_route(
                     {"abort": {"http_status": 503, "percentage": all_of()},
                      "headers": [{"name": "x-chaos", "string_match": {"exact": "on"}}],
                      "downstream_nodes": ["node-a"]})),
            # Optional per-filter config of a type skiff lacks: ignored, as in Envoy.
            dict(h.route("/optional", cluster="backend"),
                 typed_per_filter_config={"envoy.filters.http.cors": {
                     "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                     "is_optional": True,
                     "config": {"@type": "type.googleapis.com/google.protobuf.Empty"}}}),
            h.route("/", cluster="backend"),
        ]
        main = h.listener("ingress", routes, hcm_extra={
            "http_filters": [top, h.ROUTER], "access_log": h.json_log(cls.log_path)})
        # A second virtual host whose own typed_per_filter_config applies to its routes.
        main["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
            "virtual_hosts"].insert(0, {
                "name": "vh_fault", "domains": ["vh.example"],
                "typed_per_filter_config": per_route(
                    {"abort": {"http_status": 451, "percentage": all_of()}}),
                "routes": [h.route("/", cluster="backend")]})
        # A delay far longer than the stream idle timeout.
        idle = h.listener("idle", [h.route("/", cluster="backend")], stat_prefix="idle_http",
                          hcm_extra={
                              "stream_idle_timeout": "0.5s",
                              "http_filters": [fault_filter(
                                  {"delay": {"fixed_delay": "3600s", "percentage": all_of()}}),
                                  h.ROUTER],
                              "access_log": h.json_log(cls.log_path)})
        cls.skiff = cls.class_skiff(h.bootstrap(
            [main, idle], [h.cluster("backend", [(LOCALHOST, cls.backend.port)])]))
        cls.port = cls.skiff.port("ingress")
        cls.idle_port = cls.skiff.port("idle")

    def get(self, path, test_id, headers=None, port=None, host=None):
        hdrs = {"x-test-id": test_id}
        if host:
            hdrs["host"] = host
        hdrs.update(headers or {})
        return h.http_request(port or self.port, path=path, headers=hdrs)

    def log_line(self, test_id):
        return h.access_log_entry(self.log_path, test_id)

    def backend_saw(self, test_id):
        return any(r.header("x-test-id") == test_id for r in list(self.backend.requests))

    def stat(self, name, prefix="ingress_http"):
        return self.skiff.stats().get(f"http.{prefix}.fault.{name}", 0)

    def test_no_header_no_fault(self):
        status, _, body = self.get("/plain", "plain")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"backend:/plain\n")
        self.assertIsNone(self.log_line("plain")["flags"])

    def test_header_abort(self):
        before = self.stat("aborts_injected")
        status, headers, body = self.get("/a", "abort", {"x-envoy-fault-abort-request": "503"})
        self.assertEqual(status, 503)
        self.assertEqual(body, b"fault filter abort")
        line = self.log_line("abort")
        self.assertEqual((line["code"], line["flags"], line["details"]),
                         (503, "FI", "fault_filter_abort"))
        self.assertFalse(self.backend_saw("abort"))
        self.assertEqual(self.stat("aborts_injected"), before + 1)
        h.wait_until(lambda: self.stat("active_faults") == 0, 10, what="active_faults back to 0")

    def test_header_abort_out_of_range_or_percentage_zero_passes(self):
        status, _, _ = self.get("/a", "bad-status", {"x-envoy-fault-abort-request": "600"})
        self.assertEqual(status, 200)
        status, _, _ = self.get("/a", "pct-zero", {"x-envoy-fault-abort-request": "503",
                                                   "x-envoy-fault-abort-request-percentage": "0"})
        self.assertEqual(status, 200)
        self.assertTrue(self.backend_saw("pct-zero"))

    def test_header_delay_then_proxied(self):
        before = self.stat("delays_injected")
        status, _, body = self.get("/d", "delay", {"x-envoy-fault-delay-request": "20"})
        self.assertEqual(status, 200)
        self.assertEqual(body, b"backend:/d\n")
        self.assertEqual(self.log_line("delay")["flags"], "DI")
        self.assertEqual(self.stat("delays_injected"), before + 1)

    def test_delay_then_abort(self):
        status, _, body = self.get("/da", "delay-abort", {"x-envoy-fault-delay-request": "10",
                                                          "x-envoy-fault-abort-request": "504"})
        self.assertEqual(status, 504)
        self.assertEqual(self.log_line("delay-abort")["flags"], "DI,FI")
        self.assertFalse(self.backend_saw("delay-abort"))

    def test_delay_longer_than_stream_idle_timeout(self):
        # The idle timeout fires during the delay: Envoy's 408 and SI, and the
        # request never reaches the upstream.
        status, _, body = self.get("/", "idle", port=self.idle_port)
        self.assertEqual(status, 408)
        self.assertEqual(body, b"stream timeout")
        line = self.log_line("idle")
        self.assertEqual(line["flags"], "DI,SI")
        self.assertFalse(self.backend_saw("idle"))
        h.wait_until(lambda: self.stat("active_faults", "idle_http") == 0, 10,
                     what="the idle listener's active_faults back to 0")

    def test_client_gone_during_delay(self):
        s = reset_on_close(socket.create_connection((LOCALHOST, self.port), timeout=10))
        s.sendall(b"GET /gone HTTP/1.1\r\nhost: a\r\nx-test-id: gone\r\n"
                  b"x-envoy-fault-delay-request: 3600000\r\n\r\n")
        h.wait_until(lambda: self.stat("active_faults") == 1, 10, what="the delay to start")
        s.close()
        h.wait_until(lambda: self.stat("active_faults") == 0, 10, what="the fault to end")
        self.assertEqual(self.log_line("gone")["flags"], "DI,DC")
        self.assertFalse(self.backend_saw("gone"))
        status, _, _ = self.get("/after", "after-gone")
        self.assertEqual(status, 200)

    def test_max_active_faults_overflow(self):
        # One request held in a delay is the one fault max_active_faults lets
        # in: the next fault is not injected, and counted as an overflow.
        s = reset_on_close(socket.create_connection((LOCALHOST, self.port), timeout=10))
        self.addCleanup(s.close)
        s.sendall(b"GET /held HTTP/1.1\r\nhost: a\r\nx-test-id: held\r\n"
                  b"x-envoy-fault-delay-request: 3600000\r\n\r\n")
        h.wait_until(lambda: self.stat("active_faults") == 1, 10, what="the delay to start")
        before = self.stat("faults_overflow")
        status, _, _ = self.get("/o", "overflow", {"x-envoy-fault-abort-request": "503"})
        self.assertEqual(status, 200)
        self.assertEqual(self.stat("faults_overflow"), before + 1)
        s.close()
        h.wait_until(lambda: self.stat("active_faults") == 0, 10, what="the held fault to end")

    def test_route_override_replaces_the_filter_config(self):
        status, _, body = self.get("/fixed", "fixed", {"x-envoy-fault-abort-request": "500"})
        self.assertEqual(status, 418)  # The route's fixed abort; header controls are the filter's.
        self.assertEqual(body, b"fault filter abort")
        self.assertEqual(self.log_line("fixed")["flags"], "FI")

    def test_virtual_host_override(self):
        status, _, _ = self.get("/x", "vhost", host="vh.example")
        self.assertEqual(status, 451)

    def test_optional_unknown_per_filter_config_is_ignored(self):
        status, _, _ = self.get("/optional", "optional")
        self.assertEqual(status, 200)

    def test_upstream_cluster_condition(self):
        self.assertEqual(self.get("/other-cluster", "oc")[0], 200)
        self.assertEqual(self.get("/own-cluster", "own")[0], 502)

    def test_header_and_downstream_node_conditions(self):
        self.assertEqual(self.get("/chaos", "c1", {"x-chaos": "on"})[0], 200)  # No node.
        self.assertEqual(
            self.get("/chaos", "c2", {"x-envoy-downstream-service-node": "node-a"})[0], 200)
        self.assertEqual(self.get("/chaos", "c3", {"x-chaos": "off",
                                                   "x-envoy-downstream-service-node": "node-a"})[0],
                         200)
        self.assertEqual(self.get("/chaos", "c4", {"x-chaos": "on",
                                                   "x-envoy-downstream-service-node": "node-a"})[0],
                         503)

    def test_downstream_cluster_stats(self):
        status, _, _ = self.get("/dc", "dc", {"x-envoy-fault-abort-request": "500",
                                              "x-envoy-downstream-service-cluster": "frontend"})
        self.assertEqual(status, 500)
        self.assertEqual(self.stat("frontend.aborts_injected"), 1)

    def test_grpc_abort_sends_the_grpc_status(self):
        rc, out, err = h.curl("-i", "--http2-prior-knowledge", "-H", "content-type: application/grpc",
                              "-H", "x-test-id: grpc", "--data-binary", "",
                              f"http://{LOCALHOST}:{self.port}/grpc")
        self.assertEqual(rc, 0, err)
        head = out.decode("latin-1").lower()
        self.assertIn("http/2 200", head)
        self.assertIn("grpc-status: 14", head)
        self.assertIn("grpc-message: fault filter abort", head)
        self.assertEqual(self.log_line("grpc")["flags"], "FI")


class FaultConfigTest(unittest.TestCase):
    def validate(self, http_filters, routes=None):
        config = h.bootstrap([h.listener("ingress", routes or [h.route("/", direct="x")],
                                         hcm_extra={"http_filters": http_filters})])
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(config)
        self.addCleanup(os.remove, f.name)
        return h.run_skiff(["--mode", "validate", "-c", f.name])

    def test_unsupported_fields_are_refused_by_path(self):
        rc, out = self.validate([fault_filter({
            "abort": {"http_status": 503, "percentage": all_of()},
            "response_rate_limit": {"fixed_limit": {"limit_kbps": 1}}}), h.ROUTER])
        self.assertEqual(rc, 1, out)
        self.assertIn(HCM_PATH + ".http_filters[0].typed_config.response_rate_limit: "
                      "not supported yet", out)

    def test_bad_status_is_refused_by_path(self):
        rc, out = self.validate([fault_filter({"abort": {"http_status": 99}}), h.ROUTER])
        self.assertEqual(rc, 1, out)
        self.assertIn(HCM_PATH + ".http_filters[0].typed_config.abort.http_status: "
                      "99 is not in [200, 600)", out)

    def test_per_filter_config_of_a_filter_without_one_is_refused(self):
        route = dict(h.route("/", direct="x"), typed_per_filter_config={
            "envoy.filters.http.router": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
        rc, out = self.validate([h.ROUTER], [route])
        self.assertEqual(rc, 1, out)
        self.assertIn(HCM_PATH + ".route_config.virtual_hosts[0].routes[0].typed_per_filter_config"
                      "[\"envoy.filters.http.router\"]: the filter 'envoy.filters.http.router' "
                      "(type.googleapis.com/envoy.extensions.filters.http.router.v3.Router) does "
                      "not support virtual host or route specific configuration", out)

    def test_per_filter_config_of_an_unknown_type_is_refused(self):
        route = dict(h.route("/", direct="x"), typed_per_filter_config={
            "envoy.filters.http.cors": {"@type": "type.googleapis.com/google.protobuf.Empty"}})
        rc, out = self.validate([h.ROUTER], [route])
        self.assertEqual(rc, 1, out)
        self.assertIn("typed_per_filter_config[\"envoy.filters.http.cors\"]: type URL "
                      "'type.googleapis.com/google.protobuf.Empty' is not supported yet", out)


class FaultStatsAtLoadTest(h.SkiffTestCase):
    """As in Envoy, a filter's stats are made with its config: /stats shows
    them at 0 on every worker before any request has been faulted (before,
    they appeared with a worker's first fault)."""

    def test_stats_read_zero_before_the_first_fault(self):
        never = fault_filter({"abort": {"http_status": 503, "percentage": all_of(0)}})
        skiff = self.start_skiff(h.bootstrap([h.listener(
            "ingress", [h.route("/", direct="ok")], stat_prefix="quiet_http",
            hcm_extra={"http_filters": [never, h.ROUTER]})]))
        stats = skiff.stats()
        for name in ("aborts_injected", "delays_injected", "faults_overflow",
                     "response_rl_injected", "active_faults"):
            self.assertEqual(stats.get(f"http.quiet_http.fault.{name}"), 0, name)
        status, _, _ = h.http_request(skiff.port("ingress"), path="/")
        self.assertEqual(status, 200)
        self.assertEqual(skiff.stat("http.quiet_http.fault.aborts_injected"), 0)


if __name__ == "__main__":
    unittest.main()
