"""Route retry policies (RouteAction.retry_policy, VirtualHost.retry_policy), as
Envoy's router retries: retry_on conditions, num_retries, the cluster's
max_retries circuit breaker, the upstream_rq_retry* counters, the URX response
flag, a request body replayed intact, per_try_timeout, per_try_idle_timeout, and the downstream
going away between two attempts. Upstreams: a scripted HTTP/1.1 origin
(FlakyBackend) and a scripted HTTP/2 one (FlakyH2Origin)."""

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import unittest

import h2frames as f
import skiffharness as h
from skiffharness import LOCALHOST
from test_h2_protocol import H2_UPSTREAM, ScriptedOrigin


class FlakyBackend(h.Backend):
    """Backend plus /flaky?key=K&fail=N&code=C[&delay=MS][&grpc=G][&hdr=NAME:VALUE]:
    the first N requests with key K are answered with status C (default 503;
    with grpc=G, a 200 carrying grpc-status G; with hdr, carrying that header)
    after sleeping MS ms, the later ones with
    200 and a JSON {"n": attempts so far, "length", "sha256"} of the request
    body. /ratelimited answers 503 with x-envoy-ratelimited."""

    def __init__(self, name="flaky", fail_all=False):
        self.counts = {}
        self.fail_all = fail_all  # Every /flaky request gets a 503.
        super().__init__(name)

    def _respond(self, sock, req, body_iter):
        if req.path == "/ratelimited":
            for _ in body_iter:
                pass
            self._send(sock, 503, b"limited\n", ["x-envoy-ratelimited: true"])
            return True
        if req.path != "/flaky":
            return super()._respond(sock, req, body_iter)
        body = b"".join(body_iter)
        key = req.query("key", "")
        with self._lock:
            n = self.counts.get(key, 0) + 1
            self.counts[key] = n
        if self.fail_all or n <= int(req.query("fail", "0")):
            time.sleep(int(req.query("delay", "0")) / 1000.0)
            grpc = req.query("grpc", None)
            extra = [req.query("hdr").replace(":", ": ", 1)] if req.query("hdr") else []
            if grpc is not None:
                self._send(sock, 200, b"", ["content-type: application/grpc",
                                            f"grpc-status: {grpc}"])
            else:
                self._send(sock, int(req.query("code", "503")), b"failed\n", extra)
            return True
        out = {"n": n, "length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
               "attempt": req.header("x-envoy-attempt-count")}
        self._send(sock, 200, json.dumps(out).encode(), ["content-type: application/json"])
        return True


def retry_route(prefix, cluster, policy, **action):
    return {"match": {"prefix": prefix},
            "route": {"cluster": cluster, "retry_policy": policy, **action}}


LOG_FORMAT = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST%\n"


