"""HTTP/2 graceful drain, as Envoy's: a draining connection first gets a
GOAWAY with the largest stream id (RFC 9113 6.8's shutdown notice), so the
client opens no more streams but loses none it sent meanwhile; after the
HCM's drain_timeout the final GOAWAY names the last stream served, and the
connection closes once its streams end. HTTP/1 is unchanged: `connection:
close` on the response."""

import h2frames as f
import skiffharness as h

MAX_STREAM_ID = 2**31 - 1


class Http2DrainTest(h.SkiffTestCase):
    def start(self, drain_timeout):
        backend = self.start_backend()
        listener = h.listener("ingress", [h.route("/", cluster="backend")],
                              hcm_extra={"drain_timeout": drain_timeout})
        return self.start_skiff(h.bootstrap(
            [listener], [h.cluster("backend", [(h.LOCALHOST, backend.port)])]))

    def fail_health_checks(self, skiff):
        # While the server fails health checks, each response drains its connection.
        self.assertEqual(skiff.admin_request("POST", "/healthcheck/fail"), (200, "OK\n"))

    def goaways(self, p):
        return [(g.last_stream_id(), g.error_code()) for g in p.frames if g.type == f.GOAWAY]

    def first_response(self, drain_timeout):
        """An h2c connection whose first response (200) drains it, on a
        server failing health checks; (skiff, peer)."""
        skiff = self.start(drain_timeout)
        self.fail_health_checks(skiff)
        p = f.connect(skiff.port())
        self.addCleanup(p.close)
        p.send(f.headers(1, f.request_fields("/one")))
        status, _, _, _ = p.response(1)
        self.assertEqual(status, 200)
        return skiff, p

    def test_shutdown_notice_then_final_goaway_after_drain_timeout(self):
        skiff, p = self.first_response("3s")
        # The notice goes out with the response (before it, as it happens).
        if not self.goaways(p):
            p.read_until(lambda fr: fr.type == f.GOAWAY)
        self.assertEqual(self.goaways(p), [(MAX_STREAM_ID, f.NO_ERROR)])
        # A stream sent after the notice (or crossing it) is still served.
        p.send(f.headers(3, f.request_fields("/two")))
        status, _, _, end = p.response(3)
        self.assertEqual(status, 200, end)
        # drain_timeout later: the final GOAWAY names stream 3; then the
        # connection closes, its streams done.
        p.read_to_close(timeout=10)
        self.assertEqual(self.goaways(p), [(MAX_STREAM_ID, f.NO_ERROR), (3, f.NO_ERROR)])
        self.assertEqual(skiff.stat("http.ingress_http.downstream_cx_drain_close"), 1)

    def test_drain_timeout_zero_sends_the_final_goaway_on_the_next_turn(self):
        _, p = self.first_response("0s")
        p.read_to_close()
        self.assertEqual(self.goaways(p), [(MAX_STREAM_ID, f.NO_ERROR), (1, f.NO_ERROR)])
