"""The TCP proxy network filter (envoy.filters.network.tcp_proxy).

Raw sockets talk through skiff to a small threaded TCP server (TcpServer
below), which acts by the first byte a connection sends: echo, read to the
end and answer with the sha256 of what came, send first and close its side,
or say its name. Large transfers run both ways at once with small buffers
(16 KiB), so that both directions cross skiff under backpressure; half-close
is checked both ways; weighted clusters, a failed connect, a missing
cluster, the idle timeout and the connection duration limit, a TLS filter
chain, a refused field, and (as root) an iptables-redirected connection to
an ORIGINAL_DST cluster.
"""

import hashlib
import os
import select
import socket
import ssl
import tempfile
import threading
import time
import unittest

import skiffharness as h
from skiffharness import (LOCALHOST, SkiffTestCase, bootstrap, cluster, read_to_eof, run_skiff,
                          wait_until)

BUFFER_LIMIT = 16 * 1024
TIMEOUT = 30
TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


class TcpServer(h.ThreadedTcpServer):
    """A TCP server on 127.0.0.1, port 0, a thread per connection. The first
    byte picks what it does:
      E: echoes until EOF, then half-closes and closes.
      H: reads until EOF, then sends the sha256 hex digest of what came.
      S: sends b"bye", half-closes, reads until EOF and records the sha256
         of what came in self.received.
      I: sends its name and closes."""

    def __init__(self, name="tcp"):
        self.name = name
        self.received = []
        super().__init__(backlog=128)

    def _read_all(self, conn, digest):
        while True:
            data = conn.recv(65536)
            if not data:
                return
            digest.update(data)

    def serve(self, conn):
        try:
            conn.settimeout(TIMEOUT)
            mode = conn.recv(1)
            if mode == b"E":
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            elif mode == b"H":
                digest = hashlib.sha256()
                self._read_all(conn, digest)
                conn.sendall(digest.hexdigest().encode())
            elif mode == b"S":
                conn.sendall(b"bye")
                conn.shutdown(socket.SHUT_WR)
                digest = hashlib.sha256()
                self._read_all(conn, digest)
                self.received.append(digest.hexdigest())
            elif mode == b"I":
                conn.sendall(self.name.encode())
        except OSError:
            pass
        finally:
            conn.close()

def tcp_proxy(stat_prefix="tcp_in", cluster_name="upstream", **extra):
    tp = {"@type": TCP_PROXY_TYPE, "stat_prefix": stat_prefix}
    if cluster_name is not None:
        tp["cluster"] = cluster_name
    tp.update(extra)
    return tp


def tcp_listener(name, config, transport_socket=None, listener_filters=None):
    chain = {"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": config}]}
    if transport_socket:
        chain["transport_socket"] = transport_socket
    l = {"name": name,
         "address": {"socket_address": {"address": LOCALHOST, "port_value": 0}},
         "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
         "filter_chains": [chain]}
    if listener_filters:
        l["listener_filters"] = listener_filters
    return l


def small_buffers(extra=None):
    e = {"per_connection_buffer_limit_bytes": BUFFER_LIMIT}
    e.update(extra or {})
    return e


def connect(port):
    s = socket.create_connection((LOCALHOST, port), timeout=TIMEOUT)
    return s


