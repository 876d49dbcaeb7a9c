"""HTTP/1.1 proxying through skiff: direct responses, nginx and a Python backend
as upstreams, bodies of every framing, keep-alive, pipelining, headers."""

import hashlib
import http.client
import json
import socket
import threading
import unittest

import skiffharness as h
from skiffharness import LOCALHOST


class HttpProxyTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.nginx = cls.class_nginx()
        cls.backend = cls.class_backend()
        routes = [
            h.route("/direct", direct="hello from skiff\n"),
            *[h.route(path=p, cluster="nginx") for p in h.Nginx.SIZES],  # /b64, /b16k, /b1m
            *h.backend_routes("backend"),
        ]
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("ingress", routes, hcm_extra={
                "use_remote_address": True,
                # Envoy (since 1.36) calls no address internal unless listed.
                "internal_address_config": {
                    "cidr_ranges": [{"address_prefix": LOCALHOST, "prefix_len": 32}]}})],
            [h.cluster("nginx", [(LOCALHOST, cls.nginx.port)]),
             h.cluster("backend", [(LOCALHOST, cls.backend.port)])]))
        cls.port = cls.skiff.port("ingress")

    def get(self, path, **kw):
        return h.http_request(self.port, path=path, **kw)

    def test_direct_response(self):
        status, headers, body = self.get("/direct")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"hello from skiff\n")
        self.assertEqual(headers.get("content-length"), str(len(body)))
        self.assertEqual(headers.get("server"), "skiff")

    def test_nginx_bodies(self):
        for path, size in h.Nginx.SIZES.items():
            with self.subTest(path=path):
                status, headers, body = self.get(path)
                self.assertEqual(status, 200)
                self.assertEqual(len(body), size)
                self.assertEqual(body, h.Nginx.body_of(size))
                self.assertEqual(headers.get("content-length"), str(size))
                # Envoy rewrites the upstream's server header with its own.
                self.assertEqual(headers.get("server"), "skiff")

    def test_no_route_is_404(self):
        # As Envoy's: no body, so content-length 0 and no content-type.
        status, headers, body = self.get("/nothing/here")
        self.assertEqual((status, body), (404, b""))
        self.assertEqual(headers.get("content-length"), "0")
        self.assertNotIn("content-type", headers)
        self.assertEqual(headers.get("server"), "skiff")

    def test_head(self):
        # HEAD then GET on one connection: a HEAD response carries no body, so
        # a proxy that forwards one would desynchronise the second response.
        data, _ = h.raw_exchange(
            self.port,
            b"HEAD /b16k HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /b64 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, sep, rest = data.partition(b"\r\n\r\n")
        self.assertTrue(sep, data[:300])
        self.assertRegex(head, rb"^HTTP/1.1 200 ")
        self.assertRegex(head.lower(), rb"content-length: 16384")
        self.assertTrue(rest.startswith(b"HTTP/1.1 200 "), rest[:300])
        [(status, _, body)] = h.parse_responses(rest)
        self.assertEqual(status, 200)
        self.assertEqual(body, h.Nginx.body_of(64))

    def test_keepalive_reuses_connections(self):
        before = self.skiff.stats()
        conn = http.client.HTTPConnection(LOCALHOST, self.port, timeout=10)
        try:
            n = 20
            sock = None
            for i in range(n):
                conn.request("GET", "/b64")
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.read(), h.Nginx.body_of(64))
                self.assertNotEqual((resp.getheader("connection") or "").lower(), "close")
                if sock is None:
                    sock = conn.sock
                self.assertIs(conn.sock, sock, f"downstream connection replaced at request {i}")
        finally:
            conn.close()
        after = self.skiff.stats()
        rq = after["cluster.nginx.upstream_rq_total"] - before.get("cluster.nginx.upstream_rq_total", 0)
        cx = after["cluster.nginx.upstream_cx_total"] - before.get("cluster.nginx.upstream_cx_total", 0)
        self.assertEqual(rq, n)
        # One downstream connection lives on one worker, whose pool keeps one
        # upstream connection alive across the sequential requests.
        self.assertLessEqual(cx, 1, f"{cx} upstream connections for {n} sequential requests")

    def test_connection_close(self):
        data, closed = h.raw_exchange(
            self.port, b"GET /b64 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(closed, "skiff kept the connection open after Connection: close")
        [(status, headers, body)] = h.parse_responses(data)
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("connection"), "close")
        self.assertEqual(body, h.Nginx.body_of(64))

    def test_http10_answered_and_closed(self):
        # Envoy refuses HTTP/1.0 with 426 unless accept_http_10 is set; a proxy
        # that serves it must close after the response (no keep-alive asked).
        data, closed = h.raw_exchange(self.port, b"GET /direct HTTP/1.0\r\nHost: x\r\n\r\n")
        self.assertTrue(closed)
        self.assertRegex(data, rb"^HTTP/1\.[01] (200|426) ")
        if b" 200 " in data[:16]:
            self.assertTrue(data.endswith(b"hello from skiff\n"), data[-100:])

    def test_request_headers_seen_by_upstream(self):
        status, headers, body = self.get("/headers", headers={"x-forwarded-for": "10.1.2.3",
                                                              "x-custom": "kept"})
        self.assertEqual(status, 200)
        seen = dict(json.loads(body)["headers"])
        self.assertEqual(seen.get("x-custom"), "kept")
        # Envoy appends with "," (no space); either spelling is one list.
        xff = [a.strip() for a in seen.get("x-forwarded-for", "").split(",")]
        self.assertEqual(xff, ["10.1.2.3", LOCALHOST])
        self.assertRegex(seen.get("x-request-id", ""), r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertEqual(seen.get("host"), f"{LOCALHOST}:{self.port}")
        self.assertEqual(headers.get("x-backend"), "backend")

    def test_hop_by_hop_headers_not_forwarded(self):
        _, _, body = self.get("/headers", headers={"Keep-Alive": "timeout=5",
                                                   "Proxy-Connection": "keep-alive",
                                                   "x-end-to-end": "yes"})
        seen = dict(json.loads(body)["headers"])
        self.assertNotIn("keep-alive", seen)
        self.assertNotIn("proxy-connection", seen)
        self.assertEqual(seen.get("x-end-to-end"), "yes")
        self.assertEqual(seen.get("x-forwarded-proto"), "http")

    def test_internal_request_id_preserved(self):
        # 127.0.0.1 is an internal address here, so Envoy keeps the caller's id.
        _, _, body = self.get("/headers", headers={"x-request-id": "trace-me-123"})
        self.assertEqual(dict(json.loads(body)["headers"]).get("x-request-id"), "trace-me-123")

    def test_internal_request_is_marked(self):
        # internal_address_config lists 127.0.0.1: x-envoy-internal: true, and
        # the x-envoy-* headers an internal caller may set go on (but for the
        # ones the router consumes: test_request_overrides.py).
        _, _, body = self.get("/headers", headers={"x-envoy-force-trace": "true",
                                                   "x-envoy-internal": "false"})
        seen = dict(json.loads(body)["headers"])
        self.assertEqual(seen.get("x-envoy-internal"), "true")
        self.assertEqual(seen.get("x-envoy-force-trace"), "true")
        self.assertNotIn("x-envoy-external-address", seen)

    def test_request_ids_differ(self):
        ids = set()
        for _ in range(3):
            _, _, body = self.get("/headers")
            ids.add(dict(json.loads(body)["headers"]).get("x-request-id"))
        self.assertEqual(len(ids), 3, ids)
        self.assertNotIn(None, ids)

    def test_post_content_length_echo(self):
        payload = bytes(range(256)) * 64
        status, _, body = self.get("/echo", method="POST", body=payload)
        self.assertEqual(status, 200)
        self.assertEqual(body, payload)

    def test_chunked_request_body_raw(self):
        pieces = [b"hello ", b"chunked ", b"world" * 1000]
        req = b"POST /sha HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        for p in pieces:
            req += b"%x\r\n%s\r\n" % (len(p), p)
        req += b"0\r\n\r\n"
        data, _ = h.raw_exchange(self.port, req)
        [(status, _, body)] = h.parse_responses(data)
        self.assertEqual(status, 200)
        whole = b"".join(pieces)
        self.assertEqual(json.loads(body), {"length": len(whole),
                                            "sha256": hashlib.sha256(whole).hexdigest()})

    def test_chunked_request_body_curl(self):
        payload = b"x" * 100000
        rc, out, err = h.curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@-",
                              f"http://{LOCALHOST}:{self.port}/sha", input_bytes=payload)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"length": len(payload),
                                           "sha256": hashlib.sha256(payload).hexdigest()})

    def test_chunked_response(self):
        status, headers, body = self.get("/chunked?n=7")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"".join(f"chunk-{i}\n".encode() for i in range(7)))
        # The body's length was unknown at the head, so it stays chunked.
        self.assertEqual(headers.get("transfer-encoding"), "chunked")

    def test_expect_100_continue_curl(self):
        payload = bytes(range(256)) * 4096  # 1 MiB
        rc, out, err = h.curl("-H", "Expect: 100-continue", "--expect100-timeout", "5",
                              "--data-binary", "@-", "-w", "\n%{http_code}",
                              f"http://{LOCALHOST}:{self.port}/sha", input_bytes=payload)
        self.assertEqual(rc, 0, err)
        body, _, code = out.rpartition(b"\n")
        self.assertEqual(code, b"200")
        self.assertEqual(json.loads(body)["sha256"], hashlib.sha256(payload).hexdigest())

    def test_expect_100_continue_raw(self):
        # The client waits for "100 Continue" before it sends the body.
        s = socket.create_connection((LOCALHOST, self.port), timeout=5)
        try:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                      b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
            first = s.recv(4096)
            self.assertRegex(first, rb"^HTTP/1.1 100 ")
            s.sendall(b"hello")
            data = first
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        [(status, _, body)] = h.parse_responses(data)
        self.assertEqual(status, 200)
        self.assertEqual(body, b"hello")

    def test_pipelining_in_order(self):
        # The first request is slow; its response must still come first.
        data, _ = h.raw_exchange(
            self.port,
            b"GET /delay?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond"
            b"GET /b64 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        responses = h.parse_responses(data)
        self.assertEqual([r[0] for r in responses], [200, 200, 200])
        self.assertEqual(responses[0][2], b"delayed\n")
        self.assertEqual(responses[1][2], b"second")
        self.assertEqual(responses[2][2], h.Nginx.body_of(64))

    def test_pipelining_many(self):
        n = 100
        data, _ = h.raw_exchange(
            self.port,
            b"".join(b"GET /size?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(n))
            + b"GET /direct HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=10)
        responses = h.parse_responses(data)
        self.assertEqual(len(responses), n + 1)
        for i, (status, _, body) in enumerate(responses[:n]):
            self.assertEqual((status, body), (200, h.Nginx.body_of(i)), f"response {i}")
        self.assertEqual(responses[n][2], b"hello from skiff\n")

    def test_upstream_connection_close_is_not_reused(self):
        # The backend ends each /last exchange with "connection: close"; a pool
        # that reused that connection would answer the next request with 503.
        conn = http.client.HTTPConnection(LOCALHOST, self.port, timeout=10)
        try:
            for i in range(6):
                path = "/last" if i % 2 == 0 else "/size?n=2"
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                self.assertEqual(resp.status, 200, f"request {i} {path}: {body!r}")
                self.assertEqual(body, b"last\n" if i % 2 == 0 else b"\x00\x01")
        finally:
            conn.close()

    def test_chunked_request_with_trailers(self):
        req = (b"POST /sha HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\nx-trailer: t\r\n\r\n")
        data, _ = h.raw_exchange(self.port, req)
        [(status, _, body)] = h.parse_responses(data)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["length"], 5)

    def test_close_delimited_response(self):
        # No Content-Length, not chunked: the body ends when the upstream closes.
        status, _, body = self.get("/eof?n=300000")
        self.assertEqual(status, 200)
        self.assertEqual(body, h.Nginx.body_of(300000))

    def test_bodiless_statuses(self):
        for code in (204, 304):
            with self.subTest(code=code):
                # A second request on the connection proves no body was expected.
                data, _ = h.raw_exchange(
                    self.port,
                    b"GET /status?code=%d HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"GET /size?n=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % code)
                head, _, rest = data.partition(b"\r\n\r\n")
                self.assertRegex(head, rb"^HTTP/1.1 %d " % code)
                self.assertNotIn(b"transfer-encoding", head.lower())
                [(status, _, body)] = h.parse_responses(rest)
                self.assertEqual((status, body), (200, b"\x00\x01"))

    def test_long_uri(self):
        path = "/headers?" + "q=" + "a" * 8000
        status, _, body = self.get(path)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["target"], path)

    def test_parallel_bodies_both_ways(self):
        # Eight connections upload and download at once; every byte must land
        # on its own stream.
        results = {}

        def worker(i):
            payload = bytes([i]) * (8 << 20) + str(i).encode()
            try:
                st, _, body = h.http_request(self.port, "POST", "/sha", body=payload, timeout=60)
                up = (st, json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest())
                st, _, body = self.get(f"/size?n={(8 << 20) + i}", timeout=60)
                down = (st, body == h.Nginx.body_of((8 << 20) + i))
                results[i] = (up, down)
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = repr(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(results, {i: ((200, True), (200, True)) for i in range(8)})

    def test_pipelined_requests_after_connection_close_are_ignored(self):
        before = len(self.backend.requests)
        data, closed = h.raw_exchange(
            self.port,
            b"GET /size?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /size?n=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            b"GET /headers?never HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(closed)
        responses = h.parse_responses(data)
        self.assertEqual([(r[0], r[2]) for r in responses], [(200, b"\x00"), (200, b"\x00\x01")])
        self.assertEqual([r.target for r in self.backend.requests[before:]], ["/size?n=1", "/size?n=2"])

    def test_absolute_form_uri(self):
        data, _ = h.raw_exchange(
            self.port, b"GET http://example.com/direct HTTP/1.1\r\nHost: example.com\r\n"
                       b"Connection: close\r\n\r\n")
        [(status, _, body)] = h.parse_responses(data)
        self.assertEqual((status, body), (200, b"hello from skiff\n"))

    def test_query_and_escapes_preserved(self):
        target = "/headers?a=%20b&c=d%2Fe&x=1+2"
        status, _, body = self.get(target)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["target"], target)

    def test_many_headers_under_limit(self):
        headers = {f"x-h{i}": "v" * 100 for i in range(80)}
        status, _, body = self.get("/headers", headers=headers)
        self.assertEqual(status, 200)
        seen = dict(json.loads(body)["headers"])
        self.assertEqual({k: seen.get(k) for k in headers}, headers)

    def test_early_response_before_body(self):
        # The upstream answers without reading the 4 MiB body; the answer must
        # still reach the client.
        s = socket.create_connection((LOCALHOST, self.port), timeout=10)
        try:
            s.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (4 << 20))
            try:
                s.sendall(b"z" * (4 << 20))
            except OSError:
                pass  # skiff may stop reading once the exchange is over
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        self.assertRegex(data, rb"^HTTP/1.1 200 ")
        self.assertTrue(data.endswith(b"early\n"), data[-200:])

    def test_large_chunked_response(self):
        status, _, body = self.get("/chunked?n=64&size=262144", timeout=60)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), 64 * 262144)
        self.assertEqual(body, h.Nginx.body_of(262144) * 64)

    def test_large_chunked_upload_curl(self):
        # curl -T - streams stdin as a chunked PUT.
        payload = bytes(range(256)) * (32 * 4096)  # 32 MiB
        rc, out, err = h.curl("-T", "-", f"http://{LOCALHOST}:{self.port}/sha", input_bytes=payload)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"length": len(payload),
                                           "sha256": hashlib.sha256(payload).hexdigest()})

    def test_moderately_large_response_header(self):
        status, headers, body = self.get("/bigheader?n=16384")
        self.assertEqual((status, body), (200, b"big\n"))
        self.assertEqual(len(headers.get("x-big", "")), 16384)

    def test_large_upload_64mib(self):
        size = 64 << 20
        block = bytes(range(256)) * 4096  # 1 MiB
        expected = hashlib.sha256()
        for _ in range(size // len(block)):
            expected.update(block)

        def gen():
            for _ in range(size // len(block)):
                yield block

        status, _, body = h.http_request(self.port, "POST", "/sha", body=gen(),
                                         headers={"Content-Length": str(size)}, timeout=60)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"length": size, "sha256": expected.hexdigest()})

    def test_large_download_64mib(self):
        size = 64 << 20
        status, headers, body = self.get(f"/size?n={size}", timeout=60)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), size)
        self.assertEqual(hashlib.sha256(body).digest(),
                         hashlib.sha256(h.Nginx.body_of(size)).digest())

    def test_many_connections_across_workers(self):
        # Port 0 with --concurrency 2: every worker must serve the same port.
        conns = [socket.create_connection((LOCALHOST, self.port), timeout=5) for _ in range(16)]
        try:
            for s in conns:
                s.sendall(b"GET /direct HTTP/1.1\r\nHost: x\r\n\r\n")
            for s in conns:
                data = b""
                while not data.endswith(b"hello from skiff\n"):
                    chunk = s.recv(4096)
                    self.assertTrue(chunk, "connection closed before the response")
                    data += chunk
                self.assertRegex(data, rb"^HTTP/1.1 200 ")
        finally:
            for s in conns:
                s.close()

    def test_stats_count_requests(self):
        before = self.skiff.stats()
        for _ in range(3):
            self.assertEqual(self.get("/direct")[0], 200)
        self.assertEqual(self.get("/b64")[0], 200)
        after = self.skiff.stats()

        def delta(name):
            self.assertIn(name, after, f"stat {name} missing")
            return after[name] - before.get(name, 0)

        self.assertEqual(delta("http.ingress_http.downstream_rq_total"), 4)
        self.assertEqual(delta("cluster.nginx.upstream_rq_total"), 1)
        # Envoy names listener stats by address: listener.127.0.0.1_PORT.*
        self.assertGreaterEqual(delta(f"listener.{LOCALHOST}_{self.port}.downstream_cx_total"), 4)


