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
import os
import shutil
import socket
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


def request(ip, port, test_id, path="/", headers=None, with_headers=False):
    """A GET from CLIENT_SOURCE to ip:port; returns (status, body), and the
    response headers with_headers."""
    conn = http.client.HTTPConnection(ip, port, timeout=10, source_address=(CLIENT_SOURCE, 0))
    try:
        conn.request("GET", path, headers={"x-test-id": test_id, **(headers or {})})
        resp = conn.getresponse()
        body = resp.read()
        if with_headers:
            return resp.status, body, {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, body
    finally:
        conn.close()


def original_dst_cluster(name="passthrough", cleanup_interval=None, lb_config=None, extra=None):
    c = {"name": name, "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
         "connect_timeout": "1s"}
    if cleanup_interval:
        c["cleanup_interval"] = cleanup_interval
    if lb_config:
        c["original_dst_lb_config"] = lb_config
    c.update(extra or {})
    return c


def cluster_hosts(skiff, name):
    """The hosts /clusters lists for cluster name."""
    status, body = skiff.admin_get("/clusters")
    assert status == 200, body
    return sorted(line.split("::")[1] for line in body.splitlines()
                  if line.startswith(name + "::") and line.endswith("::health_flags::healthy"))


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
        return h.access_log_entry(self.log_path, test_id)


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


class RedirectedClusterTest(OriginalDstTestCase):
    """An ORIGINAL_DST cluster sends each redirected connection's requests
    where the client meant them to go."""

    def test_each_request_goes_to_its_original_destination(self):
        one, two = self.start_backend("one"), self.start_backend("two")
        skiff = self.start_skiff(h.bootstrap(
            [listener("outbound", "passthrough", self.log_path)], [original_dst_cluster()]))
        port = skiff.port("outbound")
        self.redirect(LOCALHOST, one.port, port)
        self.redirect(LOCALHOST, two.port, port)
        for backend in (one, two, one):
            test_id = f"to-{backend.name}-{len(backend.requests)}"
            status, body, headers = request(LOCALHOST, backend.port, test_id, with_headers=True)
            self.assertEqual((status, body, headers["x-backend"]),
                             (200, b"backend:/\n", backend.name))
            line = self.log_line(test_id)
            self.assertEqual(line["local"], f"{LOCALHOST}:{backend.port}")
            self.assertEqual(line["host"], f"{LOCALHOST}:{backend.port}")
            self.assertEqual(line["cluster"], "passthrough")
        self.assertEqual(len(one.requests), 2)
        self.assertEqual(len(two.requests), 1)
        # Hosts made on demand, once each, shown as Envoy's /clusters does.
        self.assertEqual(cluster_hosts(skiff, "passthrough"),
                         sorted([f"{LOCALHOST}:{one.port}", f"{LOCALHOST}:{two.port}"]))
        stats = skiff.stats()
        self.assertEqual(stats["cluster.passthrough.membership_total"], 2)
        self.assertEqual(stats["cluster.passthrough.upstream_rq_total"], 3)

    def test_connection_to_skiff_itself_has_no_host(self):
        # Not redirected: no original destination, so no host (503, UH), as
        # in Envoy, rather than a connection from skiff to itself.
        skiff = self.start_skiff(h.bootstrap(
            [listener("outbound", "passthrough", self.log_path)], [original_dst_cluster()]))
        status, body = request(LOCALHOST, skiff.port("outbound"), "direct")
        self.assertEqual((status, body), (503, b"no healthy upstream"))
        line = self.log_line("direct")
        self.assertEqual((line["code"], line["flags"]), (503, "UH"))
        self.assertEqual(cluster_hosts(skiff, "passthrough"), [])
        self.assertEqual(skiff.stat("cluster.passthrough.upstream_cx_total"), 0)

    def test_unused_hosts_leave_after_cleanup_interval(self):
        backend = self.start_backend()
        skiff = self.start_skiff(h.bootstrap(
            [listener("outbound", "passthrough", self.log_path)],
            [original_dst_cluster(cleanup_interval="0.1s")]))
        port = skiff.port("outbound")
        self.redirect(LOCALHOST, backend.port, port)
        self.assertEqual(request(LOCALHOST, backend.port, "once")[0], 200)
        # The host stays while used; once a sweep finds it unused, it goes.
        h.wait_until(lambda: cluster_hosts(skiff, "passthrough") == [], 10,
                     what="the unused host to leave /clusters")
        h.wait_until(lambda: skiff.stat("cluster.passthrough.membership_total") == 0, 10,
                     what="membership_total back to 0")
        # Made again on the next request.
        self.assertEqual(request(LOCALHOST, backend.port, "again")[0], 200)
        self.assertEqual(cluster_hosts(skiff, "passthrough"), [f"{LOCALHOST}:{backend.port}"])
        self.assertEqual(len(backend.requests), 2)


class HeaderClusterTest(h.SkiffTestCase):
    """use_http_header: the destination comes from a request header; no
    iptables needed."""

    def get(self, port, headers):
        status, _, body = h.http_request(port, headers=headers)
        return status, body

    def test_header_names_the_destination(self):
        one, two = self.start_backend("one"), self.start_backend("two")
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="passthrough")])],
            [original_dst_cluster(lb_config={"use_http_header": True})]))
        port = skiff.port("ingress")
        for backend in (one, two):
            self.assertEqual(
                self.get(port, {"x-envoy-original-dst-host": f"{LOCALHOST}:{backend.port}"}),
                (200, b"backend:/\n"))
            self.assertEqual(len(backend.requests), 1)
        # No header, or one that is not an IP address and port, and no
        # original destination: no host.
        for headers in ({}, {"x-envoy-original-dst-host": "localhost:80"},
                        {"x-envoy-original-dst-host": LOCALHOST},
                        {"x-envoy-original-dst-host": f"{LOCALHOST}:99999"}):
            self.assertEqual(self.get(port, headers), (503, b"no healthy upstream"), headers)
        self.assertEqual(cluster_hosts(skiff, "passthrough"),
                         sorted([f"{LOCALHOST}:{one.port}", f"{LOCALHOST}:{two.port}"]))

    def test_header_name_and_port_override(self):
        backend = self.start_backend()
        dead = h.ReservedPort()
        self.addCleanup(dead.close)
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="passthrough")])],
            [original_dst_cluster(lb_config={"use_http_header": True, "http_header_name": "X-Dst",
                                             "upstream_port_override": backend.port})]))
        port = skiff.port("ingress")
        # The port in the header gives way to upstream_port_override.
        self.assertEqual(self.get(port, {"x-dst": f"{LOCALHOST}:{dead.port}"}),
                         (200, b"backend:/\n"))
        # Only the configured header counts.
        self.assertEqual(self.get(port, {"x-envoy-original-dst-host": f"{LOCALHOST}:{dead.port}"}),
                         (503, b"no healthy upstream"))

    def test_header_naming_skiff_itself_ends_at_the_circuit_breaker(self):
        # Envoy does not detect a request sent back to itself: the header
        # goes upstream with the request, and each pass adds a request in
        # flight until the cluster's max_requests refuses one (503, UO).
        # skiff does the same and must survive it.
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="passthrough")])],
            [original_dst_cluster(lb_config={"use_http_header": True}, extra={
                "circuit_breakers": {"thresholds": [{"max_requests": 4}]}})]), concurrency=1)
        port = skiff.port("ingress")
        status, body = self.get(port, {"x-envoy-original-dst-host": f"{LOCALHOST}:{port}"})
        self.assertEqual(status, 503)
        self.assertEqual(skiff.stat("cluster.passthrough.upstream_rq_total"), 4)
        self.assertEqual(skiff.admin_get("/ready")[0], 200)


