"""HTTP/2 message rules (RFC 9113 section 8), one table row per rule, on both
sides of skiff: requests from a raw HTTP/2 client (downstream) and responses
from a scripted HTTP/2 origin (upstream). They pin what skiff did while
nghttp2 1.52's own HTTP messaging checks ran (lib/nghttp2_http.c), so that
skiff's own checks (proxy/http/http2/http2_message_checks.h) keep every
outcome: which messages end the connection (GOAWAY PROTOCOL_ERROR, as Envoy
does by default, counted in http2.rx_messaging_error), which reset only their
stream (RST_STREAM PROTOCOL_ERROR), which fields are dropped while the message
goes on, and which are allowed. test_h2_protocol.py has the first cases of
each kind; this file covers the rest."""

import json
import os
import tempfile
import unittest

import h2frames as f
import skiffharness as h
from skiffharness import LOCALHOST
from test_h2_protocol import H2_UPSTREAM, H2Case, ScriptedOrigin


def req(path="/headers", method="GET", extra=(), **kw):
    return f.request_fields(path, method=method, extra=list(extra), **kw)


class DownstreamMessagingTest(H2Case):
    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend()
        routes = [h.route("/direct", direct="direct\n"), *h.backend_routes("backend"),
                  h.route("/", direct="other\n")]
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("rules", routes, stat_prefix="rules")],
            [h.cluster("backend", [(LOCALHOST, cls.backend.port)])]), concurrency=1)
        cls.ports = cls.skiff.listener_ports()

    def assert_malformed(self, fields, after=b"", end_stream=None):
        """The request ends the connection: GOAWAY PROTOCOL_ERROR naming
        stream 1, http2.rx_messaging_error counted."""
        before = self.counter("http2.rx_messaging_error")
        p = self.conn()
        if end_stream is None:
            end_stream = not after
        p.send(f.headers(1, fields, end_stream=end_stream) + after)
        self.assert_goaway(p, f.PROTOCOL_ERROR, 1)
        self.wait_counter("http2.rx_messaging_error", before)

    def forwarded(self, fields, end_stream=True, after=b""):
        """The request reaches the backend (/headers): its fields there."""
        p = self.conn()
        p.send(f.headers(1, fields, end_stream=end_stream) + after)
        status, _, body, end = p.response(1)
        self.assertEqual(status, 200, f"frames: {p.frames}")
        self.assertTrue(end is not None and end.type in (f.HEADERS, f.DATA), f"frames: {p.frames}")
        return json.loads(body)["headers"]

    def names_at_backend(self, fields, **kw):
        return [k for k, _ in self.forwarded(fields, **kw)]

    def test_malformed_header_sections(self):
        cases = {
            # RFC 9113 8.3: pseudo-header fields only in this set, once each,
            # before every regular field, never empty.
            "pseudo after an ignored field": [(":method", "GET"), (":scheme", "http"),
                                              ("x y", "1"), (":path", "/"), (":authority", "a")],
            "duplicate :scheme": req(extra=[]) + [(":scheme", "http")],
            "duplicate :path": [(":path", "/")] + req(),
            "duplicate :authority": [(":authority", "b")] + req(),
            "uppercase pseudo name": [(":Method", "GET")] + req()[1:],
            "bare colon name": req() + [(":", "x")],
            ":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL": req() + [(":protocol", "ws")],
            "empty :method": req(method=""),
            "empty :scheme": req(scheme=""),
            "empty :authority": req(authority=""),
            "no :authority and no host": req(authority=None),
            # Pseudo-header values.
            ":method not a token": req(method="GE T"),
            ":method with a trailing space": req(method="GET "),
            ":path with a space": req(path="/a b"),
            ":path with a leading space": req(path=" /a"),
            ":path * without OPTIONS": req(path="*"),
            ":path without a slash (http)": req(path="a/b"),
            ":path without a slash (https)": req(path="a/b", scheme="https"),
            ":scheme not a scheme": req(scheme="1http"),
            ":scheme with a space": req(scheme="ht tp"),
            ":authority with a space": req(authority="a b"),
            ":authority with a slash": req(authority="a/b"),
            ":authority with a NUL": req(authority="a\x00b"),
            # RFC 9113 8.2.2 and 8.3.1: host like :authority.
            "two host fields": req(authority=None, extra=[("host", "a"), ("host", "a")]),
            "empty host": req(authority=None, extra=[("host", "")]),
            "host invalid, no :authority": req(authority=None, extra=[("host", "a b")]),
            # RFC 9110 8.6: content-length.
            "content-length not digits": req(extra=[("content-length", "1a")]),
            "content-length empty": req(extra=[("content-length", "")]),
            "content-length negative": req(extra=[("content-length", "-1")]),
            "content-length twice": req(extra=[("content-length", "0"), ("content-length", "0")]),
            "content-length list": req(extra=[("content-length", "0, 0")]),
            "content-length overflow": req(extra=[("content-length", "99999999999999999999")]),
            "content-length without a body": req(extra=[("content-length", "3")]),
            # RFC 9113 8.2.2: te.
            "te trailers with more": req(extra=[("te", "trailers, gzip")]),
            # RFC 9113 8.5: CONNECT.
            "CONNECT without :authority": [(":method", "CONNECT")],
            "CONNECT with :path": [(":method", "CONNECT"), (":authority", "a:1"), (":path", "/")],
            "CONNECT with :scheme": [(":method", "CONNECT"), (":scheme", "http"),
                                     (":authority", "a:1")],
            "CONNECT with :path first": [(":path", "/"), (":method", "CONNECT"),
                                         (":authority", "a:1")],
            "CONNECT with :protocol": [(":method", "CONNECT"), (":protocol", "websocket"),
                                       (":scheme", "http"), (":path", "/"), (":authority", "a")],
        }
        for name, fields in cases.items():
            with self.subTest(name):
                self.assert_malformed(fields)

    def test_malformed_trailers(self):
        start = f.headers(1, req("/echo", "POST"), end_stream=False) + f.data(1, b"abc")
        cases = {
            "pseudo-header in trailers": [(":path", "/")],  # RFC 9113 8.1
            "connection-specific trailer": [("connection", "close")],
            "uppercase trailer name": [("X-A", "1")],
            "content-length in trailers disagrees": [("content-length", "4")],
            "trailer value with a NUL": [("x-t", "a\x00b")],
            "trailer name with a space": [("x y", "1")],
        }
        for name, fields in cases.items():
            with self.subTest(name):
                before = self.counter("http2.rx_messaging_error")
                p = self.conn()
                p.send(start + f.headers(1, fields, end_stream=True))
                self.assert_goaway(p, f.PROTOCOL_ERROR, 1)
                self.wait_counter("http2.rx_messaging_error", before)
        with self.subTest("trailers without END_STREAM"):  # RFC 9113 8.1
            before = self.counter("http2.rx_messaging_error")
            p = self.conn()
            p.send(start + f.headers(1, [("x-t", "1")], end_stream=False))
            self.assert_goaway(p, f.PROTOCOL_ERROR, 1)
            self.wait_counter("http2.rx_messaging_error", before)

    def test_content_length_with_end_stream_on_trailers(self):
        # A content-length that the body ends short of, found at the
        # trailers' END_STREAM: like a header error, the connection ends.
        fields = req("/echo", "POST", extra=[("content-length", "5")])
        self.assert_malformed(fields, f.data(1, b"abc") + f.headers(1, [("x-t", "1")]),
                              end_stream=False)

    def test_invalid_fields(self):
        # RFC 9113 8.2.1: a field name of other than lowercase token
        # characters, or a value with NUL, CR, LF (or another control byte) or
        # with SP or HTAB at either end, makes the message malformed. nghttp2
        # would only drop a regular one if an on_invalid_header callback were
        # set; skiff set none, so each ends the connection.
        cases = {
            "name with a space": ("x y", "1"),
            "name with @": ("x@y", "1"),
            "name with a quote": ('x"y', "1"),
            "name with a NUL": ("x\x00y", "1"),
            "name with a high byte": ("x\xe9y", "1"),
            "name with DEL": ("x\x7fy", "1"),
            "empty name": ("", "v"),
            "value with a NUL": ("x-v", "a\x00b"),
            "value with CR": ("x-v", "a\rb"),
            "value with LF": ("x-v", "a\nb"),
            "value with DEL": ("x-v", "a\x7fb"),
            "value with a control byte": ("x-v", "a\x01b"),
            "value with a leading space": ("x-v", " a"),
            "value with a trailing space": ("x-v", "a "),
            "value with a leading tab": ("x-v", "\ta"),
            "value with a trailing tab": ("x-v", "a\t"),
            "value of one space": ("x-v", " "),
            "user-agent with a trailing space": ("user-agent", "curl "),
            "cookie with CR": ("cookie", "a=\r1"),
            "priority with a leading space": ("priority", " u=1"),
            "host with a space beside :authority": ("host", "h b"),
            "te with a trailing space": ("te", "trailers "),
        }
        for name, field in cases.items():
            with self.subTest(name):
                self.assert_malformed(req(extra=[field, ("x-after", "1")]))

    def test_allowed_fields(self):
        cases = {
            "value with inner spaces and tabs": ("x-v", "a b\tc"),
            "value with high bytes": ("x-v", "caf\xe9"),
            "empty value": ("x-v", ""),
            "te trailers in any case": ("te", "TrAiLeRs"),
            "name of tchars": ("x!#$%&'*+-.^_`|~09", "1"),
            "content-length 0": ("content-length", "0"),
            "host beside :authority": ("host", "h.example"),
            "priority": ("priority", "u=1, i"),
        }
        for name, field in cases.items():
            with self.subTest(name):
                got = self.forwarded(req(extra=[field]))
                if field[0] not in ("te", "host", "content-length"):
                    self.assertIn(list(field), got)

    def test_pseudo_header_values_allowed(self):
        cases = {
            "authority with userinfo and port": req(authority="u@a.example:80"),
            "authority IPv6": req(authority="[::1]:80"),
            "path with a query": req(path="/headers?a=b&c=%20"),
            "scheme in capitals": req(scheme="HTTPS"),
            "scheme with +-.": req(scheme="a+b-c.d"),
            "host only": req(authority=None, extra=[("host", "h.example")]),
            "lowercase method": req(method="get"),
            "OPTIONS *": req(path="*", method="OPTIONS"),
            ":path without a slash, other scheme": req(path="a/b", scheme="foo"),
        }
        for name, fields in cases.items():
            with self.subTest(name):
                before = self.counter("http2.rx_messaging_error")
                p = self.conn()
                p.send(f.headers(1, fields))
                status, _, _, end = p.response(1)
                self.assertIsNotNone(status, f"frames: {p.frames}")
                self.assertNotEqual(end.type, f.GOAWAY, f"frames: {p.frames}")
                p.close()
                self.assertEqual(self.counter("http2.rx_messaging_error"), before)

    def test_content_length_over_in_data_resets_the_stream(self):
        # The DATA passes content-length before END_STREAM: nghttp2 resets
        # the stream at that chunk (RFC 9113 8.1.1), the connection goes on.
        before = self.counter("http2.tx_reset")
        p = self.conn()
        fields = req("/echo", "POST", extra=[("content-length", "3")])
        p.send(f.headers(1, fields, end_stream=False) + f.data(1, b"12345"))
        self.assert_reset(p, 1, f.PROTOCOL_ERROR)
        self.assert_served(p, 3)
        p.close()
        self.wait_counter("http2.tx_reset", before)

    def test_content_length_over_with_end_stream(self):
        p = self.conn()
        fields = req("/echo", "POST", extra=[("content-length", "3")])
        p.send(f.headers(1, fields, end_stream=False) + f.data(1, b"12345", end_stream=True))
        self.assert_reset(p, 1, f.PROTOCOL_ERROR)
        self.assert_served(p, 3)

    def test_content_length_counts_data_across_frames_not_padding(self):
        p = self.conn()
        fields = req("/echo", "POST", extra=[("content-length", "6")])
        padded = f.frame(f.DATA, f.PADDED, 1, bytes([4]) + b"abc" + b"\0" * 4)
        p.send(f.headers(1, fields, end_stream=False) + padded + f.data(1, b"def", True))
        status, _, body, _ = p.response(1)
        self.assertEqual((status, body), (200, b"abcdef"))

    def test_answer_before_the_request_ends_resets_with_no_error(self):
        # A response that is complete while more of the request keeps
        # coming: skiff resets the stream with NO_ERROR after the response's
        # last frame (RFC 9113 8.1), so the client stops sending. The stream
        # used to stay open, its body read and dropped, until the client
        # ended its side.
        before = self.counter("http2.tx_reset")
        p = self.conn()
        p.send(f.headers(1, req("/direct", "POST"), end_stream=False) + f.data(1, b"part"))
        status, _, body, end = p.response(1)
        self.assertEqual((status, body), (200, b"direct\n"), f"frames: {p.frames}")
        self.assertIn(end.type, (f.HEADERS, f.DATA), f"frames: {p.frames}")
        self.assert_reset(p, 1, f.NO_ERROR)
        h.wait_until(lambda: self.counter("http.rules.downstream_rq_active") == 0, 5,
                     what="the stream ended")
        # What the client sends before it sees the reset is dropped; the
        # connection goes on.
        p.send(f.data(1, b"more") + f.data(1, b"", end_stream=True))
        self.assert_served(p, 3)
        p.close()
        self.wait_counter("http2.tx_reset", before)

    def test_answer_before_a_request_that_then_ends_is_not_reset(self):
        # The request's next frame ends it (a small body, as curl sends it):
        # no reset. curl 7.88 drops a whole response when a RST_STREAM comes
        # while its body is still unsent, even with NO_ERROR.
        p = self.conn()
        p.send(f.headers(1, req("/direct", "POST"), end_stream=False))
        status, _, body, _ = p.response(1)
        self.assertEqual((status, body), (200, b"direct\n"), f"frames: {p.frames}")
        h.wait_until(lambda: self.counter("http.rules.downstream_rq_active") == 0, 5,
                     what="the stream ended")
        p.send(f.data(1, b"{}", end_stream=True))
        self.assert_served(p, 3)
        self.assertEqual([fr for fr in p.frames if fr.type in (f.RST_STREAM, f.GOAWAY)], [])

    def test_trailers_with_end_stream(self):
        p = self.conn()
        p.send(f.headers(1, req("/echo", "POST", extra=[("content-length", "3")]),
                         end_stream=False) + f.data(1, b"abc") + f.headers(1, [("x-t", "1")]))
        status, _, body, _ = p.response(1)
        self.assertEqual((status, body), (200, b"abc"))

