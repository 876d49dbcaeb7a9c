"""The local rate limit filter (envoy.filters.http.local_ratelimit) with a
real upstream: a bucket of N tokens and a fill interval of an hour lets N
requests through and answers the next with 429 `local_rate_limited`, flag RL,
the configured response headers and x-ratelimit-* headers; one bucket is
shared by both workers (each request on its own connection); a route's own
LocalRateLimit (typed_per_filter_config) has its own bucket, status and
stats; a filter that is not enforced lets the request through with its
request headers; one that is not enabled counts nothing; fields skiff lacks
are refused by path."""

import json
import os
import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

LRL_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
HCM_PATH = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
HOUR = "3600s"


def lrl(stat_prefix, max_tokens=None, enabled=100, enforced=100, **extra):
    c = {"@type": LRL_TYPE, "stat_prefix": stat_prefix}
    if max_tokens is not None:
        c["token_bucket"] = {"max_tokens": max_tokens, "tokens_per_fill": 1,
                             "fill_interval": HOUR}
    if enabled is not None:
        c["filter_enabled"] = {"default_value": {"numerator": enabled},
                               "runtime_key": "never_read"}
    if enforced is not None:
        c["filter_enforced"] = {"default_value": {"numerator": enforced}}
    c.update(extra)
    return c


def lrl_filter(config):
    return {"name": "envoy.filters.http.local_ratelimit", "typed_config": config}


class LocalRateLimitTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend()
        cls.dir = tempfile.mkdtemp(prefix="skiff-lrl-")
        cls.log_path = os.path.join(cls.dir, "access.json")
        cls.addClassCleanup(lambda: (os.path.exists(cls.log_path) and os.remove(cls.log_path),
                                     os.rmdir(cls.dir)))
        top = lrl("edge_rl", 3, response_headers_to_add=[
            {"header": {"key": "x-limited-by", "value": "skiff"}}],
            enable_x_ratelimit_headers="DRAFT_VERSION_03")

        def own(config):
            return {"envoy.filters.http.local_ratelimit": config}

        routes = [
            dict(h.route("/route", cluster="backend"),
                 typed_per_filter_config=own(lrl("route_rl", 2, status={"code": 503}))),
            dict(h.route("/headers", cluster="backend"),
                 typed_per_filter_config=own(lrl(
                     "shadow_rl", 1, enforced=0,
                     request_headers_to_add_when_not_enforced=[
                         {"header": {"key": "x-over-limit", "value": "true"}}]))),
            dict(h.route("/grpc", cluster="backend"),
                 typed_per_filter_config=own(lrl("grpc_rl", 1,
                                                 rate_limited_as_resource_exhausted=True))),
            dict(h.route("/disabled", cluster="backend"),
                 typed_per_filter_config=own(lrl("off_rl", 1, enabled=None))),
            h.route("/", cluster="backend"),
        ]
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("ingress", routes, hcm_extra={
                "http_filters": [lrl_filter(top), h.ROUTER],
                "access_log": h.json_log(cls.log_path)})],
            [h.cluster("backend", [(LOCALHOST, cls.backend.port)])]), concurrency=2)
        cls.port = cls.skiff.port("ingress")

    def get(self, path, test_id):
        return h.http_request(self.port, path=path, headers={"x-test-id": test_id})

    def log_line(self, test_id):
        return h.access_log_entry(self.log_path, test_id)

    def stats(self, prefix):
        s = self.skiff.stats()
        return {k: s.get(f"{prefix}.http_local_rate_limit.{k}", 0)
                for k in ("enabled", "ok", "rate_limited", "enforced")}

    def test_n_tokens_pass_then_429(self):
        for i in range(3):
            status, headers, body = self.get("/shared", f"pass-{i}")
            self.assertEqual(status, 200, i)
            self.assertEqual(body, b"backend:/shared\n")
            self.assertEqual(headers.get("x-ratelimit-limit"), "3")
            self.assertEqual(headers.get("x-ratelimit-remaining"), str(2 - i))
            self.assertNotIn("x-limited-by", headers)
        status, headers, body = self.get("/shared", "limited")
        self.assertEqual(status, 429)
        self.assertEqual(body, b"local_rate_limited")
        self.assertEqual(headers.get("x-limited-by"), "skiff")
        self.assertEqual(headers.get("x-ratelimit-remaining"), "0")
        self.assertEqual(headers.get("x-ratelimit-reset"), "3600")  # The next token's wait.
        line = self.log_line("limited")
        self.assertEqual((line["code"], line["flags"], line["details"]),
                         (429, "RL", "local_rate_limited"))
        self.assertFalse(any(r.header("x-test-id") == "limited" for r in self.backend.requests))
        self.assertEqual(self.stats("edge_rl"),
                         {"enabled": 4, "ok": 3, "rate_limited": 1, "enforced": 1})
        # Prometheus: Envoy's tag for the filter's prefix.
        status, text = self.skiff.admin_get("/stats/prometheus")
        self.assertEqual(status, 200)
        self.assertIn('envoy_http_local_rate_limit_rate_limited'
                      '{envoy_local_http_ratelimit_prefix="edge_rl"} 1\n', text)

    def test_route_config_has_its_own_bucket_and_status(self):
        self.assertEqual(self.get("/route", "r0")[0], 200)
        self.assertEqual(self.get("/route", "r1")[0], 200)
        status, headers, body = self.get("/route", "r2")
        self.assertEqual((status, body), (503, b"local_rate_limited"))
        self.assertNotIn("x-limited-by", headers)  # The filter's headers are not the route's.
        self.assertEqual(self.stats("route_rl"),
                         {"enabled": 3, "ok": 2, "rate_limited": 1, "enforced": 1})

    def test_not_enforced_passes_with_request_headers(self):
        def sent_headers(test_id):
            status, _, body = self.get("/headers", test_id)
            self.assertEqual(status, 200)
            return dict((k.lower(), v) for k, v in json.loads(body)["headers"])

        self.assertNotIn("x-over-limit", sent_headers("s0"))
        self.assertEqual(sent_headers("s1").get("x-over-limit"), "true")
        self.assertEqual(self.stats("shadow_rl"),
                         {"enabled": 2, "ok": 1, "rate_limited": 1, "enforced": 0})

    def test_grpc_request_refused_as_resource_exhausted(self):
        def grpc_call(test_id):
            rc, out, err = h.curl("-i", "--http2-prior-knowledge", "-H",
                                  "content-type: application/grpc", "-H", f"x-test-id: {test_id}",
                                  "--data-binary", "", f"http://{LOCALHOST}:{self.port}/grpc")
            self.assertEqual(rc, 0, err)
            return out.decode("latin-1").lower()

        self.assertNotIn("grpc-status", grpc_call("g0"))  # The backend's plain 200.
        head = grpc_call("g1")
        self.assertIn("http/2 200", head)
        self.assertIn("grpc-status: 8", head)  # RESOURCE_EXHAUSTED, not 429's UNAVAILABLE.
        self.assertIn("grpc-message: local_rate_limited", head)
        line = self.log_line("g1")
        self.assertEqual((line["flags"], line["details"]), ("RL", "local_rate_limited"))

    def test_not_enabled_limits_nothing(self):
        for i in range(3):
            self.assertEqual(self.get("/disabled", f"off-{i}")[0], 200)
        self.assertEqual(self.stats("off_rl"),
                         {"enabled": 0, "ok": 0, "rate_limited": 0, "enforced": 0})


