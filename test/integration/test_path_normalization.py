"""The HTTP connection manager's path options, as Envoy's: normalize_path
(dot segments removed, unreserved escapes decoded, backslashes as slashes;
"%00" refused with 400 and details path_normalization_failed),
merge_slashes, and path_with_escaped_slashes_action (REJECT_REQUEST: 400;
UNESCAPE_AND_REDIRECT: 307 with location the decoded path;
UNESCAPE_AND_FORWARD). The route and the upstream see the normalized path,
over HTTP/1.1 (raw paths through http.client, which sends them as given)
and HTTP/2 (curl --path-as-is); an RBAC rule on a path prefix cannot be
bypassed with "/allowed/../denied" when normalize_path is on; and with none
of the options a path goes upstream as it came."""

import json
import os
import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"


def rbac_allow_prefix(prefix):
    return {"name": "envoy.filters.http.rbac", "typed_config": {
        "@type": RBAC_TYPE, "rules": {"action": "ALLOW", "policies": {"allowed": {
            "permissions": [{"url_path": {"path": {"prefix": prefix}}}],
            "principals": [{"any": True}]}}}}}


class PathNormalizationTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = h.Backend()
        cls.addClassCleanup(cls.backend.stop)
        cls.dir = tempfile.mkdtemp(prefix="skiff-pathnorm-")
        cls.log_path = os.path.join(cls.dir, "access.json")
        cls.addClassCleanup(lambda: (os.path.exists(cls.log_path) and os.remove(cls.log_path),
                                     os.rmdir(cls.dir)))
        # "/only-b" answers directly: a request routed there shows the route
        # matched the normalized path; everything else goes to the backend,
        # which answers "backend:<path>" and records the target it got.
        routes = [h.route(path="/only-b", direct="route-b"), h.route("/", cluster="backend")]

        def listener(name, **options):
            extra = {"access_log": h.json_log(cls.log_path)}
            extra.update(options)
            return h.listener(name, routes, stat_prefix=name, hcm_extra=extra)

        rbac = {"http_filters": [rbac_allow_prefix("/allowed/"), h.ROUTER]}
        cls.skiff = cls.class_skiff(h.bootstrap([
            listener("norm", normalize_path=True, merge_slashes=True),
            listener("reject", path_with_escaped_slashes_action="REJECT_REQUEST"),
            listener("redirect", path_with_escaped_slashes_action="UNESCAPE_AND_REDIRECT",
                     normalize_path=True),
            listener("forward", path_with_escaped_slashes_action="UNESCAPE_AND_FORWARD"),
            listener("plain"),
            listener("rbac_norm", normalize_path=True, **rbac),
            listener("rbac_plain", **rbac),
        ], [h.cluster("backend", [(LOCALHOST, cls.backend.port)])]))

    def get(self, listener, path, test_id=None, headers=None):
        hdrs = {"x-test-id": test_id} if test_id else {}
        hdrs.update(headers or {})
        return h.http_request(self.skiff.port(listener), path=path, headers=hdrs)

    def last_target(self):
        return self.backend.requests[-1].target

    def assertUpstream(self, listener, path, expected_target):
        status, _, body = self.get(listener, path)
        self.assertEqual(status, 200, body)
        expected_path = expected_target.split("?", 1)[0]
        self.assertEqual(body, f"backend:{expected_path}\n".encode())
        self.assertEqual(self.last_target(), expected_target)

    def test_dot_segments_and_escapes_route_and_go_upstream_normalized(self):
        status, _, body = self.get("norm", "/a/../only-b")
        self.assertEqual((status, body), (200, b"route-b"))
        status, _, body = self.get("norm", "/a/%2e%2E/only%2Db")
        self.assertEqual((status, body), (200, b"route-b"))
        self.assertUpstream("norm", "/x/y/../../z/./%7euser?q=/../k", "/z/~user?q=/../k")
        self.assertUpstream("norm", "/x\\..\\w", "/w")
        # An escaped slash is not a separator for normalize_path.
        self.assertUpstream("norm", "/x/..%2Fw", "/x/..%2Fw")

    def test_merge_slashes(self):
        status, _, body = self.get("norm", "//only-b")
        self.assertEqual((status, body), (200, b"route-b"))
        self.assertUpstream("norm", "//x///y//?a=//b", "/x/y/?a=//b")

    def test_a_path_that_fails_normalization_gets_400(self):
        before = self.skiff.stat("http.norm.downstream_rq_failed_path_normalization") or 0
        status, _, body = self.get("norm", "/a%00b", test_id="nul")
        self.assertEqual((status, body), (400, b""))
        h.wait_until(lambda: self.skiff.stat(
            "http.norm.downstream_rq_failed_path_normalization") == before + 1, 10,
            what="the failed_path_normalization counter")
        entry = h.access_log_entry(self.log_path, "nul")
        self.assertEqual(entry["details"], "path_normalization_failed")

    def test_escaped_slashes_reject(self):
        status, _, _ = self.get("reject", "/a%2fb")
        self.assertEqual(status, 400)
        status, _, _ = self.get("reject", "/a%5Cb")
        self.assertEqual(status, 400)
        # In the query, an escaped slash is data.
        self.assertUpstream("reject", "/a?x=%2F", "/a?x=%2F")
        self.assertEqual(self.skiff.stat("http.reject.downstream_rq_failed_path_normalization"), 2)

    def test_escaped_slashes_redirect(self):
        status, headers, body = self.get("redirect", "/a%2F..%2Fonly-b?q=1", test_id="redir")
        # Decoded, then normalized: the location is the path alone.
        self.assertEqual((status, headers.get("location"), body), (307, "/only-b?q=1", b""))
        entry = h.access_log_entry(self.log_path, "redir")
        self.assertEqual(entry["details"], "path_normalization_failed")
        self.assertEqual(
            self.skiff.stat("http.redirect.downstream_rq_redirected_with_normalized_path"), 1)
        # A gRPC client cannot follow a redirect: it gets the 400 (as gRPC).
        status, headers, _ = self.get("redirect", "/svc%2FMethod",
                                      headers={"content-type": "application/grpc"})
        self.assertEqual(status, 200)
        self.assertNotEqual(headers.get("grpc-status"), "0")
        # Nothing to decode: no redirect.
        self.assertUpstream("redirect", "/p/./q", "/p/q")

    def test_escaped_slashes_forward(self):
        self.assertUpstream("forward", "/a%2Fb%5cc", "/a/b\\c")

    def test_without_options_the_path_goes_upstream_as_it_came(self):
        self.assertUpstream("plain", "/a/../b//c%2Fd%41", "/a/../b//c%2Fd%41")
        status, _, body = self.get("plain", "/a/../only-b")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"backend:/a/../only-b\n")

    def test_rbac_path_rule_cannot_be_bypassed(self):
        status, _, _ = self.get("rbac_norm", "/allowed/x")
        self.assertEqual(status, 200)
        status, _, body = self.get("rbac_norm", "/allowed/../denied")
        self.assertEqual((status, body), (403, b"RBAC: access denied"))
        status, _, _ = self.get("rbac_norm", "/allowed/%2e%2e/denied")
        self.assertEqual(status, 403)
        # Without normalize_path the same bytes match the prefix: this is
        # what the option is for.
        status, _, _ = self.get("rbac_plain", "/allowed/../denied")
        self.assertEqual(status, 200)

    def test_http2(self):
        port = self.skiff.port("norm")
        rc, out, err = h.curl("--http2-prior-knowledge", "--path-as-is",
                              f"http://{LOCALHOST}:{port}/x/../y//z%41")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"backend:/y/zA\n")
        port = self.skiff.port("redirect")
        rc, out, err = h.curl("--http2-prior-knowledge", "--path-as-is", "-o", "/dev/null",
                              "-w", "%{http_code} %{redirect_url}",
                              f"http://{LOCALHOST}:{port}/a%2Fb")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.decode(), f"307 http://{LOCALHOST}:{port}/a/b")


if __name__ == "__main__":
    unittest.main()
