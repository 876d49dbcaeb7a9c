"""HTTP access logs (HttpConnectionManager.access_log), as Envoy writes them:
a file log in Envoy's default format and one in JSON, checked line by line
for a proxied 200, a 404 with no route (NR), 503s from a dead upstream (UF)
and an empty cluster (UH), and a direct response; lines written before a
drain are flushed at exit; SIGUSR1 reopens the file; a bad format is refused
with the field's path."""

import json
import os
import re
import signal
import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST

JSON_FORMAT = {
    "code": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(:PATH)%",
    "id": "%REQ(X-TEST-ID)%",
    "cluster": "%UPSTREAM_CLUSTER%",
    "host": "%UPSTREAM_HOST%",
    "sent": "%BYTES_SENT%",
    "received": "%BYTES_RECEIVED%",
    "protocol": "%PROTOCOL%",
    "route": "%ROUTE_NAME%",
    "downstream": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "local": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "termination": "%CONNECTION_TERMINATION_DETAILS%",
    "transport_failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "cluster_raw": "%UPSTREAM_CLUSTER_RAW%",
}

# Istio's default sidecar access log format (pilot's EnvoyTextLogFormat since
# Istio 1.23), verbatim.
ISTIO_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    '%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% '
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    '%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% '
    '%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n')

ISTIO_LINE = re.compile(
    r'^\[(\S+)\] "(\S+) (\S+) (\S+)" (\d+) (\S+) (\S+) (\S+) "([^"]*)" (\d+) (\d+) (\d+) '
    r'(\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" (\S+) (\S+) (\S+) (\S+) (\S+) '
    r'(\S+)$')

# Envoy's default format: [time] "METHOD PATH PROTOCOL" CODE FLAGS RX TX DURATION
# UPSTREAM-SERVICE-TIME "XFF" "UA" "REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST"
DEFAULT_LINE = re.compile(
    r'^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] "(\S+) (\S+) (\S+)" (\d+) (\S+) (\d+) (\d+) '
    r'(\d+) (\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)"$')


def access_logs(text_path, json_path, istio_path=None):
    istio = [] if istio_path is None else [
        {"name": "envoy.access_loggers.file",
         "typed_config": {
             "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
             "path": istio_path,
             "log_format": {"text_format_source": {"inline_string": ISTIO_FORMAT}}}}]
    return istio + [
        {"name": "envoy.access_loggers.file",
         "typed_config": {
             "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
             "path": text_path}},
        {"name": "envoy.access_loggers.file",
         "typed_config": {
             "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
             "path": json_path,
             "log_format": {"json_format": JSON_FORMAT}}},
    ]


def read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


class AccessLogTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.nginx = cls.class_nginx()
        dead = h.ReservedPort()  # nothing listens here
        cls.addClassCleanup(dead.close)
        cls.dir = tempfile.mkdtemp(prefix="skiff-access-log-")
        cls.text_path = os.path.join(cls.dir, "access.log")
        cls.json_path = os.path.join(cls.dir, "access.json")
        cls.istio_path = os.path.join(cls.dir, "istio.log")
        routes = [
            dict(h.route("/b64", cluster="nginx"), name="to_nginx"),
            h.route("/dead", cluster="dead"),
            h.route("/empty", cluster="empty"),
            dict(h.route("/direct", direct="hello\n", status=201), name="direct"),
        ]
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("ingress", routes,
                        hcm_extra={"access_log": access_logs(cls.text_path, cls.json_path,
                                                             cls.istio_path)})],
            [h.cluster("nginx", [(LOCALHOST, cls.nginx.port)]),
             h.cluster("dead", [(LOCALHOST, dead.port)], connect_timeout="0.5s"),
             h.cluster("empty", [])]))
        cls.port = cls.skiff.port("ingress")

    @classmethod
    def tearDownClass(cls):
        for p in (cls.text_path, cls.json_path, cls.istio_path, cls.text_path + ".1"):
            if os.path.exists(p):
                os.remove(p)
        os.rmdir(cls.dir)

    def request(self, path, test_id, **kw):
        """curl, so that the user agent is a real client's; returns the status."""
        rc, out, err = h.curl("-o", "/dev/null", "-w", "%{http_code}",
                              "-H", f"x-test-id: {test_id}", "-H", f"x-request-id: rid-{test_id}",
                              *kw.get("args", ()), f"http://{LOCALHOST}:{self.port}{path}")
        self.assertEqual(rc, 0, err)
        return int(out)

    def json_line(self, test_id, path=None):
        """The JSON line of the request tagged test_id, once the one-second
        flush has written it."""
        path = path or self.json_path

        def find():
            for line in read_lines(path):
                entry = json.loads(line)
                if entry.get("id") == test_id:
                    return entry
            return None

        return h.wait_until(find, 5, what=f"the access log line of {test_id}")

    def text_line(self, test_id):
        def find():
            for line in read_lines(self.text_path):
                if f'"rid-{test_id}"' in line:
                    return line
            return None

        line = h.wait_until(find, 5, what=f"the text access log line of {test_id}")
        m = DEFAULT_LINE.match(line)
        self.assertIsNotNone(m, line)
        return m.groups()

    def test_proxied_200(self):
        self.assertEqual(self.request("/b64", "ok"), 200)
        e = self.json_line("ok")
        self.assertEqual(e["code"], 200)  # A number, as Envoy types it.
        self.assertIsNone(e["flags"])
        self.assertEqual((e["method"], e["path"], e["protocol"]), ("GET", "/b64", "HTTP/1.1"))
        self.assertEqual(e["cluster"], "nginx")
        self.assertEqual(e["host"], f"{LOCALHOST}:{self.nginx.port}")
        self.assertEqual(e["sent"], 64)
        self.assertEqual(e["received"], 0)
        self.assertEqual(e["route"], "to_nginx")
        self.assertEqual((e["details"], e["termination"], e["transport_failure"], e["cluster_raw"]),
                         ("via_upstream", None, None, "nginx"))
        self.assertEqual(e["downstream"], LOCALHOST)
        self.assertEqual(e["local"], f"{LOCALHOST}:{self.port}")
        (_, method, path, proto, code, flags, rx, tx, _, _, xff, ua, rid, authority,
         upstream) = self.text_line("ok")
        self.assertEqual((method, path, proto, code, flags, rx, tx),
                         ("GET", "/b64", "HTTP/1.1", "200", "-", "0", "64"))
        self.assertTrue(ua.startswith("curl/"), ua)
        self.assertEqual((xff, rid, authority, upstream),
                         ("-", "rid-ok", f"{LOCALHOST}:{self.port}",
                          f"{LOCALHOST}:{self.nginx.port}"))

    def test_post_counts_bytes_received(self):
        # nginx refuses a POST to a static file: what matters is the count.
        self.assertEqual(self.request("/b64", "post", args=("--data-binary", "x" * 100)), 405)
        e = self.json_line("post")
        self.assertEqual((e["method"], e["code"], e["received"]), ("POST", 405, 100))

    def test_no_route_is_404_nr(self):
        self.assertEqual(self.request("/nowhere", "nr"), 404)
        e = self.json_line("nr")
        self.assertEqual((e["code"], e["flags"], e["cluster"], e["host"], e["route"]),
                         (404, "NR", None, None, None))
        self.assertEqual(e["details"], "route_not_found")
        self.assertEqual(self.text_line("nr")[4:6], ("404", "NR"))

    def test_dead_upstream_is_503_uf(self):
        self.assertEqual(self.request("/dead", "uf"), 503)
        e = self.json_line("uf")
        self.assertEqual((e["code"], e["flags"], e["cluster"]), (503, "UF", "dead"))
        # Envoy's transport failure reason for a refused connect: "delayed"
        # when the socket reports it, "immediate" (with the address) when
        # connect() itself fails; spaces print as "_".
        self.assertRegex(e["details"],
                         r"^upstream_reset_before_response_started\{remote_connection_failure\|"
                         r"(delayed_connect_error:_Connection_refused|immediate_connect_error:"
                         r"_Connection_refused\|remote_address:127\.0\.0\.1:\d+)\}$")
        self.assertRegex(e["transport_failure"], r"^(delayed|immediate)_connect_error:_Connection_refused")
        self.assertTrue(e["host"].startswith(f"{LOCALHOST}:"), e)
        self.assertEqual(self.text_line("uf")[4:6], ("503", "UF"))

    def test_empty_cluster_is_503_uh(self):
        self.assertEqual(self.request("/empty", "uh"), 503)
        e = self.json_line("uh")
        self.assertEqual((e["code"], e["flags"], e["cluster"], e["host"]),
                         (503, "UH", "empty", None))
        self.assertEqual(e["details"], "no_healthy_upstream")

    def test_direct_response(self):
        self.assertEqual(self.request("/direct", "direct"), 201)
        e = self.json_line("direct")
        self.assertEqual((e["code"], e["flags"], e["cluster"], e["sent"], e["route"]),
                         (201, None, None, 6, "direct"))
        self.assertEqual(e["details"], "direct_response")

    def test_refused_upgrade_is_logged_with_its_request(self):
        # No upgrade_configs: a WebSocket upgrade gets 403 from the connection
        # manager before the filter chain; its line still shows the request.
        self.assertEqual(self.request("/b64", "upgrade", args=(
            "-H", "Connection: Upgrade", "-H", "Upgrade: websocket")), 403)
        e = self.json_line("upgrade")
        self.assertEqual((e["code"], e["method"], e["path"], e["cluster"]),
                         (403, "GET", "/b64", None))
        # The connection closes after the 403, which ended the stream: no DC.
        self.assertEqual((e["details"], e["flags"]), ("upgrade_failed", None))

    def line_with_details(self, details):
        """The line of a request refused before its head was parsed."""
        def find():
            for line in read_lines(self.json_path):
                entry = json.loads(line)
                if entry.get("details") == details and entry.get("method") is None:
                    return entry
            return None

        return h.wait_until(find, 5, what=f"the access log line with details {details}")

    def test_malformed_request_head_is_logged(self):
        # Refused by the codec before a stream began: Envoy's codec still
        # logs it, DPE with its details, and no request fields.
        data, closed = h.raw_exchange(self.port, b"GET /b64 HTTP/1.1\r\nHost: x\r\n"
                                                 b"x-test-id: head\r\nno colon here\r\n\r\n")
        # Envoy's body: the reason phrase; the parser's words are not sent.
        [(status, headers, body)] = h.parse_responses(data)
        self.assertEqual((status, headers["content-length"], body), (400, "11", b"Bad Request"))
        e = self.line_with_details("http1.codec_error")
        self.assertEqual((e["code"], e["flags"], e["method"], e["path"], e["id"], e["protocol"]),
                         (400, "DPE", None, None, None, "HTTP/1.1"))
        self.assertEqual(e["downstream"], LOCALHOST)
        self.assertEqual(e["sent"], 11)

    def test_unsupported_transfer_coding_is_logged(self):
        # Envoy's codec answers 501 and logs DPE with
        # http1.invalid_transfer_encoding, before any stream began.
        data, closed = h.raw_exchange(self.port, b"POST /b64 HTTP/1.1\r\nHost: x\r\n"
                                                 b"Transfer-Encoding: gzip, chunked\r\n\r\n"
                                                 b"0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 501 Not Implemented\r\n"), data[:64])
        self.assertTrue(data.endswith(b"\r\n\r\nNot Implemented"), data)
        self.assertTrue(closed)
        e = self.line_with_details("http1.invalid_transfer_encoding")
        self.assertEqual((e["code"], e["flags"], e["method"], e["protocol"]),
                         (501, "DPE", None, "HTTP/1.1"))

    def test_oversized_header_block_is_logged(self):
        data, _ = h.raw_exchange(self.port, b"GET /b64 HTTP/1.1\r\nHost: x\r\nx-big: " +
                                 b"a" * (70 * 1024) + b"\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 431 "), data[:64])
        self.assertTrue(data.endswith(b"\r\n\r\nRequest Header Fields Too Large"), data[-100:])
        e = self.line_with_details("http1.headers_too_large")
        self.assertEqual((e["code"], e["flags"], e["method"]), (431, "DPE", None))

    def test_malformed_body_is_logged_with_its_request(self):
        # The head reached the connection manager, the chunked body did not
        # parse: the stream's line has its request, DPE and the codec's
        # details (not an HTTP/2 reset's).
        data, closed = h.raw_exchange(self.port, b"POST /dead HTTP/1.1\r\nHost: x\r\n"
                                                 b"x-test-id: badchunk\r\n"
                                                 b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:64])
        self.assertTrue(data.endswith(b"\r\n\r\nBad Request"), data)
        self.assertTrue(closed)
        e = self.json_line("badchunk")
        self.assertEqual((e["code"], e["flags"], e["method"], e["path"], e["details"]),
                         (400, "DPE", "POST", "/dead", "http1.codec_error"))
        self.assertEqual(e["sent"], 11)

    def istio_line(self, test_id):
        def find():
            for line in read_lines(self.istio_path):
                if f'"rid-{test_id}"' in line:
                    return line
            return None

        line = h.wait_until(find, 5, what=f"the Istio-format line of {test_id}")
        m = ISTIO_LINE.match(line)
        self.assertIsNotNone(m, line)
        return m.groups()

    def test_istio_default_format(self):
        self.assertEqual(self.request("/b64", "istio"), 200)
        (_, method, path, proto, code, flags, details, termination, transport, rx, tx, _,
         _, xff, ua, rid, authority, upstream, cluster, upstream_local, local, remote, sni,
         route) = self.istio_line("istio")
        self.assertEqual((method, path, proto, code, flags, details, termination, transport),
                         ("GET", "/b64", "HTTP/1.1", "200", "-", "via_upstream", "-", "-"))
        self.assertEqual((rx, tx, xff, rid, authority, upstream, cluster),
                         ("0", "64", "-", "rid-istio", f"{LOCALHOST}:{self.port}",
                          f"{LOCALHOST}:{self.nginx.port}", "nginx"))
        self.assertTrue(ua.startswith("curl/"), ua)
        self.assertTrue(upstream_local.startswith(f"{LOCALHOST}:"), upstream_local)
        self.assertEqual((local, sni, route), (f"{LOCALHOST}:{self.port}", "-", "to_nginx"))
        self.assertTrue(remote.startswith(f"{LOCALHOST}:"), remote)
        # A local reply reads as Istio shows one: flag, then its details.
        self.assertEqual(self.request("/nowhere", "istio-nr"), 404)
        fields = self.istio_line("istio-nr")
        self.assertEqual(fields[4:9], ("404", "NR", "route_not_found", "-", "-"))

    def test_sigusr1_reopens_the_file(self):
        self.assertEqual(self.request("/b64", "before-rotate"), 200)
        self.text_line("before-rotate")
        rotated = self.text_path + ".1"
        os.rename(self.text_path, rotated)
        self.skiff.signal(signal.SIGUSR1)
        # Lines go to the new file once the writer has reopened it; a request
        # sent before that lands in the rotated one, so send until one arrives.
        def new_file_has_a_line():
            self.request("/b64", "after-rotate")
            return any('"rid-after-rotate"' in l for l in read_lines(self.text_path))

        h.wait_until(new_file_has_a_line, 10, interval=0.3, what="a line in the reopened file")
        self.assertTrue(any('"rid-before-rotate"' in l for l in read_lines(rotated)))


