"""Error paths: upstream failures (503 UF/UH, 504 UT), malformed and oversized
requests, and request smuggling attempts (RFC 9112), each refused with 400."""

import socket
import threading
import time
import unittest

import skiffharness as h
from skiffharness import LOCALHOST


class UpstreamErrorsTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend()
        dead = h.ReservedPort()  # nothing listens here
        cls.addClassCleanup(dead.close)
        cls.dead_port = dead.port
        routes = [
            h.route("/down", cluster="down"),
            h.route("/empty", cluster="empty"),
            h.route("/empty-dns", cluster="empty_dns"),
            {"match": {"prefix": "/delay-stall"},
             "route": {"cluster": "backend", "timeout": "0.5s", "prefix_rewrite": "/stall"}},
            h.route("/delay", cluster="backend", timeout="0.5s"),
            *h.backend_routes("backend"),
        ]
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("ingress", routes)],
            [h.cluster("backend", [(LOCALHOST, cls.backend.port)]),
             h.cluster("down", [(LOCALHOST, cls.dead_port)], connect_timeout="0.5s"),
             h.cluster("empty", []),
             # No endpoints: its DNS round ends before any lookup starts, and
             # must not hold back the workers (skiff never became ready).
             h.cluster("empty_dns", [], type_="STRICT_DNS")]))
        cls.port = cls.skiff.port("ingress")

    def test_upstream_down_is_503(self):
        status, headers, body = h.http_request(self.port, path="/down")
        self.assertEqual(status, 503)
        # Envoy's wording, with the transport failure reason.
        self.assertRegex(body, rb"^upstream connect error or disconnect/reset before headers\. "
                               rb"reset reason: remote connection failure, transport failure "
                               rb"reason: (delayed|immediate) connect error: Connection refused\Z")
        self.assertEqual(headers.get("server"), "skiff")
        # The proxy keeps serving.
        self.assertEqual(h.http_request(self.port, path="/size?n=3")[0], 200)

    def test_no_healthy_upstream_is_503(self):
        status, headers, body = h.http_request(self.port, path="/empty")
        # Envoy's local reply exactly: its text with no newline after it.
        self.assertEqual((status, body), (503, b"no healthy upstream"))
        self.assertEqual((headers.get("content-length"), headers.get("content-type")),
                         ("19", "text/plain"))

    def test_strict_dns_cluster_without_endpoints_is_503(self):
        status, _, body = h.http_request(self.port, path="/empty-dns")
        self.assertEqual(status, 503)
        self.assertIn(b"no healthy upstream", body.lower())

    def test_max_requests_overflow_is_503_and_counted(self):
        # Circuit breakers count per worker in skiff (README): one worker, so
        # that one request holds the cluster's only slot and the next overflows.
        skiff = h.Skiff(h.bootstrap(
            [h.listener("ingress", [{"match": {"prefix": "/limited"},
                                     "route": {"cluster": "limited", "prefix_rewrite": "/delay"}}])],
            [h.cluster("limited", [(LOCALHOST, self.backend.port)],
                       extra={"circuit_breakers": {"thresholds": [{"max_requests": 1}]}})]),
            concurrency=1)
        self.addCleanup(skiff.stop)
        port = skiff.port("ingress")
        results = []
        held = threading.Thread(target=lambda: results.append(
            h.http_request(port, path="/limited?ms=1500", timeout=10)))
        held.start()
        self.addCleanup(held.join, 10)
        h.wait_until(lambda: skiff.stat("cluster.limited.upstream_rq_active") == 1, 5,
                     what="the first request upstream")
        status, headers, body = h.http_request(port, path="/limited?ms=0")
        self.assertEqual(status, 503)
        self.assertIn(b"overflow", body)
        # Envoy's router marks a request a circuit breaker dropped.
        self.assertEqual(headers.get("x-envoy-overloaded"), "true")
        self.assertEqual(skiff.stat("cluster.limited.upstream_rq_pending_overflow"), 1)
        held.join(10)
        self.assertEqual(results[0][0], 200)

    def test_upstream_timeout_is_504(self):
        start = time.monotonic()
        status, _, body = h.http_request(self.port, path="/delay?ms=3000")
        elapsed = time.monotonic() - start
        self.assertEqual(status, 504)
        self.assertIn(b"timeout", body.lower())
        # The 504 must come from the 0.5 s route timeout, not the backend's answer.
        self.assertLess(elapsed, 2.5)

    def test_timeout_after_response_started_resets(self):
        # The route timeout covers the whole response. Once the head has gone
        # downstream no 504 can be sent, so the downstream connection is cut
        # before the promised 100 bytes.
        start = time.monotonic()
        data, closed = h.raw_exchange(self.port, b"GET /delay-stall HTTP/1.1\r\nHost: x\r\n\r\n",
                                      timeout=5)
        self.assertTrue(closed, data)
        self.assertLess(time.monotonic() - start, 2.5)
        if data:
            head, _, body = data.partition(b"\r\n\r\n")
            self.assertRegex(head, rb"^HTTP/1.1 (200|504) ")
            if head.startswith(b"HTTP/1.1 200"):
                self.assertLess(len(body), 100)

    def test_upstream_reset_after_response_started_is_counted(self):
        # An upstream that promises 100 bytes, sends 10 and closes: the
        # downstream response had started, so it is cut, and Envoy's router
        # counts rq_reset_after_downstream_response_started.
        srv = socket.create_server((LOCALHOST, 0))
        self.addCleanup(srv.close)

        def serve():
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                time.sleep(0.2)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("cut", [h.route("/", cluster="cut")], stat_prefix="cut")],
            [h.cluster("cut", [(LOCALHOST, srv.getsockname()[1])])]))
        data, closed = h.raw_exchange(skiff.port("cut"), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(closed)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:64])
        self.assertEqual(skiff.stat("http.cut.rq_reset_after_downstream_response_started"), 1)
        self.assertEqual(skiff.stat("http.cut.rq_redirect"), 0)
        t.join(5)

    def test_oversized_upstream_headers_are_5xx(self):
        # 80 KiB of response header is over Envoy's 60 KiB default.
        status, _, body = h.http_request(self.port, path="/bigheader?n=81920")
        self.assertIn(status, (502, 503), body[:200])
        self.assertEqual(h.http_request(self.port, path="/size?n=3")[0], 200)

    def test_ambiguous_upstream_framing_is_refused(self):
        # Content-Length with chunked from the upstream: forwarding it would let
        # the upstream smuggle a response; skiff must answer 5xx itself.
        status, _, body = h.http_request(self.port, path="/ambiguous")
        # Envoy's router answers an upstream protocol error 502 (UPE).
        self.assertEqual(status, 502, body)
        self.assertTrue(body.rstrip().endswith(b"reset reason: protocol error"), body)

    def test_upstream_transfer_coding_other_than_chunked_is_refused(self):
        # Envoy's codec refuses it as it refuses such a request: an upstream
        # protocol error, 502. Passed on dechunked, the gzip coding would have
        # been lost and the coded bytes taken for the content.
        status, headers, body = h.http_request(self.port, path="/gzip-chunked")
        self.assertEqual((status, body), (502, b"upstream connect error or disconnect/reset before "
                                               b"headers. reset reason: protocol error"))
        self.assertEqual(h.http_request(self.port, path="/size?n=3")[0], 200)

    def test_upstream_closes_without_response_is_503(self):
        status, _, body = h.http_request(self.port, path="/close")
        self.assertEqual((status, body), (503, b"upstream connect error or disconnect/reset before "
                                               b"headers. reset reason: connection termination"))

    def test_upstream_garbage_is_5xx(self):
        status, _, body = h.http_request(self.port, path="/garbage")
        self.assertEqual(status, 502, body)
        self.assertTrue(body.rstrip().endswith(b"reset reason: protocol error"), body)
        self.assertEqual(h.http_request(self.port, path="/size?n=3")[0], 200)

    def test_client_aborts_leave_nothing_active(self):
        # Clients that give up while the upstream is slow: their streams and
        # connections must be torn down, not leaked.
        for _ in range(10):
            s = socket.create_connection((LOCALHOST, self.port), timeout=5)
            s.sendall(b"GET /delay?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.02)
            s.close()

        def settled():
            st = self.skiff.stats()
            return (st.get("http.ingress_http.downstream_rq_active") == 0
                    and st.get("http.ingress_http.downstream_cx_active") == 0) and st

        try:
            h.wait_until(settled, 5, interval=0.1, what="active requests and connections back to 0")
        except TimeoutError:
            st = self.skiff.stats()
            self.fail({k: v for k, v in st.items() if k.endswith("_active")})
        self.assertEqual(h.http_request(self.port, path="/size?n=3")[0], 200)

    def test_upstream_comes_back(self):
        # A host that refused connections is tried again once it listens.
        self.assertEqual(h.http_request(self.port, path="/down")[0], 503)
        revived = h.Backend("revived", port=self.dead_port)
        try:
            status, headers, _ = h.http_request(self.port, path="/down")
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("x-backend"), "revived")
        finally:
            revived.stop()

    def test_keepalive_survives_error_response(self):
        # A 503 generated by skiff itself does not have to end the downstream connection.
        data, _ = h.raw_exchange(
            self.port,
            b"GET /down HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /size?n=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        responses = h.parse_responses(data)
        self.assertEqual([r[0] for r in responses], [503, 200])
        self.assertEqual(responses[1][2], b"\x00\x01\x02\x03")


class UpstreamTimeoutsTest(h.SkiffTestCase):
    """The router's and the upstream pool's timeouts. Envoy's RouteAction.timeout
    "spans between the point at which the entire downstream request (i.e.
    end-of-stream) has been processed and when the upstream response has been
    completely processed": waiting for an upstream connection counts against
    it, a slowly uploaded request body does not. A cluster's connect_timeout
    ends a connect that hangs; common_http_protocol_options.idle_timeout closes
    a pooled connection left unused."""

    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend()
        # An upstream whose TCP handshake never completes: a listening socket
        # with a backlog of 0 whose one queue slot holds a connection nobody
        # accepts. Linux drops further SYNs while the accept queue is full, so
        # skiff's connect stays pending (its connect_timeout is far away).
        cls.full = socket.socket()
        cls.full.bind((LOCALHOST, 0))
        cls.full.listen(0)
        cls.addClassCleanup(cls.full.close)
        cls.filler = socket.create_connection(cls.full.getsockname(), timeout=5)
        cls.addClassCleanup(cls.filler.close)
        routes = [
            {"match": {"prefix": "/unready-connect"}, "route": {"cluster": "unready_connect"}},
            {"match": {"prefix": "/unready"}, "route": {"cluster": "unready", "timeout": "0.5s"}},
            h.route("/echo", cluster="backend", timeout="1s"),
            h.route("/size", cluster="idle_backend"),
        ]
        unready = [(LOCALHOST, cls.full.getsockname()[1])]
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("ingress", routes)],
            [h.cluster("backend", [(LOCALHOST, cls.backend.port)]),
             h.cluster("idle_backend", [(LOCALHOST, cls.backend.port)],
                       extra={"typed_extension_protocol_options": {
                           "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                               "@type": "type.googleapis.com/"
                                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                               "common_http_protocol_options": {"idle_timeout": "0.3s"},
                               "explicit_http_config": {"http_protocol_options": {}}}}}),
             h.cluster("unready", unready, connect_timeout="60s"),
             h.cluster("unready_connect", unready, connect_timeout="0.3s")]))
        cls.port = cls.skiff.port("ingress")

    def test_waiting_for_the_upstream_connection_counts(self):
        # Started only once the connection was ready, the route timeout would
        # never fire here: the client would wait for the 60 s connect timeout.
        status, _, body = h.http_request(self.port, path="/unready", timeout=20)
        self.assertEqual((status, body), (504, b"upstream request timeout"))
        self.assertEqual(self.skiff.stat("cluster.unready.upstream_rq_timeout"), 1)
        # The request stopped waiting for the pool.
        h.wait_until(lambda: self.skiff.stat("cluster.unready.upstream_rq_pending_active") == 0,
                     5, what="no request waiting for the unready upstream")
        self.assertEqual(self.skiff.stat("cluster.unready.upstream_rq_active"), 0)

    def test_slow_upload_does_not_count(self):
        # The body takes longer to arrive than the 1 s route timeout; the
        # backend answers at once when it has it.
        s = socket.create_connection((LOCALHOST, self.port), timeout=10)
        try:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n"
                      b"Connection: close\r\n\r\n")
            for piece in (b"abcd", b"efgh", b"ijkl"):
                time.sleep(0.6)
                s.sendall(piece)
            data = bytearray()
            while chunk := s.recv(65536):
                data += chunk
        finally:
            s.close()
        responses = h.parse_responses(bytes(data))
        self.assertEqual([(r[0], r[2]) for r in responses], [(200, b"abcdefghijkl")], data)

    def test_connect_timeout_is_503(self):
        status, _, body = h.http_request(self.port, path="/unready-connect", timeout=20)
        self.assertEqual(status, 503)
        self.assertIn(b"connection timeout", body)
        self.assertEqual(self.skiff.stat("cluster.unready_connect.upstream_cx_connect_timeout"), 1)
        h.wait_until(lambda: self.skiff.stat("cluster.unready_connect.upstream_cx_active") == 0,
                     5, what="the timed-out connection closed")

    def test_idle_upstream_connection_closes(self):
        for _ in range(2):
            status, _, body = h.http_request(self.port, path="/size?n=3")
            self.assertEqual((status, body), (200, b"\x00\x01\x02"))
        h.wait_until(lambda: self.skiff.stat("cluster.idle_backend.upstream_cx_active") == 0,
                     10, what="the idle upstream connections closed")
        self.assertEqual(self.skiff.stat("cluster.idle_backend.upstream_cx_destroy"),
                         self.skiff.stat("cluster.idle_backend.upstream_cx_total"))
        # A new request opens a new connection.
        self.assertEqual(h.http_request(self.port, path="/size?n=3")[0], 200)


