"""Large HTTP/2 uploads to upstreams slower than the client: skiff's memory
stays bounded by its flow-control windows and buffer limits (backpressure from
the upstream's socket, or its HTTP/2 window, back to the client's window),
read from /proc, never timed.

The client is curl (h2c with prior knowledge) streaming stdin, fed from a
generator through a pipe; the upstream reads at a capped rate: the Python
backend's /slow over HTTP/1.1, or nginx over h2c passing the body on
unbuffered to that same /slow. The size is SKIFF_H2_UPLOAD_MIB (default 1024,
256 in the sanitizer stage, where everything runs several times slower)."""

import os
import subprocess
import threading
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

SANITIZED = os.environ.get("SKIFF_SANITIZED", "") not in ("", "0", "OFF", "FALSE")
SIZE = int(os.environ.get("SKIFF_H2_UPLOAD_MIB", "256" if SANITIZED else "1024")) << 20
RATE_MIB = 128  # What the upstream reads per second: a GiB takes 8 s.

if SANITIZED and "quarantine_size_mb" not in os.environ.get("ASAN_OPTIONS", ""):
    # ASan keeps freed memory in quarantine (256 MiB by default) to catch use
    # after free, and nghttp2 allocates and frees around every frame: RSS
    # would measure the quarantine (30-50 MiB here), not skiff's buffers.
    # skiff inherits this from the harness.
    os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [
        os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=4",
        "thread_local_quarantine_size_kb=256"]))

# The downstream windows (stream and connection) are 1 MiB instead of
# Envoy's 256 MiB defaults, which would let a client park 256 MiB in skiff.
WINDOW = 1 << 20
HCM_HTTP2 = {"http2_protocol_options": {"initial_stream_window_size": WINDOW,
                                        "initial_connection_window_size": WINDOW}}
# What skiff may hold, all told: the client's window of received DATA (1 MiB,
# in 16 KiB read slabs that a frame may straddle: 2 MiB of slabs), the
# upstream write queue up to its high-water mark (per_connection_buffer_limit_bytes,
# 1 MiB) plus one delivery of a window that arrives above it (1 MiB more,
# 2 MiB of slabs again: 4 MiB), and for an HTTP/2 upstream the stream's own
# queue before framing (1 MiB watermark plus a window: 4 MiB). About 10 MiB;
# 16 MiB leaves room for the allocator (2.3 MiB was measured). With Envoy's
# default windows the same uploads grew skiff by 370 to 500 MiB.
BOUND_MIB = 16

H2_UPSTREAM = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}


def proc_status(pid):
    """VmRSS and VmHWM of pid, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


class H2UploadTest(h.SkiffTestCase):
    def upload(self, skiff, path):
        """Streams SIZE bytes through curl -T - to path, sampling skiff's RSS;
        returns (curl rc, body, stderr, growth in MiB, what was seen)."""
        port = skiff.port("ingress")
        # Warm up: the pools, the slabs of one upload, the stats.
        rc, out, err = h.curl("--http2-prior-knowledge", "-m", "30", "--data-binary", "@-",
                              f"http://{LOCALHOST}:{port}{path}", input_bytes=b"x" * (4 << 20))
        self.assertEqual((rc, out), (0, b'{"length": %d}' % (4 << 20)), err)
        pid = skiff.proc.pid
        before = proc_status(pid)
        peak = [before["VmRSS"]]
        done = threading.Event()

        def sample():
            while not done.wait(0.05):
                try:
                    peak[0] = max(peak[0], proc_status(pid)["VmRSS"])
                except OSError:
                    return

        curl = subprocess.Popen(
            ["curl", "-sS", "--http2-prior-knowledge", "-m", "300", "-T", "-",
             f"http://{LOCALHOST}:{port}{path}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def feed():
            block = b"\xab" * (1 << 20)
            try:
                for _ in range(SIZE // len(block)):
                    curl.stdin.write(block)
            except BrokenPipeError:
                pass
            finally:
                try:
                    curl.stdin.close()
                except BrokenPipeError:
                    pass

        sampler = threading.Thread(target=sample, daemon=True)
        feeder = threading.Thread(target=feed, daemon=True)
        sampler.start()
        feeder.start()
        try:
            out = curl.stdout.read()
            err = curl.stderr.read().decode("utf-8", "replace")
            rc = curl.wait(timeout=300)
        finally:
            done.set()
            sampler.join(timeout=5)
            feeder.join(timeout=5)
            if curl.poll() is None:
                curl.kill()
                curl.wait()
            curl.stdout.close()
            curl.stderr.close()
        after = proc_status(pid)
        # VmHWM covers what sampling misses, when the upload set a new peak.
        top = max(peak[0], after["VmRSS"],
                  after["VmHWM"] if after["VmHWM"] > before["VmHWM"] else 0)
        growth = (top - before["VmRSS"]) / 1024
        seen = f"before {before}, sampled peak {peak[0]} KiB, after {after}"
        return rc, out, err, growth, seen

    def check(self, skiff, path):
        rc, out, err, growth, seen = self.upload(skiff, path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b'{"length": %d}' % SIZE)
        self.assertLessEqual(growth, BOUND_MIB,
                             f"RSS grew by {growth:.1f} MiB during a {SIZE >> 20} MiB upload ({seen})")

    def test_h2_to_slow_h1_upstream(self):
        backend = self.start_backend()
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="backend")], hcm_extra=HCM_HTTP2)],
            [h.cluster("backend", [(LOCALHOST, backend.port)])]), concurrency=1)
        self.check(skiff, f"/slow?rate={RATE_MIB}")

    def test_h2_to_slow_h2c_upstream(self):
        # nginx speaks h2c to skiff and passes the body on as it comes
        # (proxy_request_buffering off) to the slow backend: nginx's HTTP/2
        # window is what holds skiff back.
        backend = self.start_backend()
        nginx = h.Nginx(http2=True, locations=f"""
    location /slow {{
      client_max_body_size 0;
      proxy_request_buffering off;
      proxy_http_version 1.1;
      proxy_pass http://{LOCALHOST}:{backend.port};
    }}""")
        self.addCleanup(nginx.stop)
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="nginx")], hcm_extra=HCM_HTTP2)],
            [h.cluster("nginx", [(LOCALHOST, nginx.port)],
                       extra={"typed_extension_protocol_options": H2_UPSTREAM})]), concurrency=1)
        self.check(skiff, f"/slow?rate={RATE_MIB}")


if __name__ == "__main__":
    unittest.main()
