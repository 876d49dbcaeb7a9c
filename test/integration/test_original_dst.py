"""Transparent interception, as a sidecar gets it: an iptables nat rule
REDIRECTs a client's connection to skiff's listener, and the listener's
original_dst filter (envoy.filters.listener.original_dst) restores where the
client meant to connect as the connection's local address: the access log's
%DOWNSTREAM_LOCAL_ADDRESS% shows it.

The rules match only connections from a source address no other test uses
(CLIENT_SOURCE) to a port reserved by the test, carry a comment naming this
process, and are removed when the test ends. Without root or netfilter the
iptables tests are skipped, saying why; CI runs them as root."""

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

# Clients bind this source address, so that the rules never catch skiff's
# own upstream connections (from 127.0.0.1) nor another test's.
CLIENT_SOURCE = "127.0.0.77"
ORIGINAL_DST = {"name": "envoy.filters.listener.original_dst",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener."
                                          "original_dst.v3.OriginalDst"}}
LOG_FORMAT = {"id": "%REQ(X-TEST-ID)%", "code": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%",
              "local": "%DOWNSTREAM_LOCAL_ADDRESS%", "cluster": "%UPSTREAM_CLUSTER%",
              "host": "%UPSTREAM_HOST%"}


class Redirect:
    """An iptables nat OUTPUT rule: TCP from CLIENT_SOURCE to dst_ip:dst_port
    goes to to_port on this host instead (REDIRECT)."""

    count = 0

    def __init__(self, dst_ip, dst_port, to_port):
        Redirect.count += 1
        self.rule = ["OUTPUT", "-s", CLIENT_SOURCE, "-d", dst_ip, "-p", "tcp", "--dport",
                     str(dst_port), "-m", "comment", "--comment",
                     f"skiff-test-{os.getpid()}-{Redirect.count}", "-j", "REDIRECT",
                     "--to-ports", str(to_port)]
        if os.geteuid() != 0:
            raise unittest.SkipTest("iptables rules need root")
        if not shutil.which("iptables"):
            raise unittest.SkipTest("iptables is not installed (.ci/setup installs it)")
        r = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-A", *self.rule],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise unittest.SkipTest(f"iptables cannot add a nat rule here: {r.stderr.strip()}")

    def close(self):
        subprocess.run(["iptables", "-w", "5", "-t", "nat", "-D", *self.rule],
                       capture_output=True, timeout=30, check=True)


def request(ip, port, test_id, path="/", headers=None):
    """A GET from CLIENT_SOURCE to ip:port; returns (status, body)."""
    conn = http.client.HTTPConnection(ip, port, timeout=10, source_address=(CLIENT_SOURCE, 0))
    try:
        conn.request("GET", path, headers={"x-test-id": test_id, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def listener(name, cluster, log_path, filters=(ORIGINAL_DST,), **kw):
    l = h.listener(name, [h.route("/", cluster=cluster)], hcm_extra={"access_log": [
        {"name": "envoy.access_loggers.file",
         "typed_config": {
             "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
             "path": log_path, "log_format": {"json_format": LOG_FORMAT}}}]}, **kw)
    if filters:
        l["listener_filters"] = list(filters)
    return l


class OriginalDstTestCase(h.SkiffTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="skiff-original-dst-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.log_path = os.path.join(self.dir, "access.json")

    def redirect(self, dst_ip, dst_port, to_port):
        r = Redirect(dst_ip, dst_port, to_port)
        self.addCleanup(r.close)
        return r

    def reserved_port(self):
        p = h.ReservedPort()  # Nothing listens there: only a redirect reaches skiff.
        self.addCleanup(p.close)
        return p.port

    def log_line(self, test_id):
        def find():
            try:
                with open(self.log_path) as f:
                    for line in f:
                        entry = json.loads(line)
                        if entry.get("id") == test_id:
                            return entry
            except FileNotFoundError:
                pass
            return None

        return h.wait_until(find, 10, what=f"the access log line of {test_id}")


class ListenerFilterTest(OriginalDstTestCase):
    def test_redirected_connection_has_its_original_destination_as_local_address(self):
        backend = self.start_backend()
        skiff = self.start_skiff(h.bootstrap(
            [listener("ingress", "backend", self.log_path)],
            [h.cluster("backend", [(LOCALHOST, backend.port)])]))
        port = skiff.port("ingress")
        original = self.reserved_port()
        self.redirect(LOCALHOST, original, port)
        status, body = request(LOCALHOST, original, "redirected")
        self.assertEqual((status, body), (200, b"backend:/\n"))
        self.assertEqual(self.log_line("redirected")["local"], f"{LOCALHOST}:{original}")
        # Not redirected: the listener's own address stays.
        self.assertEqual(request(LOCALHOST, port, "direct")[0], 200)
        self.assertEqual(self.log_line("direct")["local"], f"{LOCALHOST}:{port}")

    def test_without_the_filter_the_local_address_is_the_listeners(self):
        backend = self.start_backend()
        skiff = self.start_skiff(h.bootstrap(
            [listener("ingress", "backend", self.log_path, filters=())],
            [h.cluster("backend", [(LOCALHOST, backend.port)])]))
        port = skiff.port("ingress")
        original = self.reserved_port()
        self.redirect(LOCALHOST, original, port)
        self.assertEqual(request(LOCALHOST, original, "plain")[0], 200)
        self.assertEqual(self.log_line("plain")["local"], f"{LOCALHOST}:{port}")

    def test_wildcard_listener(self):
        # A listener on 0.0.0.0 compares the original port with its own, and
        # on the same port the addresses (a getsockname).
        backend = self.start_backend()
        skiff = self.start_skiff(h.bootstrap(
            [listener("ingress", "backend", self.log_path, address="0.0.0.0")],
            [h.cluster("backend", [(LOCALHOST, backend.port)])]))
        port = skiff.port("ingress")
        original = self.reserved_port()
        self.redirect(LOCALHOST, original, port)
        self.assertEqual(request(LOCALHOST, original, "wild")[0], 200)
        self.assertEqual(self.log_line("wild")["local"], f"{LOCALHOST}:{original}")
        # Another loopback address, the listener's own port: redirected to
        # 127.0.0.1, so it differs from the address the connection reached.
        self.redirect("127.0.0.9", port, port)
        self.assertEqual(request("127.0.0.9", port, "same-port")[0], 200)
        self.assertEqual(self.log_line("same-port")["local"], f"127.0.0.9:{port}")
        self.assertEqual(request(LOCALHOST, port, "wild-direct")[0], 200)
        self.assertEqual(self.log_line("wild-direct")["local"], f"{LOCALHOST}:{port}")


if __name__ == "__main__":
    unittest.main()
