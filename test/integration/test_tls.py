"""TLS: HTTPS listeners (curl and Python's ssl as clients), SNI choosing the
filter chain, tls_inspector letting TLS and plaintext chains share a listener,
and TLS to an nginx upstream, with certificates made by the openssl CLI for
each run."""

import copy
import socket
import ssl
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

# Missing in skiff when these were written: the TLS transport exists
# (proxy/net/tls) but the loader does not accept transport_socket or
# filter_chain_match yet, so these configs are refused. Remove each marker as
# it starts to pass.


class TlsTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = h.Certificates()
        cls.addClassCleanup(cls.certs.cleanup)
        cls.a = cls.certs.leaf("a.test")
        cls.b = cls.certs.leaf("b.test")

    def tls_listener(self, routes, cert_key, alpn=None):
        lst = h.listener("tls", routes)
        lst["filter_chains"][0]["transport_socket"] = h.downstream_tls(*cert_key, alpn=alpn)
        return lst

    def client_context(self, alpn=None):
        ctx = ssl.create_default_context(cafile=self.certs.ca)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def https_get(self, port, name, path="/", alpn=None, host=LOCALHOST):
        """GET over TLS with SNI `name`: (tls version, alpn, peer cert CN, raw response)."""
        with socket.create_connection((host, port), timeout=5) as raw:
            with self.client_context(alpn).wrap_socket(raw, server_hostname=name) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
                return s.version(), s.selected_alpn_protocol(), cn, data

    def test_https_listener_with_curl(self):
        skiff = self.start_skiff(h.bootstrap([self.tls_listener([h.route(direct="secure\n")], self.a)]))
        port = skiff.port("tls")
        rc, out, err = h.curl("--cacert", self.certs.ca, "--resolve", f"a.test:{port}:{LOCALHOST}",
                              f"https://a.test:{port}/")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"secure\n")

    def test_tls_inspector_lets_tls_and_plaintext_share_a_listener(self):
        # Istio's PERMISSIVE mode: one port, TLS and plaintext chains, told
        # apart by the connection's first byte.
        lst = self.tls_listener([h.route(direct="secure\n")], self.a)
        lst["filter_chains"][0]["filter_chain_match"] = {"transport_protocol": "tls"}
        plain = h.listener("plain", [h.route(direct="plain\n")], stat_prefix="plain")
        plain["filter_chains"][0]["filter_chain_match"] = {"transport_protocol": "raw_buffer"}
        lst["filter_chains"].append(plain["filter_chains"][0])
        lst["listener_filters"] = [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3."
                     "TlsInspector"}}]
        lst["listener_filters_timeout"] = "0.5s"
        skiff = self.start_skiff(h.bootstrap([lst]))
        port = skiff.port("tls")
        rc, out, err = h.curl("--cacert", self.certs.ca, "--resolve", f"a.test:{port}:{LOCALHOST}",
                              f"https://a.test:{port}/")
        self.assertEqual((rc, out), (0, b"secure\n"), err)
        rc, out, err = h.curl(f"http://{LOCALHOST}:{port}/")
        self.assertEqual((rc, out), (0, b"plain\n"), err)
        rc, out, err = h.curl("--http2-prior-knowledge", f"http://{LOCALHOST}:{port}/")
        self.assertEqual((rc, out), (0, b"plain\n"), err)
        # One that sends nothing is closed after listener_filters_timeout;
        # one that closes first is forgotten.
        with socket.create_connection((LOCALHOST, port), timeout=10) as idle:
            self.assertEqual(idle.recv(1), b"")
        socket.create_connection((LOCALHOST, port), timeout=5).close()
        self.assertEqual(self.https_get(port, "a.test")[3].split(b"\r\n\r\n", 1)[1], b"secure\n")
        self.assertEqual(skiff.stat("http.ingress_http.downstream_cx_ssl_total"), 2)
        self.assertEqual(skiff.stat("http.plain.downstream_cx_total"), 2)

    def test_https_tls13_and_alpn_http11(self):
        skiff = self.start_skiff(h.bootstrap(
            [self.tls_listener([h.route(direct="secure\n")], self.a, alpn=["http/1.1"])]))
        version, alpn, cn, data = self.https_get(skiff.port("tls"), "a.test", alpn=["http/1.1"])
        self.assertEqual(version, "TLSv1.3")
        self.assertEqual(alpn, "http/1.1")
        self.assertEqual(cn, "a.test")
        [(status, _, body)] = h.parse_responses(data)
        self.assertEqual((status, body), (200, b"secure\n"))

    def test_plaintext_to_tls_listener_gets_no_http(self):
        skiff = self.start_skiff(h.bootstrap([self.tls_listener([h.route(direct="secure\n")], self.a)]))
        data, _ = h.raw_exchange(skiff.port("tls"), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
        self.assertNotIn(b"secure", data)
        # And the listener still serves TLS afterwards.
        self.assertEqual(self.https_get(skiff.port("tls"), "a.test")[2], "a.test")

    def test_sni_selects_filter_chain(self):
        lst = self.tls_listener([h.route(direct="chain a\n")], self.a)
        chain_b = copy.deepcopy(lst["filter_chains"][0])
        chain_b["transport_socket"] = h.downstream_tls(*self.b)
        hcm = chain_b["filters"][0]["typed_config"]
        hcm["route_config"]["virtual_hosts"][0]["routes"] = [h.route(direct="chain b\n")]
        lst["filter_chains"][0]["filter_chain_match"] = {"server_names": ["a.test"]}
        chain_b["filter_chain_match"] = {"server_names": ["b.test"]}
        lst["filter_chains"].append(chain_b)
        lst["listener_filters"] = [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}]
        skiff = self.start_skiff(h.bootstrap([lst]))
        port = skiff.port("tls")
        for name, want in (("a.test", b"chain a\n"), ("b.test", b"chain b\n")):
            with self.subTest(sni=name):
                _, _, cn, data = self.https_get(port, name)
                self.assertEqual(cn, name)
                self.assertEqual(h.parse_responses(data)[0][2], want)

    def test_tls_chains_match_on_destination_alpn_and_source_type(self):
        # Envoy's filter_chain_match on TLS chains: the chain (and so the
        # certificate) is chosen from the ClientHello and the addresses, in
        # Envoy's order: destination IP before application protocols.
        def chain(name, cert, match):
            c = self.tls_listener([h.route(direct=name + "\n")], cert,
                                  alpn=["http/1.1"])["filter_chains"][0]
            c["name"] = name
            if match:
                c["filter_chain_match"] = match
            return c
        lst = h.listener("tls", [], address="0.0.0.0")
        lst["filter_chains"] = [
            chain("alpn-h2", self.a, {"application_protocols": ["h2"]}),
            chain("ip2", self.b, {"prefix_ranges": [{"address_prefix": "127.0.0.2",
                                                     "prefix_len": 32}]}),
            chain("external", self.b, {"source_type": "EXTERNAL"}),
            chain("any", self.a, None),
        ]
        skiff = self.start_skiff(h.bootstrap([lst]))
        port = skiff.port("tls")
        cases = [("127.0.0.2", ["h2", "http/1.1"], "b.test", b"ip2\n"),
                 (LOCALHOST, ["h2", "http/1.1"], "a.test", b"alpn-h2\n"),
                 (LOCALHOST, ["http/1.1"], "a.test", b"any\n"),
                 (LOCALHOST, None, "a.test", b"any\n")]
        for host, alpn, cn_want, body in cases:
            with self.subTest(host=host, alpn=alpn):
                # The SNI names a.test for every connection: only the match
                # decides which certificate answers (the client checks it).
                _, selected, cn, data = self.https_get(port, cn_want, alpn=alpn, host=host)
                self.assertEqual(cn, cn_want)
                self.assertEqual(h.parse_responses(data)[0][2], body)
                self.assertIn(selected, ("http/1.1", None))

    def test_tls_connection_no_chain_takes_fails_its_handshake(self):
        lst = self.tls_listener([h.route(direct="h2 only\n")], self.a, alpn=["http/1.1"])
        lst["filter_chains"][0]["filter_chain_match"] = {"application_protocols": ["h2"]}
        skiff = self.start_skiff(h.bootstrap([lst]))
        port = skiff.port("tls")
        _, _, _, data = self.https_get(port, "a.test", alpn=["h2"])
        self.assertEqual(h.parse_responses(data)[0][2], b"h2 only\n")
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            self.https_get(port, "a.test", alpn=["http/1.1"])
        stats = skiff.stats()
        self.assertEqual(sum(v for k, v in stats.items()
                             if k.startswith("listener.") and k.endswith(".no_filter_chain_match")),
                         1)

    def test_tls_upstream_to_nginx(self):
        nginx = h.Nginx(tls=self.certs.leaf("localhost"))
        self.addCleanup(nginx.stop)
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="nginx_tls")])],
            [h.cluster("nginx_tls", [(LOCALHOST, nginx.port)],
                       extra={"transport_socket": h.upstream_tls(self.certs.ca, "localhost")})]))
        status, _, body = h.http_request(skiff.port("ingress"), path="/b16k")
        self.assertEqual(status, 200)
        self.assertEqual(body, h.Nginx.body_of(16 * 1024))

    def test_tls_upstream_with_wrong_ca_is_503(self):
        other = h.Certificates()
        self.addCleanup(other.cleanup)
        nginx = h.Nginx(tls=other.leaf("localhost"))
        self.addCleanup(nginx.stop)
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="nginx_tls")])],
            [h.cluster("nginx_tls", [(LOCALHOST, nginx.port)],
                       extra={"transport_socket": h.upstream_tls(self.certs.ca, "localhost")})]))
        status, _, body = h.http_request(skiff.port("ingress"), path="/b64")
        self.assertEqual(status, 503)
        self.assertIn(b"upstream", body.lower())


if __name__ == "__main__":
    unittest.main()
