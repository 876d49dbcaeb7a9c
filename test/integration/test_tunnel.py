"""Tunnels: HTTP/1.1 Upgrade (WebSocket) and CONNECT through skiff.

A real WebSocket server and client (Debian's python3-websockets) talk through
skiff; curl's proxytunnel (-p -x) reaches the harness backend through a CONNECT
that skiff terminates; raw sockets check half-close and an upstream that
closes. Buffers are set small (16 KiB) so that large messages cross skiff under
backpressure.
"""

import asyncio
import hashlib
import json
import os
import select
import socket
import sys
import tempfile
import threading
import unittest

try:
    import h2.config
    import h2.connection
    import h2.events
    import websockets
except ImportError:
    # Debian's python3-websockets and python3-h2 live in the system's
    # dist-packages; a Python from elsewhere (pyenv) on PATH does not look there.
    sys.path.append("/usr/lib/python3/dist-packages")
    import h2.config
    import h2.connection
    import h2.events
    import websockets

from skiffharness import (
    LOCALHOST,
    Nginx,
    ReservedPort,
    SkiffTestCase,
    ThreadedTcpServer,
    bootstrap,
    cluster,
    curl,
    http_request,
    listener,
    raw_exchange,
    read_to_eof,
    route,
    run_skiff,
    to_yaml,
    wait_until,
)

BUFFER_LIMIT = 16 * 1024
TIMEOUT = 30


class WebSocketEcho:
    """A WebSocket echo server on 127.0.0.1, port 0, on its own thread. It
    records the close code of every connection it served."""

    def __init__(self):
        self.close_codes = []
        self.port = None
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("WebSocket echo server did not start")

    def _run(self):
        asyncio.set_event_loop(self._loop)

        async def echo(ws, path=None):
            try:
                async for message in ws:
                    await ws.send(message)
            except websockets.ConnectionClosed:
                pass
            finally:
                self.close_codes.append(ws.close_code)

        async def main():
            self._stop = self._loop.create_future()
            server = await websockets.serve(echo, LOCALHOST, 0, max_size=None)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop
            server.close()
            await server.wait_closed()

        self._loop.run_until_complete(main())

    def stop(self):
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
            self._thread.join(10)


class RawUpgradeServer(ThreadedTcpServer):
    """Answers any Upgrade request with a 101, then, by path:

      /raw/halfclose   reads until the client's FIN, answers "got N bytes;"
                       followed by 64 KiB of "tail", then closes
      /raw/upclose     sends "bye" and closes at once
      /raw/cl0         the same, with `Content-Length: 0` on its 101
      /raw/stall       reads nothing until `release` is set, then like
                       /raw/halfclose
      /raw/flood       writes until its writes stall for 2 s (or FLOOD_LIMIT
                       bytes), records the count in `flooded`, then closes
    """

    FLOOD_LIMIT = 128 * 1024 * 1024

    def __init__(self):
        self.release = threading.Event()
        self.flooded = None
        self.flood_done = threading.Event()
        super().__init__(backlog=16)

    def serve(self, conn):
        with conn:
            conn.settimeout(TIMEOUT)
            head = bytearray()
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            head, _, rest = bytes(head).partition(b"\r\n\r\n")
            path = head.split(b" ")[1].decode()
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                         b"Upgrade: websocket\r\n" +
                         (b"Content-Length: 0\r\n" if path == "/raw/cl0" else b"") + b"\r\n")
            if path == "/raw/stall":
                self.release.wait(TIMEOUT)
            if path in ("/raw/halfclose", "/raw/stall"):
                got = len(rest)
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    got += len(chunk)
                conn.sendall(b"got %d bytes;" % got + b"tail" * 16384)
            elif path in ("/raw/upclose", "/raw/cl0"):
                conn.sendall(b"bye")
            elif path == "/raw/flood":
                conn.setblocking(False)
                block = b"\xcd" * 65536
                sent = 0
                while sent < self.FLOOD_LIMIT:
                    _, writable, _ = select.select([], [conn], [], 2.0)
                    if not writable:
                        break  # Nobody reads this any more.
                    try:
                        sent += conn.send(block)
                    except BlockingIOError:
                        pass
                conn.setblocking(True)
                self.flooded = sent
                self.flood_done.set()


def upgrade_request(path, host="t"):
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n"
            f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode()


