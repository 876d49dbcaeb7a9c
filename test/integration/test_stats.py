"""Stats that exist, at 0, from the moment the workers take a listener, before
any connection, as Envoy's do from config load: listener.<address>_<port>.*,
http.<stat_prefix>.* and tcp.<stat_prefix>.*, in /stats and in
/stats/prometheus; the first connections then count into those same names
(the sum over both workers). An LDS listener's stats, added and updated in
place, are checked in test_xds.py."""

import socket
import unittest

import skiffharness as h
from skiffharness import LOCALHOST
from test_tcp_proxy import tcp_listener, tcp_proxy

TIMEOUT = 10


class StatsBeforeTrafficTest(h.SkiffTestCase):
    def test_stats_are_0_before_any_connection_and_count_after(self):
        backend = h.Backend("backend")
        self.addCleanup(backend.stop)
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("web", [h.route("/", cluster="backend")], stat_prefix="web_http"),
             tcp_listener("relay", tcp_proxy("relay_tcp", "backend"))],
            [h.cluster("backend", [(LOCALHOST, backend.port)])]), concurrency=2)
        web, relay = skiff.port("web"), skiff.port("relay")
        names = ["http.web_http.downstream_rq_total", "http.web_http.downstream_cx_total",
                 "http.web_http.downstream_cx_active", f"listener.{LOCALHOST}_{web}.downstream_cx_total",
                 f"listener.{LOCALHOST}_{relay}.downstream_cx_total",
                 "tcp.relay_tcp.downstream_cx_total"]
        # Ready (admin /ready is 200) means every worker has taken the listeners.
        stats = skiff.stats()
        self.assertEqual({n: stats.get(n) for n in names}, {n: 0 for n in names})
        # A TCP proxy chain has no connection manager, so no http.* block.
        self.assertNotIn("http.relay_tcp.downstream_rq_total", stats)

        status, body = skiff.admin_get("/stats/prometheus")
        self.assertEqual(status, 200)
        lines = set(body.splitlines())
        self.assertIn('envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="web_http"} 0',
                      lines)
        self.assertIn('envoy_listener_downstream_cx_total{envoy_listener_address='
                      f'"{LOCALHOST}_{web}"}} 0', lines)
        self.assertTrue(any("relay_tcp" in line and "downstream_cx_total" in line
                            and line.endswith(" 0") for line in lines), body)

        self.assertEqual(h.http_request(web)[0], 200)
        with socket.create_connection((LOCALHOST, relay), timeout=TIMEOUT) as s:
            s.sendall(b"GET /relayed HTTP/1.0\r\nHost: b\r\n\r\n")
            self.assertTrue(h.read_to_eof(s).startswith(b"HTTP/1.1 200 "))
        counted = {"http.web_http.downstream_rq_total": 1, "http.web_http.downstream_cx_total": 1,
                   f"listener.{LOCALHOST}_{web}.downstream_cx_total": 1,
                   f"listener.{LOCALHOST}_{relay}.downstream_cx_total": 1,
                   "tcp.relay_tcp.downstream_cx_total": 1}
        h.wait_until(lambda: {n: skiff.stat(n) for n in counted} == counted, TIMEOUT,
                     what=f"{counted}")


if __name__ == "__main__":
    unittest.main()