def file_log(path):
    return [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": path, "log_format": {"text_format_source": {"inline_string": LOG_FORMAT}}}}]


class RetryTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = FlakyBackend()
        cls.addClassCleanup(cls.backend.stop)
        dead = h.ReservedPort()  # nothing listens here
        cls.addClassCleanup(dead.close)
        cls.dead_port = dead.port
        cls.logdir = tempfile.mkdtemp(prefix="skiff-retry-")
        cls.addClassCleanup(shutil.rmtree, cls.logdir, True)
        cls.log_path = os.path.join(cls.logdir, "access.log")
        fast = {"base_interval": "0.001s", "max_interval": "0.002s"}
        routes = [
            retry_route("/5xx/", "flaky", {"retry_on": "5xx", "num_retries": 2,
                                           "retry_back_off": fast},
                        prefix_rewrite="/"),
            retry_route("/codes/", "flaky", {"retry_on": "retriable-status-codes",
                                             "retriable_status_codes": [418],
                                             "retry_back_off": fast},
                        prefix_rewrite="/"),
            retry_route("/4xx/", "flaky", {"retry_on": "retriable-4xx"}, prefix_rewrite="/"),
            retry_route("/grpc/", "flaky", {"retry_on": "unavailable,resource-exhausted"},
                        prefix_rewrite="/"),
            retry_route("/gateway/", "flaky", {"retry_on": "gateway-error", "num_retries": 3},
                        prefix_rewrite="/"),
            retry_route("/connect/", "halfdead", {"retry_on": "connect-failure",
                                                  "num_retries": 3},
                        prefix_rewrite="/"),
            retry_route("/reset/", "flaky", {"retry_on": "reset", "num_retries": 1},
                        prefix_rewrite="/"),
            retry_route("/pertry/", "flaky", {"retry_on": "5xx", "num_retries": 2,
                                              "per_try_timeout": "0.3s"},
                        prefix_rewrite="/", timeout="5s"),
            retry_route("/pertry-noretry/", "flaky", {"retry_on": "retriable-4xx",
                                                      "per_try_timeout": "0.3s"},
                        prefix_rewrite="/", timeout="5s"),
            retry_route("/shrink/", "flaky", {"retry_on": "5xx", "num_retries": 1,
                                              "retry_back_off": fast},
                        prefix_rewrite="/", timeout="20s"),
            # gRPC: the client's grpc-timeout is the route timeout (max 0: no cap).
            retry_route("/grpc-pertry/", "flaky", {"retry_on": "unavailable", "num_retries": 1,
                                                   "per_try_timeout": "2.5s",
                                                   "retry_back_off": fast},
                        prefix_rewrite="/", max_grpc_timeout="0s"),
            retry_route("/rheaders/", "flaky", {
                "retry_on": "retriable-headers", "retry_back_off": fast,
                "retriable_headers": [{"name": "x-upstream-retry",
                                       "string_match": {"exact": "true"}}]},
                        prefix_rewrite="/"),
            retry_route("/rrequest/", "flaky", {
                "retry_on": "5xx", "retry_back_off": fast,
                "retriable_request_headers": [{"name": ":method",
                                               "string_match": {"exact": "GET"}}]},
                        prefix_rewrite="/"),
            retry_route("/idle/", "flaky", {"retry_on": "5xx", "num_retries": 1,
                                            "per_try_idle_timeout": "0.6s",
                                            "retry_back_off": fast},
                        prefix_rewrite="/", timeout="20s"),
            retry_route("/slow-backoff/", "flaky", {"retry_on": "5xx", "num_retries": 3,
                                                    "retry_back_off": {"base_interval": "2s",
                                                                       "max_interval": "2s"}},
                        prefix_rewrite="/"),
            retry_route("/overflow/", "tight", {"retry_on": "5xx"}, prefix_rewrite="/"),
            {"match": {"prefix": "/hold/"},
             "route": {"cluster": "single", "prefix_rewrite": "/", "timeout": "10s"}},
            retry_route("/pertry-pool/", "single", {"retry_on": "retriable-4xx",
                                                    "per_try_timeout": "0.5s"},
                        prefix_rewrite="/", timeout="10s"),
            {"match": {"prefix": "/none/"},
             "route": {"cluster": "flaky", "prefix_rewrite": "/"}},
        ]
        listener = h.listener("ingress", routes, hcm_extra={"access_log": file_log(cls.log_path)})
        # A virtual host with its own policy, which a route's replaces.
        listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
            "virtual_hosts"].insert(0, {
                "name": "vh_retry", "domains": ["vhost.test"],
                "retry_policy": {"retry_on": "5xx", "num_retries": 1},
                "include_request_attempt_count": True,
                "include_attempt_count_in_response": True,
                "routes": [retry_route("/own/", "flaky", {"retry_on": "retriable-4xx"},
                                       prefix_rewrite="/"),
                           {"match": {"prefix": "/"}, "route": {"cluster": "flaky"}}]})
        cls.skiff = cls.class_skiff(h.bootstrap(
            [listener],
            [h.cluster("flaky", [(LOCALHOST, cls.backend.port)]),
             h.cluster("halfdead", [(LOCALHOST, cls.dead_port), (LOCALHOST, cls.backend.port)],
                       connect_timeout="0.5s"),
             h.cluster("tight", [(LOCALHOST, cls.backend.port)],
                       extra={"circuit_breakers": {"thresholds": [{"max_retries": 0}]}}),
             # One upstream connection: a second request waits in the pool.
             h.cluster("single", [(LOCALHOST, cls.backend.port)],
                       extra={"circuit_breakers": {"thresholds": [{"max_connections": 1}]}})]),
            concurrency=1)
        cls.port = cls.skiff.port("ingress")

    def stat(self, cluster, name):
        return self.skiff.stats().get(f"cluster.{cluster}.{name}", 0)

    def stats(self, cluster="flaky"):
        names = ("upstream_rq_retry", "upstream_rq_retry_success", "upstream_rq_retry_overflow",
                 "upstream_rq_retry_limit_exceeded", "upstream_rq_per_try_timeout",
                 "upstream_rq_per_try_idle_timeout", "retry_or_shadow_abandoned")
        all_stats = self.skiff.stats()
        return {n: all_stats.get(f"cluster.{cluster}.{n}", 0) for n in names}

    def delta(self, before, cluster="flaky"):
        after = self.stats(cluster)
        return {k: after[k] - before[k] for k in after if after[k] != before[k]}

    def log_line(self, path):
        """The access log line of the request for path (written at its end;
        the log has the path after the route's prefix_rewrite)."""
        path = "/" + path.split("/", 2)[2]

        def find():
            try:
                with open(self.log_path) as fh:
                    lines = [ln for ln in fh.read().splitlines() if ln.startswith(path + " ")]
            except FileNotFoundError:
                return None
            return lines[-1] if lines else None
        h.wait_until(lambda: find() is not None, 5, what=f"access log line for {path}")
        return find()

    def test_503_then_200_is_retried(self):
        before = self.stats()
        status, _, body = h.http_request(self.port, path="/5xx/flaky?key=a&fail=1")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["n"], 2)
        self.assertEqual(self.delta(before), {"upstream_rq_retry": 1,
                                              "upstream_rq_retry_success": 1})
        line = self.log_line("/5xx/flaky?key=a&fail=1")
        self.assertEqual(line.split()[1:3], ["200", "-"])
        self.assertEqual(line.split()[3], f"{LOCALHOST}:{self.backend.port}")

    def test_retries_exhausted_answer_the_last_503_with_urx(self):
        before = self.stats()
        status, _, body = h.http_request(self.port, path="/5xx/flaky?key=b&fail=9")
        self.assertEqual(status, 503)
        self.assertEqual(body, b"failed\n")  # The upstream's own last answer.
        self.assertEqual(self.backend.counts["b"], 3)  # num_retries: 2
        self.assertEqual(self.delta(before), {"upstream_rq_retry": 2,
                                              "upstream_rq_retry_limit_exceeded": 1})
        self.assertEqual(self.log_line("/5xx/flaky?key=b&fail=9").split()[1:3], ["503", "URX"])

    def test_retriable_status_codes(self):
        status, _, _ = h.http_request(self.port, path="/codes/flaky?key=c&fail=1&code=418")
        self.assertEqual(status, 200)
        # A 503 is not in the list: not retried.
        before = self.stats()
        status, _, _ = h.http_request(self.port, path="/codes/flaky?key=d&fail=1&code=503")
        self.assertEqual(status, 503)
        self.assertEqual(self.backend.counts["d"], 1)
        self.assertEqual(self.delta(before), {})
        self.assertEqual(self.log_line("/codes/flaky?key=d&fail=1&code=503").split()[2], "-")

    def test_retriable_4xx_is_409_only(self):
        self.assertEqual(h.http_request(self.port, path="/4xx/flaky?key=e&fail=1&code=409")[0],
                         200)
        self.assertEqual(h.http_request(self.port, path="/4xx/flaky?key=f&fail=1&code=404")[0],
                         404)

    def test_gateway_error_is_502_to_504(self):
        self.assertEqual(
            h.http_request(self.port, path="/gateway/flaky?key=g&fail=3&code=504")[0], 200)
        self.assertEqual(self.backend.counts["g"], 4)
        self.assertEqual(
            h.http_request(self.port, path="/gateway/flaky?key=g2&fail=1&code=500")[0], 500)

    def test_grpc_status_in_response_headers(self):
        status, headers, _ = h.http_request(self.port, path="/grpc/flaky?key=h&fail=1&grpc=14")
        self.assertEqual((status, headers.get("grpc-status")), (200, None))
        self.assertEqual(self.backend.counts["h"], 2)
        # INTERNAL (13) is not in the list.
        status, headers, _ = h.http_request(self.port, path="/grpc/flaky?key=i&fail=1&grpc=13")
        self.assertEqual(headers.get("grpc-status"), "13")
        self.assertEqual(self.backend.counts["i"], 1)

    def test_ratelimited_response_is_not_retried(self):
        before = self.stats()
        self.assertEqual(h.http_request(self.port, path="/5xx/ratelimited")[0], 503)
        self.assertEqual(self.delta(before), {})

    def test_connect_failure_goes_to_the_live_host(self):
        before = self.stats("halfdead")
        for i in range(4):
            status, _, body = h.http_request(self.port, path=f"/connect/flaky?key=j{i}")
            self.assertEqual(status, 200, body)
        delta = self.delta(before, "halfdead")
        # Round robin alternates, and a retried request makes two picks: the
        # dead port gets every first attempt.
        self.assertEqual(delta, {"upstream_rq_retry": 4, "upstream_rq_retry_success": 4})

    def test_reset_before_the_response_is_retried(self):
        # /close closes the connection without a response, every time.
        before = self.stats()
        status, _, body = h.http_request(self.port, path="/reset/close")
        self.assertEqual(status, 503)
        # Envoy's body after a retry names the latest attempt's reason.
        self.assertTrue(
            body.rstrip().endswith(b"retried and the latest reset reason: connection termination"), body)
        self.assertEqual(self.delta(before), {"upstream_rq_retry": 1,
                                              "upstream_rq_retry_limit_exceeded": 1})
        self.assertEqual(self.log_line("/reset/close").split()[1:3], ["503", "UC,URX"])

    def test_post_body_is_retried_intact(self):
        body = os.urandom(300 * 1024)
        status, _, out = h.http_request(self.port, method="POST",
                                        path="/5xx/flaky?key=k&fail=2", body=body)
        self.assertEqual(status, 200)
        out = json.loads(out)
        self.assertEqual((out["n"], out["length"], out["sha256"]),
                         (3, len(body), hashlib.sha256(body).hexdigest()))

    def test_chunked_upload_is_retried_intact(self):
        pieces = [os.urandom(1000 + i) for i in range(20)]
        rc, out, err = h.curl("-s", "-X", "POST", "-H", "transfer-encoding: chunked",
                              "--data-binary", "@-",
                              f"http://{LOCALHOST}:{self.port}/5xx/flaky?key=l&fail=1",
                              input_bytes=b"".join(pieces))
        self.assertEqual(rc, 0, err)
        out = json.loads(out)
        self.assertEqual((out["n"], out["sha256"]),
                         (2, hashlib.sha256(b"".join(pieces)).hexdigest()))

    def test_body_over_the_buffer_limit_is_not_retried(self):
        before = self.stats()
        body = b"x" * (2 * 1024 * 1024)
        status, _, _ = h.http_request(self.port, method="POST", path="/5xx/flaky?key=m&fail=1",
                                      body=body)
        self.assertEqual(status, 503)
        self.assertEqual(self.backend.counts["m"], 1)
        self.assertEqual(self.delta(before), {"retry_or_shadow_abandoned": 1})

    def test_per_try_timeout_is_retried(self):
        before = self.stats()
        status, _, body = h.http_request(self.port, path="/pertry/flaky?key=n&fail=1&delay=1000")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["n"], 2)
        self.assertEqual(self.delta(before), {"upstream_rq_per_try_timeout": 1,
                                              "upstream_rq_retry": 1,
                                              "upstream_rq_retry_success": 1})
        # The upstream is told the per-try timeout, not the route's.
        status, _, body = h.http_request(self.port, path="/pertry/headers")
        headers = dict(json.loads(body)["headers"])
        self.assertEqual(headers.get("x-envoy-expected-rq-timeout-ms"), "300")

    def attempts(self, key):
        """The request headers of each attempt the backend got for key."""
        return [dict(r.headers) for r in self.backend.requests
                if r.path == "/flaky" and r.query("key", "") == key]

    def test_each_attempt_is_told_what_is_left_of_the_timeout(self):
        # The first attempt takes 300 ms to fail: the retry has at most
        # 20 s - 300 ms left, and is told so.
        status, _, body = h.http_request(self.port,
                                         path="/shrink/flaky?key=shrink&fail=1&delay=300")
        self.assertEqual((status, json.loads(body)["n"]), (200, 2))
        told = [int(a["x-envoy-expected-rq-timeout-ms"]) for a in self.attempts("shrink")]
        self.assertEqual(len(told), 2)
        self.assertEqual(told[0], 20000)
        self.assertLessEqual(told[1], 20000 - 300 + 1)  # +1: loop time is in whole ms
        self.assertGreater(told[1], 0)

    def test_each_attempt_is_told_its_per_try_timeout(self):
        # With time to spare, every attempt is told the per-try timeout.
        status, _, _ = h.http_request(self.port, path="/pertry/flaky?key=pertry-told&fail=1")
        self.assertEqual(status, 200)
        told = [a["x-envoy-expected-rq-timeout-ms"] for a in self.attempts("pertry-told")]
        self.assertEqual(told, ["300", "300"])

    def test_grpc_timeout_is_rewritten_on_each_attempt(self):
        # A 3 s grpc-timeout and a 2.5 s per-try timeout: the first attempt is
        # told 2.5 s (in both headers); it fails after 1 s, so the retry has at
        # most 2 s left, less than its per-try timeout.
        status, headers, _ = h.http_request(
            self.port, path="/grpc-pertry/flaky?key=grpc-told&fail=1&grpc=14&delay=1000",
            headers={"content-type": "application/grpc", "grpc-timeout": "3S"})
        self.assertEqual((status, headers.get("grpc-status")), (200, None))
        attempts = self.attempts("grpc-told")
        self.assertEqual(len(attempts), 2)
        self.assertEqual(attempts[0]["x-envoy-expected-rq-timeout-ms"], "2500")
        self.assertEqual(attempts[0]["grpc-timeout"], "2500m")
        second = int(attempts[1]["x-envoy-expected-rq-timeout-ms"])
        self.assertLessEqual(second, 3000 - 1000 + 1)
        self.assertGreater(second, 0)
        self.assertEqual(attempts[1]["grpc-timeout"], f"{second}m")

    def test_retriable_headers_retry_a_response_that_has_them(self):
        # A 200 is retried when it carries the header the policy names ...
        status, _, body = h.http_request(
            self.port, path="/rheaders/flaky?key=rh&fail=1&code=200&hdr=x-upstream-retry:true")
        self.assertEqual((status, json.loads(body)["n"]), (200, 2))
        # ... with the value it names only.
        status, headers, body = h.http_request(
            self.port, path="/rheaders/flaky?key=rh-no&fail=1&code=503&hdr=x-upstream-retry:no")
        self.assertEqual((status, headers.get("x-upstream-retry")), (503, "no"))
        self.assertEqual(self.backend.counts["rh-no"], 1)

    def test_retriable_request_headers_decide_which_requests_retry(self):
        status, _, body = h.http_request(self.port, path="/rrequest/flaky?key=rq-get&fail=1")
        self.assertEqual((status, json.loads(body)["n"]), (200, 2))
        before = self.stats()
        status, _, body = h.http_request(self.port, "POST", "/rrequest/flaky?key=rq-post&fail=1",
                                         body=b"once")
        self.assertEqual((status, body), (503, b"failed\n"))
        self.assertEqual(self.backend.counts["rq-post"], 1)
        self.assertEqual(self.delta(before), {})

    def test_per_try_idle_timeout_is_retried(self):
        # The first attempt says nothing for 3 s: after 0.6 s of silence it is
        # reset and retried.
        before = self.stats()
        status, _, body = h.http_request(self.port, path="/idle/flaky?key=idle&fail=1&delay=3000")
        self.assertEqual((status, json.loads(body)["n"]), (200, 2))
        self.assertEqual(self.delta(before), {"upstream_rq_per_try_idle_timeout": 1,
                                              "upstream_rq_retry": 1,
                                              "upstream_rq_retry_success": 1})

    def test_per_try_idle_timeout_starts_again_with_each_response_byte(self):
        # 150 chunks 10 ms apart take 1.5 s, but never 0.6 s of silence.
        before = self.stats()
        status, _, body = h.http_request(self.port, path="/idle/chunked?n=150")
        self.assertEqual((status, body.count(b"chunk-")), (200, 150))
        self.assertEqual(self.delta(before), {})

    def test_per_try_idle_timeout_after_the_response_started_resets_it(self):
        # Head and 10 body bytes, then 3 s of silence: too late to retry, the
        # downstream response is cut short (Envoy's UT).
        before = self.stats()
        with self.assertRaises(Exception):
            h.http_request(self.port, path="/idle/stall?ms=3000&k=idle-started")
        self.assertEqual(self.log_line("/idle/stall?ms=3000&k=idle-started").split()[1:3],
                         ["200", "UT"])
        self.assertEqual(self.delta(before), {"upstream_rq_per_try_idle_timeout": 1})

    def test_per_try_timeout_starts_when_the_pool_has_a_connection(self):
        # As in Envoy, the time a request waits for an upstream connection is
        # not the attempt's: the first request holds the cluster's only
        # connection for 1.5 s, three times the second's per_try_timeout, and
        # the second, answered at once when it gets the connection, succeeds.
        results = {}

        def hold():
            results["hold"] = h.http_request(self.port,
                                             path="/hold/flaky?key=pool-hold&fail=1&code=200"
                                                  "&delay=1500")[0]
        holder = threading.Thread(target=hold)
        holder.start()
        self.addCleanup(holder.join)
        h.wait_until(lambda: self.stat("single", "upstream_rq_active") == 1, 5,
                     what="the first request on the only upstream connection")
        before = self.stats("single")
        status, _, body = h.http_request(self.port, path="/pertry-pool/flaky?key=pool-wait")
        holder.join()
        self.assertEqual((results["hold"], status), (200, 200))
        self.assertEqual(json.loads(body)["n"], 1)
        self.assertEqual(self.delta(before, "single"), {})

    def test_per_try_timeout_without_a_retry_is_504_ut(self):
        status, _, _ = h.http_request(self.port,
                                      path="/pertry-noretry/flaky?key=o&fail=1&delay=1000")
        self.assertEqual(status, 504)
        self.assertEqual(self.log_line("/pertry-noretry/flaky?key=o&fail=1&delay=1000")
                         .split()[1:3], ["504", "UT"])

    def test_max_retries_overflow(self):
        before = self.stats("tight")
        status, _, _ = h.http_request(self.port, path="/overflow/flaky?key=p&fail=1")
        self.assertEqual(status, 503)
        self.assertEqual(self.delta(before, "tight"), {"upstream_rq_retry_overflow": 1})
        self.assertEqual(self.log_line("/overflow/flaky?key=p&fail=1").split()[2], "UO")

    def test_no_policy_no_retry(self):
        self.assertEqual(h.http_request(self.port, path="/none/flaky?key=q&fail=1")[0], 503)
        self.assertEqual(self.backend.counts["q"], 1)

    def test_virtual_host_policy_and_route_override(self):
        self.assertEqual(h.http_request(self.port, path="/flaky?key=r&fail=1",
                                        headers={"host": "vhost.test"})[0], 200)
        # The route's policy (retriable-4xx) replaces the virtual host's whole.
        self.assertEqual(h.http_request(self.port, path="/own/flaky?key=s&fail=1",
                                        headers={"host": "vhost.test"})[0], 503)
        self.assertEqual(self.backend.counts["s"], 1)

    def test_attempt_count_headers(self):
        status, headers, body = h.http_request(self.port, path="/flaky?key=y&fail=1",
                                               headers={"host": "vhost.test",
                                                        "x-envoy-attempt-count": "9"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["attempt"], "2")
        self.assertEqual(headers.get("x-envoy-attempt-count"), "2")
        status, headers, body = h.http_request(self.port, path="/flaky?key=z",
                                               headers={"host": "vhost.test"})
        self.assertEqual((json.loads(body)["attempt"], headers.get("x-envoy-attempt-count")),
                         ("1", "1"))
        # Other virtual hosts add none.
        status, headers, body = h.http_request(self.port, path="/5xx/flaky?key=z2")
        self.assertEqual((json.loads(body)["attempt"], headers.get("x-envoy-attempt-count")),
                         (None, None))

    def test_downstream_gone_between_attempts(self):
        # Every attempt fails after 200 ms; back-offs are up to 2 s (jittered
        # from 0). The client resets the stream during an attempt or a
        # back-off: no attempt starts after that, and skiff is unharmed.
        p = f.connect(self.port)
        self.addCleanup(p.close)
        p.send(f.headers(1, f.request_fields("/slow-backoff/flaky?key=t&fail=9&delay=200")))
        h.wait_until(lambda: self.backend.counts.get("t", 0) >= 1, 5, what="the first attempt")
        time.sleep(0.3)
        p.send(f.rst_stream(1, f.CANCEL))
        time.sleep(0.05)
        attempts = self.backend.counts["t"]
        time.sleep(2.5)
        self.assertEqual(self.backend.counts["t"], attempts)
        self.assertEqual(h.http_request(self.port, path="/5xx/flaky?key=u&fail=1")[0], 200)

    def test_http2_downstream(self):
        rc, out, err = h.curl("-s", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_code}",
                              f"http://{LOCALHOST}:{self.port}/5xx/flaky?key=v&fail=2")
        self.assertEqual(rc, 0, err)
        body, code = out.rsplit(b"\n", 1)
        self.assertEqual((code, json.loads(body)["n"]), (b"200", 3))