def read_head(sock):
    """Reads a response head; returns (head bytes, bytes after it)."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before a response head: {bytes(data)!r}")
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    return head, rest


def check_curl_proxytunnel(test, proxy_port, backend_port):
    """curl -p through the CONNECT proxy at proxy_port to the backend: a 3 MiB
    download and a 2 MiB upload arrive whole (the backend's /sha sums it)."""
    target = f"http://{LOCALHOST}:{backend_port}"
    proxy = f"http://{LOCALHOST}:{proxy_port}"
    n = 3 * 1024 * 1024
    rc, out, err = curl("-p", "-x", proxy, f"{target}/size?n={n}", timeout=TIMEOUT)
    test.assertEqual(rc, 0, err)
    test.assertEqual(out, Nginx.body_of(n))
    upload = os.urandom(2 * 1024 * 1024)
    rc, out, err = curl("-p", "-x", proxy, "--data-binary", "@-", f"{target}/sha",
                        input_bytes=upload, timeout=TIMEOUT)
    test.assertEqual(rc, 0, err)
    test.assertEqual(json.loads(out), {"length": len(upload),
                                       "sha256": hashlib.sha256(upload).hexdigest()})


def check_connect_half_close(test, proxy_port):
    """A raw HTTP/1.1 CONNECT to proxy_port: a 2xx with no framing fields,
    then an HTTP/1.0 request and our FIN; the backend's answer and its close
    come back through the tunnel."""
    with socket.create_connection((LOCALHOST, proxy_port), timeout=TIMEOUT) as s:
        s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
        head, rest = read_head(s)
        test.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        # RFC 9110 9.3.6: no framing fields in a 2xx to CONNECT.
        test.assertNotIn(b"content-length", head.lower())
        test.assertNotIn(b"transfer-encoding", head.lower())
        # HTTP/1.0 with no keep-alive: the backend answers and closes.
        s.sendall(b"GET /tunnelled HTTP/1.0\r\nHost: b\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        answer = rest + read_to_eof(s)
    test.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:200])
    test.assertTrue(answer.endswith(b"backend:/tunnelled\n"), answer[-200:])


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def h2_connect(port, payloads, authority="127.0.0.1:1"):
    """Opens one h2c connection (prior knowledge) with a CONNECT stream per
    payload (hyper-h2, an independent HTTP/2 implementation). Each payload is
    sent once its stream's answer arrives, as DATA within the flow-control
    windows, with END_STREAM on the last frame. Returns [(status, bytes
    received until the peer's END_STREAM)] in payload order."""
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                       # RFC 9113 8.5: a CONNECT has no :path and
                                       # no :scheme, which this version of h2 insists on.
                                       validate_outbound_headers=False)
    conn = h2.connection.H2Connection(config)
    with socket.create_connection((LOCALHOST, port), timeout=TIMEOUT) as s:
        conn.initiate_connection()
        streams = {}
        for payload in payloads:
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "CONNECT"), (":authority", authority)])
            streams[sid] = {"status": None, "out": None, "payload": payload,
                            "data": bytearray(), "ended": False}
        s.sendall(conn.data_to_send())

        def pump():
            for sid, st in streams.items():
                out = st["out"]
                while out is not None and (out or not st.get("sent_end")):
                    room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                    if out and room == 0:
                        break
                    chunk, st["out"] = out[:room], out[room:]
                    out = st["out"]
                    last = not out
                    conn.send_data(sid, chunk, end_stream=last)
                    if last:
                        st["sent_end"] = True
                        st["out"] = None
                        out = None

        while not all(st["ended"] for st in streams.values()):
            data = s.recv(65536)
            if not data:
                raise AssertionError("connection closed before every stream ended")
            for ev in conn.receive_data(data):
                st = streams.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.ResponseReceived):
                    st["status"] = int(dict(ev.headers)[":status"])
                    if st["status"] == 200:
                        st["out"] = st["payload"]
                elif isinstance(ev, h2.events.DataReceived):
                    st["data"] += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    st["ended"] = True
                elif isinstance(ev, h2.events.StreamReset):
                    raise AssertionError(f"stream {ev.stream_id} reset: {ev.error_code}")
            pump()
            s.sendall(conn.data_to_send())
        return [(st["status"], bytes(st["data"])) for st in streams.values()]