class TcpProxyTest(SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = TcpServer("one")
        cls.addClassCleanup(cls.server.stop)
        cls.other = TcpServer("two")
        cls.addClassCleanup(cls.other.stop)
        cls.dead = h.ReservedPort()  # Nothing listens there.
        cls.addClassCleanup(cls.dead.close)
        clusters = [
            cluster("upstream", [(LOCALHOST, cls.server.port)], extra=small_buffers()),
            cluster("other", [(LOCALHOST, cls.other.port)]),
            cluster("dead", [(LOCALHOST, cls.dead.port)]),
        ]
        listeners = [
            tcp_listener("plain", tcp_proxy()),
            tcp_listener("weighted", tcp_proxy(
                "tcp_weighted", None,
                weighted_clusters={"clusters": [{"name": "upstream", "weight": 1},
                                                {"name": "other", "weight": 1}]})),
            tcp_listener("refused", tcp_proxy("tcp_dead", "dead", max_connect_attempts=2)),
            tcp_listener("missing", tcp_proxy("tcp_missing", "no_such_cluster")),
            tcp_listener("idle", tcp_proxy("tcp_idle", idle_timeout="0.3s")),
            tcp_listener("duration", tcp_proxy("tcp_duration", idle_timeout="0s",
                                               max_downstream_connection_duration="0.3s")),
        ]
        cls.skiff = cls.class_skiff(bootstrap(listeners, clusters))

    def test_echo_large_both_ways(self):
        # 8 MiB out while 8 MiB come back, through 16 KiB buffers: both
        # directions are read-disabled and resumed many times.
        payload = os.urandom(8 * 1024 * 1024)
        s = connect(self.skiff.port("plain"))
        received = hashlib.sha256()
        count = [0]

        def reader():
            while True:
                data = s.recv(65536)
                if not data:
                    return
                received.update(data)
                count[0] += len(data)

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(b"E" + payload)
        s.shutdown(socket.SHUT_WR)
        t.join(TIMEOUT)
        s.close()
        self.assertFalse(t.is_alive())
        self.assertEqual(count[0], len(payload))
        self.assertEqual(received.hexdigest(), hashlib.sha256(payload).hexdigest())
        stats = self.skiff.stats()
        self.assertGreater(stats["tcp.tcp_in.downstream_flow_control_paused_reading_total"], 0)
        self.assertEqual(stats["tcp.tcp_in.downstream_flow_control_paused_reading_total"],
                         stats["tcp.tcp_in.downstream_flow_control_resumed_reading_total"])

    def test_downstream_half_close_reaches_upstream(self):
        # The client's FIN reaches the server, whose answer still comes back.
        payload = os.urandom(3 * 1024 * 1024 + 17)
        s = connect(self.skiff.port("plain"))
        s.sendall(b"H" + payload)
        s.shutdown(socket.SHUT_WR)
        answer = read_to_eof(s)
        s.close()
        self.assertEqual(answer, hashlib.sha256(payload).hexdigest().encode())

    def test_upstream_half_close_reaches_downstream(self):
        # The server's FIN reaches the client, which goes on sending.
        before = len(self.server.received)
        s = connect(self.skiff.port("plain"))
        s.sendall(b"S")
        self.assertEqual(read_to_eof(s), b"bye")
        payload = os.urandom(1024 * 1024)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(s.recv(1), b"")
        s.close()
        wait_until(lambda: len(self.server.received) > before, TIMEOUT, what="server saw EOF")
        self.assertIn(hashlib.sha256(payload).hexdigest(), self.server.received[before:])

    def test_byte_counters(self):
        def total(name):
            return self.skiff.stats().get(f"tcp.tcp_in.{name}", 0)

        rx, tx, cx = (total("downstream_cx_rx_bytes_total"), total("downstream_cx_tx_bytes_total"),
                      total("downstream_cx_total"))
        s = connect(self.skiff.port("plain"))
        s.sendall(b"E" + b"x" * 999)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(s), b"x" * 999)
        s.close()
        wait_until(lambda: total("downstream_cx_total") == cx + 1, TIMEOUT)
        self.assertEqual(total("downstream_cx_rx_bytes_total"), rx + 1000)
        self.assertEqual(total("downstream_cx_tx_bytes_total"), tx + 999)

    def test_weighted_clusters_reach_both(self):
        seen = set()
        for _ in range(60):
            s = connect(self.skiff.port("weighted"))
            s.sendall(b"I")
            seen.add(read_to_eof(s))
            s.close()
            if seen == {b"one", b"two"}:
                break
        self.assertEqual(seen, {b"one", b"two"})

    def test_connect_failure_closes_downstream(self):
        fails = self.skiff.stat("cluster.dead.upstream_cx_connect_fail") or 0
        s = connect(self.skiff.port("refused"))
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        s.close()
        self.assertEqual(data, b"")  # Nothing was sent before the close.
        # max_connect_attempts: 2: a second connect was tried.
        wait_until(lambda: self.skiff.stat("cluster.dead.upstream_cx_connect_fail") >= fails + 2,
                   TIMEOUT, what="two connect failures")

    def test_missing_cluster_closes_downstream(self):
        s = connect(self.skiff.port("missing"))
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        s.close()
        self.assertEqual(data, b"")
        wait_until(lambda: self.skiff.stat("tcp.tcp_missing.downstream_cx_no_route") == 1, TIMEOUT)

    def test_idle_timeout_closes_both(self):
        s = connect(self.skiff.port("idle"))
        s.sendall(b"Ehello")
        self.assertEqual(s.recv(5), b"hello")
        # Then nothing moves: the idle timeout closes the connection.
        self.assertEqual(read_to_eof(s), b"")
        s.close()
        wait_until(lambda: self.skiff.stat("tcp.tcp_idle.idle_timeout") == 1, TIMEOUT)

    def test_max_downstream_connection_duration(self):
        s = connect(self.skiff.port("duration"))
        s.sendall(b"Ehello")
        self.assertEqual(s.recv(5), b"hello")
        self.assertEqual(read_to_eof(s), b"")
        s.close()
        wait_until(lambda: self.skiff.stat(
            "tcp.tcp_duration.max_downstream_connection_duration") == 1, TIMEOUT)
        self.assertEqual(self.skiff.stat("tcp.tcp_duration.idle_timeout"), 0)


