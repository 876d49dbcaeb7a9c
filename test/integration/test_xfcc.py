"""x-forwarded-client-cert, as Envoy's forward_client_cert_details and
set_current_client_cert_details: SANITIZE (the default) drops what a client
sends; FORWARD_ONLY keeps it over mTLS and drops it over plaintext;
APPEND_FORWARD and SANITIZE_SET add this connection's element: By= (each URI
SAN of skiff's own certificate), Hash= (SHA-256 of the client certificate's
DER), then as asked Subject="..." (RFC 2253), URI=, Cert="..." and
Chain="..." (PEM, URL-encoded), DNS=, joined by ';', after what came before
and a ',' when appending; ALWAYS_FORWARD_ONLY keeps whatever came. The
values are checked against what Python computes from the certificates
themselves, at the backend that got the request."""

import hashlib
import json
import ssl
import unittest
import urllib.parse

import skiffharness as h
from skiffharness import LOCALHOST

SERVER_URI = "spiffe://cluster.local/ns/default/sa/skiff"
CLIENT_URI = "spiffe://cluster.local/ns/default/sa/client"
FORWARDED = 'By=spiffe://elsewhere;Hash=00ff'


class XfccTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = h.Certificates()
        cls.addClassCleanup(cls.certs.cleanup)
        server = cls.certs.leaf("xfcc.test", san=f"URI:{SERVER_URI},DNS:xfcc.test")
        cls.client = cls.certs.leaf("client", san=f"URI:{CLIENT_URI},DNS:client.test")
        cls.backend = h.Backend()
        cls.addClassCleanup(cls.backend.stop)
        routes = [h.route("/", cluster="backend")]

        def listener(name, mode=None, details=None, tls=True):
            extra = {}
            if mode:
                extra["forward_client_cert_details"] = mode
            if details:
                extra["set_current_client_cert_details"] = details
            lst = h.listener(name, routes, stat_prefix=name, hcm_extra=extra)
            if tls:
                t = h.downstream_tls(*server)
                ctx = t["typed_config"]
                ctx["require_client_certificate"] = True
                ctx["common_tls_context"]["validation_context"] = {
                    "trusted_ca": {"filename": cls.certs.ca}}
                lst["filter_chains"][0]["transport_socket"] = t
            return lst

        all_details = {"subject": True, "uri": True, "cert": True, "chain": True, "dns": True}
        cls.skiff = cls.class_skiff(h.bootstrap([
            listener("sanitize"),
            listener("forward", "FORWARD_ONLY"),
            listener("forward_plain", "FORWARD_ONLY", tls=False),
            listener("append", "APPEND_FORWARD", all_details),
            listener("set", "SANITIZE_SET", {"subject": True, "uri": True}),
            listener("set_plain", "SANITIZE_SET", tls=False),
            listener("always_plain", "ALWAYS_FORWARD_ONLY", tls=False),
        ], [h.cluster("backend", [(LOCALHOST, cls.backend.port)])]))
        with open(cls.client[0]) as f:
            pem = f.read()
        der = ssl.PEM_cert_to_DER_cert(pem)
        cls.hash = hashlib.sha256(der).hexdigest()
        # What skiff writes: the certificate as OpenSSL prints it again.
        cls.pem_encoded = urllib.parse.quote(ssl.DER_cert_to_PEM_cert(der), safe="")

    def upstream_xfcc(self, listener, sent=None):
        """The x-forwarded-client-cert fields the backend got (a list)."""
        port = self.skiff.port(listener)
        tls = listener not in ("forward_plain", "set_plain", "always_plain")
        args = ["-o", "-"]
        if sent is not None:
            args += ["-H", f"x-forwarded-client-cert: {sent}"]
        if tls:
            args += ["--cacert", self.certs.ca, "--cert", self.client[0], "--key", self.client[1],
                     "--resolve", f"xfcc.test:{port}:{LOCALHOST}", f"https://xfcc.test:{port}/headers"]
        else:
            args.append(f"http://{LOCALHOST}:{port}/headers")
        rc, out, err = h.curl(*args)
        self.assertEqual(rc, 0, err)
        headers = json.loads(out)["headers"]
        return [v for k, v in headers if k == "x-forwarded-client-cert"]

    def test_sanitize_is_the_default(self):
        self.assertEqual(self.upstream_xfcc("sanitize", FORWARDED), [])
        self.assertEqual(self.upstream_xfcc("sanitize"), [])

    def test_forward_only(self):
        self.assertEqual(self.upstream_xfcc("forward", FORWARDED), [FORWARDED])
        # Not mTLS: dropped.
        self.assertEqual(self.upstream_xfcc("forward_plain", FORWARDED), [])

    def test_append_forward_with_every_detail(self):
        # The chain is what the client sent, its own certificate first:
        # curl (OpenSSL) completes its chain with the CA from its trust store.
        with open(self.certs.ca) as f:
            ca = urllib.parse.quote(ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(f.read())),
                                    safe="")
        element = ";".join([
            f"By={SERVER_URI}", f"Hash={self.hash}", 'Subject="CN=client"', f"URI={CLIENT_URI}",
            f'Cert="{self.pem_encoded}"', f'Chain="{self.pem_encoded}{ca}"', "DNS=client.test"])
        self.assertEqual(self.upstream_xfcc("append", FORWARDED), [f"{FORWARDED},{element}"])
        self.assertEqual(self.upstream_xfcc("append"), [element])

    def test_sanitize_set(self):
        element = f'By={SERVER_URI};Hash={self.hash};Subject="CN=client";URI={CLIENT_URI}'
        self.assertEqual(self.upstream_xfcc("set", FORWARDED), [element])
        self.assertEqual(self.upstream_xfcc("set_plain", FORWARDED), [])

    def test_always_forward_only(self):
        self.assertEqual(self.upstream_xfcc("always_plain", FORWARDED), [FORWARDED])


if __name__ == "__main__":
    unittest.main()