class TunnelTest(SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ws = WebSocketEcho()
        cls.addClassCleanup(cls.ws.stop)
        cls.raw = RawUpgradeServer()
        cls.addClassCleanup(cls.raw.stop)
        cls.backend = cls.class_backend()
        # A port nothing listens on.
        dead = ReservedPort()
        cls.addClassCleanup(dead.close)
        cls.dead_port = dead.port
        limit = {"per_connection_buffer_limit_bytes": BUFFER_LIMIT}
        connect_route = {
            "match": {"connect_matcher": {}},
            "route": {"cluster": "backend",
                      "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}]},
        }
        no_ws_route = route("/nows", cluster="ws")
        no_ws_route["route"]["upgrade_configs"] = [{"upgrade_type": "websocket", "enabled": False}]
        ingress = listener("ingress", [
            connect_route,
            no_ws_route,
            route("/direct", direct="plain\n"),
            route("/headers", cluster="backend"),
            route("/raw/", cluster="raw"),
            route("/", cluster="ws"),
        ], hcm_extra={"upgrade_configs": [{"upgrade_type": "WebSocket"}]})
        ingress.update(limit)
        # CONNECT to dead.example:1 goes to a cluster whose host refuses.
        vhosts = ingress["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
            "virtual_hosts"]
        vhosts.insert(0, {"name": "dead", "domains": ["dead.example:1"], "routes": [{
            "match": {"connect_matcher": {}},
            "route": {"cluster": "dead",
                      "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}]}}]})
        # No upgrade_configs anywhere: WebSocket and CONNECT are refused.
        plain = listener("plain", [
            {"match": {"connect_matcher": {}}, "route": {"cluster": "backend"}},
            route("/", cluster="ws"),
        ], stat_prefix="plain_http")
        clusters = [
            cluster("ws", [(LOCALHOST, cls.ws.port)], extra=limit),
            cluster("raw", [(LOCALHOST, cls.raw.port)], extra=limit),
            cluster("backend", [(LOCALHOST, cls.backend.port)], extra=limit),
            cluster("dead", [(LOCALHOST, cls.dead_port)]),
        ]
        cls.skiff = cls.class_skiff(bootstrap([ingress, plain], clusters))
        cls.port = cls.skiff.port("ingress")
        cls.plain_port = cls.skiff.port("plain")

    def wait_tunnels_closed(self, prefix="ingress_http"):
        wait_until(lambda: self.skiff.stat(f"http.{prefix}.downstream_cx_upgrades_active") == 0,
                   TIMEOUT, what="every tunnel to end")

    # ---- WebSocket

    def test_websocket_echo_many_large_and_clean_close(self):
        before = self.skiff.stat("http.ingress_http.downstream_cx_upgrades_total") or 0
        big = os.urandom(4 * 1024 * 1024)  # 256 times skiff's buffer limit

        async def talk():
            async with websockets.connect(f"ws://{LOCALHOST}:{self.port}/chat",
                                          max_size=None) as ws:
                for i in range(300):
                    text = f"message {i} " * (i % 50 + 1)
                    await ws.send(text)
                    self.assertEqual(await ws.recv(), text)
                await ws.send(big)
                self.assertEqual(await ws.recv(), big)
                # Many in flight at once, in order.
                for i in range(100):
                    await ws.send(b"%d" % i * 1000)
                for i in range(100):
                    self.assertEqual(await ws.recv(), b"%d" % i * 1000)
            return ws.close_code

        closed_before = len(self.ws.close_codes)
        self.assertEqual(run(talk()), 1000)
        # The server saw the clean close too.
        wait_until(lambda: len(self.ws.close_codes) > closed_before, TIMEOUT, what="server close")
        self.assertEqual(self.ws.close_codes[-1], 1000)
        self.assertEqual(self.skiff.stat("http.ingress_http.downstream_cx_upgrades_total"),
                         before + 1)
        self.wait_tunnels_closed()

    def test_other_connections_are_served_while_tunnels_are_open(self):
        async def talk():
            sockets = [await websockets.connect(f"ws://{LOCALHOST}:{self.port}/t{i}")
                       for i in range(5)]
            # Plain requests, on fresh connections, beside the open tunnels.
            for _ in range(3):
                status, _, body = await asyncio.to_thread(http_request, self.port, path="/direct")
                self.assertEqual((status, body), (200, b"plain\n"))
            self.assertEqual(
                self.skiff.stat("http.ingress_http.downstream_cx_upgrades_active"), 5)
            for i, ws in enumerate(sockets):
                await ws.send(f"still {i}")
                self.assertEqual(await ws.recv(), f"still {i}")
                await ws.close()

        run(talk())
        self.wait_tunnels_closed()

    def test_upgrade_type_not_configured_is_refused(self):
        before = self.skiff.stat("http.plain_http.downstream_rq_ws_on_non_ws_route") or 0

        async def attempt(port, path):
            with self.assertRaises(websockets.InvalidStatusCode) as cm:
                async with websockets.connect(f"ws://{LOCALHOST}:{port}{path}"):
                    pass
            return cm.exception.status_code

        self.assertEqual(run(attempt(self.plain_port, "/")), 403)
        self.assertEqual(self.skiff.stat("http.plain_http.downstream_rq_ws_on_non_ws_route"),
                         before + 1)
        # A route's upgrade_configs entry overrides the connection manager's.
        self.assertEqual(run(attempt(self.port, "/nows")), 403)
        # The refusal closes the connection: bytes after the request are not
        # read as another request.
        data, closed = raw_exchange(self.plain_port,
                                    upgrade_request("/") + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 403 "), data[:200])
        self.assertIn(b"connection: close", data.lower())
        self.assertIn(b"content-length: 0\r\n", data.lower())  # No body, as Envoy's.
        self.assertEqual(data.count(b"HTTP/1.1"), 1, data)
        self.assertTrue(closed)

    def test_non_101_answer_is_an_ordinary_response(self):
        # The harness backend speaks no WebSocket: it answers 200.
        data, closed = raw_exchange(self.port, upgrade_request("/headers"))
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertIn(b"x-backend: backend", head.lower())
        seen = json.loads(body)
        names = {k.lower(): v for k, v in seen["headers"]}
        # The upstream was asked for the upgrade.
        self.assertEqual(names.get("upgrade"), "websocket")
        self.assertIn("upgrade", names.get("connection", "").lower())
        self.assertTrue(closed)

    # ---- Half-close and ends

    def test_half_close_client_fin_still_receives_the_rest(self):
        payload = os.urandom(300 * 1024)
        with socket.create_connection((LOCALHOST, self.port), timeout=TIMEOUT) as s:
            s.sendall(upgrade_request("/raw/halfclose"))
            head, rest = read_head(s)
            self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            # The upstream sees our FIN only after every byte, then answers.
            answer = rest + read_to_eof(s)
        self.assertEqual(answer, b"got %d bytes;" % len(payload) + b"tail" * 16384)
        self.wait_tunnels_closed()

    def test_backpressure_stops_reading_the_client(self):
        # The upstream reads nothing: skiff must stop reading the client once
        # its buffers toward the upstream are full, not take all it is sent.
        self.raw.release.clear()
        limit = 128 * 1024 * 1024
        block = b"\xab" * 65536
        sent = 0
        with socket.create_connection((LOCALHOST, self.port), timeout=TIMEOUT) as s:
            s.sendall(upgrade_request("/raw/stall"))
            head, rest = read_head(s)
            self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
            s.setblocking(False)
            while sent < limit:
                _, writable, _ = select.select([], [s], [], 2.0)
                if not writable:
                    break  # Nobody reads this any more.
                try:
                    sent += s.send(block)
                except BlockingIOError:
                    pass
            self.assertLess(sent, limit, "skiff took everything the client sent")
            # The upstream reads again: every byte arrives, nothing was lost.
            self.raw.release.set()
            s.setblocking(True)
            s.shutdown(socket.SHUT_WR)
            answer = rest + read_to_eof(s)
        self.assertEqual(answer, b"got %d bytes;" % sent + b"tail" * 16384)
        self.wait_tunnels_closed()

    def test_backpressure_stops_reading_the_upstream(self):
        # The client reads nothing: skiff must stop reading the upstream.
        self.raw.flood_done.clear()
        with socket.create_connection((LOCALHOST, self.port), timeout=TIMEOUT) as s:
            s.sendall(upgrade_request("/raw/flood"))
            head, rest = read_head(s)
            self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
            self.assertTrue(self.raw.flood_done.wait(TIMEOUT))
            self.assertLess(self.raw.flooded, RawUpgradeServer.FLOOD_LIMIT,
                            "skiff took everything the upstream sent")
            got = len(rest) + len(read_to_eof(s))
        self.assertEqual(got, self.raw.flooded)
        self.wait_tunnels_closed()

    def test_upstream_closing_ends_the_tunnel(self):
        with socket.create_connection((LOCALHOST, self.port), timeout=TIMEOUT) as s:
            s.sendall(upgrade_request("/raw/upclose"))
            head, rest = read_head(s)
            self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
            self.assertEqual(rest + read_to_eof(s), b"bye")
        self.wait_tunnels_closed()
        status, _, body = http_request(self.port, path="/direct")
        self.assertEqual((status, body), (200, b"plain\n"))

    # ---- CONNECT

    def test_connect_with_curl_proxytunnel(self):
        check_curl_proxytunnel(self, self.port, self.backend.port)
        self.wait_tunnels_closed()

    def test_connect_raw_answer_and_half_close(self):
        check_connect_half_close(self, self.port)
        self.wait_tunnels_closed()

    def test_connect_to_a_host_that_refuses_is_503(self):
        data, closed = raw_exchange(
            self.port, b"CONNECT dead.example:1 HTTP/1.1\r\nHost: dead.example:1\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 503 "), data[:200])
        self.assertIn(b"upstream connect error", data)
        self.assertTrue(closed)
        self.wait_tunnels_closed()

    def test_connect_not_configured_is_refused(self):
        data, closed = raw_exchange(self.plain_port,
                                    b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 403 "), data[:200])
        self.assertTrue(closed)
        rc, _, err = curl("-p", "-x", f"http://{LOCALHOST}:{self.plain_port}",
                          f"http://{LOCALHOST}:{self.backend.port}/", timeout=TIMEOUT)
        self.assertNotEqual(rc, 0)
        self.assertIn("403", err)


    # ---- CONNECT over HTTP/2 (RFC 9113 8.5)

    def test_http2_connect_streams_with_half_close(self):
        upload = os.urandom(1024 * 1024)
        n = 2 * 1024 * 1024
        results = h2_connect(self.port, [
            b"POST /sha HTTP/1.0\r\nHost: b\r\nContent-Length: %d\r\n\r\n" % len(upload) + upload,
            b"GET /size?n=%d HTTP/1.0\r\nHost: b\r\n\r\n" % n,
            b"GET /tunnelled HTTP/1.0\r\nHost: b\r\n\r\n",
        ])
        # Each stream: 200 from skiff, then the backend's whole answer, then
        # END_STREAM when the backend closes (its FIN).
        self.assertEqual([status for status, _ in results], [200, 200, 200])
        head, _, body = results[0][1].partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual(json.loads(body), {"length": len(upload),
                                            "sha256": hashlib.sha256(upload).hexdigest()})
        head, _, body = results[1][1].partition(b"\r\n\r\n")
        self.assertEqual(body, Nginx.body_of(n))
        self.assertTrue(results[2][1].endswith(b"backend:/tunnelled\n"), results[2][1][-200:])
        self.wait_tunnels_closed()

    def test_http2_connect_not_configured_is_refused(self):
        [(status, body)] = h2_connect(self.plain_port, [b"never sent"])
        self.assertEqual(status, 403)


H2_CLUSTER = {"typed_extension_protocol_options": {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}}


class ConnectOverHttp2UpstreamTest(SkiffTestCase):
    """Envoy's CONNECT tunnelling over an HTTP/2 hop: the outer skiff takes an
    HTTP/1.1 or HTTP/2 CONNECT and sends it on to an HTTP/2 cluster as RFC 9113 8.5's
    CONNECT (only :method and :authority); the inner skiff terminates it
    (connect_config) with a TCP connection to its cluster's host."""

    @classmethod
    def setUpClass(cls):
        cls.backend = cls.class_backend()
        dead = ReservedPort()
        cls.addClassCleanup(dead.close)
        terminate = {"upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}]}
        inner_listener = listener("inner", [
            {"match": {"connect_matcher": {}}, "route": {"cluster": "backend", **terminate}}],
            stat_prefix="inner", hcm_extra={"codec_type": "HTTP2"})
        vhosts = inner_listener["filter_chains"][0]["filters"][0]["typed_config"][
            "route_config"]["virtual_hosts"]
        vhosts.insert(0, {"name": "dead", "domains": ["dead.example:1"], "routes": [{
            "match": {"connect_matcher": {}}, "route": {"cluster": "dead", **terminate}}]})
        cls.inner = cls.class_skiff(bootstrap([inner_listener], [
            cluster("backend", [(LOCALHOST, cls.backend.port)]),
            cluster("dead", [(LOCALHOST, dead.port)])]), name="inner")
        cls.outer = cls.class_skiff(bootstrap(
            [listener("outer", [{"match": {"connect_matcher": {}}, "route": {
                "cluster": "inner", "upgrade_configs": [{"upgrade_type": "CONNECT"}]}}],
                stat_prefix="outer")],
            [cluster("inner", [(LOCALHOST, cls.inner.port("inner"))], extra=H2_CLUSTER)]),
            name="outer", concurrency=1)
        cls.port = cls.outer.port("outer")

    def wait_tunnels_closed(self):
        for proxy, prefix in ((self.outer, "outer"), (self.inner, "inner")):
            wait_until(lambda: proxy.stat(f"http.{prefix}.downstream_cx_upgrades_active") == 0,
                       TIMEOUT, what=f"every {prefix} tunnel to end")

    def test_curl_proxytunnel_both_directions(self):
        check_curl_proxytunnel(self, self.port, self.backend.port)
        # The outer skiff's one worker carried both tunnels as streams of one
        # HTTP/2 connection.
        self.assertEqual(self.inner.stat("http.inner.downstream_cx_http2_total"), 1)
        self.wait_tunnels_closed()

    def test_half_close_crosses_the_http2_hop(self):
        # Our FIN becomes the outer stream's END_STREAM, the inner skiff's FIN
        # to the backend; the backend's answer and close come back.
        check_connect_half_close(self, self.port)
        self.wait_tunnels_closed()

    def test_http2_downstream_tunnels_cross_the_hop(self):
        upload = os.urandom(512 * 1024)
        results = h2_connect(self.port, [
            b"POST /sha HTTP/1.0\r\nHost: b\r\nContent-Length: %d\r\n\r\n" % len(upload) + upload,
            b"GET /tunnelled HTTP/1.0\r\nHost: b\r\n\r\n",
        ])
        self.assertEqual([status for status, _ in results], [200, 200])
        _, _, body = results[0][1].partition(b"\r\n\r\n")
        self.assertEqual(json.loads(body), {"length": len(upload),
                                            "sha256": hashlib.sha256(upload).hexdigest()})
        self.assertTrue(results[1][1].endswith(b"backend:/tunnelled\n"), results[1][1][-200:])
        self.wait_tunnels_closed()

    def test_the_inner_proxys_refusal_comes_back(self):
        data, closed = raw_exchange(
            self.port, b"CONNECT dead.example:1 HTTP/1.1\r\nHost: dead.example:1\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 503 "), data[:200])
        self.assertIn(b"upstream connect error", data)
        self.assertTrue(closed)
        self.wait_tunnels_closed()


class TunnelConfigTest(unittest.TestCase):
    def validate(self, routes, hcm_extra=None):
        config = bootstrap([listener("l", routes, hcm_extra=hcm_extra)],
                           [cluster("c", [(LOCALHOST, 1)])])
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(config)
            f.flush()
            return run_skiff(["--mode", "validate", "-c", f.name])

    def test_unsupported_upgrade_fields_are_refused_by_path(self):
        rc, out = self.validate([route("/", cluster="c")], hcm_extra={"upgrade_configs": [
            {"upgrade_type": "websocket", "filters": [{"name": "envoy.filters.http.router"}]}]})
        self.assertEqual(rc, 1, out)
        self.assertIn("typed_config.upgrade_configs[0].filters", out)
        connect = {"match": {"connect_matcher": {}}, "route": {"cluster": "c", "upgrade_configs": [
            {"upgrade_type": "CONNECT", "connect_config": {"allow_post": True}}]}}
        rc, out = self.validate([connect])
        self.assertEqual(rc, 1, out)
        self.assertIn("routes[0].route.upgrade_configs[0].connect_config.allow_post", out)

    def test_supported_upgrade_fields_validate(self):
        connect = {"match": {"connect_matcher": {}}, "route": {"cluster": "c", "upgrade_configs": [
            {"upgrade_type": "CONNECT", "connect_config": {}}]}}
        rc, out = self.validate([connect, route("/", cluster="c")], hcm_extra={
            "upgrade_configs": [{"upgrade_type": "websocket"},
                                {"upgrade_type": "CONNECT", "enabled": False}]})
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