class MalformedRequestLogTest(H2Case):
    """Envoy logs a request its HTTP/2 codec found malformed, with the
    DownstreamProtocolError flag (DPE) and its codec's details."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="skiff-h2msg-log-")
        cls.log_path = os.path.join(cls.dir, "access.json")
        log = {"name": "envoy.access_loggers.file",
               "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                   "path": cls.log_path,
                   "log_format": {"json_format": {
                       "code": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%",
                       "details": "%RESPONSE_CODE_DETAILS%", "method": "%REQ(:METHOD)%",
                       "protocol": "%PROTOCOL%"}}}}
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("rules", [h.route("/direct", direct="direct\n")], stat_prefix="rules",
                        hcm_extra={"access_log": [log]})]), concurrency=1)
        cls.ports = cls.skiff.listener_ports()

    @classmethod
    def tearDownClass(cls):
        if os.path.exists(cls.log_path):
            os.remove(cls.log_path)
        os.rmdir(cls.dir)
        super().tearDownClass()

    def entries(self):
        try:
            with open(self.log_path) as f:
                return [json.loads(line) for line in f.read().splitlines()]
        except FileNotFoundError:
            return []

    def logged(self, fields, details):
        p = self.conn()
        p.send(f.headers(1, fields))
        self.assert_goaway(p, f.PROTOCOL_ERROR, 1)
        h.wait_until(lambda: any(e["details"] == details for e in self.entries()), 5,
                     what=f"a line with {details}")
        return [e for e in self.entries() if e["details"] == details]

    def test_invalid_field(self):
        lines = self.logged(f.request_fields("/direct", extra=[("connection", "close")]),
                            "http2.invalid.header.field")
        self.assertEqual([(e["code"], e["flags"], e["method"], e["protocol"]) for e in lines],
                         [(0, "DPE", None, "HTTP/2")])

    def test_messaging_rule(self):
        fields = [kv for kv in f.request_fields("/direct") if kv[0] != ":path"]
        lines = self.logged(fields, "http2.violation.of.messaging.rule")
        self.assertEqual([(e["code"], e["flags"], e["method"], e["protocol"]) for e in lines],
                         [(0, "DPE", None, "HTTP/2")])


class MessageOrigin(ScriptedOrigin):
    """Answers each request with the frames script[path](stream id)."""

    def __init__(self, script):
        self.script = script
        super().__init__()

    def on_request(self, peer, sid, path):
        make = self.script.get(path)
        if make is not None:
            peer.send(make(sid))


def hdrs(sid, fields, end_stream=False):
    return f.headers(sid, fields, end_stream=end_stream)


def answer(*fields, body=None, end_stream=True, trailers=None, status="200"):
    """A response: HEADERS (:status first unless status is None), DATA, trailers."""
    def make(sid):
        block = ([(":status", status)] if status is not None else []) + list(fields)
        no_more = body is None and trailers is None
        out = hdrs(sid, block, end_stream=end_stream and no_more)
        if body is not None:
            out += f.data(sid, body, end_stream=end_stream and trailers is None)
        if trailers is not None:
            out += hdrs(sid, trailers, end_stream=end_stream)
        return out
    return make


def seq(*makers):
    return lambda sid: b"".join(m(sid) for m in makers)


# Responses that end skiff's upstream connection (GOAWAY PROTOCOL_ERROR,
# cluster.<name>.http2.rx_messaging_error) before anything reached the client.
MALFORMED_RESPONSES = {
    "/no-status": answer(("x-a", "1"), status=None),
    "/status-2-digits": answer(status="20"),
    "/status-4-digits": answer(status="2000"),
    "/status-letters": answer(status="2x0"),
    "/status-empty": answer(status=""),
    "/status-101": answer(status="101"),
    "/status-twice": answer((":status", "200")),
    "/status-after-field": lambda sid: hdrs(sid, [("x-a", "1"), (":status", "200")], True),
    "/request-pseudo": answer((":path", "/")),
    "/unknown-pseudo": answer((":foo", "1")),
    "/connection": answer(("connection", "close")),
    "/transfer-encoding": answer(("transfer-encoding", "chunked")),
    "/te-gzip": answer(("te", "gzip")),
    "/cl-letters": answer(("content-length", "x")),
    "/cl-twice": answer(("content-length", "0"), ("content-length", "0")),
    "/cl-without-body": answer(("content-length", "3")),
    "/cl-in-1xx": seq(answer(("content-length", "0"), status="100", end_stream=False),
                      answer(body=b"ok")),
    "/1xx-end-stream": answer(status="103"),
    "/204-cl-5": answer(("content-length", "5"), status="204"),
    "/204-cl-twice": answer(("content-length", "0"), ("content-length", "0"), status="204"),
    "/status-pseudo-space": answer(status="200 "),
    "/name-space": answer(("x y", "1"), body=b"ok"),
    "/name-empty": answer(("", "1"), body=b"ok"),
    "/value-nul": answer(("x-v", "a\x00b"), body=b"ok"),
    "/value-leading-space": answer(("x-v", " a"), body=b"ok"),
    "/value-trailing-tab": answer(("server", "a\t"), body=b"ok"),
}

# Responses that end well.
GOOD_RESPONSES = {
    "/ok": answer(body=b"ok"),
    "/1xx-then-200": seq(answer(status="100", end_stream=False),
                         answer(status="103", end_stream=False), answer(body=b"ok")),
    "/204-cl-0": answer(("content-length", "0"), status="204"),
    "/304-cl": answer(("content-length", "100"), status="304"),
    "/head-cl": answer(("content-length", "100")),
    "/cl-match": lambda sid: hdrs(sid, [(":status", "200"), ("content-length", "4")]) +
    f.data(sid, b"ab") + f.data(sid, b"cd", True),
    "/trailers": answer(body=b"ok", trailers=[("x-t", "1")]),
    "/empty-value": answer(("x-v", ""), body=b"ok"),
}


class UpstreamMessagingTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        script = {**MALFORMED_RESPONSES, **GOOD_RESPONSES}
        script.update({
            "/1xx-after-final": seq(answer(end_stream=False), answer(status="100")),
            "/data-after-1xx": seq(answer(status="100", end_stream=False),
                                   lambda sid: f.data(sid, b"x")),
            "/cl-over": lambda sid: hdrs(sid, [(":status", "200"), ("content-length", "2")]) +
            f.data(sid, b"abc", True),
            "/cl-under": lambda sid: hdrs(sid, [(":status", "200"), ("content-length", "5")]) +
            f.data(sid, b"abc", True),
            "/204-data": answer(status="204", body=b"x"),
            "/304-data": answer(status="304", body=b"x"),
            "/head-data": answer(("content-length", "1"), body=b"x"),
            "/trailers-no-end": lambda sid: hdrs(sid, [(":status", "200")]) + f.data(sid, b"ok") +
            hdrs(sid, [("x-t", "1")], end_stream=False),
            "/trailers-pseudo": answer(body=b"ok", trailers=[(":status", "200")]),
        })
        cls.origin = MessageOrigin(script)
        cls.addClassCleanup(cls.origin.stop)
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="origin")])],
            [h.cluster("origin", [(LOCALHOST, cls.origin.port)],
                       extra={"typed_extension_protocol_options": H2_UPSTREAM})]), concurrency=1)
        cls.port = cls.skiff.port("ingress")

    def counter(self, name):
        return self.skiff.stats().get(f"cluster.origin.http2.{name}", 0)

    def exchange(self, path, method="GET"):
        """(status, fields, body, end frame) the downstream HTTP/2 client sees."""
        p = f.connect(self.port)
        self.addCleanup(p.close)
        p.send(f.headers(1, f.request_fields(path, method=method)))
        return p.response(1)

    def close_upstreams(self):
        with self.origin._lock:
            old = list(self.origin.connections)
        for peer in old:
            try:
                peer.sock.shutdown(2)
            except OSError:
                pass
        h.wait_until(lambda: self.skiff.stat("cluster.origin.upstream_cx_active") in (0, None), 5,
                     what="no upstream connection")

    def test_malformed_responses_end_the_connection(self):
        for path in MALFORMED_RESPONSES:
            with self.subTest(path):
                self.close_upstreams()
                before = self.counter("rx_messaging_error")
                status, _, body, end = self.exchange(path)
                self.assertEqual(status, 502, f"{path}: {body}")
                self.assertTrue(end.flags & f.END_STREAM)
                self.close_upstreams()
                h.wait_until(lambda: self.counter("rx_messaging_error") > before, 5,
                             what="rx_messaging_error")
                self.assertEqual(self.counter("rx_messaging_error"), before + 1)

    def test_good_responses(self):
        expect = {
            "/ok": (200, b"ok"),
            "/1xx-then-200": (200, b"ok"),
            "/204-cl-0": (204, b""),
            "/304-cl": (304, b""),
            "/cl-match": (200, b"abcd"),
            "/trailers": (200, b"ok"),
            "/empty-value": (200, b"ok"),
        }
        for path, want in expect.items():
            with self.subTest(path):
                status, fields, body, end = self.exchange(path)
                self.assertEqual((status, body), want)
                self.assertTrue(end is not None and end.type in (f.HEADERS, f.DATA), end)
                names = [k for k, _ in fields]
                if path == "/empty-value":
                    self.assertIn(("x-v", ""), fields)
                if path == "/204-cl-0":
                    self.assertNotIn("content-length", names)

    def test_head_response_with_content_length(self):
        status, fields, body, end = self.exchange("/head-cl", method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertIn(("content-length", "100"), fields)
        self.assertTrue(end.flags & f.END_STREAM)

    def origin_frames(self, types):
        with self.origin._lock:
            return [fr for peer in self.origin.connections for fr in list(peer.frames)
                    if fr.type in types]

    def assert_reset_by_skiff(self, path, method="GET", connection_error=False):
        """skiff found the origin's response malformed once its head was
        taken: RST_STREAM PROTOCOL_ERROR to the origin (or, with
        connection_error, GOAWAY PROTOCOL_ERROR and rx_messaging_error), and the
        client's stream reset (CANCEL) with at most the response's head, or a
        502 when nothing was taken yet."""
        self.close_upstreams()
        with self.origin._lock:
            self.origin.connections.clear()
        errors = self.counter("rx_messaging_error")
        resets = self.counter("tx_reset")
        status, _, body, end = self.exchange(path, method)
        if status == 502:
            self.assertTrue(end.flags & f.END_STREAM, end)
        else:
            self.assertIn(status, (None, 200, 204, 304), path)
            self.assertIsNotNone(end, path)
            self.assertEqual((end.type, end.error_code()), (f.RST_STREAM, f.CANCEL), path)
        if connection_error:
            h.wait_until(lambda: self.origin_frames((f.GOAWAY,)), 5, what="GOAWAY from skiff")
            goaway = self.origin_frames((f.GOAWAY,))[0]
            self.assertEqual(goaway.error_code(), f.PROTOCOL_ERROR)
            self.assertEqual(self.origin_frames((f.RST_STREAM,)), [])
        else:
            h.wait_until(lambda: self.origin_frames((f.RST_STREAM,)), 5, what="RST from skiff")
            rst = self.origin_frames((f.RST_STREAM,))[0]
            self.assertEqual((rst.stream_id, rst.error_code()), (1, f.PROTOCOL_ERROR))
            self.assertEqual(self.origin_frames((f.GOAWAY,)), [])
        self.close_upstreams()
        if connection_error:
            h.wait_until(lambda: self.counter("rx_messaging_error") > errors, 5,
                         what="rx_messaging_error")
            self.assertEqual(self.counter("rx_messaging_error"), errors + 1)
        else:
            h.wait_until(lambda: self.counter("tx_reset") > resets, 5, what="tx_reset")
            self.assertEqual(self.counter("rx_messaging_error"), errors)

    def test_body_where_none_is_allowed_resets(self):
        # RFC 9110 6.4.1: no content after HEAD, 204 or 304. nghttp2 counted
        # content-length 0 for them and reset the stream at the first byte.
        for path, method in (("/204-data", "GET"), ("/304-data", "GET"), ("/head-data", "HEAD")):
            with self.subTest(path):
                self.assert_reset_by_skiff(path, method)

    def test_content_length_disagrees(self):
        for path in ("/cl-over", "/cl-under"):
            with self.subTest(path):
                self.assert_reset_by_skiff(path)

    def test_data_before_the_final_response(self):
        self.assert_reset_by_skiff("/data-after-1xx")

    def test_after_the_final_response(self):
        # A 1xx after the final response is a header section with a
        # pseudo-header where trailers go; trailers must end the stream.
        for path in ("/1xx-after-final", "/trailers-no-end", "/trailers-pseudo"):
            with self.subTest(path):
                self.assert_reset_by_skiff(path, connection_error=True)


if __name__ == "__main__":
    unittest.main()
