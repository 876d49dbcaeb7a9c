"""HTTP/2 (h2c, prior knowledge) downstream and upstream, with curl, h2load and
nginx as independent implementations, and h2 <-> HTTP/1.1 translation."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

H2_UPSTREAM = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}


class Http2Test(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.nginx = cls.class_nginx()
        cls.backend = cls.class_backend()
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("ingress", [
                h.route("/direct", direct="hello over h2\n"),
                *[h.route(path=p, cluster="nginx") for p in h.Nginx.SIZES],
                *h.backend_routes("backend"),
            ])],
            [h.cluster("nginx", [(LOCALHOST, cls.nginx.port)]),
             h.cluster("backend", [(LOCALHOST, cls.backend.port)])]))
        cls.port = cls.skiff.port("ingress")

    def curl_h2(self, path, *args, input_bytes=None):
        rc, out, err = h.curl("--http2-prior-knowledge", "-m", "20", "-w", "\n%{http_version} %{http_code}",
                              *args, f"http://{LOCALHOST}:{self.port}{path}", input_bytes=input_bytes)
        self.assertEqual(rc, 0, err)
        body, _, tail = out.rpartition(b"\n")
        version, code = tail.decode().split()
        return version, int(code), body

    def test_direct_response_over_h2c(self):
        version, code, body = self.curl_h2("/direct")
        self.assertEqual((version, code, body), ("2", 200, b"hello over h2\n"))

    def test_grpc_local_reply_is_trailers_only(self):
        # A gRPC client reads the outcome from grpc-status: Envoy answers a
        # gRPC request it cannot route with HTTP 200, grpc-status 12
        # (UNIMPLEMENTED, from 404) and no body: one HEADERS frame with
        # END_STREAM. nghttp, not curl: the answer may leave before the
        # request body, and curl 7.88 then waits for ever (curl#10433).
        if not shutil.which("nghttp"):
            self.skipTest("nghttp not installed")
        body = os.path.join(self.skiff.tmp, "grpc-body")
        with open(body, "wb") as f:
            f.write(b"\x00\x00\x00\x00\x00")
        p = subprocess.run(["nghttp", "-v", "-t", "20", "-d", body,
                            "-H", "content-type: application/grpc",
                            f"http://{LOCALHOST}:{self.port}/no.Such/Method"],
                           capture_output=True, timeout=60)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out + p.stderr.decode())
        self.assertIn("recv (stream_id=13) :status: 200", out)
        self.assertIn("recv (stream_id=13) grpc-status: 12", out)
        self.assertNotIn("grpc-message", out)  # Envoy's "no route" reply has no body to put there.
        self.assertIn("recv (stream_id=13) content-type: application/grpc", out)
        self.assertRegex(out, r"recv HEADERS frame <length=\d+, flags=0x05, stream_id=13>")
        self.assertNotIn("recv DATA frame", out)

    def test_no_route_is_404_without_body(self):
        version, code, body = self.curl_h2("/nothing/here")
        self.assertEqual((version, code, body), ("2", 404, b""))

    def test_h2_downstream_h1_upstream_body(self):
        version, code, body = self.curl_h2("/b1m")
        self.assertEqual((version, code), ("2", 200))
        self.assertEqual(body, h.Nginx.body_of(1 << 20))

    def test_h2_request_body_to_h1_upstream(self):
        payload = bytes(range(256)) * 8192  # 2 MiB: more than the initial windows
        version, code, body = self.curl_h2("/sha", "--data-binary", "@-", input_bytes=payload)
        self.assertEqual((version, code), ("2", 200))
        self.assertEqual(json.loads(body), {"length": len(payload),
                                            "sha256": hashlib.sha256(payload).hexdigest()})

    def test_h2load_many_streams(self):
        if not shutil.which("h2load"):
            self.skipTest("h2load not installed")
        p = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "16",
                            f"http://{LOCALHOST}:{self.port}/b64"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        self.assertRegex(out, r"requests: 400 total, 400 started, 400 done, 400 succeeded, 0 failed", out)
        self.assertRegex(out, r"status codes: 400 2xx, 0 3xx, 0 4xx, 0 5xx", out)


class Http2UploadTest(h.SkiffTestCase):
    def test_h2_uploads_to_a_slow_h1_upstream(self):
        # The upstream reads slower than the client sends, so skiff's upstream
        # write queue passes its high-water mark and the h2 stream pauses. A
        # queue that then drained in one last write (at most 64 slices) never
        # said so, and the upload stalled until the upstream gave up (503
        # "upstream connection closed before the response was complete"). A
        # small buffer limit on the cluster makes that last write the usual
        # case: every upload here stalled without the fix.
        backend = self.start_backend()
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", h.backend_routes("backend"))],
            [h.cluster("backend", [(LOCALHOST, backend.port)],
                       extra={"per_connection_buffer_limit_bytes": 65536})]))
        payload = os.urandom(16 << 20)
        url = f"http://{LOCALHOST}:{skiff.port('ingress')}/slow?rate=256"
        for i in range(3):
            rc, out, err = h.curl("--http2-prior-knowledge", "-m", "20", "--data-binary", "@-", url,
                                  input_bytes=payload)
            self.assertEqual((rc, out), (0, b'{"length": %d}' % len(payload)), f"upload {i}: {err}")


class Http2UpstreamTest(h.SkiffTestCase):
    def test_h1_downstream_h2_upstream(self):
        nginx = self.start_nginx_h2()
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="nginx_h2")])],
            [h.cluster("nginx_h2", [(LOCALHOST, nginx.port)], extra={
                "typed_extension_protocol_options": H2_UPSTREAM})]))
        port = skiff.port("ingress")
        for path, size in h.Nginx.SIZES.items():
            status, _, body = h.http_request(port, path=path)
            self.assertEqual(status, 200)
            self.assertEqual(body, h.Nginx.body_of(size))
        # Sequential requests share one h2 connection per worker.
        self.assertLessEqual(skiff.stat("cluster.nginx_h2.upstream_cx_total"), 2)
        self.assertRegex(skiff.admin_get("/stats")[1], re.compile(r"cluster\.nginx_h2\.upstream_cx_http2_total: [1-9]"))

    def start_nginx_h2(self):
        n = h.Nginx(http2=True)
        self.addCleanup(n.stop)
        return n


if __name__ == "__main__":
    unittest.main()