class TcpProxyAccessLogTest(SkiffTestCase):
    def test_one_line_per_connection(self):
        server = TcpServer()
        self.addCleanup(server.stop)
        dead = h.ReservedPort()
        self.addCleanup(dead.close)
        tmp = tempfile.mkdtemp(prefix="skiff-tcp-log-")
        log_path = os.path.join(tmp, "access.log")
        fmt = ("%UPSTREAM_CLUSTER% %UPSTREAM_HOST% %BYTES_RECEIVED% %BYTES_SENT% "
               "%RESPONSE_FLAGS% %DOWNSTREAM_REMOTE_ADDRESS%\n")

        def logged(cluster_name, stat_prefix):
            return tcp_proxy(stat_prefix, cluster_name, access_log=[{
                "name": "envoy.access_loggers.file",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.access_loggers."
                                          "file.v3.FileAccessLog",
                                 "path": log_path,
                                 "log_format": {"text_format_source": {"inline_string": fmt}}}}])

        skiff = self.start_skiff(bootstrap(
            [tcp_listener("ok", logged("upstream", "tcp_ok")),
             tcp_listener("fail", logged("dead", "tcp_fail")),
             tcp_listener("none", logged("missing", "tcp_none"))],
            [cluster("upstream", [(LOCALHOST, server.port)]),
             cluster("dead", [(LOCALHOST, dead.port)])]))
        s = connect(skiff.port("ok"))
        s.sendall(b"Ehello")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(s), b"hello")
        ok_peer = "%s:%d" % s.getsockname()
        s.close()
        for name in ("fail", "none"):
            s = connect(skiff.port(name))
            try:
                s.recv(10)
            except ConnectionResetError:
                pass
            s.close()

        def lines():
            try:
                with open(log_path) as f:
                    out = f.read().splitlines()
            except FileNotFoundError:
                return None
            return out if len(out) >= 3 else None

        got = sorted(wait_until(lines, TIMEOUT, what="three access log lines"))
        self.assertEqual(got, sorted([
            f"upstream 127.0.0.1:{server.port} 6 5 - {ok_peer}",
            f"dead 127.0.0.1:{dead.port} 0 0 UF " + got[0].split()[-1],
            "missing - 0 0 NC " + got[1].split()[-1],
        ]))


class TcpProxyOverflowTest(SkiffTestCase):
    def test_overflow_closes_downstream_and_a_waiter_goes_on(self):
        # One upstream connection (max_connections) and one waiter
        # (max_pending_requests) per worker: a third connection overflows and
        # is closed without a byte; the waiter gets the connection when the
        # first one ends.
        server = TcpServer()
        self.addCleanup(server.stop)
        skiff = self.start_skiff(bootstrap(
            [tcp_listener("full", tcp_proxy("tcp_full", "full"))],
            [cluster("full", [(LOCALHOST, server.port)], extra={"circuit_breakers": {
                "thresholds": [{"max_connections": 1, "max_pending_requests": 1}]}})]),
            concurrency=1)
        port = skiff.port("full")
        first = connect(port)
        first.sendall(b"Efirst")
        self.assertEqual(first.recv(5), b"first")
        waiter = connect(port)
        wait_until(lambda: skiff.stat("cluster.full.upstream_rq_pending_active") == 1, TIMEOUT,
                   what="the second connection waiting for the pool")
        third = connect(port)
        try:
            data = third.recv(100)
        except ConnectionResetError:
            data = b""
        third.close()
        self.assertEqual(data, b"")
        wait_until(lambda: skiff.stat("cluster.full.upstream_rq_pending_overflow") == 1, TIMEOUT)
        first.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(first), b"")
        first.close()
        waiter.sendall(b"Ewaited")
        waiter.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(waiter), b"waited")
        waiter.close()