class SmallBufferTest(h.SkiffTestCase):
    def test_slow_reader_that_catches_up_gets_the_whole_body(self):
        # With 16 KiB buffers, skiff's whole queue toward a client that
        # stopped reading waits for the socket to turn writable. When the last
        # of it leaves, skiff must resume reading the upstream (it used to
        # stay stopped: the queue was empty, so the low-water mark was never
        # reported).
        backend = self.start_backend()
        limit = {"per_connection_buffer_limit_bytes": 16384}
        ingress = h.listener("ingress", [h.route("/", cluster="b")])
        ingress.update(limit)
        skiff = self.start_skiff(h.bootstrap(
            [ingress], [h.cluster("b", [(LOCALHOST, backend.port)], extra=limit)]))
        n = 16 * 1024 * 1024
        with socket.create_connection((LOCALHOST, skiff.port("ingress")), timeout=30) as s:
            s.sendall(b"GET /size?n=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % n)
            # Read nothing until skiff has filled the socket buffers and stopped.
            h.wait_until(lambda: skiff.stat("cluster.b.upstream_rq_active") == 1, 10,
                         what="the request upstream")
            threading.Event().wait(1.0)
            data = bytearray()
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        self.assertRegex(head, rb"^HTTP/1.1 200 ")
        self.assertEqual(body, h.Nginx.body_of(n))


if __name__ == "__main__":
    unittest.main()


class EdgeHeaderSanitizingTest(h.SkiffTestCase):
    """Envoy's header sanitizing: an external request loses the x-envoy-*
    headers that steer retries and timeouts further on; whether a request is
    external depends on use_remote_address, x-forwarded-for and
    internal_address_config (none by default: 127.0.0.1 is external)."""

    STEERING = {
        "x-envoy-retry-on": "5xx",
        "x-envoy-max-retries": "7",
        "x-envoy-upstream-rq-timeout-ms": "1",
        "x-envoy-upstream-rq-per-try-timeout-ms": "1",
        "x-envoy-expected-rq-timeout-ms": "1",
        "x-envoy-force-trace": "1",
        "x-envoy-ip-tags": "tag",
    }
    EDGE_ONLY = {
        "x-envoy-downstream-service-cluster": "c",
        "x-envoy-downstream-service-node": "n",
        "x-envoy-decorator-operation": "op",
    }

    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend()
        routes = h.backend_routes("backend")
        internal = {"cidr_ranges": [{"address_prefix": "10.0.0.0", "prefix_len": 8}]}
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("edge", routes, stat_prefix="edge",
                        hcm_extra={"use_remote_address": True}),
             h.listener("sidecar", routes, stat_prefix="sidecar",
                        hcm_extra={"internal_address_config": internal})],
            [h.cluster("backend", [(LOCALHOST, cls.backend.port)])]))

    def seen(self, listener, headers):
        status, _, body = h.http_request(self.skiff.port(listener), path="/headers",
                                         headers=headers)
        self.assertEqual(status, 200)
        return dict(json.loads(body)["headers"])

    def test_edge_request_is_sanitized(self):
        sent = {**self.STEERING, **self.EDGE_ONLY, "X-Envoy-Internal": "true",
                "x-envoy-external-address": "1.2.3.4", "x-request-id": "from-client",
                "x-envoy-original-path": "/kept"}
        seen = self.seen("edge", sent)
        for name in [*self.STEERING, *self.EDGE_ONLY, "x-envoy-internal"]:
            # x-envoy-expected-rq-timeout-ms is the router's own (the route's 15s).
            if name == "x-envoy-expected-rq-timeout-ms":
                self.assertEqual(seen.get(name), "15000")
            else:
                self.assertNotIn(name, seen)
        self.assertEqual(seen.get("x-envoy-external-address"), LOCALHOST)
        self.assertNotEqual(seen.get("x-request-id"), "from-client")
        self.assertEqual(seen.get("x-envoy-original-path"), "/kept")

    def test_edge_request_over_h2c_with_curl(self):
        rc, out, err = h.curl("-s", "--http2-prior-knowledge", "-m", "10",
                              "-H", "x-envoy-retry-on: 5xx", "-H", "x-envoy-internal: true",
                              f"http://{LOCALHOST}:{self.skiff.port('edge')}/headers")
        self.assertEqual(rc, 0, err)
        seen = dict(json.loads(out)["headers"])
        self.assertNotIn("x-envoy-retry-on", seen)
        self.assertNotIn("x-envoy-internal", seen)
        self.assertEqual(seen.get("x-envoy-external-address"), LOCALHOST)

    def test_external_request_behind_a_proxy(self):
        # Not using the remote address: a proxy before skiff was the edge. An
        # x-forwarded-for that is not one internal address makes the request
        # external, but not an edge request.
        for xff in ({}, {"x-forwarded-for": "203.0.113.7"},
                    {"x-forwarded-for": "10.1.1.1, 10.2.2.2"}):
            with self.subTest(xff=xff):
                seen = self.seen("sidecar", {**self.STEERING, **self.EDGE_ONLY,
                                             "x-envoy-internal": "true",
                                             "x-envoy-external-address": "203.0.113.7",
                                             "x-request-id": "from-proxy", **xff})
                for name in self.STEERING:
                    if name != "x-envoy-expected-rq-timeout-ms":
                        self.assertNotIn(name, seen)
                for name, value in self.EDGE_ONLY.items():
                    self.assertEqual(seen.get(name), value)
                self.assertNotIn("x-envoy-internal", seen)
                self.assertEqual(seen.get("x-envoy-external-address"), "203.0.113.7")
                self.assertEqual(seen.get("x-request-id"), "from-proxy")

    def test_internal_by_forwarded_for(self):
        # Timeouts the request can meet: an internal request's are obeyed.
        seen = self.seen("sidecar", {**self.STEERING, "x-forwarded-for": "10.1.2.3",
                                     "x-envoy-upstream-rq-timeout-ms": "60000",
                                     "x-envoy-upstream-rq-per-try-timeout-ms": "30000"})
        self.assertEqual(seen.get("x-envoy-internal"), "true")
        self.assertEqual(seen.get("x-envoy-force-trace"), "1")
        self.assertEqual(seen.get("x-envoy-ip-tags"), "tag")
        # Those the router consumes it acts on and takes off, as Envoy's does
        # (test_request_overrides.py): the upstream is told the per-try timeout.
        self.assertNotIn("x-envoy-retry-on", seen)
        self.assertNotIn("x-envoy-max-retries", seen)
        self.assertNotIn("x-envoy-upstream-rq-timeout-ms", seen)
        self.assertNotIn("x-envoy-upstream-rq-per-try-timeout-ms", seen)
        self.assertEqual(seen.get("x-envoy-expected-rq-timeout-ms"), "30000")
