"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT) through skiff, downstream.

A listener with `http2_protocol_options: {allow_connect: true}` sends
SETTINGS_ENABLE_CONNECT_PROTOCOL = 1; a client's CONNECT with
`:protocol websocket` is then matched by `upgrade_configs` as the upgrade type
"websocket" and goes to the HTTP/1.1 upstream as a `GET` with
`upgrade: websocket` / `connection: upgrade` (Envoy's H2 -> H1 transform); the
upstream's 101 comes back as a 200, and the stream's DATA carries the
WebSocket frames both ways, END_STREAM as each side's end.

The downstream client is Python's h2 (an independent HTTP/2 implementation) on
a raw socket, with WebSocket frames made and read by hand (RFC 6455 5.2; a
client masks what it sends); the upstream is Debian's python3-websockets, a
real WebSocket server that checks the handshake and the masking.

Toward an HTTP/2 cluster (WebSocketToHttp2UpstreamTest) an Upgrade goes as an
extended CONNECT and the 200 back becomes the 101: against a scripted h2
origin, and through two skiffs with an HTTP/2 hop between them, as Envoy's
docs draw that deployment.
"""

import base64
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import unittest

try:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.exceptions
    import h2.settings
except ImportError:
    # Debian's python3-h2 lives in the system's dist-packages; a Python from
    # elsewhere (pyenv) on PATH does not look there.
    sys.path.append("/usr/lib/python3/dist-packages")
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.exceptions
    import h2.settings

from skiffharness import (
    LOCALHOST,
    Skiff,
    SkiffTestCase,
    ThreadedTcpServer,
    bootstrap,
    cluster,
    listener,
    read_to_eof,
    route,
    wait_until,
)
from test_tunnel import (
    RawUpgradeServer,
    WebSocketEcho,
    read_head,
    run,
    upgrade_request,
    websockets,
)

TIMEOUT = 30
LOG_FORMAT = ("%REQ(:PATH)% %PROTOCOL% %RESPONSE_CODE% %REQ(:METHOD)% %REQ(UPGRADE)% "
              "%RESPONSE_CODE_DETAILS% %UPSTREAM_CLUSTER%\n")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3

# WebSocket opcodes (RFC 6455 5.2).
TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8


def ws_frame(opcode, payload):
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    key = os.urandom(4)
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + key + masked


def ws_parse(buf):
    """Takes the complete server frames off the front of buf (a bytearray);
    returns [(opcode, payload)]. A server's frames are never masked."""
    frames = []
    while len(buf) >= 2:
        if buf[1] & 0x80:
            raise AssertionError("the server masked a frame")
        n, at = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, at = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + n:
            break
        if not buf[0] & 0x80:
            raise AssertionError("the echo server fragmented a frame")
        frames.append((buf[0] & 0x0F, bytes(buf[at:at + n])))
        del buf[:at + n]
    return frames


class H2Client:
    """One h2c connection (prior knowledge) driven by hand: send with
    `conn`, then `until(predicate)` reads events until one matches."""

    def __init__(self, port, validate=True):
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                           validate_outbound_headers=validate,
                                           validate_inbound_headers=validate)
        self.conn = h2.connection.H2Connection(config)
        self.sock = socket.create_connection((LOCALHOST, port), timeout=TIMEOUT)
        self.conn.initiate_connection()
        self.flush()
        self.events = []
        self.closed = False
        self.remote_settings = self.until(
            lambda ev: isinstance(ev, h2.events.RemoteSettingsChanged)).changed_settings
        self.data = {}  # stream id -> bytearray of DATA received
        self.ended = set()  # streams the peer ended

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def until(self, predicate):
        """Reads until an event matches predicate; returns it. DATA is
        acknowledged (flow control) and kept in self.data."""
        while True:
            for i, ev in enumerate(self.events):
                if predicate(ev):
                    del self.events[:i + 1]
                    return ev
            self.events.clear()
            if self.closed:
                raise AssertionError("the connection closed first")
            chunk = self.sock.recv(65536)
            if not chunk:
                self.closed = True
                continue
            for ev in self.conn.receive_data(chunk):
                if isinstance(ev, h2.events.DataReceived):
                    self.data.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                    if ev.flow_controlled_length:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                            ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.ended.add(ev.stream_id)
                self.events.append(ev)
            self.flush()

    def request(self, headers, end_stream=False):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        self.flush()
        return sid

    def response(self, sid):
        """The final response's status and fields."""
        ev = self.until(lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid)
        fields = dict(ev.headers)
        return int(fields[":status"]), fields

    def send(self, sid, data, end_stream=False):
        """DATA within the peer's flow-control windows."""
        view = memoryview(data)
        while True:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if view and room == 0:
                self.until(lambda e: isinstance(e, h2.events.WindowUpdated))
                continue
            chunk = view[:room]
            view = view[room:]
            self.conn.send_data(sid, bytes(chunk), end_stream=end_stream and not view)
            self.flush()
            if not view:
                return

    def ws_frames(self, sid, count):
        """The next count WebSocket frames the server sent on sid."""
        buf = self.data.setdefault(sid, bytearray())
        frames = ws_parse(buf)
        while len(frames) < count:
            if sid in self.ended:
                raise AssertionError(f"stream ended after {len(frames)} of {count} frames")
            self.until(lambda e: isinstance(e, (h2.events.DataReceived, h2.events.StreamEnded))
                       and e.stream_id == sid)
            frames += ws_parse(buf)
        return frames

    def wait_end(self, sid):
        if sid not in self.ended:
            self.until(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == sid)

    def close(self):
        self.sock.close()


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def extended_connect(path, authority, key=None, protocol="websocket"):
    """An RFC 8441 request; with key, also the fields an HTTP/1.1 WebSocket
    server wants (as an Envoy that turned an HTTP/1.1 Upgrade into this
    sends them)."""
    fields = [(":method", "CONNECT"), (":protocol", protocol), (":scheme", "http"),
              (":path", path), (":authority", authority)]
    if key is not None:
        fields += [("sec-websocket-version", "13"), ("sec-websocket-key", key)]
    return fields


