"""Cluster.upstream_bind_config, as Istio's inbound passthrough uses it:
upstream connections (and active health checks) leave from the configured
source address, which the upstream sees as its peer."""

import os
import shutil
import tempfile

import skiffharness as h
from skiffharness import LOCALHOST

SOURCE = "127.0.0.6"  # Istio's inbound passthrough source address.


class PeerRecordingServer(h.ThreadedTcpServer):
    """Answers each HTTP/1.1 request with 200 and records the peer address
    of every connection it accepts."""

    def __init__(self):
        self.peers = []
        super().__init__()

    def accepted(self, peer):
        self.peers.append(peer[0])

    def serve(self, conn):
        with conn:
            data = b""
            while True:
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return
                if not chunk:
                    return
                data += chunk
                while b"\r\n\r\n" in data:
                    _, data = data.split(b"\r\n\r\n", 1)
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")


class UpstreamBindTest(h.SkiffTestCase):
    def server(self):
        s = PeerRecordingServer()
        self.addCleanup(s.stop)
        return s

    def test_upstream_connections_and_health_checks_leave_from_the_source_address(self):
        upstream = self.server()
        log_dir = tempfile.mkdtemp(prefix="skiff-bind-")
        self.addCleanup(shutil.rmtree, log_dir, True)
        log_path = os.path.join(log_dir, "access.json")
        cluster = h.cluster("web", [(LOCALHOST, upstream.port)], extra={
            "upstream_bind_config": {"source_address": {"address": SOURCE, "port_value": 0}},
            "health_checks": [{"timeout": "2s", "interval": "0.2s", "unhealthy_threshold": 1,
                               "healthy_threshold": 1, "no_traffic_interval": "0.2s",
                               "http_health_check": {"path": "/healthz"}}]})
        log = {"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": log_path, "log_format": {"json_format": {
                "id": "%REQ(X-TEST-ID)%", "local": "%UPSTREAM_LOCAL_ADDRESS%"}}}}
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="web")], hcm_extra={"access_log": [log]})],
            [cluster]))
        status, _, _ = h.http_request(skiff.port(), path="/x", headers={"x-test-id": "bound"})
        self.assertEqual(status, 200)
        local = h.access_log_entry(log_path, "bound")["local"]
        self.assertEqual(local.rsplit(":", 1)[0], SOURCE)
        # The request's connection and the health checks' all came from it.
        self.assertGreaterEqual(len(upstream.peers), 2)
        self.assertEqual(set(upstream.peers), {SOURCE})

    def test_source_address_must_be_an_ip(self):
        cluster = h.cluster("web", [(LOCALHOST, 1)], extra={
            "upstream_bind_config": {"source_address": {"address": "localhost"}}})
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(h.bootstrap([h.listener("ingress", [h.route("/", cluster="web")])], [cluster]))
            f.flush()
            rc, result = h.run_skiff(["--mode", "validate", "-c", f.name])
        self.assertNotEqual(rc, 0)
        self.assertIn("static_resources.clusters[0].upstream_bind_config.source_address.address: "
                      "'localhost' is not an IP address", result)
