"""The CORS filter (envoy.filters.http.cors) with a real upstream. The
policy is a CorsPolicy in typed_per_filter_config, on the route
configuration, the virtual host or the route, merged field by field with the
most specific first, as Envoy does. A preflight (OPTIONS with Origin and
Access-Control-Request-Method) from an allowed origin is answered by skiff
(200, details cors_response) with the allowed methods, headers, max age,
credentials and private network access, and never reaches the backend; one
from another origin goes upstream (forward_not_matching_preflights, default
true) or is answered without Access-Control-Allow-Origin (false). Other
requests from an allowed origin get Access-Control-Allow-Origin,
-Credentials and -Expose-Headers on their response; exact, prefix and regex
origins; filter_enabled 0% turns it off; shadow_enabled only counts.
http.<stat_prefix>.cors.origin_{valid,invalid}. The deprecated cors fields
of VirtualHost and RouteAction are refused by path."""

import os
import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

CORS = {"name": "envoy.filters.http.cors",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}}
POLICY_TYPE = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
HCM_PATH = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"


def policy(**fields):
    return {"envoy.filters.http.cors": {"@type": POLICY_TYPE, **fields}}


def origins(*matchers):
    return [{k: v} if k != "regex" else {"safe_regex": {"regex": v}} for k, v in matchers]


class CorsTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend()
        cls.dir = tempfile.mkdtemp(prefix="skiff-cors-")
        cls.log_path = os.path.join(cls.dir, "access.json")
        cls.addClassCleanup(lambda: (os.path.exists(cls.log_path) and os.remove(cls.log_path),
                                     os.rmdir(cls.dir)))
        vhost_policy = policy(
            allow_origin_string_match=origins(("exact", "https://app.example"),
                                              ("prefix", "https://admin."),
                                              ("regex", r"https://[a-z]+\.trusted\.example")),
            allow_methods="GET, POST, PUT", allow_headers="x-custom, content-type",
            expose_headers="x-backend, x-request-id", max_age="600",
            allow_credentials=True)
        routes = [
            # The route's own policy: its origin and methods replace the virtual
            # host's; its other fields fall back to the virtual host's.
            dict(h.route("/override", cluster="backend"), typed_per_filter_config=policy(
                allow_origin_string_match=origins(("exact", "https://other.example")),
                allow_methods="DELETE", allow_credentials=False)),
            dict(h.route("/strict", cluster="backend"), typed_per_filter_config=policy(
                forward_not_matching_preflights=False, allow_private_network_access=True,
                allow_methods="*", allow_headers="*")),
            dict(h.route("/off", cluster="backend"), typed_per_filter_config=policy(
                filter_enabled={"default_value": {"numerator": 0}})),
            dict(h.route("/shadow", cluster="backend"), typed_per_filter_config=policy(
                filter_enabled={"default_value": {"numerator": 0}},
                shadow_enabled={"default_value": {"numerator": 100}})),
            h.route("/", cluster="backend"),
        ]
        listener = h.listener("ingress", routes, stat_prefix="edge", hcm_extra={
            "http_filters": [CORS, h.ROUTER],
            "access_log": h.json_log(cls.log_path)})
        listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
            "virtual_hosts"][0]["typed_per_filter_config"] = vhost_policy
        cls.skiff = cls.class_skiff(h.bootstrap([listener], [
            h.cluster("backend", [(LOCALHOST, cls.backend.port)])]), concurrency=2)
        cls.port = cls.skiff.port("ingress")

    def request(self, method, path, test_id, origin=None, **headers):
        hdrs = {"x-test-id": test_id}
        if origin:
            hdrs["origin"] = origin
        hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
        return h.http_request(self.port, method=method, path=path, headers=hdrs)

    def preflight(self, path, test_id, origin, method="POST", **headers):
        return self.request("OPTIONS", path, test_id, origin,
                            access_control_request_method=method, **headers)

    def reached_backend(self, test_id):
        return any(r.header("x-test-id") == test_id for r in self.backend.requests)

    def cors_stats(self):
        s = self.skiff.stats()
        return (s.get("http.edge.cors.origin_valid", 0), s.get("http.edge.cors.origin_invalid", 0))

    def test_preflight_from_an_allowed_origin_is_answered(self):
        status, headers, body = self.preflight("/api", "pf-ok", "https://app.example",
                                               access_control_request_headers="x-custom")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers.get("access-control-allow-origin"), "https://app.example")
        self.assertEqual(headers.get("access-control-allow-methods"), "GET, POST, PUT")
        self.assertEqual(headers.get("access-control-allow-headers"), "x-custom, content-type")
        self.assertEqual(headers.get("access-control-max-age"), "600")
        self.assertEqual(headers.get("access-control-allow-credentials"), "true")
        self.assertFalse(self.reached_backend("pf-ok"))
        line = h.access_log_entry(self.log_path, "pf-ok")
        self.assertEqual((line["code"], line["details"]), (200, "cors_response"))

    def test_origin_matchers(self):
        for origin, allowed in (("https://app.example", True), ("https://admin.corp", True),
                                ("https://api.trusted.example", True),
                                ("https://API.trusted.example", False),
                                ("https://app.example.evil", False),
                                ("http://app.example", False)):
            status, headers, _ = self.request("GET", "/x", "m-" + origin, origin)
            self.assertEqual(status, 200, origin)
            self.assertEqual(headers.get("access-control-allow-origin"),
                             origin if allowed else None, origin)

    def test_simple_request_gets_allow_and_expose_headers(self):
        before = self.cors_stats()
        status, headers, body = self.request("GET", "/data", "simple", "https://app.example")
        self.assertEqual((status, body), (200, b"backend:/data\n"))
        self.assertEqual(headers.get("access-control-allow-origin"), "https://app.example")
        self.assertEqual(headers.get("access-control-allow-credentials"), "true")
        self.assertEqual(headers.get("access-control-expose-headers"), "x-backend, x-request-id")
        self.assertNotIn("access-control-allow-methods", headers)  # Preflights only.
        # Another origin is served, with no CORS headers.
        status, headers, _ = self.request("GET", "/data", "simple-bad", "https://evil.example")
        self.assertEqual(status, 200)
        self.assertFalse(any(k.startswith("access-control-") for k in headers))
        # No Origin: not a CORS request; nothing counted.
        status, headers, _ = self.request("GET", "/data", "no-origin")
        self.assertFalse(any(k.startswith("access-control-") for k in headers))
        after = self.cors_stats()
        self.assertEqual((after[0] - before[0], after[1] - before[1]), (1, 1))

    def test_preflight_from_another_origin_goes_upstream(self):
        status, headers, body = self.preflight("/api", "pf-fwd", "https://evil.example")
        self.assertEqual((status, body), (200, b"backend:/api\n"))
        self.assertNotIn("access-control-allow-origin", headers)
        self.assertTrue(self.reached_backend("pf-fwd"))

    def test_preflight_not_forwarded_when_configured(self):
        status, headers, body = self.preflight("/strict", "pf-strict", "https://evil.example")
        self.assertEqual((status, body), (200, b""))
        self.assertNotIn("access-control-allow-origin", headers)
        self.assertFalse(self.reached_backend("pf-strict"))
        # "*" echoes the request's method and headers; private network access.
        status, headers, _ = self.preflight(
            "/strict", "pf-star", "https://app.example", method="PATCH",
            access_control_request_headers="x-a, x-b",
            access_control_request_private_network="true")
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("access-control-allow-methods"), "PATCH")
        self.assertEqual(headers.get("access-control-allow-headers"), "x-a, x-b")
        self.assertEqual(headers.get("access-control-allow-private-network"), "true")
        self.assertEqual(headers.get("access-control-allow-origin"), "https://app.example")

    def test_route_policy_overrides_the_virtual_hosts(self):
        status, headers, _ = self.preflight("/override", "ov-1", "https://other.example")
        self.assertEqual(status, 200)
        self.assertFalse(self.reached_backend("ov-1"))
        self.assertEqual(headers.get("access-control-allow-origin"), "https://other.example")
        self.assertEqual(headers.get("access-control-allow-methods"), "DELETE")
        # Not set on the route: the virtual host's.
        self.assertEqual(headers.get("access-control-allow-headers"), "x-custom, content-type")
        self.assertEqual(headers.get("access-control-max-age"), "600")
        # Set to false on the route: no credentials.
        self.assertNotIn("access-control-allow-credentials", headers)
        # The virtual host's origin is not the route's.
        status, headers, body = self.preflight("/override", "ov-2", "https://app.example")
        self.assertEqual(body, b"backend:/override\n")
        self.assertNotIn("access-control-allow-origin", headers)

    def test_disabled_and_shadow(self):
        before = self.cors_stats()
        status, headers, body = self.preflight("/off", "off", "https://app.example")
        self.assertEqual(body, b"backend:/off\n")
        self.assertNotIn("access-control-allow-origin", headers)
        self.assertEqual(self.cors_stats(), before)
        status, headers, body = self.preflight("/shadow", "shadow", "https://app.example")
        self.assertEqual(body, b"backend:/shadow\n")
        self.assertNotIn("access-control-allow-origin", headers)
        after = self.cors_stats()
        self.assertEqual((after[0] - before[0], after[1] - before[1]), (1, 0))