class LocalRateLimitConfigTest(unittest.TestCase):
    def validate(self, http_filters, routes=None):
        config = h.bootstrap([h.listener("ingress", routes or [h.route("/", direct="x")],
                                         hcm_extra={"http_filters": http_filters})])
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(config)
        self.addCleanup(os.remove, f.name)
        return h.run_skiff(["--mode", "validate", "-c", f.name])

    def test_unsupported_fields_are_refused_by_path(self):
        rc, out = self.validate([lrl_filter(lrl(
            "x", 1, local_rate_limit_per_downstream_connection=True,
            descriptors=[{"entries": [{"key": "k", "value": "v"}],
                          "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}])),
            h.ROUTER])
        self.assertEqual(rc, 1, out)
        p = HCM_PATH + ".http_filters[0].typed_config."
        self.assertIn(p + "descriptors: not supported yet", out)
        self.assertIn(p + "local_rate_limit_per_downstream_connection: not supported yet", out)

    def test_route_config_needs_a_token_bucket(self):
        route = dict(h.route("/", direct="x"), typed_per_filter_config={
            "envoy.filters.http.local_ratelimit": lrl("r")})
        rc, out = self.validate([lrl_filter(lrl("x")), h.ROUTER], [route])
        self.assertEqual(rc, 1, out)
        self.assertIn(HCM_PATH + ".route_config.virtual_hosts[0].routes[0].typed_per_filter_config"
                      "[\"envoy.filters.http.local_ratelimit\"].token_bucket: is required in "
                      "typed_per_filter_config", out)

    def test_stat_prefix_is_required(self):
        config = lrl("", 1)
        rc, out = self.validate([lrl_filter(config), h.ROUTER])
        self.assertEqual(rc, 1, out)
        self.assertIn(HCM_PATH + ".http_filters[0].typed_config.stat_prefix: is required", out)



class LocalRateLimitStatsAtLoadTest(h.SkiffTestCase):
    """As in Envoy, the stats are made with the config, the filter's and each
    route's own: /stats shows them at 0 before any request (before, they
    appeared with a worker's first enabled request)."""

    def test_stats_read_zero_before_the_first_request(self):
        route = dict(h.route("/own", direct="own"), typed_per_filter_config={
            "envoy.filters.http.local_ratelimit": lrl("route_rl", 1)})
        skiff = self.start_skiff(h.bootstrap([h.listener(
            "ingress", [route, h.route("/", direct="ok")],
            hcm_extra={"http_filters": [lrl_filter(lrl("top_rl", 5)), h.ROUTER]})]))
        stats = skiff.stats()
        for prefix in ("top_rl", "route_rl"):
            for name in ("enabled", "enforced", "rate_limited", "ok"):
                stat = f"{prefix}.http_local_rate_limit.{name}"
                self.assertEqual(stats.get(stat), 0, stat)
        status, _, _ = h.http_request(skiff.port("ingress"), path="/own")
        self.assertEqual(status, 200)
        stats = skiff.stats()
        self.assertEqual(stats.get("route_rl.http_local_rate_limit.ok"), 1)
        self.assertEqual(stats.get("top_rl.http_local_rate_limit.ok"), 0)


if __name__ == "__main__":
    unittest.main()
