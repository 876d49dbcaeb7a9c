"""The protocol matrix: downstream {h1, h2c, h1+TLS, h2+TLS} x upstream {h1, h2c,
h2+TLS}, with real clients (curl --http1.1, curl --http2-prior-knowledge, curl
--http2 over TLS with ALPN, nghttp) and a real upstream (nginx speaking
HTTP/1.1, h2c and h2 over TLS).

One nginx serves the three upstream protocols on three ports, and one skiff
serves every cell: a plaintext listener (codec AUTO: HTTP/1.1, or h2c by its
preface) and a TLS listener (ALPN h2 or http/1.1), each routing /h1/, /h2c/ and
/h2tls/ to the cluster of that upstream protocol. Each cell checks a GET of a
static file, a 1 MiB POST (its SHA-256 computed behind nginx) and the response
headers (nginx names the protocol and scheme it was spoken to); a second test
per cell checks that nginx's trailer reaches the client (HTTP/1.1 clients ask
for it with TE: trailers)."""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

GET_SIZE = 256 * 1024
POST_BODY = bytes((i * 131 + 7) & 0xFF for i in range(1 << 20))

UPSTREAMS = {  # route prefix -> what nginx reports as ($server_protocol, $scheme)
    "h1": ("HTTP/1.1", "http"),
    "h2c": ("HTTP/2.0", "http"),
    "h2tls": ("HTTP/2.0", "https"),
}

# Downstream: (curl protocol flag, TLS listener, curl's %{http_version}).
DOWNSTREAMS = {
    "h1": ("--http1.1", False, "1.1"),
    "h2c": ("--http2-prior-knowledge", False, "2"),
    "h1tls": ("--http1.1", True, "1.1"),
    "h2tls": ("--http2", True, "2"),
}

# Trailers over HTTP/1.1 are off by default, in Envoy and in skiff: the HCM
# and the HTTP/1.1 cluster turn them on with http_protocol_options.enable_trailers.
# An HTTP/1.1 client that sends TE: trailers then gets a chunked response
# that carries them, whatever length an h2 upstream announced.
HTTP1_TRAILERS = {"http_protocol_options": {"enable_trailers": True}}

# Tests known to fail, by name, with what skiff lacks.
EXPECTED_FAILURES = {}