def answering_chain(name, match=None):
    """A plaintext chain whose only route answers 200 with its name."""
    l = h.listener(name, [h.route("/", direct=name)], stat_prefix=name)
    chain = l["filter_chains"][0]
    if match:
        chain["filter_chain_match"] = match
    chain["name"] = name
    return chain


def prefix(ip, length=32):
    return [{"address_prefix": ip, "prefix_len": length}]


class FilterChainMatchTest(OriginalDstTestCase):
    """Plaintext chains chosen at accept by filter_chain_match, in Envoy's
    order, against the restored local address."""

    def test_chains_by_original_destination_and_source(self):
        p1, p2, p3 = self.reserved_port(), self.reserved_port(), self.reserved_port()
        l = h.listener("outbound", [])
        l["listener_filters"] = [ORIGINAL_DST]
        l["filter_chains"] = [
            answering_chain("port", {"destination_port": p1}),
            answering_chain("ip", {"prefix_ranges": prefix("127.0.0.9")}),
            answering_chain("port-and-range", {"destination_port": p2,
                                               "prefix_ranges": prefix("127.0.0.0", 8)}),
            answering_chain("from-client", {"source_prefix_ranges": prefix(CLIENT_SOURCE)}),
            answering_chain("any"),
        ]
        skiff = self.start_skiff(h.bootstrap([l]))
        port = skiff.port("outbound")
        self.redirect(LOCALHOST, p1, port)
        self.redirect("127.0.0.9", p2, port)
        self.redirect("127.0.0.9", p3, port)
        self.assertEqual(request(LOCALHOST, p1, "a"), (200, b"port"))
        # The port comes before the address: 127.0.0.9/32 loses to a /8 on p2.
        self.assertEqual(request("127.0.0.9", p2, "b"), (200, b"port-and-range"))
        self.assertEqual(request("127.0.0.9", p3, "c"), (200, b"ip"))
        # Not redirected: the listener's own address, so the source decides.
        self.assertEqual(request(LOCALHOST, port, "d"), (200, b"from-client"))
        status, _, body = h.http_request(port)  # From 127.0.0.1.
        self.assertEqual((status, body), (200, b"any"))

    def test_no_chain_closes_the_connection(self):
        p1 = self.reserved_port()
        l = h.listener("outbound", [])
        l["listener_filters"] = [ORIGINAL_DST]
        l["filter_chains"] = [answering_chain("port", {"destination_port": p1})]
        skiff = self.start_skiff(h.bootstrap([l]))
        port = skiff.port("outbound")
        self.redirect(LOCALHOST, p1, port)
        self.assertEqual(request(LOCALHOST, p1, "a"), (200, b"port"))
        with self.assertRaises((ConnectionError, http.client.RemoteDisconnected)):
            request(LOCALHOST, port, "direct")
        stats = skiff.stats()
        self.assertEqual(sum(v for k, v in stats.items()
                             if k.startswith("listener.") and k.endswith(".no_filter_chain_match")),
                         1)

    def test_source_match_without_a_redirect(self):
        # source_prefix_ranges and source_ports need no iptables.
        l = h.listener("ingress", [])
        l["filter_chains"] = [
            answering_chain("from-client", {"source_prefix_ranges": prefix(CLIENT_SOURCE)}),
            answering_chain("any"),
        ]
        skiff = self.start_skiff(h.bootstrap([l]))
        port = skiff.port("ingress")
        self.assertEqual(request(LOCALHOST, port, "a"), (200, b"from-client"))
        status, _, body = h.http_request(port)
        self.assertEqual((status, body), (200, b"any"))