ISTIO_POLICY = {
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "num_retries": 2,
    "retriable_status_codes": [503],
    "retry_host_predicate": [{
        "name": "envoy.retry_host_predicates.previous_hosts",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host."
                                  "previous_hosts.v3.PreviousHostsPredicate"}}],
    "host_selection_retry_max_attempts": 5,
}


class PreviousHostsTest(h.SkiffTestCase):
    """Istio's route retry policy, loaded from a bootstrap file: a retry
    avoids the host already tried."""

    @classmethod
    def setUpClass(cls):
        cls.bad = FlakyBackend("bad", fail_all=True)
        cls.addClassCleanup(cls.bad.stop)
        cls.good = FlakyBackend("good")
        cls.addClassCleanup(cls.good.stop)
        # RANDOM picks the bad host again half the time; previous_hosts
        # re-picks (here up to 30 times, so that the test cannot flake).
        wide = dict(ISTIO_POLICY, host_selection_retry_max_attempts=30)
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("ingress", [retry_route("/istio/", "pair", ISTIO_POLICY, prefix_rewrite="/"),
                                    retry_route("/", "pair", wide)])],
            [h.cluster("pair", [(LOCALHOST, cls.bad.port), (LOCALHOST, cls.good.port)],
                       extra={"lb_policy": "RANDOM"})]),
            concurrency=1)
        cls.port = cls.skiff.port("ingress")

    def test_a_retry_avoids_the_host_already_tried(self):
        for i in range(30):
            status, headers, _ = h.http_request(self.port, path=f"/flaky?key=w{i}")
            self.assertEqual((status, headers.get("x-backend")), (200, "good"), i)
        retried = sum(1 for i in range(30) if self.bad.counts.get(f"w{i}"))
        self.assertEqual(sum(self.bad.counts.get(f"w{i}", 0) for i in range(30)), retried)
        self.assertEqual(self.skiff.stat("cluster.pair.upstream_rq_retry"), retried)

    def test_istio_default_policy_retries_a_503(self):
        status, _, _ = h.http_request(self.port, path="/istio/flaky?key=x")
        self.assertEqual(status, 200)