class MatrixNginx:
    """One nginx, three server blocks on the same content: HTTP/1.1, h2c (prior
    knowledge) and h2 over TLS. Every response carries x-upstream-protocol
    ($server_protocol), x-upstream-scheme and x-matrix: nginx, and ends with the trailer
    x-trailer-check: t-value (chunked over HTTP/1.1). /sha passes a POST to
    the Python backend, which answers its length and SHA-256."""

    def __init__(self, cert, key, sha_port):
        if not os.access(h.NGINX_BIN, os.X_OK):
            raise unittest.SkipTest("nginx not installed")
        self.tmp = tempfile.mkdtemp(prefix="nginx-matrix-")
        os.chmod(self.tmp, 0o755)  # nginx workers run unprivileged when started as root
        root = os.path.join(self.tmp, "html")
        os.mkdir(root)
        with open(os.path.join(root, "get"), "wb") as f:
            f.write(h.Nginx.body_of(GET_SIZE))
        self.proc = None
        last_err = ""
        for _ in range(5):  # each try on ports of its own
            # Held while nginx runs, so that no other bind(0) takes one before
            # nginx listens on it (nginx sets SO_REUSEADDR).
            self.reserved = [h.ReservedPort() for _ in UPSTREAMS]
            self.ports = {name: r.port for name, r in zip(UPSTREAMS, self.reserved)}
            conf = os.path.join(self.tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(f"""
worker_processes 1;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log {self.tmp}/access.log;
  client_body_temp_path {self.tmp}/client_body;
  proxy_temp_path {self.tmp}/proxy;
  fastcgi_temp_path {self.tmp}/fastcgi;
  uwsgi_temp_path {self.tmp}/uwsgi;
  scgi_temp_path {self.tmp}/scgi;
  client_max_body_size 8m;
  server {{
    listen 127.0.0.1:{self.ports["h1"]};
    listen 127.0.0.1:{self.ports["h2c"]} http2;
    listen 127.0.0.1:{self.ports["h2tls"]} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {root};
    default_type application/octet-stream;
    add_header x-upstream-protocol $server_protocol always;
    add_header x-upstream-scheme $scheme always;
    add_header x-matrix nginx always;
    add_trailer x-trailer-check t-value;
    location = /sha {{
      proxy_pass http://127.0.0.1:{sha_port}/sha;
      proxy_http_version 1.1;
    }}
  }}
}}
""")
            self.proc = subprocess.Popen(
                [h.NGINX_BIN, "-p", self.tmp, "-c", conf, "-g", "daemon off;"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                start_new_session=True)
            try:
                h.wait_until(lambda: self.proc.poll() is not None or self._listening(), 5,
                             what="nginx to listen")
            except TimeoutError:
                pass
            if self.proc.poll() is None and self._listening():
                return
            last_err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
            self._kill()
            self.release_ports()
        shutil.rmtree(self.tmp, ignore_errors=True)
        raise RuntimeError(f"nginx did not start: {last_err}")

    def _listening(self):
        try:
            for port in self.ports.values():
                socket.create_connection((LOCALHOST, port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # nginx's fast shutdown stops its workers too
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the group
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=5)
        self.proc.stderr.close()

    def release_ports(self):
        for r in self.reserved:
            r.close()

    def stop(self):
        self._kill()
        self.release_ports()
        shutil.rmtree(self.tmp, ignore_errors=True)


def routes():
    return [{"match": {"prefix": f"/{name}/"},
             "route": {"cluster": f"nginx_{name}", "prefix_rewrite": "/"}} for name in UPSTREAMS]


H1_OPTIONS = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http_protocol_options": {"enable_trailers": True}},
    }
}

H2_OPTIONS = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}


class MatrixTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = h.Certificates()
        cls.addClassCleanup(cls.certs.cleanup)
        cert, key = cls.certs.leaf("localhost")
        cls.backend = cls.class_backend()
        cls.nginx = MatrixNginx(cert, key, cls.backend.port)
        cls.addClassCleanup(cls.nginx.stop)
        tls = h.listener("tls", routes(), stat_prefix="tls", hcm_extra=HTTP1_TRAILERS)
        tls["filter_chains"][0]["transport_socket"] = h.downstream_tls(cert, key,
                                                                      alpn=["h2", "http/1.1"])
        ports = cls.nginx.ports
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("plain", routes(), stat_prefix="plain", hcm_extra=HTTP1_TRAILERS), tls],
            [h.cluster("nginx_h1", [(LOCALHOST, ports["h1"])],
                       extra={"typed_extension_protocol_options": H1_OPTIONS}),
             h.cluster("nginx_h2c", [(LOCALHOST, ports["h2c"])],
                       extra={"typed_extension_protocol_options": H2_OPTIONS}),
             h.cluster("nginx_h2tls", [(LOCALHOST, ports["h2tls"])],
                       extra={"typed_extension_protocol_options": H2_OPTIONS,
                              "transport_socket": h.upstream_tls(cls.certs.ca, "localhost")})]))
        cls.ports = {"plain": cls.skiff.port("plain"), "tls": cls.skiff.port("tls")}

    def url(self, down, up, path):
        tls = DOWNSTREAMS[down][1]
        scheme, port = ("https", self.ports["tls"]) if tls else ("http", self.ports["plain"])
        return f"{scheme}://{LOCALHOST}:{port}/{up}{path}"

    def curl(self, down, up, path, *args, input_bytes=None):
        """curl in the cell's downstream protocol: (http version, status,
        headers then trailers as [(name, value)], body)."""
        flag, tls, _ = DOWNSTREAMS[down]
        with tempfile.NamedTemporaryFile() as head:
            rc, out, err = h.curl(flag, "-m", "30", "-D", head.name, "-w",
                                  "\n%{http_version} %{http_code}",
                                  *(["--cacert", self.certs.ca] if tls else []), *args,
                                  self.url(down, up, path), input_bytes=input_bytes)
            self.assertEqual(rc, 0, err)
            with open(head.name, "rb") as f:
                lines = f.read().decode("latin-1").splitlines()
        body, _, tail = out.rpartition(b"\n")
        version, code = tail.decode().split()
        headers = []
        for line in lines:
            name, sep, value = line.partition(":")
            if sep and not line.startswith("HTTP/"):
                headers.append((name.strip().lower(), value.strip()))
        return version, int(code), headers, body

    def check_cell(self, down, up):
        want_version = DOWNSTREAMS[down][2]
        # GET: a static file, its headers and the protocol nginx was spoken to.
        version, code, headers, body = self.curl(down, up, "/get")
        self.assertEqual((version, code), (want_version, 200))
        self.assertEqual(hashlib.sha256(body).hexdigest(),
                         hashlib.sha256(h.Nginx.body_of(GET_SIZE)).hexdigest())
        names = dict(headers)
        self.assertEqual((names.get("x-upstream-protocol"), names.get("x-upstream-scheme")),
                         UPSTREAMS[up])
        self.assertEqual(names.get("x-matrix"), "nginx")
        self.assertEqual(names.get("content-type"), "application/octet-stream")
        self.assertEqual(names.get("server"), "skiff")
        # POST: 1 MiB, hashed behind nginx.
        version, code, headers, body = self.curl(
            down, up, "/sha", "-X", "POST", "-H", "content-type: application/octet-stream",
            "--data-binary", "@-", input_bytes=POST_BODY)
        self.assertEqual((version, code), (want_version, 200), body[:200])
        self.assertEqual(json.loads(body), {"length": len(POST_BODY),
                                            "sha256": hashlib.sha256(POST_BODY).hexdigest()})
        self.assertEqual(dict(headers).get("x-upstream-protocol"), UPSTREAMS[up][0])

    def trailers(self, down, up):
        """The trailer fields the client received after the body: nghttp for an
        h2 downstream, curl asking for trailers (TE: trailers) for HTTP/1.1."""
        if not down.startswith("h2"):
            version, code, headers, body = self.curl(down, up, "/get", "-H", "TE: trailers")
            self.assertEqual((version, code), ("1.1", 200))
            self.assertEqual(len(body), GET_SIZE)
            return dict(headers)
        if not shutil.which("nghttp"):
            self.skipTest("nghttp not installed")
        p = subprocess.run(["nghttp", "-nv", "-t", "20", self.url(down, up, "/get")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        # Header fields after the first DATA frame are trailers.
        after_data = out.split("recv DATA frame", 1)
        self.assertEqual(len(after_data), 2, out)
        return dict(re.findall(r"recv \(stream_id=\d+\) ([^:\s][^:]*): (.*)", after_data[1]))


def _make_cell_test(down, up):
    def test(self):
        self.check_cell(down, up)
    test.__doc__ = f"{down} downstream, {up} upstream: GET, 1 MiB POST, response headers"
    return test


def _make_trailer_test(down, up):
    def test(self):
        trailers = self.trailers(down, up)
        self.assertEqual(trailers.get("x-trailer-check"), "t-value")
    test.__doc__ = f"{down} downstream, {up} upstream: nginx's trailer reaches the client"
    return test


for _down in DOWNSTREAMS:
    for _up in UPSTREAMS:
        for _name, _fn in ((f"test_{_down}_to_{_up}", _make_cell_test(_down, _up)),
                           (f"test_trailers_{_down}_to_{_up}", _make_trailer_test(_down, _up))):
            if _name in EXPECTED_FAILURES:
                _fn = unittest.expectedFailure(_fn)
            setattr(MatrixTest, _name, _fn)


if __name__ == "__main__":
    unittest.main()