class HandOffTest(OriginalDstTestCase):
    """Listener.use_original_dst, as Istio's sidecar captures outbound
    traffic: one bound listener takes every redirected connection and hands
    each to the listener of its original destination, which binds nothing
    (bind_to_port: false); without one, the bound listener keeps it."""

    def test_connections_go_to_the_listener_of_their_original_destination(self):
        backends = {name: self.start_backend(name) for name in ("svc", "any", "virtual")}
        svc_port, any_port, none_port = (self.reserved_port() for _ in range(3))
        virtual = listener("virtual", "virtual", self.log_path, filters=())
        virtual["use_original_dst"] = True
        svc = listener("svc", "svc", self.log_path, filters=(), port=svc_port,
                       stat_prefix="svc")
        svc["bind_to_port"] = False
        wild = listener("wild", "any", self.log_path, filters=(), address="0.0.0.0",
                        port=any_port, stat_prefix="wild")
        wild["bind_to_port"] = False
        wild["traffic_direction"] = "OUTBOUND"
        skiff = self.start_skiff(h.bootstrap(
            [virtual, svc, wild],
            [h.cluster(name, [(LOCALHOST, b.port)]) for name, b in backends.items()]))
        port = skiff.port("virtual")
        self.redirect(LOCALHOST, svc_port, port)
        self.redirect("127.0.0.9", any_port, port)
        self.redirect(LOCALHOST, none_port, port)

        for ip, dst, test_id, backend in ((LOCALHOST, svc_port, "exact", "svc"),
                                          ("127.0.0.9", any_port, "wildcard", "any"),
                                          (LOCALHOST, none_port, "no-listener", "virtual")):
            status, _, headers = request(ip, dst, test_id, with_headers=True)
            self.assertEqual((status, headers["x-backend"]), (200, backend), test_id)
            self.assertEqual(self.log_line(test_id)["local"], f"{ip}:{dst}")
        stats = skiff.stats()
        self.assertEqual(stats[f"listener.{LOCALHOST}_{svc_port}.downstream_cx_total"], 1)
        self.assertEqual(stats[f"listener.0.0.0.0_{any_port}.downstream_cx_total"], 1)
        self.assertEqual(stats[f"listener.{LOCALHOST}_{port}.downstream_cx_total"], 1)
        self.assertEqual(stats["http.svc.downstream_rq_total"], 1)
        # The listeners that do not bind are not reachable but by a hand-off.
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((LOCALHOST, svc_port), timeout=5).close()

    def test_without_use_original_dst_the_bound_listener_keeps_it(self):
        backends = {name: self.start_backend(name) for name in ("svc", "virtual")}
        svc_port = self.reserved_port()
        svc = listener("svc", "svc", self.log_path, filters=(), port=svc_port)
        svc["bind_to_port"] = False
        skiff = self.start_skiff(h.bootstrap(
            [listener("virtual", "virtual", self.log_path), svc],
            [h.cluster(name, [(LOCALHOST, b.port)]) for name, b in backends.items()]))
        self.redirect(LOCALHOST, svc_port, skiff.port("virtual"))
        status, _, headers = request(LOCALHOST, svc_port, "kept", with_headers=True)
        self.assertEqual((status, headers["x-backend"]), (200, "virtual"))
        self.assertEqual(self.log_line("kept")["local"], f"{LOCALHOST}:{svc_port}")

if __name__ == "__main__":
    unittest.main()