class FlakyH2Origin(ScriptedOrigin):
    """An HTTP/2 origin: /fail-once/K answers 503 the first time (per K), and
    /refuse-once/K refuses the stream (REFUSED_STREAM) the first time; then 200."""

    def __init__(self):
        self.seen = {}
        super().__init__()

    def on_request(self, peer, sid, path):
        with self._lock:
            n = self.seen.get(path, 0) + 1
            self.seen[path] = n
        if n == 1 and path.startswith("/refuse-once/"):
            peer.send(f.rst_stream(sid, f.REFUSED_STREAM))
            return
        status = "503" if n == 1 and path.startswith("/fail-once/") else "200"
        body = f"{status} {n}\n".encode()
        peer.send(f.frame(f.HEADERS, f.END_HEADERS, sid, f.block([(":status", status)])) +
                  f.data(sid, body, True))


class RetryHttp2UpstreamTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.origin = FlakyH2Origin()
        cls.addClassCleanup(cls.origin.stop)
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("ingress", [
                retry_route("/fail-once/", "h2", {"retry_on": "5xx"}),
                retry_route("/refuse-once/", "h2", {"retry_on": "refused-stream"})])],
            [h.cluster("h2", [(LOCALHOST, cls.origin.port)],
                       extra={"typed_extension_protocol_options": H2_UPSTREAM})]),
            concurrency=1)
        cls.port = cls.skiff.port("ingress")

    def test_503_then_200_over_h2c(self):
        before = self.skiff.stat("cluster.h2.upstream_rq_retry_success") or 0
        status, _, body = h.http_request(self.port, path="/fail-once/a")
        self.assertEqual((status, body), (200, b"200 2\n"))
        self.assertEqual(self.skiff.stat("cluster.h2.upstream_rq_retry_success"), before + 1)

    def test_refused_stream_is_retried(self):
        status, _, body = h.http_request(self.port, path="/refuse-once/b")
        self.assertEqual((status, body), (200, b"200 2\n"))

    def test_h2_downstream_to_h2_upstream(self):
        rc, out, err = h.curl("-s", "--http2-prior-knowledge",
                              f"http://{LOCALHOST}:{self.port}/fail-once/c")
        self.assertEqual((rc, out), (0, b"200 2\n"), err)


if __name__ == "__main__":
    unittest.main()
