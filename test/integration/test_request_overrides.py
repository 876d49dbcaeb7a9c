"""The x-envoy-* request headers with which a trusted caller steers Envoy's
router (its "HTTP headers consumed from downstreams"): x-envoy-upstream-rq-timeout-ms,
x-envoy-upstream-rq-per-try-timeout-ms, x-envoy-upstream-rq-timeout-alt-response,
x-envoy-retry-on, x-envoy-retry-grpc-on, x-envoy-max-retries,
x-envoy-retriable-status-codes, x-envoy-retriable-header-names and
x-envoy-upstream-stream-duration-ms. Each is checked twice: from an internal client
(internal_address_config lists 127.0.0.1) the router acts on it and takes it
off the request; from an external one (a listener with no internal address)
the connection manager strips it first and it changes nothing. The upstream
is test_retry's scripted FlakyBackend."""

import json
import os
import shutil
import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST
from test_retry import FlakyBackend, retry_route

LOG_FORMAT = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"

# What the router consumes: none of these may reach the upstream.
CONSUMED = ["x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
            "x-envoy-upstream-rq-timeout-alt-response", "x-envoy-retry-on",
            "x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-retriable-status-codes",
            "x-envoy-retriable-header-names", "x-envoy-hedge-on-per-try-timeout",
            "x-envoy-upstream-stream-duration-ms"]


class RequestOverrideTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = FlakyBackend()
        cls.addClassCleanup(cls.backend.stop)
        cls.logdir = tempfile.mkdtemp(prefix="skiff-overrides-")
        cls.addClassCleanup(shutil.rmtree, cls.logdir, True)
        cls.log_path = os.path.join(cls.logdir, "access.log")
        fast = {"base_interval": "0.001s", "max_interval": "0.002s"}
        routes = [
            # No retry policy, Envoy's default 15 s timeout.
            {"match": {"prefix": "/plain/"},
             "route": {"cluster": "flaky", "prefix_rewrite": "/"}},
            # A policy the headers change: gateway-error, one retry.
            retry_route("/policy/", "flaky", {"retry_on": "gateway-error", "num_retries": 1,
                                              "retry_back_off": fast},
                        prefix_rewrite="/"),
            # A short route timeout, to see which status a timeout gets.
            {"match": {"prefix": "/short/"},
             "route": {"cluster": "flaky", "prefix_rewrite": "/", "timeout": "0.2s"}},
        ]
        log = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": cls.log_path,
            "log_format": {"text_format_source": {"inline_string": LOG_FORMAT}}}}]
        internal = {"cidr_ranges": [{"address_prefix": LOCALHOST, "prefix_len": 32}]}
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("internal", routes, stat_prefix="internal", hcm_extra={
                "use_remote_address": True, "internal_address_config": internal,
                "access_log": log}),
             h.listener("external", routes, stat_prefix="external", hcm_extra={
                 "use_remote_address": True, "access_log": log})],
            [h.cluster("flaky", [(LOCALHOST, cls.backend.port)])]), concurrency=1)

    def send(self, listener, path, headers):
        return h.http_request(self.skiff.port(listener), path=path, headers=headers)

    def key(self, suffix=""):
        """A FlakyBackend key of this test's own."""
        return self.id().rsplit(".", 1)[-1] + suffix

    def seen(self, listener, headers, prefix="/plain"):
        """The request headers the upstream got, as a dict."""
        status, _, body = self.send(listener, prefix + "/headers", headers)
        self.assertEqual(status, 200, body)
        return dict(json.loads(body)["headers"])

    def log_line(self, path):
        """The access log line for path (as logged: after the prefix rewrite)."""
        def find():
            try:
                with open(self.log_path) as fh:
                    lines = [ln for ln in fh.read().splitlines() if ln.startswith(path + " ")]
            except FileNotFoundError:
                return None
            return lines[-1] if lines else None
        return h.wait_until(find, 5, what=f"access log line for {path}")

    # --- Consumed, and only from an internal client ----------------------

    def test_internal_request_consumes_every_override_header(self):
        # Valid values throughout, but the timeouts and the stream duration
        # long enough that they cannot fire on a loaded machine (a 1 ms
        # timeout with the alt-response header answered 204 now and then).
        sent = {name: "60000" if name.endswith("-ms") else "1" for name in CONSUMED}
        sent["x-envoy-force-trace"] = "true"  # Internal-only, but not the router's.
        seen = self.seen("internal", sent)
        for name in CONSUMED:
            self.assertNotIn(name, seen)
        self.assertEqual(seen.get("x-envoy-internal"), "true")
        self.assertEqual(seen.get("x-envoy-force-trace"), "true")

    def test_external_request_has_them_stripped(self):
        seen = self.seen("external", {name: "1" for name in CONSUMED})
        for name in CONSUMED:
            self.assertNotIn(name, seen)
        self.assertNotIn("x-envoy-internal", seen)
        # The route's own timeout, not the header's.
        self.assertEqual(seen.get("x-envoy-expected-rq-timeout-ms"), "15000")

    # --- Timeouts ------------------------------------------------------------

    def test_timeout_header_replaces_the_route_timeout(self):
        seen = self.seen("internal", {"x-envoy-upstream-rq-timeout-ms": "4321"})
        self.assertEqual(seen.get("x-envoy-expected-rq-timeout-ms"), "4321")
        path = f"/delay?ms=3000&k={self.key()}"
        status, _, body = self.send("internal", "/plain" + path,
                                    {"x-envoy-upstream-rq-timeout-ms": "200"})
        self.assertEqual((status, body), (504, b"upstream request timeout"))
        self.assertEqual(self.log_line(path).split()[1:], ["504", "UT", "response_timeout"])

    def test_timeout_header_from_outside_changes_nothing(self):
        status, _, body = self.send("external", "/plain/delay?ms=500",
                                    {"x-envoy-upstream-rq-timeout-ms": "50"})
        self.assertEqual((status, body), (200, b"delayed\n"))

    def test_timeout_header_of_zero_means_none(self):
        # The route's 0.2 s timeout is lifted: no expected timeout is told, and
        # a response slower than the route timeout comes through.
        seen = self.seen("internal", {"x-envoy-upstream-rq-timeout-ms": "0"}, prefix="/short")
        self.assertNotIn("x-envoy-expected-rq-timeout-ms", seen)
        status, _, body = self.send("internal", "/short/delay?ms=600",
                                    {"x-envoy-upstream-rq-timeout-ms": "0"})
        self.assertEqual((status, body), (200, b"delayed\n"))

    def test_invalid_timeout_header_is_ignored(self):
        for value in ("soon", "-5", "1.5", ""):
            with self.subTest(value=value):
                seen = self.seen("internal", {"x-envoy-upstream-rq-timeout-ms": value})
                self.assertEqual(seen.get("x-envoy-expected-rq-timeout-ms"), "15000")
                self.assertNotIn("x-envoy-upstream-rq-timeout-ms", seen)

    def test_alt_response_answers_a_timeout_204(self):
        path = f"/delay?ms=2000&k={self.key()}"
        status, headers, body = self.send("internal", "/short" + path,
                                          {"x-envoy-upstream-rq-timeout-alt-response": "yes"})
        self.assertEqual((status, body), (204, b""))
        self.assertNotIn("content-type", headers)
        self.assertEqual(self.log_line(path).split()[1:], ["204", "UT", "response_timeout"])
        # From outside, the header is gone: Envoy's 504.
        status, _, body = self.send("external", "/short/delay?ms=2000&alt=2",
                                    {"x-envoy-upstream-rq-timeout-alt-response": "yes"})
        self.assertEqual((status, body), (504, b"upstream request timeout"))

    def test_per_try_timeout_header_without_a_policy(self):
        seen = self.seen("internal", {"x-envoy-upstream-rq-per-try-timeout-ms": "700"})
        self.assertEqual(seen.get("x-envoy-expected-rq-timeout-ms"), "700")
        # No retry asked for: the per-try timeout ends the request (Envoy's 504 UT,
        # upstream_per_try_timeout).
        path = f"/delay?ms=3000&k={self.key()}"
        status, _, body = self.send("internal", "/plain" + path,
                                    {"x-envoy-upstream-rq-per-try-timeout-ms": "200"})
        self.assertEqual((status, body), (504, b"upstream request timeout"))
        self.assertEqual(self.log_line(path).split()[1:],
                         ["504", "UT", "upstream_per_try_timeout"])
        # With alt-response, that one is 204 too.
        status, _, body = self.send("internal", "/plain/delay?ms=2500", {
            "x-envoy-upstream-rq-per-try-timeout-ms": "200",
            "x-envoy-upstream-rq-timeout-alt-response": ""})
        self.assertEqual((status, body), (204, b""))

    def test_per_try_timeout_header_no_shorter_than_the_timeout_is_none(self):
        seen = self.seen("internal", {"x-envoy-upstream-rq-timeout-ms": "500",
                                      "x-envoy-upstream-rq-per-try-timeout-ms": "500"})
        self.assertEqual(seen.get("x-envoy-expected-rq-timeout-ms"), "500")
        path = f"/delay?ms=3000&k={self.key()}"
        status, _, _ = self.send("internal", "/plain" + path, {
            "x-envoy-upstream-rq-timeout-ms": "300",
            "x-envoy-upstream-rq-per-try-timeout-ms": "300"})
        self.assertEqual(status, 504)
        # The route timeout's details, not the per-try one's.
        self.assertEqual(self.log_line(path).split()[1:], ["504", "UT", "response_timeout"])

    def test_per_try_timeout_and_retry_headers_retry_a_slow_attempt(self):
        # The first attempt sleeps 3 s before its 503; the per-try timeout cuts
        # it short and retry-on 5xx retries it.
        key = self.key()
        status, _, body = self.send("internal", f"/plain/flaky?key={key}&fail=1&delay=3000", {
            "x-envoy-upstream-rq-per-try-timeout-ms": "200", "x-envoy-retry-on": "5xx"})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["n"], 2)

    # --- x-envoy-upstream-stream-duration-ms ---------------------------------

    def max_duration_reached(self):
        return self.skiff.stats().get("cluster.flaky.upstream_rq_max_duration_reached", 0)

    def test_stream_duration_header_bounds_the_upstream_stream(self):
        before = self.max_duration_reached()
        path = f"/delay?ms=3000&k={self.key()}"
        status, _, body = self.send("internal", "/plain" + path,
                                    {"x-envoy-upstream-stream-duration-ms": "200"})
        self.assertEqual((status, body), (504, b"upstream max stream duration reached"))
        self.assertEqual(self.log_line(path).split()[1:],
                         ["504", "UMSDR", "upstream_max_stream_duration_reached"])
        h.wait_until(lambda: self.max_duration_reached() == before + 1, 5,
                     what="upstream_rq_max_duration_reached +1")

    def test_stream_duration_header_from_outside_changes_nothing(self):
        status, _, body = self.send("external", "/plain/delay?ms=500",
                                    {"x-envoy-upstream-stream-duration-ms": "50"})
        self.assertEqual((status, body), (200, b"delayed\n"))

    def test_stream_duration_header_of_zero_means_none(self):
        status, _, body = self.send("internal", "/plain/delay?ms=300",
                                    {"x-envoy-upstream-stream-duration-ms": "0"})
        self.assertEqual((status, body), (200, b"delayed\n"))

    def test_stream_duration_before_the_request_ends_is_408(self):
        # The request's body never comes: Envoy's 408, as for a request still
        # arriving.
        path = f"/delay?ms=3000&k={self.key()}"
        raw = (f"POST /plain{path} HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n"
               "x-envoy-upstream-stream-duration-ms: 200\r\n\r\n").encode()
        data, _ = h.raw_exchange(self.skiff.port("internal"), raw, timeout=5)
        status, _, body = h.parse_responses(data)[0]
        self.assertEqual((status, body), (408, b"upstream max stream duration reached"))
        self.assertEqual(self.log_line(path).split()[1:],
                         ["408", "UMSDR", "upstream_max_stream_duration_reached"])

    def test_stream_duration_reached_is_retried_as_a_reset(self):
        # Each attempt has its own bound: the first, 3 s slow, is cut short and
        # retried under retry-on reset; the second answers in time.
        key = self.key()
        status, _, body = self.send("internal", f"/plain/flaky?key={key}&fail=1&delay=3000", {
            "x-envoy-upstream-stream-duration-ms": "300", "x-envoy-retry-on": "reset"})
        self.assertEqual((status, json.loads(body)["n"]), (200, 2))
        # Without a retry left: URX before UMSDR, as Envoy lists them.
        key = self.key("-out")
        path = f"/flaky?key={key}&fail=5&delay=3000"
        status, _, _ = self.send("internal", "/plain" + path, {
            "x-envoy-upstream-stream-duration-ms": "200", "x-envoy-retry-on": "reset"})
        self.assertEqual(status, 504)
        self.assertEqual(self.log_line(path).split()[1:],
                         ["504", "URX,UMSDR", "upstream_max_stream_duration_reached"])
        self.assertEqual(self.backend.counts[key], 2)

    def test_stream_duration_after_the_response_started_resets_it(self):
        # /stall sends its head and 10 bytes, then waits: the response is cut.
        path = f"/stall?ms=3000&k={self.key()}"
        with self.assertRaises(Exception):
            self.send("internal", "/plain" + path,
                      {"x-envoy-upstream-stream-duration-ms": "300"})
        self.assertEqual(self.log_line(path).split()[1:],
                         ["200", "UMSDR", "upstream_max_stream_duration_reached"])

    # --- Retries -------------------------------------------------------------

    def test_retry_on_header_retries_a_route_without_a_policy(self):
        key = self.key()
        status, _, body = self.send("internal", f"/plain/flaky?key={key}&fail=1",
                                    {"x-envoy-retry-on": "5xx"})
        self.assertEqual((status, json.loads(body)["n"]), (200, 2))
        # From outside: no retry, the 503 comes back.
        key = self.key("-external")
        status, _, body = self.send("external", f"/plain/flaky?key={key}&fail=1",
                                    {"x-envoy-retry-on": "5xx"})
        self.assertEqual((status, body), (503, b"failed\n"))
        self.assertEqual(self.backend.counts[key], 1)

    def test_retry_on_header_adds_to_the_route_policy(self):
        # The route retries gateway-error; the header adds 5xx (a 500).
        key = self.key()
        status, _, body = self.send("internal", f"/policy/flaky?key={key}&fail=1&code=500",
                                    {"x-envoy-retry-on": "5xx"})
        self.assertEqual((status, json.loads(body)["n"]), (200, 2))
        # And the route's own condition still holds (a 502).
        key = self.key("-own")
        status, _, body = self.send("internal", f"/policy/flaky?key={key}&fail=1&code=502",
                                    {"x-envoy-retry-on": "retriable-4xx"})
        self.assertEqual((status, json.loads(body)["n"]), (200, 2))
        key = self.key("-external")
        status, _, _ = self.send("external", f"/policy/flaky?key={key}&fail=1&code=500",
                                 {"x-envoy-retry-on": "5xx"})
        self.assertEqual(status, 500)

    def test_max_retries_header_replaces_num_retries(self):
        # The route allows one retry; the header three: the fourth attempt wins.
        key = self.key()
        status, _, body = self.send("internal", f"/policy/flaky?key={key}&fail=3&code=502",
                                    {"x-envoy-max-retries": "3"})
        self.assertEqual((status, json.loads(body)["n"]), (200, 4))
        # Zero: no retry at all.
        key = self.key("-zero")
        status, _, _ = self.send("internal", f"/policy/flaky?key={key}&fail=1&code=502",
                                 {"x-envoy-max-retries": "0"})
        self.assertEqual((status, self.backend.counts[key]), (502, 1))
        # Not a number: ignored, the route's one retry.
        key = self.key("-invalid")
        status, _, _ = self.send("internal", f"/policy/flaky?key={key}&fail=3&code=502",
                                 {"x-envoy-max-retries": "lots"})
        self.assertEqual((status, self.backend.counts[key]), (502, 2))
        # From outside: the route's one retry.
        key = self.key("-external")
        status, _, _ = self.send("external", f"/policy/flaky?key={key}&fail=3&code=502",
                                 {"x-envoy-max-retries": "3"})
        self.assertEqual((status, self.backend.counts[key]), (502, 2))

    def test_max_retries_header_alone_does_not_retry(self):
        key = self.key()
        status, _, _ = self.send("internal", f"/plain/flaky?key={key}&fail=1",
                                 {"x-envoy-max-retries": "3"})
        self.assertEqual((status, self.backend.counts[key]), (503, 1))

    def test_retriable_status_codes_header(self):
        key = self.key()
        status, _, body = self.send("internal", f"/plain/flaky?key={key}&fail=1&code=418", {
            "x-envoy-retry-on": "retriable-status-codes",
            "x-envoy-retriable-status-codes": "425, 418"})
        self.assertEqual((status, json.loads(body)["n"]), (200, 2))
        # A code not listed is not retried.
        key = self.key("-other")
        status, _, _ = self.send("internal", f"/plain/flaky?key={key}&fail=1&code=429", {
            "x-envoy-retry-on": "retriable-status-codes",
            "x-envoy-retriable-status-codes": "425,418"})
        self.assertEqual((status, self.backend.counts[key]), (429, 1))
        key = self.key("-external")
        status, _, _ = self.send("external", f"/plain/flaky?key={key}&fail=1&code=418", {
            "x-envoy-retry-on": "retriable-status-codes",
            "x-envoy-retriable-status-codes": "418"})
        self.assertEqual((status, self.backend.counts[key]), (418, 1))

    def test_retry_grpc_on_header(self):
        # A trailers-only gRPC answer with grpc-status 14 (UNAVAILABLE).
        key = self.key()
        status, _, body = self.send("internal", f"/plain/flaky?key={key}&fail=1&grpc=14",
                                    {"x-envoy-retry-grpc-on": "unavailable"})
        self.assertEqual((status, json.loads(body)["n"]), (200, 2))
        # Envoy reads gRPC conditions only from x-envoy-retry-grpc-on.
        key = self.key("-http-header")
        status, headers, _ = self.send("internal", f"/plain/flaky?key={key}&fail=1&grpc=14",
                                       {"x-envoy-retry-on": "unavailable"})
        self.assertEqual((status, headers.get("grpc-status")), (200, "14"))
        self.assertEqual(self.backend.counts[key], 1)
        key = self.key("-external")
        status, headers, _ = self.send("external", f"/plain/flaky?key={key}&fail=1&grpc=14",
                                       {"x-envoy-retry-grpc-on": "unavailable"})
        self.assertEqual((status, headers.get("grpc-status")), (200, "14"))
        self.assertEqual(self.backend.counts[key], 1)

    def test_retriable_header_names_header(self):
        # Under retriable-headers, a response with any of the names is retried.
        key = self.key()
        status, _, body = self.send("internal", f"/plain/flaky?key={key}&fail=1&hdr=x-b:1", {
            "x-envoy-retry-on": "retriable-headers",
            "x-envoy-retriable-header-names": "x-a, X-B"})
        self.assertEqual((status, json.loads(body)["n"]), (200, 2))
        # A name the response does not have: not retried.
        key = self.key("-other")
        status, _, _ = self.send("internal", f"/plain/flaky?key={key}&fail=1&hdr=x-c:1", {
            "x-envoy-retry-on": "retriable-headers",
            "x-envoy-retriable-header-names": "x-a,x-b"})
        self.assertEqual((status, self.backend.counts[key]), (503, 1))
        key = self.key("-external")
        status, _, _ = self.send("external", f"/plain/flaky?key={key}&fail=1&hdr=x-b:1", {
            "x-envoy-retry-on": "retriable-headers",
            "x-envoy-retriable-header-names": "x-b"})
        self.assertEqual((status, self.backend.counts[key]), (503, 1))

    def test_retry_counters(self):
        before = self.skiff.stats().get("cluster.flaky.upstream_rq_retry", 0)
        key = self.key()
        status, _, _ = self.send("internal", f"/plain/flaky?key={key}&fail=2",
                                 {"x-envoy-retry-on": "5xx", "x-envoy-max-retries": "2"})
        self.assertEqual(status, 200)
        h.wait_until(lambda: self.skiff.stats().get("cluster.flaky.upstream_rq_retry", 0)
                     >= before + 2, 5, what="upstream_rq_retry +2")


if __name__ == "__main__":
    unittest.main()
