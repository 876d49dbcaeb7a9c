"""Every example in conf/ validates, starts and serves. Ports are rewritten to
free ones and upstream addresses to the test's backends, by text replacement;
the rest of each file is used as written."""

import glob
import json
import os
import re
import unittest

import skiffharness as h
from skiffharness import LOCALHOST


def conf_text(name):
    with open(h.source_path("conf", name)) as f:
        return f.read()


def replace_port(text, old, new):
    out, n = re.subn(rf"\bport_value: {old}\b", f"port_value: {new}", text)
    assert n, f"port_value: {old} not in config"
    return out


def common_rewrites(text):
    # The public listener and the admin go to port 0; skiff reports them back.
    text = replace_port(text, 10000, 0)
    text = replace_port(text, 9901, 0)
    return text.replace("address: 0.0.0.0", "address: 127.0.0.1")


class ConfExamplesTest(h.SkiffTestCase):
    def test_every_example_validates(self):
        files = sorted(glob.glob(h.source_path("conf", "*.yaml")))
        self.assertGreaterEqual({os.path.basename(f) for f in files},
                                {"default.yaml", "edge.yaml", "front-proxy.yaml"})
        for path in files:
            with self.subTest(conf=os.path.basename(path)):
                rc, out = h.run_skiff(["--mode", "validate", "-c", path])
                self.assertEqual(rc, 0, out)
                self.assertIn("OK", out)

    def test_default(self):
        text = common_rewrites(conf_text("default.yaml"))
        # The in-process upstream listener needs a number the cluster can name:
        # one held until the test ends, so that no other bind(0) takes it
        # before skiff listens there (libuv binds with SO_REUSEADDR).
        upstream_port = h.ReservedPort()
        self.addCleanup(upstream_port.close)
        text = replace_port(text, 10001, upstream_port.port)
        skiff = self.start_skiff(text)
        port = skiff.port("main")
        status, headers, body = h.http_request(port, path="/")
        self.assertEqual((status, body), (200, b"hello from skiff\n"))
        self.assertEqual(headers.get("server"), "skiff")
        status, _, body = h.http_request(port, path="/upstream/anything")
        self.assertEqual((status, body), (200, b"hello from the upstream listener\n"))
        self.assertEqual(skiff.stat("cluster.local_service.upstream_rq_total"), 1)

    def test_edge(self):
        backend = self.start_backend("edge-backend")
        text = common_rewrites(conf_text("edge.yaml"))
        text = replace_port(text, 8000, backend.port)
        skiff = self.start_skiff(text)
        port = skiff.port("edge")
        status, headers, body = h.http_request(port, path="/headers",
                                               headers={"x-forwarded-for": "203.0.113.9"})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("server"), "skiff-edge")
        self.assertEqual(headers.get("x-backend"), "edge-backend")
        seen = dict(json.loads(body)["headers"])
        xff = [a.strip() for a in seen.get("x-forwarded-for", "").split(",")]
        self.assertEqual(xff, ["203.0.113.9", LOCALHOST])
        self.assertIn("x-request-id", seen)
        status, _, body = h.http_request(port, "POST", "/echo", body=b"edge body")
        self.assertEqual((status, body), (200, b"edge body"))

    def test_front_proxy(self):
        s1 = self.start_backend("service1")
        s2 = self.start_backend("service2")
        text = common_rewrites(conf_text("front-proxy.yaml"))
        text = replace_port(text, 8001, s1.port)
        text = replace_port(text, 8002, s2.port)
        skiff = self.start_skiff(text)
        port = skiff.port("front")
        cases = [
            ("/service/1", {}, "service1"),
            ("/service/2/x", {}, "service2"),
            ("/service/1", {"x-service": "service2"}, "service2"),
            ("/other", {"x-service": "service2"}, "service2"),
        ]
        for path, headers, want in cases:
            with self.subTest(path=path, headers=headers):
                status, resp_headers, body = h.http_request(port, path=path, headers=headers)
                self.assertEqual(status, 200)
                self.assertEqual(resp_headers.get("x-backend"), want)
                self.assertEqual(body, f"backend:{path}\n".encode())
        self.assertEqual(h.http_request(port, path="/other")[0], 404)
        self.assertEqual(h.http_request(port, path="/other", headers={"x-service": "service1"})[0], 404)
        stats = skiff.stats()
        self.assertEqual(stats.get("cluster.service1.upstream_rq_total"), 1)
        self.assertEqual(stats.get("cluster.service2.upstream_rq_total"), 3)

    def test_ads(self):
        import xdsharness as x
        if not x.CONTROL_PLANE_BIN:
            self.skipTest("SKIFF_CONTROL_PLANE_BIN is not set")
        cp = x.ControlPlane().start()
        self.addCleanup(cp.stop)
        backend = self.start_backend("mesh-backend")
        cp.set(x.CLUSTER, "v1", [x.cluster("app")])
        cp.set(x.ENDPOINT, "v1", [x.cla("app", [(LOCALHOST, backend.port)])])
        cp.set(x.LISTENER, "v1", [x.listener("inbound", 0, "app_routes")])
        cp.set(x.ROUTE, "v1", [x.route_config("app_routes", cluster="app")])
        text = replace_port(conf_text("ads.yaml"), 18000, cp.port)
        text = replace_port(text, 9901, 0)
        skiff = self.start_skiff(text)
        status, headers, _ = h.http_request(skiff.port("inbound"), path="/hello")
        self.assertEqual((status, headers.get("x-backend")), (200, "mesh-backend"))
        node = cp.requests()[0]["node"]
        self.assertEqual(node["id"], "sidecar~10.0.0.1~app-7d4b9c.default~default.svc.cluster.local")
        self.assertEqual(node["locality"]["zone"], "a")


if __name__ == "__main__":
    unittest.main()