class WebSocketOverHttp2Test(SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ws = WebSocketEcho()
        cls.addClassCleanup(cls.ws.stop)
        cls.raw = RawUpgradeServer()
        cls.addClassCleanup(cls.raw.stop)
        cls.backend = cls.class_backend()
        h2_options = {"codec_type": "HTTP2", "http2_protocol_options": {"allow_connect": True}}
        tmp = tempfile.mkdtemp(prefix="ws-h2-")
        cls.addClassCleanup(shutil.rmtree, tmp, True)
        cls.log_path = os.path.join(tmp, "access.log")
        access_log = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": cls.log_path,
            "log_format": {"text_format_source": {"inline_string": LOG_FORMAT}}}}]
        ws = listener("ws", [
            route("/headers", cluster="backend"),
            route("/direct", direct="plain\n"),
            route("/raw/", cluster="raw"),
            route("/", cluster="ws"),
        ], hcm_extra={**h2_options, "upgrade_configs": [{"upgrade_type": "websocket"}],
                      "access_log": access_log})
        # allow_connect, but no upgrade_configs: WebSocket is refused.
        no_upgrade = listener("noupgrade", [route("/direct", direct="plain\n"),
                                            route("/", cluster="ws")], stat_prefix="noupgrade",
                              hcm_extra=h2_options)
        # upgrade_configs, but no allow_connect: :protocol is not allowed.
        no_connect = listener("noconnect", [route("/", cluster="ws")], stat_prefix="noconnect",
                              hcm_extra={"codec_type": "HTTP2",
                                         "upgrade_configs": [{"upgrade_type": "websocket"}]})
        clusters = [
            cluster("ws", [(LOCALHOST, cls.ws.port)]),
            cluster("raw", [(LOCALHOST, cls.raw.port)]),
            cluster("backend", [(LOCALHOST, cls.backend.port)]),
        ]
        cls.skiff = cls.class_skiff(bootstrap([ws, no_upgrade, no_connect], clusters))
        cls.port = cls.skiff.port("ws")
        cls.authority = f"{LOCALHOST}:{cls.port}"

    def client(self, port=None, validate=True):
        c = H2Client(port or self.port, validate)
        self.addCleanup(c.close)
        return c

    def counter(self, name):
        return self.skiff.stat(name) or 0

    def log_line(self, prefix):
        try:
            with open(self.log_path) as f:
                lines = [line.rstrip("\n") for line in f if line.startswith(prefix)]
        except FileNotFoundError:
            return None
        return lines[-1] if lines else None

    def wait_tunnels_closed(self, prefix="ingress_http"):
        wait_until(lambda: self.counter(f"http.{prefix}.downstream_cx_upgrades_active") == 0,
                   TIMEOUT, what="every tunnel to end")

    def test_settings_announce_extended_connect_only_with_allow_connect(self):
        code = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
        self.assertEqual(self.client().remote_settings[code].new_value, 1)
        self.assertNotIn(code, self.client(self.skiff.port("noconnect")).remote_settings)

    def test_websocket_echo_both_ways_and_clean_close(self):
        before = self.counter("http.ingress_http.downstream_cx_upgrades_total")
        closed_before = len(self.ws.close_codes)
        c = self.client()
        key = ws_key()
        sid = c.request(extended_connect("/echo", self.authority, key))
        status, fields = c.response(sid)
        # RFC 8441 5: a 2xx accepts; the upstream's 101 fields that HTTP/2
        # forbids stay behind, its handshake answer comes through.
        self.assertEqual(status, 200, fields)
        self.assertEqual(fields.get("sec-websocket-accept"), ws_accept(key))
        self.assertNotIn("upgrade", fields)
        self.assertNotIn("connection", fields)
        self.assertNotIn("content-length", fields)
        self.assertEqual(self.counter("http.ingress_http.downstream_cx_upgrades_total"),
                         before + 1)
        self.assertEqual(self.counter("http.ingress_http.downstream_cx_upgrades_active"), 1)

        # Small and large messages, several in flight at once, in order.
        big = os.urandom(300 * 1024)
        messages = [(TEXT, b"hello"), (BINARY, os.urandom(200)), (BINARY, big),
                    (TEXT, b"x" * 70000)]
        c.send(sid, b"".join(ws_frame(op, p) for op, p in messages))
        self.assertEqual(c.ws_frames(sid, len(messages)), messages)
        # An ordinary request on the same connection while the tunnel is open.
        other = c.request([(":method", "GET"), (":scheme", "http"), (":path", "/direct"),
                           (":authority", self.authority)], end_stream=True)
        self.assertEqual(c.response(other)[0], 200)
        c.wait_end(other)
        self.assertEqual(bytes(c.data[other]), b"plain\n")
        c.send(sid, ws_frame(TEXT, b"after"))
        self.assertEqual(c.ws_frames(sid, 1), [(TEXT, b"after")])

        # The closing handshake (RFC 6455 7): the server echoes the close and
        # ends its TCP connection, which ends the stream (END_STREAM); the
        # client then ends its side.
        c.send(sid, ws_frame(CLOSE, (1000).to_bytes(2, "big")))
        self.assertEqual(c.ws_frames(sid, 1), [(CLOSE, (1000).to_bytes(2, "big"))])
        c.wait_end(sid)
        c.send(sid, b"", end_stream=True)
        wait_until(lambda: len(self.ws.close_codes) > closed_before, TIMEOUT, what="server close")
        self.assertEqual(self.ws.close_codes[-1], 1000)
        self.wait_tunnels_closed()
        # Logged as Envoy logs it: the request as the connection manager saw
        # it (the HTTP/1.1 Upgrade), the upstream's 101, over HTTP/2.
        # (A path of its own: other tests' lines may land later.)
        line = wait_until(lambda: self.log_line("/echo "), TIMEOUT, what="the access log line")
        self.assertEqual(line, "/echo HTTP/2 101 GET websocket via_upstream ws")

    def test_two_websockets_on_one_connection(self):
        c = self.client()
        sids = [c.request(extended_connect(f"/s{i}", self.authority, ws_key())) for i in range(2)]
        for sid in sids:
            self.assertEqual(c.response(sid)[0], 200)
        for i, sid in enumerate(reversed(sids)):
            c.send(sid, ws_frame(TEXT, b"to %d" % i))
        for i, sid in enumerate(reversed(sids)):
            self.assertEqual(c.ws_frames(sid, 1), [(TEXT, b"to %d" % i)])
        for sid in sids:
            c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        c.flush()
        self.wait_tunnels_closed()

    def test_request_reaches_the_upstream_as_an_http1_upgrade(self):
        # The harness backend speaks no WebSocket: it answers 200, an
        # ordinary response, with the request it saw.
        c = self.client()
        sid = c.request(extended_connect("/headers", self.authority))
        status, fields = c.response(sid)
        self.assertEqual(status, 200)
        self.assertEqual(fields.get("x-backend"), "backend")
        c.wait_end(sid)
        seen = json.loads(bytes(c.data[sid]))
        names = {k.lower(): v for k, v in seen["headers"]}
        self.assertEqual(seen["method"], "GET")
        self.assertEqual(seen["target"], "/headers")
        self.assertEqual(names.get("upgrade"), "websocket")
        self.assertEqual(names.get("connection", "").lower(), "upgrade")
        self.assertEqual(names.get("host"), self.authority)
        self.assertNotIn(":protocol", names)
        c.send(sid, b"", end_stream=True)
        self.wait_tunnels_closed()

    def test_upstream_refusal_is_an_ordinary_response(self):
        # RFC 8441 5: an HTTP/2 client sends no sec-websocket-key, and skiff
        # adds none (nor does Envoy): this HTTP/1.1 server refuses with a 400,
        # which reaches the client as it is.
        c = self.client()
        sid = c.request(extended_connect("/chat", self.authority))
        status, _ = c.response(sid)
        self.assertEqual(status, 400)
        c.wait_end(sid)
        self.assertIn(b"Sec-WebSocket-Key", bytes(c.data.get(sid, b"")))
        # The stream ends once the client ends its side too.
        c.send(sid, b"", end_stream=True)
        self.wait_tunnels_closed()

    def test_upstream_close_ends_the_stream(self):
        c = self.client()
        sid = c.request(extended_connect("/raw/upclose", self.authority))
        self.assertEqual(c.response(sid)[0], 200)
        c.wait_end(sid)
        self.assertEqual(bytes(c.data[sid]), b"bye")
        c.send(sid, b"", end_stream=True)
        self.wait_tunnels_closed()

    def test_content_length_zero_is_dropped_from_the_accepting_200(self):
        # An HTTP/1.1 server's 101 with `content-length: 0` becomes a 200
        # without it: a 2xx to CONNECT has no content length (RFC 9110
        # 9.3.6), as in Envoy's H1 -> H2 transform.
        c = self.client()
        sid = c.request(extended_connect("/raw/cl0", self.authority))
        status, fields = c.response(sid)
        self.assertEqual(status, 200, fields)
        self.assertNotIn("content-length", fields)
        c.wait_end(sid)
        self.assertEqual(bytes(c.data[sid]), b"bye")
        c.send(sid, b"", end_stream=True)
        self.wait_tunnels_closed()

    def test_client_end_stream_half_closes_toward_the_upstream(self):
        payload = os.urandom(200 * 1024)
        c = self.client()
        sid = c.request(extended_connect("/raw/halfclose", self.authority))
        self.assertEqual(c.response(sid)[0], 200)
        c.send(sid, payload, end_stream=True)
        # The upstream answers only once it has read our FIN.
        c.wait_end(sid)
        self.assertEqual(bytes(c.data[sid]), b"got %d bytes;" % len(payload) + b"tail" * 16384)
        self.wait_tunnels_closed()

    def test_upgrade_type_not_configured_is_403(self):
        before = self.counter("http.noupgrade.downstream_rq_ws_on_non_ws_route")
        c = self.client(self.skiff.port("noupgrade"))
        sid = c.request(extended_connect("/", f"{LOCALHOST}:1", ws_key()))
        self.assertEqual(c.response(sid)[0], 403)
        c.wait_end(sid)
        self.assertEqual(self.counter("http.noupgrade.downstream_rq_ws_on_non_ws_route"),
                         before + 1)
        # The connection goes on.
        other = c.request([(":method", "GET"), (":scheme", "http"), (":path", "/direct"),
                           (":authority", "a")], end_stream=True)
        self.assertEqual(c.response(other)[0], 200)

    def assert_connection_error(self, port, fields):
        before = self.counter("http2.rx_messaging_error")
        c = self.client(port, validate=False)
        c.request(fields)
        ev = c.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))
        self.assertEqual(ev.error_code, h2.errors.ErrorCodes.PROTOCOL_ERROR)
        wait_until(lambda: self.counter("http2.rx_messaging_error") > before, TIMEOUT,
                   what="http2.rx_messaging_error")

    def test_protocol_without_allow_connect_is_malformed(self):
        # No SETTINGS_ENABLE_CONNECT_PROTOCOL: :protocol is an unknown
        # pseudo-header (RFC 9113 8.3), which ends the connection as any
        # malformed request does (Envoy's default).
        self.assert_connection_error(self.skiff.port("noconnect"),
                                     extended_connect("/", f"{LOCALHOST}:1", ws_key()))

    def test_protocol_on_a_request_other_than_connect_is_malformed(self):
        self.assert_connection_error(self.port, [
            (":method", "GET"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/"),
            (":authority", self.authority)])

    def test_extended_connect_without_path_is_malformed(self):
        # RFC 8441 4: :scheme and :path are required with :protocol.
        self.assert_connection_error(self.port, [
            (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
            (":authority", self.authority)])


class H2UpgradeOrigin(ThreadedTcpServer):
    """An HTTP/2 origin (h2c prior knowledge, Python's h2) that announces
    SETTINGS_ENABLE_CONNECT_PROTOCOL and records each request's fields in
    `requests`. An extended CONNECT to /refuse gets a 404 with a body, one to
    /reset a 200 and then RST_STREAM INTERNAL_ERROR; any
    other is accepted with a 200, after which the stream's DATA is echoed
    back and the client's END_STREAM is answered with one."""

    def __init__(self):
        self.requests = []
        super().__init__(backlog=16)

    def serve(self, sock):
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config)
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        sock.sendall(conn.data_to_send())
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError as e:
                    self.requests.append({"error": str(e)})
                    sock.sendall(conn.data_to_send())
                    return
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        fields = dict(ev.headers)
                        self.requests.append(fields)
                        if fields.get(":path") == "/reset":
                            conn.send_headers(ev.stream_id, [(":status", "200")])
                            sock.sendall(conn.data_to_send())
                            conn.reset_stream(ev.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                        elif fields.get(":path") == "/refuse":
                            conn.send_headers(ev.stream_id, [(":status", "404"),
                                                             ("content-length", "7")])
                            conn.send_data(ev.stream_id, b"refused", end_stream=True)
                        else:
                            conn.send_headers(ev.stream_id, [(":status", "200"),
                                                             ("x-origin", "h2")])
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        try:
                            conn.send_data(ev.stream_id, ev.data)
                        except h2.exceptions.StreamClosedError:
                            pass
                    elif isinstance(ev, h2.events.StreamEnded):
                        try:
                            conn.end_stream(ev.stream_id)
                        except h2.exceptions.StreamClosedError:
                            pass
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)


H2_CLUSTER = {"typed_extension_protocol_options": {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}}


class WebSocketToHttp2UpstreamTest(SkiffTestCase):
    """An HTTP/1.1 Upgrade, or an extended CONNECT from downstream, goes to an
    HTTP/2 cluster as an extended CONNECT, and the 200 back is the 101; as in
    Envoy's H1 -> H2 transform."""

    @classmethod
    def setUpClass(cls):
        cls.origin = H2UpgradeOrigin()
        cls.addClassCleanup(cls.origin.stop)
        cls.ws = WebSocketEcho()
        cls.addClassCleanup(cls.ws.stop)
        upgrades = {"upgrade_configs": [{"upgrade_type": "websocket"}]}
        h1 = listener("h1", [route("/", cluster="origin")], hcm_extra=upgrades)
        h2l = listener("h2", [route("/", cluster="origin")], stat_prefix="h2_in", hcm_extra={
            **upgrades, "codec_type": "HTTP2", "http2_protocol_options": {"allow_connect": True}})
        cls.skiff = cls.class_skiff(bootstrap([h1, h2l], [
            cluster("origin", [(LOCALHOST, cls.origin.port)], extra=H2_CLUSTER)]))
        # Envoy's documented deployment: a WebSocket client on HTTP/1.1, an
        # HTTP/2 hop between two proxies, an HTTP/1.1 WebSocket server.
        inner = cls.class_skiff(bootstrap(
            [listener("inner", [route("/", cluster="ws")], stat_prefix="inner", hcm_extra={
                **upgrades, "codec_type": "HTTP2",
                "http2_protocol_options": {"allow_connect": True}})],
            [cluster("ws", [(LOCALHOST, cls.ws.port)])]), name="inner")
        cls.outer = cls.class_skiff(bootstrap(
            [listener("outer", [route("/", cluster="inner")], stat_prefix="outer",
                      hcm_extra=upgrades)],
            [cluster("inner", [(LOCALHOST, inner.port("inner"))], extra=H2_CLUSTER)]),
            name="outer")

    def test_http1_upgrade_becomes_extended_connect(self):
        before = len(self.origin.requests)
        with socket.create_connection((LOCALHOST, self.skiff.port("h1")), timeout=TIMEOUT) as s:
            s.sendall(upgrade_request("/chat"))
            head, rest = read_head(s)
            lines = head.decode().lower().split("\r\n")
            self.assertTrue(lines[0].startswith("http/1.1 101 "), head)
            self.assertIn("upgrade: websocket", lines)
            self.assertIn("connection: upgrade", lines)
            self.assertIn("x-origin: h2", lines)
            s.sendall(b"ping over h2")
            got = bytearray(rest)
            while len(got) < 12:
                got += s.recv(65536)
            self.assertEqual(bytes(got), b"ping over h2")
            # The client's FIN is the stream's END_STREAM; the origin answers
            # with its own, which is a FIN toward the client.
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(read_to_eof(s), b"")
        fields = self.origin.requests[before]
        self.assertEqual(fields[":method"], "CONNECT")
        self.assertEqual(fields[":protocol"], "websocket")
        self.assertEqual(fields[":scheme"], "http")
        self.assertEqual(fields[":path"], "/chat")
        self.assertEqual(fields["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==")
        self.assertNotIn("upgrade", fields)
        self.assertNotIn("connection", fields)
        wait_until(lambda: (self.skiff.stat("http.ingress_http.downstream_cx_upgrades_active")
                            or 0) == 0, TIMEOUT, what="the tunnel to end")

    def test_content_length_zero_is_dropped_from_the_extended_connect(self):
        # Some clients send `content-length: 0` with their Upgrade; a CONNECT
        # carries no content length (RFC 9110 8.6), so, as Envoy's H1 -> H2
        # transform does, skiff leaves it out.
        before = len(self.origin.requests)
        request = upgrade_request("/zero").replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n")
        with socket.create_connection((LOCALHOST, self.skiff.port("h1")), timeout=TIMEOUT) as s:
            s.sendall(request)
            head, _ = read_head(s)
            self.assertTrue(head.lower().startswith(b"http/1.1 101 "), head)
            s.shutdown(socket.SHUT_WR)
            read_to_eof(s)
        fields = self.origin.requests[before]
        self.assertEqual((fields.get(":method"), fields.get(":path")), ("CONNECT", "/zero"), fields)
        self.assertNotIn("content-length", fields)

    def test_http2_extended_connect_stays_extended_connect(self):
        c = H2Client(self.skiff.port("h2"))
        self.addCleanup(c.close)
        sid = c.request(extended_connect("/h2h2", f"{LOCALHOST}:1"))
        status, fields = c.response(sid)
        self.assertEqual(status, 200, fields)
        self.assertEqual(fields.get("x-origin"), "h2")
        c.send(sid, b"both ways", end_stream=True)
        c.wait_end(sid)
        self.assertEqual(bytes(c.data[sid]), b"both ways")
        self.assertEqual([r.get(":protocol") for r in self.origin.requests
                          if r.get(":path") == "/h2h2"], ["websocket"])

    def test_upstream_reset_resets_the_downstream_stream(self):
        c = H2Client(self.skiff.port("h2"))
        self.addCleanup(c.close)
        sid = c.request(extended_connect("/reset", f"{LOCALHOST}:1"))
        # The origin's 200 and its RST_STREAM may reach skiff in one read,
        # and then the reset overtakes the 200 on its way down: the client
        # must see the reset, and a 200 if anything before it.
        seen = []
        c.until(lambda e: (isinstance(e, (h2.events.ResponseReceived, h2.events.StreamReset))
                           and e.stream_id == sid and seen.append(e) is None
                           and isinstance(e, h2.events.StreamReset)))
        statuses = [dict(e.headers)[":status"] for e in seen
                    if isinstance(e, h2.events.ResponseReceived)]
        self.assertIn(statuses, ([], ["200"]))
        wait_until(lambda: (self.skiff.stat("http.h2_in.downstream_cx_upgrades_active")
                            or 0) == 0, TIMEOUT, what="the tunnel to end")
        # The connection goes on.
        sid = c.request(extended_connect("/after", f"{LOCALHOST}:1"))
        self.assertEqual(c.response(sid)[0], 200)
        c.send(sid, b"still", end_stream=True)
        c.wait_end(sid)
        self.assertEqual(bytes(c.data[sid]), b"still")

    def test_refusal_is_an_ordinary_response(self):
        with socket.create_connection((LOCALHOST, self.skiff.port("h1")), timeout=TIMEOUT) as s:
            s.sendall(upgrade_request("/refuse"))
            head, rest = read_head(s)
            self.assertTrue(head.startswith(b"HTTP/1.1 404 "), head)
            self.assertEqual(rest + (b"" if len(rest) >= 7 else s.recv(65536)), b"refused")

    def test_websocket_through_two_proxies_with_an_http2_hop(self):
        async def talk():
            async with websockets.connect(
                    f"ws://{LOCALHOST}:{self.outer.port('outer')}/hop", max_size=None) as ws:
                for i in range(20):
                    await ws.send(f"message {i}")
                    self.assertEqual(await ws.recv(), f"message {i}")
                big = os.urandom(512 * 1024)
                await ws.send(big)
                self.assertEqual(await ws.recv(), big)
            return ws.close_code

        closed_before = len(self.ws.close_codes)
        self.assertEqual(run(talk()), 1000)
        wait_until(lambda: len(self.ws.close_codes) > closed_before, TIMEOUT, what="server close")
        self.assertEqual(self.ws.close_codes[-1], 1000)


if __name__ == "__main__":
    unittest.main()