class CorsConfigTest(unittest.TestCase):
    def validate(self, listener):
        config = h.bootstrap([listener])
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(config)
        self.addCleanup(os.remove, f.name)
        return h.run_skiff(["--mode", "validate", "-c", f.name])

    def test_deprecated_cors_fields_are_refused(self):
        route = dict(h.route("/", cluster="c"))
        route["route"]["cors"] = {"allow_methods": "GET"}
        listener = h.listener("ingress", [route], hcm_extra={"http_filters": [CORS, h.ROUTER]})
        vh = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
            "virtual_hosts"][0]
        vh["cors"] = {"allow_methods": "GET"}
        rc, out = self.validate(listener)
        self.assertEqual(rc, 1, out)
        rc_path = HCM_PATH + ".route_config.virtual_hosts[0]"
        self.assertIn(rc_path + ".cors: not supported yet", out)
        self.assertIn(rc_path + ".routes[0].route.cors: not supported yet", out)

    def test_policy_as_the_filters_config_is_refused(self):
        bad = {"name": "envoy.filters.http.cors", "typed_config": {"@type": POLICY_TYPE}}
        rc, out = self.validate(h.listener("ingress", [h.route("/", direct="x")],
                                           hcm_extra={"http_filters": [bad, h.ROUTER]}))
        self.assertEqual(rc, 1, out)
        self.assertIn(HCM_PATH + ".http_filters[0].typed_config: no HTTP filter is registered "
                      "for type URL '" + POLICY_TYPE + "'", out)


if __name__ == "__main__":
    unittest.main()
