"""The RBAC filter (envoy.filters.http.rbac): ALLOW and DENY policies over
headers, the path (prefix, exact, regex; without its query), the
connection's local address and port, its peer (127.0.0.1 matches, another
range does not), the x-forwarded-for address (remote_ip), and/or/not;
shadow rules that count without denying; a route's RBACPerRoute that turns
the filter off or replaces its rules; Envoy's 403 body, details
rbac_access_denied_matched_policy[...] and http.<stat_prefix>.rbac.*
stats, at 0 from the start; and over mTLS, a client certificate whose URI
SAN (spiffe://...) a policy names is let through where another is refused,
with the SNI matched as requested_server_name."""

import os
import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
HCM_PATH = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
FRONTEND = "spiffe://cluster.local/ns/default/sa/frontend"

def rbac_filter(config):
    return {"name": "envoy.filters.http.rbac", "typed_config": dict({"@type": RBAC_TYPE}, **config)}


def per_route(config):
    return {"envoy.filters.http.rbac": dict({"@type": PER_ROUTE_TYPE}, **config)}


def path_prefix(prefix):
    return {"url_path": {"path": {"prefix": prefix}}}


def both(*rules):
    return {"and_rules": {"rules": list(rules)}}


def cidr(address, length):
    return {"address_prefix": address, "prefix_len": length}


def policy(permissions, principals=None):
    return {"permissions": permissions, "principals": principals or [{"any": True}]}


ALLOW_POLICIES = {
    "by-header": policy([{"header": {"name": "x-role", "string_match": {"exact": "admin"}}}]),
    "by-prefix": policy([path_prefix("/public/")]),
    "by-exact": policy([{"url_path": {"path": {"exact": "/exact"}}}]),
    "by-regex": policy([{"url_path": {"path": {"safe_regex": {"regex": "/v[0-9]+/items"}}}}]),
    "dest-ip": policy([both(path_prefix("/dest/local"),
                            {"destination_ip": cidr("127.0.0.0", 8)})]),
    "dest-ip-other": policy([both(path_prefix("/dest/other"),
                                  {"destination_ip": cidr("10.0.0.0", 8)})]),
    "port-any": policy([both(path_prefix("/port/any"),
                             {"destination_port_range": {"start": 1, "end": 65536}})]),
    "port-one": policy([both(path_prefix("/port/one"), {"destination_port": 1})]),
    "src-local": policy([path_prefix("/src/local")], [{"direct_remote_ip": cidr("127.0.0.1", 32)}]),
    "src-other": policy([path_prefix("/src/other")], [{"direct_remote_ip": cidr("192.0.2.0", 24)}]),
    "forwarded": policy([path_prefix("/forwarded")], [{"remote_ip": cidr("203.0.113.0", 24)}]),
    "compound": policy([both(path_prefix("/compound"), {"or_rules": {"rules": [
        {"header": {"name": "x-a", "present_match": True}},
        {"header": {"name": "x-b", "present_match": True}}]}},
        {"not_rule": {"header": {"name": "x-block", "present_match": True}}})]),
}


class RbacTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="skiff-rbac-")
        cls.log_path = os.path.join(cls.dir, "access.json")
        cls.addClassCleanup(lambda: (os.path.exists(cls.log_path) and os.remove(cls.log_path),
                                     os.rmdir(cls.dir)))
        allow = rbac_filter({
            "rules": {"action": "ALLOW", "policies": ALLOW_POLICIES},
            "rules_stat_prefix": "ing_",
            "shadow_rules": {"action": "DENY", "policies": {
                "no-secrets": policy([path_prefix("/public/secret")])}},
        })
        routes = [
            dict(h.route("/open", direct="open"), typed_per_filter_config=per_route({})),
            dict(h.route("/override", direct="override"), typed_per_filter_config=per_route(
                {"rbac": {"rules": {"action": "DENY", "policies": {
                    "route-deny": policy([{"header": {"name": "x-role", "present_match": True}}])}}}})),
            h.route("/", direct="ok"),
        ]
        allow_listener = h.listener("allow", routes, stat_prefix="allow_http", hcm_extra={
            "http_filters": [allow, h.ROUTER], "access_log": h.json_log(cls.log_path)})
        deny = rbac_filter({"rules": {"action": "DENY", "policies": {
            "block-admin": policy([{"header": {"name": "x-role",
                                               "string_match": {"exact": "admin"}}}]),
            "block-bots": policy([{"any": True}], [{"header": {"name": "user-agent",
                                                             "string_match": {"prefix": "bot"}}}]),
        }}})
        deny_listener = h.listener("deny", [h.route("/", direct="ok")], stat_prefix="deny_http",
                                   hcm_extra={"http_filters": [deny, h.ROUTER],
                                              "access_log": h.json_log(cls.log_path)})
        # An edge proxy that trusts one proxy in front of it: the remote
        # address is the x-forwarded-for entry that proxy added.
        forwarded = rbac_filter({"rules": {"action": "ALLOW", "policies": {
            "forwarded": policy([{"any": True}], [{"remote_ip": cidr("203.0.113.0", 24)}])}}})
        edge_listener = h.listener("edge", [h.route("/", direct="ok")], stat_prefix="edge_http",
                                   hcm_extra={"http_filters": [forwarded, h.ROUTER],
                                              "use_remote_address": True,
                                              "xff_num_trusted_hops": 1,
                                              "access_log": h.json_log(cls.log_path)})
        cls.skiff = cls.class_skiff(h.bootstrap([allow_listener, deny_listener, edge_listener]))
        cls.allow_port = cls.skiff.port("allow")
        cls.deny_port = cls.skiff.port("deny")
        cls.edge_port = cls.skiff.port("edge")

    def get(self, port, path, test_id, headers=None):
        hdrs = {"x-test-id": test_id}
        hdrs.update(headers or {})
        return h.http_request(port, path=path, headers=hdrs)

    def assertAllowed(self, path, test_id, headers=None, port=None):
        status, _, body = self.get(port or self.allow_port, path, test_id, headers)
        self.assertEqual(status, 200, f"{path} {headers}: {body}")

    def assertDenied(self, path, test_id, headers=None, port=None, policy_name="none"):
        status, hdrs, body = self.get(port or self.allow_port, path, test_id, headers)
        self.assertEqual(status, 403, f"{path} {headers}")
        self.assertEqual(body, b"RBAC: access denied")
        line = h.access_log_entry(self.log_path, test_id)
        self.assertEqual(line["code"], 403)
        self.assertIsNone(line["flags"])  # Envoy's RBAC filter sets no flag.
        self.assertEqual(line["details"], f"rbac_access_denied_matched_policy[{policy_name}]")

    def stat(self, name, prefix="allow_http"):
        return self.skiff.stats().get(f"http.{prefix}.rbac.{name}")

    def test_header_policy(self):
        self.assertAllowed("/anything", "hdr-ok", {"x-role": "admin"})
        self.assertDenied("/anything", "hdr-no", {"x-role": "user"})

    def test_path_prefix_exact_and_regex_ignore_the_query(self):
        self.assertAllowed("/public/a?x=1", "pfx-ok")
        self.assertDenied("/publicity", "pfx-no")
        self.assertAllowed("/exact?q", "exact-ok")
        self.assertDenied("/exact/more", "exact-no")
        self.assertAllowed("/v2/items", "re-ok")
        self.assertDenied("/v2/items/7", "re-no")

    def test_destination_address_and_port(self):
        self.assertAllowed("/dest/local", "dst-ok")
        self.assertDenied("/dest/other", "dst-no")
        self.assertAllowed("/port/any", "port-ok")
        self.assertDenied("/port/one", "port-no")

    def test_direct_peer_and_forwarded_address(self):
        self.assertAllowed("/src/local", "src-ok")
        self.assertDenied("/src/other", "src-no")
        # use_remote_address is off: the x-forwarded-for entry is the remote address.
        self.assertAllowed("/forwarded", "fwd-ok", {"x-forwarded-for": "198.51.100.1, 203.0.113.7"})
        self.assertDenied("/forwarded", "fwd-other", {"x-forwarded-for": "198.51.100.1"})
        self.assertDenied("/forwarded", "fwd-none")

    def test_forwarded_address_under_use_remote_address(self):
        self.assertAllowed("/", "edge-ok", {"x-forwarded-for": "198.51.100.1,203.0.113.7"},
                           port=self.edge_port)
        # The trusted hop's entry is the last one the client sent, not an earlier one.
        self.assertDenied("/", "edge-earlier", {"x-forwarded-for": "203.0.113.7,198.51.100.1"},
                          port=self.edge_port)
        self.assertDenied("/", "edge-none", port=self.edge_port)  # The peer, 127.0.0.1.

    def test_and_or_not(self):
        self.assertAllowed("/compound", "cmp-a", {"x-a": "1"})
        self.assertAllowed("/compound", "cmp-b", {"x-b": "1"})
        self.assertDenied("/compound", "cmp-neither")
        self.assertDenied("/compound", "cmp-blocked", {"x-a": "1", "x-block": "1"})

    def test_deny_names_the_matched_policy(self):
        self.assertDenied("/", "deny-admin", {"x-role": "admin"}, port=self.deny_port,
                          policy_name="block-admin")
        self.assertDenied("/", "deny-bot", {"user-agent": "bot/1.0"}, port=self.deny_port,
                          policy_name="block-bots")
        self.assertAllowed("/", "deny-user", {"x-role": "user"}, port=self.deny_port)

    def test_shadow_rules_count_without_denying(self):
        before = (self.stat("shadow_allowed"), self.stat("shadow_denied"))
        self.assertAllowed("/public/secret", "shadow-deny")
        self.assertAllowed("/public/plain", "shadow-allow")
        self.assertEqual(self.stat("shadow_denied"), before[1] + 1)
        self.assertEqual(self.stat("shadow_allowed"), before[0] + 1)

    def test_per_route_disable_and_override(self):
        shadow_before = self.stat("shadow_allowed") + self.stat("shadow_denied")
        self.assertAllowed("/open", "route-open")  # No policy allows it; the route turns RBAC off.
        self.assertEqual(self.stat("shadow_allowed") + self.stat("shadow_denied"), shadow_before)
        self.assertAllowed("/override", "route-anon")  # The filter's rules would deny it.
        self.assertDenied("/override", "route-deny", {"x-role": "admin"},
                          policy_name="route-deny")

    def test_stats_count_each_decision(self):
        allowed, denied = self.stat("ing_.allowed"), self.stat("ing_.denied")
        self.assertAllowed("/public/x", "stats-ok")
        self.assertDenied("/private", "stats-no")
        self.assertEqual(self.stat("ing_.allowed"), allowed + 1)
        self.assertEqual(self.stat("ing_.denied"), denied + 1)
        self.assertIsNone(self.stat("allowed"))  # rules_stat_prefix names them.


