"""envoy.filters.listener.http_inspector: a plaintext connection's first
bytes (peeked at, never consumed) tell HTTP/1.0, HTTP/1.1 or h2c from
anything else, and filter_chain_match.application_protocols chooses the chain
by it. The listener is shaped like Istio's inbound sidecar listener:
tls_inspector and http_inspector, an HTTP chain to an HTTP upstream, a TCP
proxy chain for everything else, a TLS chain. Clients are curl and raw
sockets; the TCP upstreams are small threaded servers below."""

import copy
import socket
import tempfile
import time
import unittest

import skiffharness as h
from skiffharness import LOCALHOST, wait_until

TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
TLS_INSPECTOR = {"name": "envoy.filters.listener.tls_inspector", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3."
             "TlsInspector"}}
HTTP_INSPECTOR = {"name": "envoy.filters.listener.http_inspector", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3."
             "HttpInspector"}}
HTTP_PROTOCOLS = ["http/1.0", "http/1.1", "h2c"]


class EchoServer(h.ThreadedTcpServer):
    """A TCP server on 127.0.0.1, port 0: sends `banner` first (a server that
    speaks first, like MySQL), then echoes what comes until EOF."""

    def __init__(self, banner=b""):
        self.banner = banner
        super().__init__()

    def serve(self, conn):
        with conn:
            try:
                conn.settimeout(30)
                if self.banner:
                    conn.sendall(self.banner)
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                return


def recv_exactly(sock, n, timeout=10):
    """Reads n bytes, or what came before the peer closed or timeout."""
    sock.settimeout(timeout)
    out = b""
    while len(out) < n:
        try:
            chunk = sock.recv(n - len(out))
        except ConnectionResetError:
            # skiff closed a connection whose bytes it never read: a reset.
            break
        if not chunk:
            break
        out += chunk
    return out


class HttpInspectorTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = h.Certificates()
        cls.addClassCleanup(cls.certs.cleanup)
        cls.cert = cls.certs.leaf("a.test")
        cls.web = cls.class_backend("web")
        cls.echo = EchoServer()
        cls.addClassCleanup(cls.echo.stop)
        cls.banner = EchoServer(banner=b"banner\n")
        cls.addClassCleanup(cls.banner.stop)

    def inbound_listener(self, tcp_cluster="echo", timeout=None, continue_on_timeout=None,
                         filters=(TLS_INSPECTOR, HTTP_INSPECTOR)):
        """Istio's inbound shape: (a) HTTP by inspected protocol -> the web
        backend, (b) any other plaintext -> tcp_proxy, (c) TLS -> a direct
        response."""
        lst = h.listener("inbound", [h.route("/", cluster="web")], stat_prefix="inbound_http")
        http_chain = lst["filter_chains"][0]
        http_chain["name"] = "http"
        http_chain["filter_chain_match"] = {"transport_protocol": "raw_buffer",
                                            "application_protocols": HTTP_PROTOCOLS}
        tcp_chain = {"name": "tcp",
                     "filter_chain_match": {"transport_protocol": "raw_buffer"},
                     "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                         "@type": TCP_PROXY_TYPE, "stat_prefix": "inbound_tcp",
                         "cluster": tcp_cluster}}]}
        tls_chain = copy.deepcopy(h.listener("tls", [h.route(direct="secure\n")],
                                             stat_prefix="inbound_tls")["filter_chains"][0])
        tls_chain["name"] = "tls"
        tls_chain["filter_chain_match"] = {"transport_protocol": "tls"}
        tls_chain["transport_socket"] = h.downstream_tls(*self.cert)
        lst["filter_chains"] = [http_chain, tcp_chain, tls_chain]
        lst["listener_filters"] = list(filters)
        if timeout is not None:
            lst["listener_filters_timeout"] = timeout
        if continue_on_timeout is not None:
            lst["continue_on_listener_filters_timeout"] = continue_on_timeout
        return h.bootstrap([lst], [h.cluster("web", [(LOCALHOST, self.web.port)]),
                                   h.cluster("echo", [(LOCALHOST, self.echo.port)]),
                                   h.cluster("banner", [(LOCALHOST, self.banner.port)])])

    def wait_stats(self, skiff, want):
        def matches():
            stats = skiff.stats()
            return all(stats.get(k) == v for k, v in want.items())
        try:
            wait_until(matches, 10, what=f"stats {want}")
        except TimeoutError:
            got = {k: skiff.stats().get(k) for k in want}
            self.assertEqual(got, want)

    def test_http_goes_to_the_http_chain_and_anything_else_to_tcp_proxy(self):
        skiff = self.start_skiff(self.inbound_listener())
        port = skiff.port("inbound")
        url = f"http://{LOCALHOST}:{port}/hello"
        # The counters are there before any connection, as in Envoy.
        self.wait_stats(skiff, {"http_inspector.http11_found": 0,
                                "http_inspector.http_not_found": 0})

        rc, out, err = h.curl("-D", "-", url)
        self.assertEqual(rc, 0, err)
        self.assertIn(b"x-backend: web", out)
        self.assertIn(b"backend:/hello", out)
        rc, out, err = h.curl("--http1.0", "-D", "-", url)
        self.assertEqual(rc, 0, err)
        self.assertIn(b" 200 OK\r\n", out)
        self.assertIn(b"x-backend: web", out)
        # h2c with prior knowledge: the preface picks the HTTP chain, whose
        # codec then speaks HTTP/2.
        rc, out, err = h.curl("--http2-prior-knowledge", "-w", "\n%{http_version}", url)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"backend:/hello\n\n2")

        # Bytes that are no HTTP reach the TCP proxy's upstream whole: the
        # inspector consumed none of them.
        with socket.create_connection((LOCALHOST, port), timeout=10) as s:
            s.sendall(b"hello, not http\n")
            self.assertEqual(recv_exactly(s, 16), b"hello, not http\n")

        # A client whose first bytes come in pieces, with pauses: the
        # inspector waits for enough of them, and the connection reads them
        # all.
        with socket.create_connection((LOCALHOST, port), timeout=10) as s:
            for piece in (b"GE", b"T /pieces", b" HTTP/1", b".1\r", b"\nHost: x\r\n\r\n"):
                s.sendall(piece)
                time.sleep(0.1)
            [(status, headers, body)] = h.parse_responses(self.read_response(s))
            self.assertEqual((status, headers.get("x-backend"), body),
                             (200, "web", b"backend:/pieces\n"))
        with socket.create_connection((LOCALHOST, port), timeout=10) as s:
            for piece in (b"PRI * HT", b"TP/2.0\r\n\r\nSM\r\n"):
                s.sendall(piece)
                time.sleep(0.1)
            s.sendall(b"\r\n" + bytes.fromhex("000000040000000000"))  # preface + SETTINGS
            # skiff's HTTP/2 codec answers with its own SETTINGS frame.
            frame = recv_exactly(s, 9)
            self.assertEqual(len(frame), 9, frame)
            self.assertEqual(frame[3], 0x4)  # SETTINGS
        with socket.create_connection((LOCALHOST, port), timeout=10) as s:
            for piece in (b"GE", b"Tting there"):
                s.sendall(piece)
                time.sleep(0.1)
            self.assertEqual(recv_exactly(s, 13), b"GETting there")

        # TLS: tls_inspector comes first, and http_inspector passes over it.
        rc, out, err = h.curl("--cacert", self.certs.ca, "--resolve", f"a.test:{port}:{LOCALHOST}",
                              f"https://a.test:{port}/")
        self.assertEqual((rc, out), (0, b"secure\n"), err)

        self.wait_stats(skiff, {
            "http_inspector.http10_found": 1,
            "http_inspector.http11_found": 2,
            "http_inspector.http2_found": 2,
            "http_inspector.http_not_found": 2,
            "http_inspector.read_error": 0,
            "http.inbound_http.downstream_cx_total": 5,
            "http.inbound_tls.downstream_cx_total": 1,
        })

    @staticmethod
    def read_response(s):
        """One Content-Length response from s."""
        data = b""
        s.settimeout(10)
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    def test_a_client_that_sends_nothing_is_closed_at_the_timeout(self):
        skiff = self.start_skiff(self.inbound_listener(tcp_cluster="banner", timeout="0.5s"))
        port = skiff.port("inbound")
        with socket.create_connection((LOCALHOST, port), timeout=20) as idle:
            # Closed, and the server-first upstream never reached.
            self.assertEqual(recv_exactly(idle, 1, timeout=20), b"")

        def timeouts():
            return sum(v for k, v in skiff.stats().items()
                       if k.startswith("listener.") and k.endswith(".downstream_pre_cx_timeout"))
        wait_until(lambda: timeouts() == 1, 10, what="downstream_pre_cx_timeout 1")
        # So are the bytes of a request line that never ends.
        with socket.create_connection((LOCALHOST, port), timeout=20) as slow:
            slow.sendall(b"GET /never-ending")
            self.assertEqual(recv_exactly(slow, 1, timeout=20), b"")
        wait_until(lambda: timeouts() == 2, 10, what="downstream_pre_cx_timeout 2")
        self.assertEqual(skiff.stat("http_inspector.http_not_found") or 0, 0)
        # The listener serves on.
        rc, out, err = h.curl(f"http://{LOCALHOST}:{port}/after")
        self.assertEqual((rc, out), (0, b"backend:/after\n"), err)

    def test_continue_on_listener_filters_timeout_goes_to_the_chain_without_protocols(self):
        # A server-first protocol behind the TCP proxy chain: its client
        # waits for the banner, which comes once the inspectors give up.
        skiff = self.start_skiff(self.inbound_listener(tcp_cluster="banner", timeout="0.5s",
                                                       continue_on_timeout=True))
        port = skiff.port("inbound")
        with socket.create_connection((LOCALHOST, port), timeout=20) as s:
            self.assertEqual(recv_exactly(s, 7, timeout=20), b"banner\n")
            s.sendall(b"ping\n")
            self.assertEqual(recv_exactly(s, 5), b"ping\n")
        self.assertEqual(skiff.stat("http_inspector.http_not_found") or 0, 0)

    def test_a_peer_that_closes_before_deciding_is_forgotten(self):
        skiff = self.start_skiff(self.inbound_listener())
        port = skiff.port("inbound")
        with socket.create_connection((LOCALHOST, port), timeout=10) as s:
            s.sendall(b"GET /half")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_exactly(s, 1), b"")
        # A whole request line and then a half-close is decided, and served.
        with socket.create_connection((LOCALHOST, port), timeout=10) as s:
            s.sendall(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            [(status, _, body)] = h.parse_responses(self.read_response(s))
            self.assertEqual((status, body), (200, b"backend:/whole\n"))
        rc, out, err = h.curl(f"http://{LOCALHOST}:{port}/after")
        self.assertEqual((rc, out), (0, b"backend:/after\n"), err)

    def test_named_before_tls_inspector_it_inspects_tls_connections_too(self):
        # Envoy runs listener filters in their order: http_inspector first
        # sees a ClientHello, which is no HTTP; the TLS chain still takes it.
        skiff = self.start_skiff(self.inbound_listener(filters=(HTTP_INSPECTOR, TLS_INSPECTOR)))
        port = skiff.port("inbound")
        rc, out, err = h.curl("--cacert", self.certs.ca, "--resolve", f"a.test:{port}:{LOCALHOST}",
                              f"https://a.test:{port}/")
        self.assertEqual((rc, out), (0, b"secure\n"), err)
        rc, out, err = h.curl(f"http://{LOCALHOST}:{port}/plain")
        self.assertEqual((rc, out), (0, b"backend:/plain\n"), err)
        self.wait_stats(skiff, {"http_inspector.http_not_found": 1,
                                "http_inspector.http11_found": 1})

    def test_plaintext_application_protocols_need_http_inspector(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(self.inbound_listener(filters=(TLS_INSPECTOR,)))
            f.flush()
            rc, out = h.run_skiff(["--mode", "validate", "-c", f.name])
        self.assertNotEqual(rc, 0, out)
        self.assertIn("static_resources.listeners[0].filter_chains[0].filter_chain_match."
                      "application_protocols: a plaintext chain matches them only with the "
                      "envoy.filters.listener.http_inspector listener filter", out)


if __name__ == "__main__":
    unittest.main()
