"""Load and memory: wrk through skiff to nginx without errors, and a 1 GiB
upload streamed through skiff with bounded memory (backpressure)."""

import re
import shutil
import socket
import subprocess
import threading
import time
import unittest

import skiffharness as h
from skiffharness import LOCALHOST


class WrkTest(h.SkiffTestCase):
    def test_wrk_no_errors(self):
        if not shutil.which("wrk"):
            self.skipTest("wrk not installed")
        nginx = self.start_nginx()
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="nginx")])],
            [h.cluster("nginx", [(LOCALHOST, nginx.port)])]))
        port = skiff.port("ingress")
        p = subprocess.run(["wrk", "-t", "2", "-c", "64", "-d", "2s", "--latency",
                            f"http://{LOCALHOST}:{port}/b64"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertNotIn("Non-2xx", out, out)
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if m:
            self.assertEqual(m.groups(), ("0", "0", "0", "0"), out)
        m = re.search(r"(\d+) requests in", out)
        self.assertIsNotNone(m, out)
        requests = int(m.group(1))
        self.assertGreater(requests, 1000, out)
        stats = skiff.stats()
        # wrk stops mid-request, so a few may have been cut short.
        self.assertGreaterEqual(stats["cluster.nginx.upstream_rq_total"], requests)
        self.assertGreaterEqual(stats["http.ingress_http.downstream_rq_total"], requests)
        # 64 downstream connections need at most about 64 upstream ones, however
        # many requests they carry.
        self.assertLessEqual(stats["cluster.nginx.upstream_cx_total"], 2 * 64 + 8, out)
        self.assertEqual(skiff.proc.poll(), None, "skiff died under load")

        # wrk hangs up mid-request at the end: nothing may stay active.
        def settled():
            st = skiff.stats()
            return (st.get("http.ingress_http.downstream_cx_active") == 0
                    and st.get("http.ingress_http.downstream_rq_active") == 0
                    and st.get("cluster.nginx.upstream_rq_active", 0) == 0)

        try:
            h.wait_until(settled, 5, interval=0.1, what="active gauges back to 0 after wrk")
        except TimeoutError:
            self.fail({k: v for k, v in skiff.stats().items() if k.endswith("_active")})


class MemoryTest(h.SkiffTestCase):
    def test_1gib_upload_bounded_rss(self):
        backend = self.start_backend()
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="backend")])],
            [h.cluster("backend", [(LOCALHOST, backend.port)])]), concurrency=1)
        port = skiff.port("ingress")
        # Warm up: a first proxied request allocates the pools.
        self.assertEqual(h.http_request(port, "POST", "/discard", body=b"x" * 65536)[0], 200)
        before = skiff.rss_kib()

        size = 1 << 30
        block = b"\xab" * (1 << 20)
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.wait(0.05):
                try:
                    peak[0] = max(peak[0], skiff.rss_kib())
                except (OSError, AssertionError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            def gen():
                for _ in range(size // len(block)):
                    yield block

            status, _, body = h.http_request(port, "POST", "/discard", body=gen(),
                                             headers={"Content-Length": str(size)}, timeout=120)
        finally:
            done.set()
            sampler.join(timeout=5)
        end = skiff.rss_kib()
        self.assertEqual(status, 200)
        self.assertEqual(body, b'{"length": %d}' % size)
        growth_mib = (max(peak[0], end) - before) / 1024
        self.assertLessEqual(growth_mib, 16, f"RSS grew by {growth_mib:.1f} MiB during a 1 GiB upload "
                                             f"(before {before} KiB, peak {peak[0]} KiB, end {end} KiB)")

    def test_slow_reader_download_bounded_rss(self):
        # The client stops reading while the backend writes 256 MiB: skiff must
        # stop reading from the upstream instead of buffering the response.
        backend = self.start_backend()
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="backend")])],
            [h.cluster("backend", [(LOCALHOST, backend.port)])]), concurrency=1)
        port = skiff.port("ingress")
        self.assertEqual(h.http_request(port, path="/size?n=65536")[0], 200)
        before = skiff.rss_kib()
        size = 256 << 20
        s = socket.create_connection((LOCALHOST, port), timeout=30)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.sendall(b"GET /stream?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
            time.sleep(1.5)  # not reading: the backend keeps writing
            stalled = skiff.rss_kib()
            got = 0
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(65536)
            head, _, rest = head.partition(b"\r\n\r\n")
            self.assertRegex(head, rb"^HTTP/1.1 200 ")
            got = len(rest)
            buf = bytearray(1 << 20)
            while got < size:
                n = s.recv_into(buf)
                self.assertGreater(n, 0, f"closed after {got} of {size} bytes")
                got += n
        finally:
            s.close()
        self.assertEqual(got, size)
        end = skiff.rss_kib()
        growth_mib = (max(stalled, end) - before) / 1024
        self.assertLessEqual(growth_mib, 16, f"RSS grew by {growth_mib:.1f} MiB with a stalled reader "
                                             f"(before {before} KiB, stalled {stalled} KiB, end {end} KiB)")


if __name__ == "__main__":
    unittest.main()
