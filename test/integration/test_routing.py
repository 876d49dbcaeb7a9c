"""Routing end to end: virtual hosts by Host, path/prefix/regex/header matches,
rewrites, header edits, redirects, weighted clusters and round robin over two
real backends."""

import json
import unittest

import skiffharness as h
from skiffharness import LOCALHOST


def to(cluster, **action):
    return {"cluster": cluster, **action}


class RoutingTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.a = cls.class_backend("a")
        cls.b = cls.class_backend("b")
        api_routes = [
            {"match": {"path": "/exact"}, "route": to("a")},
            {"match": {"safe_regex": {"regex": "/re/[0-9]+"}}, "route": to("b")},
            {"match": {"prefix": "/", "headers": [{"name": "x-pick", "string_match": {"exact": "b"}}]},
             "route": to("b")},
            {"match": {"prefix": "/old/"}, "route": to("a", prefix_rewrite="/new/")},
            {"match": {"prefix": "/edit"},
             "route": to("a"),
             "request_headers_to_add": [{"header": {"key": "x-added", "value": "by-route"}}],
             "request_headers_to_remove": ["x-secret"],
             "response_headers_to_add": [{"header": {"key": "x-resp", "value": "from-skiff"}}]},
            {"match": {"prefix": "/go"}, "redirect": {"path_redirect": "/went", "response_code": "FOUND"}},
            {"match": {"prefix": "/unavailable"},
             "direct_response": {"status": 503, "body": {"inline_string": "maintenance\n"}}},
            {"match": {"prefix": "/split"},
             "route": {"weighted_clusters": {"clusters": [{"name": "a", "weight": 50},
                                                          {"name": "b", "weight": 50}]}}},
            {"match": {"prefix": "/rr"}, "route": to("ab")},
            {"match": {"prefix": "/a/"}, "route": to("a")},
            # A cluster named by a header that no cluster has: Envoy's
            # cluster_not_found_response_code (503 unless set).
            {"match": {"prefix": "/nc/default"}, "route": {"cluster_header": "x-cluster"}},
            {"match": {"prefix": "/nc/404"},
             "route": {"cluster_header": "x-cluster", "cluster_not_found_response_code": "NOT_FOUND"}},
            {"match": {"prefix": "/nc/500"},
             "route": {"cluster_header": "x-cluster",
                       "cluster_not_found_response_code": "INTERNAL_SERVER_ERROR"}},
            {"match": {"prefix": "/nc/503"},
             "route": {"cluster_header": "x-cluster",
                       "cluster_not_found_response_code": "SERVICE_UNAVAILABLE"}},
        ]
        lst = h.listener("ingress", [])
        hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["route_config"]["virtual_hosts"] = [
            {"name": "api", "domains": ["api.example.com", "api.example.com:*"], "routes": api_routes},
            {"name": "wild", "domains": ["*.example.com"],
             "routes": [{"match": {"prefix": "/"}, "direct_response": {
                 "status": 200, "body": {"inline_string": "wildcard\n"}}}]},
            {"name": "default", "domains": ["*"],
             "routes": [{"match": {"prefix": "/"}, "direct_response": {
                 "status": 200, "body": {"inline_string": "default\n"}}}]},
        ]
        cls.skiff = cls.class_skiff(h.bootstrap(
            [lst],
            [h.cluster("a", [(LOCALHOST, cls.a.port)]),
             h.cluster("b", [(LOCALHOST, cls.b.port)]),
             h.cluster("ab", [(LOCALHOST, cls.a.port), (LOCALHOST, cls.b.port)],
                       extra={"lb_policy": "ROUND_ROBIN"})]))
        cls.port = cls.skiff.port("ingress")

    def req(self, path, host="api.example.com", headers=None, **kw):
        hdrs = {"Host": host, **(headers or {})}
        return h.http_request(self.port, path=path, headers=hdrs, **kw)

    def backend_of(self, path, **kw):
        status, headers, body = self.req(path, **kw)
        self.assertEqual(status, 200, body)
        return headers.get("x-backend")

    def test_virtual_host_by_host_header(self):
        self.assertEqual(self.req("/x", host="www.example.com")[2], b"wildcard\n")
        self.assertEqual(self.req("/x", host="other.test")[2], b"default\n")
        self.assertEqual(self.backend_of("/a/x", host="api.example.com"), "a")
        self.assertEqual(self.backend_of("/a/x", host=f"api.example.com:{self.port}"), "a")
        self.assertEqual(self.backend_of("/a/x", host="API.Example.COM"), "a")

    def test_exact_path(self):
        self.assertEqual(self.backend_of("/exact"), "a")
        self.assertEqual(self.backend_of("/exact?q=1"), "a")  # the query is not part of the path
        self.assertEqual(self.req("/exactly")[0], 404)

    def test_regex(self):
        self.assertEqual(self.backend_of("/re/123"), "b")
        self.assertEqual(self.req("/re/12x")[0], 404)  # safe_regex matches the whole path

    def test_header_match(self):
        self.assertEqual(self.backend_of("/a/x", headers={"x-pick": "b"}), "b")
        self.assertEqual(self.backend_of("/a/x", headers={"x-pick": "c"}), "a")

    def test_prefix_rewrite(self):
        status, _, body = self.req("/old/headers")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"backend:/new/headers\n")

    def test_header_edits(self):
        status, headers, body = self.req("/edit", headers={"x-secret": "s3cret", "x-keep": "1"})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("x-resp"), "from-skiff")
        seen = dict(self.a.requests[-1].headers)
        self.assertEqual(seen.get("x-added"), "by-route")
        self.assertNotIn("x-secret", seen)
        self.assertEqual(seen.get("x-keep"), "1")

    def test_redirect(self):
        status, headers, _ = self.req("/go/somewhere")
        self.assertEqual(status, 302)
        self.assertRegex(headers.get("location", ""), r"^http://api\.example\.com(:\d+)?/went$")

    def test_direct_response_status(self):
        status, _, body = self.req("/unavailable")
        self.assertEqual((status, body), (503, b"maintenance\n"))

    def test_weighted_clusters_reach_both(self):
        seen = {self.backend_of("/split") for _ in range(40)}
        self.assertEqual(seen, {"a", "b"})  # 40 fair coin flips: all one side has p = 2^-39

    def test_round_robin_over_endpoints(self):
        seen = [self.backend_of("/rr") for _ in range(10)]
        self.assertEqual(set(seen), {"a", "b"}, seen)
        # Per worker the picks alternate, so neither endpoint gets more than
        # its half plus one per worker.
        self.assertLessEqual(abs(seen.count("a") - seen.count("b")), 4, seen)

    def test_admin_clusters_lists_hosts(self):
        status, body = self.skiff.admin_get("/clusters")
        self.assertEqual(status, 200)
        for port in (self.a.port, self.b.port):
            self.assertIn(f"ab::{LOCALHOST}:{port}::health_flags::healthy", body.splitlines())
        self.assertIn(f"a::{LOCALHOST}:{self.a.port}::health_flags::healthy", body.splitlines())

    def test_membership_gauges_count_hosts_once(self):
        stats = self.skiff.stats()
        self.assertEqual(stats.get("cluster.ab.membership_total"), 2)
        self.assertEqual(stats.get("cluster.ab.membership_healthy"), 2)
        self.assertEqual(stats.get("cluster.a.membership_total"), 1)

    def test_no_matching_route_in_vhost_is_404(self):
        status, _, _ = self.req("/nowhere")
        self.assertEqual(status, 404)
        stats = self.skiff.stats()
        self.assertGreaterEqual(stats.get("http.ingress_http.no_route", 0), 1)

    def test_unknown_cluster_answers_cluster_not_found_response_code(self):
        before = self.skiff.stat("http.ingress_http.no_cluster") or 0
        for path, want in (("/nc/default", 503), ("/nc/404", 404), ("/nc/500", 500),
                           ("/nc/503", 503)):
            status, headers, body = self.req(path, headers={"x-cluster": "nowhere"})
            self.assertEqual((status, body), (want, b""), path)
            self.assertNotIn("x-backend", headers)
        # No header at all: no cluster either.
        status, _, body = self.req("/nc/404")
        self.assertEqual((status, body), (404, b""))
        # A known cluster through the same route is proxied as before.
        self.assertEqual(self.backend_of("/nc/404", headers={"x-cluster": "b"}), "b")
        self.assertEqual(self.skiff.stat("http.ingress_http.no_cluster"), before + 5)

    def test_direct_responses_and_redirects_count_rq_direct_response(self):
        # Envoy's router counts both under rq_direct_response (a redirect is
        # one of its direct response entries).
        before = self.skiff.stat("http.ingress_http.rq_direct_response") or 0
        self.assertEqual(self.req("/unavailable")[0], 503)
        self.assertEqual(self.req("/go")[0], 302)
        self.assertEqual(self.req("/exact")[0], 200)  # Proxied: not counted.
        self.assertEqual(self.skiff.stat("http.ingress_http.rq_direct_response"), before + 2)
        # Envoy declares rq_redirect and no longer counts anything under it.
        self.assertEqual(self.skiff.stat("http.ingress_http.rq_redirect"), 0)

    def test_rq_total_counts_every_request_the_router_sees(self):
        before = self.skiff.stat("http.ingress_http.rq_total") or 0
        self.assertEqual(self.req("/exact")[0], 200)
        self.assertEqual(self.req("/unavailable")[0], 503)
        self.assertEqual(self.req("/nowhere")[0], 404)
        self.assertEqual(self.req("/nc/default")[0], 503)
        self.assertEqual(self.skiff.stat("http.ingress_http.rq_total"), before + 4)

    def test_router_counters_in_json_and_prometheus(self):
        status, body = self.skiff.admin_get("/stats?format=json")
        self.assertEqual(status, 200)
        names = {s.get("name") for s in json.loads(body)["stats"]}
        self.assertIn("http.ingress_http.rq_total", names)
        self.assertIn("http.ingress_http.no_cluster", names)
        self.assertIn("http.ingress_http.rq_direct_response", names)
        status, body = self.skiff.admin_get("/stats/prometheus")
        self.assertEqual(status, 200)
        for name in ("rq_total", "no_cluster", "rq_direct_response", "rq_redirect",
                     "rq_reset_after_downstream_response_started"):
            self.assertIn(f'envoy_http_{name}{{envoy_http_conn_manager_prefix="ingress_http"}}', body)