class TcpProxyTlsTest(SkiffTestCase):
    def test_tls_chain_relays_plaintext_upstream(self):
        certs = h.Certificates()
        self.addCleanup(certs.cleanup)
        cert, key = certs.leaf("tcp.example.com")
        server = TcpServer()
        self.addCleanup(server.stop)
        skiff = self.start_skiff(bootstrap(
            [tcp_listener("tls", tcp_proxy("tcp_tls"), h.downstream_tls(cert, key))],
            [cluster("upstream", [(LOCALHOST, server.port)])]))
        ctx = ssl.create_default_context(cafile=certs.ca)
        payload = os.urandom(2 * 1024 * 1024)
        received = hashlib.sha256()
        with socket.create_connection((LOCALHOST, skiff.port("tls")), timeout=TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname="tcp.example.com") as s:
                # One thread sends and receives: an OpenSSL connection is not
                # safe to read and write from two threads at once (a reader
                # thread beside sendall once garbled the bytes under load).
                s.setblocking(False)
                out = memoryview(b"E" + payload)
                sent = count = 0
                deadline = time.monotonic() + TIMEOUT
                while count < len(payload):
                    self.assertLess(time.monotonic(), deadline, f"{count} bytes back")
                    want_write = [s] if sent < len(out) else []
                    readable, writable, _ = select.select([s], want_write, [], 1)
                    if writable:
                        try:
                            sent += s.send(out[sent:sent + 65536])
                        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                            pass
                    while readable or s.pending():
                        readable = []
                        try:
                            data = s.recv(65536)
                        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                            break
                        self.assertTrue(data, f"closed after {count} bytes")
                        received.update(data)
                        count += len(data)
        self.assertEqual(received.hexdigest(), hashlib.sha256(payload).hexdigest())
        wait_until(lambda: skiff.stat("tcp.tcp_tls.downstream_cx_rx_bytes_total") == len(payload) + 1,
                   TIMEOUT, what="every byte counted")


class TcpProxyOriginalDstTest(SkiffTestCase):
    def test_redirected_connection_reaches_its_original_destination(self):
        # Sidecar passthrough: iptables sends the client's connection to
        # skiff; original_dst restores where it was going, and the
        # ORIGINAL_DST cluster connects there.
        import test_original_dst as od  # Its iptables helper (skips without root).

        server = TcpServer("original")
        self.addCleanup(server.stop)
        skiff = self.start_skiff(bootstrap(
            [tcp_listener("sidecar", tcp_proxy("tcp_sidecar", "passthrough"),
                          listener_filters=[od.ORIGINAL_DST])],
            [od.original_dst_cluster()]))
        rule = od.Redirect(LOCALHOST, server.port, skiff.port("sidecar"))
        self.addCleanup(rule.close)
        s = socket.socket()
        s.settimeout(TIMEOUT)
        s.bind((od.CLIENT_SOURCE, 0))
        s.connect((LOCALHOST, server.port))
        s.sendall(b"Epassthrough")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(s), b"passthrough")
        s.close()
        wait_until(lambda: skiff.stat("tcp.tcp_sidecar.downstream_cx_total") == 1, TIMEOUT)


class TcpProxyConfigTest(unittest.TestCase):
    def validate(self, config):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(bootstrap([tcp_listener("l", config)],
                              [cluster("upstream", [(LOCALHOST, 1)])]))
        self.addCleanup(os.unlink, f.name)
        return run_skiff(["--mode", "validate", "-c", f.name])

    def test_unsupported_field_is_refused_by_path(self):
        rc, out = self.validate(tcp_proxy(hash_policy=[{"source_ip": {}}]))
        self.assertNotEqual(rc, 0)
        self.assertIn("static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                      "hash_policy", out)

    def test_access_log_fields_are_refused_by_path(self):
        rc, out = self.validate(tcp_proxy(access_log_flush_interval="5s"))
        self.assertNotEqual(rc, 0)
        self.assertIn("typed_config.access_log_flush_interval", out)

    def test_supported_fields_validate(self):
        rc, out = self.validate(tcp_proxy(idle_timeout="10s", max_connect_attempts=3,
                                          max_downstream_connection_duration="60s"))
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