class AccessLogUpstreamTlsFailureTest(h.SkiffTestCase):
    def test_tls_handshake_failure_reason_is_logged(self):
        # nginx's certificate comes from a CA skiff does not trust: the
        # handshake fails, and the line says why, as Envoy's does.
        trusted, other = h.Certificates(), h.Certificates()
        self.addCleanup(trusted.cleanup)
        self.addCleanup(other.cleanup)
        nginx = h.Nginx(tls=other.leaf("localhost"))
        self.addCleanup(nginx.stop)
        d = tempfile.mkdtemp(prefix="skiff-access-log-")
        text_path, json_path = os.path.join(d, "a.log"), os.path.join(d, "a.json")
        skiff = h.Skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="nginx_tls")],
                        hcm_extra={"access_log": access_logs(text_path, json_path)})],
            [h.cluster("nginx_tls", [(LOCALHOST, nginx.port)],
                       extra={"transport_socket": h.upstream_tls(trusted.ca, "localhost")})]))
        self.addCleanup(skiff.stop)
        status, _, _ = h.http_request(skiff.port("ingress"), path="/b64",
                                      headers={"x-test-id": "tls"})
        self.assertEqual(status, 503)

        def find():
            for line in read_lines(json_path):
                entry = json.loads(line)
                if entry.get("id") == "tls":
                    return entry
            return None

        e = h.wait_until(find, 5, what="the access log line of the TLS failure")
        self.assertEqual(e["flags"], "UF")
        reason = e["transport_failure"]
        self.assertRegex(reason, r"^TLS_error:\|\S+:TLS_error_end$")  # Spaces become '_'.
        self.assertIn("certificate", reason)
        self.assertEqual(e["details"], "upstream_reset_before_response_started"
                                       "{remote_connection_failure|" + reason + "}")
        for p in (text_path, json_path):
            if os.path.exists(p):
                os.remove(p)
        os.rmdir(d)