class RbacStatsAtLoadTest(h.SkiffTestCase):
    def test_stats_read_zero_before_any_request(self):
        filt = rbac_filter({"rules": {"action": "ALLOW"}, "shadow_rules": {"action": "DENY"}})
        skiff = self.start_skiff(h.bootstrap([h.listener(
            "ingress", [h.route("/", direct="ok")], stat_prefix="quiet_http",
            hcm_extra={"http_filters": [filt, h.ROUTER]})]))
        stats = skiff.stats()
        for name in ("allowed", "denied", "shadow_allowed", "shadow_denied"):
            self.assertEqual(stats.get(f"http.quiet_http.rbac.{name}"), 0, name)
        # rules present with no policy: ALLOW lets nothing through.
        status, _, body = h.http_request(skiff.port("ingress"), path="/")
        self.assertEqual((status, body), (403, b"RBAC: access denied"))
        stats = skiff.stats()
        self.assertEqual(stats.get("http.quiet_http.rbac.denied"), 1)
        self.assertEqual(stats.get("http.quiet_http.rbac.shadow_allowed"), 1)


class RbacMtlsTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = h.Certificates()
        cls.addClassCleanup(cls.certs.cleanup)
        server = cls.certs.leaf("mtls.test")
        cls.frontend = cls.certs.leaf("frontend", san=f"URI:{FRONTEND}")
        cls.other = cls.certs.leaf("other", san="URI:spiffe://cluster.local/ns/default/sa/other")
        filt = rbac_filter({"rules": {"action": "ALLOW", "policies": {
            "frontend": policy(
                [{"requested_server_name": {"exact": "mtls.test"}}],
                [{"authenticated": {"principal_name": {"exact": FRONTEND}}}]),
        }}})
        lst = h.listener("mtls", [h.route("/", direct="ok")], hcm_extra={
            "http_filters": [filt, h.ROUTER]})
        tls = h.downstream_tls(*server)
        ctx = tls["typed_config"]
        ctx["require_client_certificate"] = True
        ctx["common_tls_context"]["validation_context"] = {"trusted_ca": {"filename": cls.certs.ca}}
        lst["filter_chains"][0]["transport_socket"] = tls
        cls.skiff = cls.class_skiff(h.bootstrap([lst]))
        cls.port = cls.skiff.port("mtls")

    def curl(self, cert_key, name="mtls.test"):
        rc, out, err = h.curl(
            "--cacert", self.certs.ca, "--cert", cert_key[0], "--key", cert_key[1],
            "--resolve", f"{name}:{self.port}:{LOCALHOST}", "-o", "-", "-w", "\n%{http_code}",
            f"https://{name}:{self.port}/")
        self.assertEqual(rc, 0, err)
        body, _, code = out.decode().rpartition("\n")
        return int(code), body

    def test_uri_san_is_the_principal(self):
        self.assertEqual(self.curl(self.frontend), (200, "ok"))
        self.assertEqual(self.curl(self.other), (403, "RBAC: access denied"))

    def test_sni_is_the_requested_server_name(self):
        # The certificate is for mtls.test; curl connects without checking
        # the name when another one is asked for, so only RBAC tells them apart.
        rc, out, err = h.curl(
            "--cacert", self.certs.ca, "--cert", self.frontend[0], "--key", self.frontend[1],
            "--insecure", "--resolve", f"other.test:{self.port}:{LOCALHOST}", "-o", "-",
            "-w", "\n%{http_code}", f"https://other.test:{self.port}/")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.decode().endswith("\n403"), out)