class IdleUpstreamCloseTest(h.SkiffTestCase):
    def test_pooled_connection_closed_by_upstream_is_not_used(self):
        # The backend closes keep-alive connections idle for 0.1 s. Each
        # request comes after that, so the pool must notice the close instead
        # of sending on a dead connection (a 503 to the client).
        backend = self.start_backend()
        backend.idle_timeout = 0.1
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="backend")])],
            [h.cluster("backend", [(LOCALHOST, backend.port)])]), concurrency=1)
        port = skiff.port("ingress")
        for i in range(5):
            status, _, body = h.http_request(port, path="/size?n=3")
            self.assertEqual((status, body), (200, b"\x00\x01\x02"), f"request {i}")
            time.sleep(0.3)
        self.assertEqual(skiff.stat("cluster.backend.upstream_cx_total"), 5)


class DownstreamTimeoutsTest(h.SkiffTestCase):
    """HCM request_timeout and stream_idle_timeout against clients that stall."""

    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend()
        routes = [h.route("/", cluster="backend")]
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("request_timeout", routes, stat_prefix="rt",
                        hcm_extra={"request_timeout": "1s"}),
             h.listener("idle_timeout", routes, stat_prefix="it",
                        hcm_extra={"stream_idle_timeout": "1s"})],
            [h.cluster("backend", [(LOCALHOST, cls.backend.port)])]))
        cls.ports = cls.skiff.listener_ports()

    def stall(self, listener, raw):
        start = time.monotonic()
        data, closed = h.raw_exchange(self.ports[listener], raw, timeout=5)
        return data, closed, time.monotonic() - start

    def test_request_timeout_stalled_body_is_408(self):
        data, closed, elapsed = self.stall(
            "request_timeout", b"POST /sha HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        self.assertRegex(data, rb"^HTTP/1.1 408 ")
        self.assertTrue(closed)
        self.assertLess(elapsed, 3.5)

    def test_request_timeout_stalled_headers_closes(self):
        # Slowloris: the head never ends. Envoy's stream (and its timer)
        # starts at the first byte of the request.
        data, closed, elapsed = self.stall("request_timeout", b"GET / HTTP/1.1\r\nHost: x\r\n")
        self.assertTrue(closed, "a stalled head kept the connection past request_timeout")
        self.assertRegex(data, rb"^(HTTP/1.1 408 |$)")
        self.assertLess(elapsed, 3.5)

    def test_stream_idle_timeout_stalled_body_is_408(self):
        data, closed, elapsed = self.stall(
            "idle_timeout", b"POST /sha HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        self.assertRegex(data, rb"^HTTP/1.1 408 ")
        self.assertTrue(closed)
        self.assertLess(elapsed, 3.5)

    def test_request_timeout_spares_prompt_requests(self):
        status, _, body = h.http_request(self.ports["request_timeout"], "POST", "/echo", body=b"quick")
        self.assertEqual((status, body), (200, b"quick"))


class MalformedRequestTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend()
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="backend")])],
            [h.cluster("backend", [(LOCALHOST, cls.backend.port)])]))
        cls.port = cls.skiff.port("ingress")

    def assert_rejected(self, raw, status=400):
        before = len(self.backend.requests)
        data, closed = h.raw_exchange(self.port, raw)
        self.assertRegex(data, rb"^HTTP/1.1 %d " % status, f"reply to {raw[:120]!r}: {data[:200]!r}")
        self.assertTrue(closed, f"connection left open after {status}")
        # Nothing reached the upstream: a partial forward is how smuggling starts.
        time.sleep(0.05)
        self.assertEqual(len(self.backend.requests), before,
                         f"upstream saw {[r.target for r in self.backend.requests[before:]]}")
        # And skiff still serves well-formed requests.
        status_ok, _, body = h.http_request(self.port, path="/ok")
        self.assertEqual(status_ok, 200)
        self.assertEqual(body, b"backend:/ok\n")

    def test_garbage_is_400(self):
        self.assert_rejected(b"THIS IS NOT HTTP\r\n\r\n")

    def test_bad_content_length_is_400(self):
        self.assert_rejected(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")

    def test_oversized_headers_is_431(self):
        # Envoy's default max_request_headers_kb is 60.
        big = b"a" * (80 * 1024)
        self.assert_rejected(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + big + b"\r\n\r\n", status=431)

    def test_many_headers_is_431(self):
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(1000))  # ~110 KiB
        self.assert_rejected(b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n", status=431)

    def test_smuggling_is_400(self):
        cases = {
            "content-length and transfer-encoding":
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\n\r\n",
            "differing duplicate content-length":
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "obs-fold":
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
            "space before colon":
                b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "space before colon on transfer-encoding":
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            "invalid char in header name":
                b"GET / HTTP/1.1\r\nHost: x\r\nX(Bad): v\r\n\r\n",
            "control char in header value":
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
            "NUL in header value":
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
            "bare CR in header":
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n",
            "transfer-encoding identity with content-length":
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n"
                b"Content-Length: 5\r\n\r\nhello",
        }
        for name, raw in cases.items():
            with self.subTest(case=name):
                self.assert_rejected(raw)

    def test_unsupported_transfer_coding_is_501(self):
        # RFC 9112 6.1, and Envoy's codec: a transfer coding other than a
        # lone chunked is Not Implemented, wherever chunked is in the list.
        cases = {
            "chunked not last": b"chunked, gzip",
            "gzip then chunked": b"gzip, chunked",
            "identity": b"identity",
            "gzip": b"gzip",
        }
        for name, coding in cases.items():
            with self.subTest(case=name):
                self.assert_rejected(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + coding +
                                     b"\r\n\r\n0\r\n\r\n", status=501)
        with self.subTest(case="two fields"):
            self.assert_rejected(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status=501)
        # chunked in any case, with spaces around it, is fine.
        data, _ = h.raw_exchange(self.port, b"POST /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                            b"Transfer-Encoding:  Chunked \r\n\r\n0\r\n\r\n")
        self.assertRegex(data, rb"^HTTP/1.1 200 ")

    def test_good_request_after_bad_on_other_connection(self):
        # Several bad connections in a row do not wedge a worker.
        for _ in range(10):
            data, _ = h.raw_exchange(self.port, b"\x16\x03\x01garbage\r\n\r\n")
            self.assertRegex(data, rb"^(HTTP/1.1 400 |$)")
        self.assertEqual(h.http_request(self.port, path="/ok")[0], 200)



class GracefulCloseTest(h.SkiffTestCase):
    """skiff answers before the whole request has arrived (a 400, a direct
    response, no route) and closes the connection, while the client is still
    sending its body. The client must read the answer: skiff half-closes,
    reads and drops the rest, and closes once the client has closed its side
    (or after delayed_close_timeout), instead of closing with unread input,
    which sends a reset."""

    BODY = 32 << 20  # More than the socket buffers hold: the client is still sending.
    # A direct response body more than the socket buffers can hold: skiff's
    # send buffer may grow to tcp_wmem's maximum (4 MiB by default), and an
    # answer that fits there is written whole, which is not the case tested.
    with open("/proc/sys/net/ipv4/tcp_wmem") as _f:
        BIG = 2 * int(_f.read().split()[2]) + (1 << 20)

    @classmethod
    def setUpClass(cls):
        routes = [h.route("/direct", direct="direct\n")]
        big = [h.route("/big", direct="b" * cls.BIG)]
        listeners = [h.listener("ingress", routes),
                     h.listener("short", big + routes, stat_prefix="short",
                                hcm_extra={"delayed_close_timeout": "0.2s"})]
        for l in listeners:
            hcm = l["filter_chains"][0]["filters"][0]["typed_config"]
            hcm["route_config"]["max_direct_response_body_size_bytes"] = cls.BIG
        cls.skiff = cls.class_skiff(h.bootstrap(listeners), concurrency=1)
        cls.ports = cls.skiff.listener_ports()

    def send_all_then_read(self, head):
        """What http.client and many other clients do: send the whole request,
        then read the answer. Returns (bytes read, how the connection ended)."""
        s = socket.create_connection((LOCALHOST, self.ports["ingress"]), timeout=10)
        data = b""
        try:
            s.sendall(head + b"x" * self.BODY)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data, "closed"
                data += chunk
        except ConnectionResetError:
            return data, "reset"
        finally:
            s.close()

    def test_client_still_sending_gets_the_answer(self):
        cases = {
            "400 for a malformed head": (
                b"POST /direct HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n"
                b"Content-Length: %d\r\n\r\n" % self.BODY, rb"^HTTP/1.1 400 "),
            "direct response": (
                b"POST /direct HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % self.BODY,
                rb"^HTTP/1.1 200 OK\r\n(.*\r\n)*\r\ndirect\n$"),
            "no route": (
                b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % self.BODY,
                rb"^HTTP/1.1 404 "),
        }
        for name, (head, reply) in cases.items():
            with self.subTest(case=name):
                data, end = self.send_all_then_read(head)
                self.assertRegex(data, reply)
                self.assertEqual(end, "closed")
        h.wait_until(lambda: self.skiff.stat("http.ingress_http.downstream_cx_active") == 0, 5,
                     what="every connection closed")

    def test_delayed_close_timeout_bounds_the_wait(self):
        # A client that reads the answer and the FIN but never closes: skiff
        # closes the socket itself after delayed_close_timeout (0.2s here).
        s = socket.create_connection((LOCALHOST, self.ports["short"]), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"GET /direct HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n")
        data = h.read_to_eof(s)  # The FIN comes after the answer.
        self.assertRegex(data, rb"^HTTP/1.1 400 ")
        h.wait_until(lambda: self.skiff.stat("http.short.downstream_cx_active") == 0, 5,
                     what="skiff closed the connection")

    def test_early_answer_says_connection_close(self):
        # An answer sent before the request's body was read ends the HTTP/1
        # connection, and says so (as Envoy, and as skiff's own 400 does), so
        # that the client does not send its next request there.
        before = self.skiff.stat(
            "http.ingress_http.downstream_rq_response_before_rq_complete") or 0
        cases = {
            "direct response": (b"POST /direct", rb"^HTTP/1.1 200 "),
            "no route": (b"POST /nothing", rb"^HTTP/1.1 404 "),
        }
        for name, (start, status) in cases.items():
            with self.subTest(case=name):
                s = socket.create_connection((LOCALHOST, self.ports["ingress"]), timeout=10)
                self.addCleanup(s.close)
                s.sendall(start + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                head = data.split(b"\r\n\r\n")[0]
                self.assertRegex(head, status)
                self.assertIn(b"\r\nconnection: close", head.lower())
        self.assertEqual(self.skiff.stat(
            "http.ingress_http.downstream_rq_response_before_rq_complete"), before + 2)
        # A request without a body is whole when answered: it keeps its
        # connection, and hears nothing of a close. (A body, even one sent
        # with the head, is read after the head: a direct response, answered
        # from the head, ends the connection, as in Envoy.)
        s = socket.create_connection((LOCALHOST, self.ports["ingress"]), timeout=10)
        self.addCleanup(s.close)
        for _ in range(2):
            s.sendall(b"GET /direct HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"direct\n"):
                chunk = s.recv(65536)
                self.assertTrue(chunk, "the connection was closed")
                data += chunk
            self.assertNotIn(b"connection:", data.lower())

    def test_client_that_never_reads_is_closed_on(self):
        # A client with a tiny receive buffer asks for a large answer that ends
        # the connection, and never reads it. skiff held such a connection (and
        # the answer's unsent bytes) for as long as the client kept it open;
        # delayed_close_timeout bounds the wait for the answer to be written
        # too, as in Envoy (restarted while the client takes bytes).
        cases = {
            "answered before the body": (
                b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", False),
            "connection: close": (
                b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", False),
            "the client half-closed": (b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n", True),
        }
        for name, (head, half_close) in cases.items():
            with self.subTest(case=name):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.addCleanup(s.close)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(10)
                accepted = (self.skiff.stat("http.short.downstream_cx_total") or 0) + 1
                s.connect((LOCALHOST, self.ports["short"]))
                s.sendall(head)
                if half_close:
                    s.shutdown(socket.SHUT_WR)
                # Active alone reads 0 before skiff has counted this connection,
                # and reading then would take the whole answer.
                h.wait_until(lambda: self.skiff.stat("http.short.downstream_cx_total") == accepted
                             and self.skiff.stat("http.short.downstream_cx_active") == 0, 5,
                             what="skiff closed the connection")
                # The client sees the end: what the kernel had taken, then the close.
                data = b""
                try:
                    while chunk := s.recv(65536):
                        data += chunk
                except ConnectionResetError:
                    pass
                self.assertRegex(data[:20], rb"^HTTP/1.1 200 ")
                self.assertLess(len(data), self.BIG)


if __name__ == "__main__":
    unittest.main()