class RouterEnvoyHeadersTest(h.SkiffTestCase):
    """The headers Envoy's router adds by default: x-envoy-upstream-service-time
    on responses from an upstream, x-envoy-expected-rq-timeout-ms on requests
    with a route timeout, x-envoy-original-path when a rewrite replaced the
    path; none of them with the router's suppress_envoy_headers."""

    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend("a")
        routes = [
            {"match": {"prefix": "/old/"}, "route": to("a", prefix_rewrite="/new/")},
            {"match": {"prefix": "/short/"}, "route": to("a", timeout="2.5s")},
            {"match": {"prefix": "/none/"}, "route": to("a", timeout="0s")},
            {"match": {"prefix": "/direct"},
             "direct_response": {"status": 200, "body": {"inline_string": "d\n"}}},
            {"match": {"prefix": "/"}, "route": to("a")},
        ]
        quiet = h.listener("quiet", routes, stat_prefix="quiet")
        quiet["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"] = [{
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                "suppress_envoy_headers": True}}]
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("envoy", routes), quiet], [h.cluster("a", [(LOCALHOST, cls.backend.port)])]))

    def get(self, listener, path, headers=None):
        """curl through listener; returns (status, response headers, the
        request headers the backend saw)."""
        rc, out, err = h.curl("-s", "-D", "-", "-o", "/dev/null", *sum(
            (["-H", f"{k}: {v}"] for k, v in (headers or {}).items()), []),
            f"http://{LOCALHOST}:{self.skiff.port(listener)}{path}")
        self.assertEqual(rc, 0, err)
        lines = out.decode().replace("\r", "").split("\n")
        status = int(lines[0].split()[1])
        resp = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                resp[k.strip().lower()] = v.strip()
        seen = {k.lower(): v for k, v in self.backend.requests[-1].headers}
        return status, resp, seen

    def test_upstream_service_time(self):
        status, resp, _ = self.get("envoy", "/delay?ms=50")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(int(resp["x-envoy-upstream-service-time"]), 50)
        status, resp, _ = self.get("envoy", "/x")
        self.assertLess(int(resp["x-envoy-upstream-service-time"]), 10000)
        # A direct response did not come from an upstream.
        status, resp, _ = self.get("envoy", "/direct")
        self.assertEqual(status, 200)
        self.assertNotIn("x-envoy-upstream-service-time", resp)

    def test_expected_request_timeout(self):
        self.assertEqual(self.get("envoy", "/x")[2].get("x-envoy-expected-rq-timeout-ms"), "15000")
        self.assertEqual(self.get("envoy", "/short/x")[2].get("x-envoy-expected-rq-timeout-ms"),
                         "2500")
        self.assertNotIn("x-envoy-expected-rq-timeout-ms", self.get("envoy", "/none/x")[2])
        # A client's value does not reach the upstream beside the router's.
        _, _, seen = self.get("envoy", "/x", headers={"x-envoy-expected-rq-timeout-ms": "1"})
        self.assertEqual(seen.get("x-envoy-expected-rq-timeout-ms"), "15000")
        self.assertEqual([k for k, _ in self.backend.requests[-1].headers
                          if k.lower() == "x-envoy-expected-rq-timeout-ms"],
                         ["x-envoy-expected-rq-timeout-ms"])

    def test_original_path(self):
        status, _, seen = self.get("envoy", "/old/headers?q=1")
        self.assertEqual(status, 200)
        self.assertEqual(self.backend.requests[-1].target, "/new/headers?q=1")
        self.assertEqual(seen.get("x-envoy-original-path"), "/old/headers?q=1")
        self.assertNotIn("x-envoy-original-path", self.get("envoy", "/plain")[2])

    def test_suppress_envoy_headers(self):
        status, resp, seen = self.get("quiet", "/old/x")
        self.assertEqual(status, 200)
        self.assertEqual(self.backend.requests[-1].target, "/new/x")
        self.assertNotIn("x-envoy-upstream-service-time", resp)
        self.assertNotIn("x-envoy-original-path", seen)
        self.assertNotIn("x-envoy-expected-rq-timeout-ms", seen)


if __name__ == "__main__":
    unittest.main()