class AccessLogExitTest(h.SkiffTestCase):
    def test_lines_are_written_before_exit(self):
        d = tempfile.mkdtemp(prefix="skiff-access-log-")
        text_path, json_path = os.path.join(d, "a.log"), os.path.join(d, "a.json")
        skiff = h.Skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", direct="hi\n")],
                        hcm_extra={"access_log": access_logs(text_path, json_path)})]))
        self.addCleanup(skiff.stop)
        port = skiff.port("ingress")
        for i in range(20):
            self.assertEqual(h.http_request(port, path=f"/n{i}",
                                            headers={"x-test-id": f"n{i}"})[0], 200)
        # Well inside the one-second flush interval: the lines are still in
        # the workers' buffers, and a drain must not lose them.
        skiff.signal(signal.SIGTERM)
        self.assertEqual(skiff.wait(15), 0)
        ids = [json.loads(l)["id"] for l in read_lines(json_path)]
        self.assertEqual(sorted(ids), sorted(f"n{i}" for i in range(20)))
        self.assertEqual(len(read_lines(text_path)), 20)
        for p in (text_path, json_path):
            os.remove(p)
        os.rmdir(d)


class AccessLogConfigErrorsTest(unittest.TestCase):
    HCM = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"

    def validate(self, log):
        config = h.bootstrap([h.listener("ingress", [h.route("/", direct="x")],
                                         hcm_extra={"access_log": [log]})])
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(config)
        self.addCleanup(os.remove, f.name)
        return h.run_skiff(["--mode", "validate", "-c", f.name])

    def stdout_log(self, log_format):
        return {"name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                    "log_format": log_format}}

    def test_unknown_operator_is_refused_with_its_path(self):
        rc, out = self.validate(self.stdout_log(
            {"text_format_source": {"inline_string": "%RESPONSE_CODE% %NOT_AN_OPERATOR%\n"}}))
        self.assertEqual(rc, 1, out)
        self.assertIn(self.HCM + ".access_log[0].typed_config.log_format.text_format_source."
                      "inline_string: command operator %NOT_AN_OPERATOR% is not supported", out)

    def test_bad_format_is_refused_with_its_path(self):
        rc, out = self.validate(self.stdout_log({"json_format": {"status": "%RESPONSE_CODE"}}))
        self.assertEqual(rc, 1, out)
        self.assertIn(self.HCM + ".access_log[0].typed_config.log_format.json_format.status: "
                      "'%' at position 0 does not start a command operator", out)

    def test_unsupported_logger_is_refused_with_its_path(self):
        rc, out = self.validate({"name": "not-a-logger", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
        self.assertEqual(rc, 1, out)
        self.assertIn(self.HCM + ".access_log[0].typed_config: type URL 'type.googleapis.com/"
                      "envoy.extensions.filters.http.router.v3.Router' is not supported yet", out)

    def test_grpc_logger_is_refused_with_its_path(self):
        # Envoy's gRPC access logger (Istio's envoy_http_als provider): its
        # proto is not among skiff's, and the error still names the field.
        rc, out = self.validate({"name": "envoy.access_loggers.http_grpc", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3."
                     "HttpGrpcAccessLogConfig",
            "common_config": {"log_name": "http_envoy_accesslog", "transport_api_version": "V3",
                              "grpc_service": {"envoy_grpc": {"cluster_name": "als"}}}}})
        self.assertEqual(rc, 1, out)
        self.assertIn(self.HCM + ".access_log[0].typed_config: unknown type URL 'type.googleapis."
                      "com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig'", out)

    def test_valid_stdout_log_validates(self):
        rc, out = self.validate(self.stdout_log({"text_format": "%RESPONSE_CODE%\n"}))
        self.assertEqual(rc, 0, out)

    def test_json_format_options_are_accepted(self):
        # Envoy sorts json_format's keys whatever sort_properties says.
        for sort in (True, False):
            rc, out = self.validate(self.stdout_log({"json_format": {"b": "%RESPONSE_CODE%"},
                                                     "json_format_options": {
                                                         "sort_properties": sort}}))
            self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