class RbacConfigTest(unittest.TestCase):
    def validate(self, http_filters, routes=None):
        config = h.bootstrap([h.listener("l", routes or [h.route("/", direct="x")],
                                         hcm_extra={"http_filters": http_filters})])
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(config)
        self.addCleanup(os.remove, f.name)
        return h.run_skiff(["--mode", "validate", "-c", f.name])

    def test_unsupported_fields_are_refused_by_path(self):
        rc, out = self.validate([rbac_filter({"rules": {"action": "ALLOW", "policies": {
            "p": {"permissions": [{"metadata": {"filter": "f", "path": [{"key": "k"}],
                                                "value": {"present_match": True}}}],
                  "principals": [{"any": True}],
                  "condition": {"const_expr": {"bool_value": True}}}}},
            "track_per_rule_stats": True}), h.ROUTER])
        self.assertEqual(rc, 1, out)
        p = HCM_PATH + ".http_filters[0].typed_config."
        self.assertIn(p + "track_per_rule_stats: not supported yet", out)
        self.assertIn(p + 'rules.policies["p"].condition: not supported yet', out)
        self.assertIn(p + 'rules.policies["p"].permissions[0].metadata: not supported yet', out)

    def test_route_stat_prefix_is_refused(self):
        route = dict(h.route("/", direct="x"), typed_per_filter_config=per_route(
            {"rbac": {"rules_stat_prefix": "r_"}}))
        rc, out = self.validate([rbac_filter({}), h.ROUTER], [route])
        self.assertEqual(rc, 1, out)
        self.assertIn('typed_per_filter_config["envoy.filters.http.rbac"].rbac.rules_stat_prefix: '
                      'not supported yet in RBACPerRoute', out)


if __name__ == "__main__":
    unittest.main()
