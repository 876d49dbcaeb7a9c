#include "proxy/access_log/formatter.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "proxy/access_log/access_log.h"
#include "proxy/access_log/log_file.h"
#include "proxy/access_log/response_code_details.h"

namespace skiff::access_log {
namespace {

// A finished request: GET /a through cluster "backend", 200 after 25 ms.
struct Fixture {
  StreamRecord record;
  HeaderMap request;
  HeaderMap response;
  LogContext context;

  Fixture() {
    // 2016-04-15T20:17:00.310123456Z
    record.start_unix_ns = 1460751420LL * 1000000000 + 310123456;
    record.start_ns = 1000000000;
    record.request_end_ns = record.start_ns + 2000000;
    record.upstream_first_byte_ns = record.start_ns + 20000000;
    record.response_end_ns = record.start_ns + 25000000;
    record.bytes_received = 154;
    record.bytes_sent = 226;
    record.upstream_cluster = "backend";
    record.upstream_host = "10.0.2.1:80";
    request.addView(":method", "GET");
    request.addView(":path", "/a");
    request.addView(":authority", "example.com");
    request.addView("user-agent", "curl/8.0");
    request.addView("x-request-id", "id-1");
    response.addView(":status", "200");
    response.addView("x-envoy-upstream-service-time", "17");
    context.record = &record;
    context.end_ns = record.start_ns + 25900000;
    context.request_headers = &request;
    context.response_headers = &response;
    context.response_code = 200;
    context.protocol = "HTTP/1.1";
    context.downstream_remote_address = "10.0.35.28:51234";
    context.route_name = "r1";
  }
};

std::string render(std::string_view format, const LogContext& c, bool omit_empty = false) {
  auto f = Formatter::text(format, omit_empty);
  EXPECT_TRUE(f.isOk()) << f.status().message();
  if (!f.isOk()) return "";
  std::string out;
  (*f)->format(c, out);
  return out;
}

std::string renderJsonText(const std::string& json, const LogContext& c);

std::string parseError(std::string_view format) {
  auto f = Formatter::text(format, false);
  EXPECT_FALSE(f.isOk());
  return f.isOk() ? "" : f.status().message();
}

TEST(Formatter, DefaultFormatReadsAsEnvoys) {
  Fixture x;
  EXPECT_EQ(render(Formatter::kDefaultFormat, x.context),
            "[2016-04-15T20:17:00.310Z] \"GET /a HTTP/1.1\" 200 - 154 226 25 17 \"-\" "
            "\"curl/8.0\" \"id-1\" \"example.com\" \"10.0.2.1:80\"\n");
}

TEST(Formatter, Operators) {
  Fixture x;
  x.context.response_flags = "UF,URX";
  x.context.requested_server_name = "sni.example";
  x.context.downstream_local_address = "[::1]:10000";
  x.record.upstream_local_address = "10.0.0.5:40000";
  EXPECT_EQ(render("%RESPONSE_FLAGS% %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% "
                   "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "
                   "%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% "
                   "%REQUESTED_SERVER_NAME% %ROUTE_NAME% %PROTOCOL%",
                   x.context),
            "UF,URX backend 10.0.0.5:40000 10.0.35.28:51234 10.0.35.28 [::1]:10000 ::1 "
            "sni.example r1 HTTP/1.1");
  EXPECT_EQ(
      render("%REQUEST_DURATION% %RESPONSE_DURATION% %RESPONSE_TX_DURATION% %DURATION%", x.context),
      "2 20 5 25");
  EXPECT_EQ(render("100%% %BYTES_RECEIVED%/%BYTES_SENT%", x.context), "100% 154/226");
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  EXPECT_EQ(render("%HOSTNAME%", x.context), host);
}

TEST(Formatter, DetailsAndTransportFailure) {
  Fixture x;
  const char* format =
      "%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
      "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %UPSTREAM_CLUSTER_RAW%";
  EXPECT_EQ(render(format, x.context), "- - \"-\" backend");
  x.record.response_code_details = details::kViaUpstream;
  EXPECT_EQ(render(format, x.context), "via_upstream - \"-\" backend");
  // A TLS handshake that failed: Envoy puts the transport's reason inside
  // the details' braces, and prints spaces as underscores.
  x.record.response_code_details = details::kResetBeforeStartedConnectionFailure;
  x.record.upstream_transport_failure_reason = "TLS_error:|certificate verify failed:TLS_error_end";
  EXPECT_EQ(render(format, x.context),
            "upstream_reset_before_response_started{remote_connection_failure|TLS_error:|"
            "certificate_verify_failed:TLS_error_end} - "
            "\"TLS_error:|certificate_verify_failed:TLS_error_end\" backend");
  // Details of another kind keep their own text.
  x.record.response_code_details = details::kRouteNotFound;
  EXPECT_EQ(render("%RESPONSE_CODE_DETAILS%", x.context), "route_not_found");
  EXPECT_EQ(
      renderJsonText(R"({"d": "%RESPONSE_CODE_DETAILS%", "t": "%CONNECTION_TERMINATION_DETAILS%"})",
                     x.context),
      "{\"d\":\"route_not_found\",\"t\":null}\n");
}

// Istio's default sidecar access log format (pilot's EnvoyTextLogFormat, as
// of Istio 1.23, with UPSTREAM_CLUSTER_RAW), verbatim: it loads, and a
// proxied request reads as Istio's sidecars print it.
TEST(Formatter, IstioDefaultFormat) {
  constexpr std::string_view kIstio =
      "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
      "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
      "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
      "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
      "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
      "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
      "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";
  Fixture x;
  x.record.response_code_details = details::kViaUpstream;
  x.record.upstream_local_address = "10.0.0.5:40000";
  x.context.downstream_local_address = "10.0.0.9:8080";
  EXPECT_EQ(render(kIstio, x.context),
            "[2016-04-15T20:17:00.310Z] \"GET /a HTTP/1.1\" 200 - via_upstream - \"-\" 154 226 25 "
            "17 \"-\" \"curl/8.0\" \"id-1\" \"example.com\" \"10.0.2.1:80\" backend "
            "10.0.0.5:40000 10.0.0.9:8080 10.0.35.28:51234 - r1\n");
}

TEST(Formatter, HeadersAlternativesAndTruncation) {
  Fixture x;
  EXPECT_EQ(render("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", x.context), "/a");
  x.request.addView("x-envoy-original-path", "/original");
  EXPECT_EQ(render("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", x.context), "/original");
  EXPECT_EQ(render("%REQ(USER-AGENT):4%|%REQUEST_HEADER(user-agent):100%", x.context),
            "curl|curl/8.0");
  EXPECT_EQ(render("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% %RESPONSE_HEADER(missing)%", x.context),
            "17 -");
  EXPECT_EQ(render("%TRAILER(grpc-status)%", x.context), "-");
  x.record.response_trailers = std::make_unique<HeaderMap>();
  x.record.response_trailers->addView("grpc-status", "0");
  EXPECT_EQ(render("%TRAILER(GRPC-STATUS)% %RESPONSE_TRAILER(grpc-status)%", x.context), "0 0");
}

TEST(Formatter, MissingValuesAreDashesOrNothing) {
  LogContext c;  // A stream that got nowhere: no record, no headers, no response.
  const char* format = "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST% %REQ(:PATH)% %DURATION%";
  EXPECT_EQ(render(format, c), "0 - - - -");
  EXPECT_EQ(render(format, c, true), "0    ");
}

TEST(Formatter, StartTimeFormats) {
  Fixture x;
  EXPECT_EQ(render("%START_TIME(%Y/%m/%dT%H:%M:%S%z)%", x.context), "2016/04/15T20:17:00+0000");
  EXPECT_EQ(render("%START_TIME(%s.%3f)%", x.context), "1460751420.310");
  EXPECT_EQ(render("%START_TIME(%f)% %START_TIME(%6f)% %START_TIME(%E3S)%", x.context),
            "310123456 310123 00.310");
  EXPECT_EQ(render("%START_TIME(%%)%", x.context), "%");
}

TEST(Formatter, StartTimeCacheFollowsTheSecondAndTheFormat) {
  // Texts without a fraction are kept per second and per format: lines
  // that alternate formats, or cross into the next second, get their own.
  Fixture x;
  const char* both = "%START_TIME% %START_TIME(%H:%M:%S %s)%";
  EXPECT_EQ(render(both, x.context), "2016-04-15T20:17:00.310Z 20:17:00 1460751420");
  x.record.start_unix_ns += 500000000;  // Same second, later in it.
  EXPECT_EQ(render(both, x.context), "2016-04-15T20:17:00.810Z 20:17:00 1460751420");
  x.record.start_unix_ns += 500000000;  // The next second.
  EXPECT_EQ(render(both, x.context), "2016-04-15T20:17:01.310Z 20:17:01 1460751421");
  EXPECT_EQ(render("%START_TIME(%S.%3f)%", x.context), "01.310");
}

TEST(Formatter, UnknownAndMalformedOperatorsAreErrors) {
  EXPECT_EQ(parseError("%NOT_AN_OPERATOR%"), "command operator %NOT_AN_OPERATOR% is not supported");
  EXPECT_EQ(parseError("%RESPONSE_CODE_DETAILS(x)%"),
            "command operator %RESPONSE_CODE_DETAILS% takes no argument");
  EXPECT_EQ(parseError("abc %DURATION"),
            "'%' at position 4 does not start a command operator (write %% for a literal %)");
  EXPECT_EQ(parseError("50% off"),
            "'%' at position 2 does not start a command operator (write %% for a literal %)");
  EXPECT_EQ(parseError("%REQ%"), "command operator %REQ% needs a header name: %REQ(NAME)%");
  EXPECT_EQ(parseError("%REQ(a%"), "command operator at position 0 has no closing ')'");
  EXPECT_EQ(parseError("%DURATION(x)%"), "command operator %DURATION% takes no argument");
  EXPECT_EQ(parseError("%REQ(a?b?c)%"),
            "command operator %REQ(a?b?c)% must name one header, "
            "or two as A?B");
  EXPECT_EQ(parseError("%REQ(a):x%"),
            "command operator at position 0 has an invalid length after ':'");
}

google::protobuf::Struct jsonStruct(const std::string& json) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok()) << json;
  return s;
}

std::string renderJson(const std::string& json, const LogContext& c, bool omit_empty = false) {
  auto f = Formatter::json(jsonStruct(json), omit_empty);
  EXPECT_TRUE(f.isOk()) << f.status().message();
  if (!f.isOk()) return "";
  std::string out;
  (*f)->format(c, out);
  return out;
}

std::string renderJsonText(const std::string& json, const LogContext& c) {
  return renderJson(json, c);
}

TEST(Formatter, JsonKeepsTypesOfSingleOperators) {
  Fixture x;
  EXPECT_EQ(
      renderJson(R"({"code": "%RESPONSE_CODE%", "d": "%DURATION%", "flags": "%RESPONSE_FLAGS%",
                           "path": "%REQ(:PATH)%", "mixed": "%RESPONSE_CODE% in %DURATION% ms",
                           "n": 1.5, "b": true, "nested": {"host": "%UPSTREAM_HOST%",
                           "list": ["%BYTES_SENT%", "x\"y"]}})",
                 x.context),
      "{\"b\":true,\"code\":200,\"d\":25,\"flags\":null,\"mixed\":\"200 in 25 ms\","
      "\"n\":1.5,\"nested\":{\"host\":\"10.0.2.1:80\",\"list\":[226,\"x\\\"y\"]},"
      "\"path\":\"/a\"}\n");
}

TEST(Formatter, JsonOmitsEmptyValues) {
  Fixture x;
  EXPECT_EQ(renderJson(R"({"a": "%RESPONSE_FLAGS%", "b": "%REQ(missing)% x", "c": "%PROTOCOL%"})",
                       x.context, true),
            "{\"b\":\" x\",\"c\":\"HTTP/1.1\"}\n");
}

TEST(Formatter, JsonErrorsNameTheKey) {
  auto f = Formatter::json(jsonStruct(R"({"outer": {"inner": "%NOPE%"}})"), false);
  ASSERT_FALSE(f.isOk());
  EXPECT_EQ(f.status().message(),
            "json_format.outer.inner: command operator %NOPE% is not supported");
}

TEST(Formatter, SaysWhichAddressesItNeeds) {
  auto a = Formatter::text("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", false);
  ASSERT_TRUE(a.isOk());
  EXPECT_TRUE((*a)->usesDownstreamLocalAddress());
  EXPECT_FALSE((*a)->usesUpstreamLocalAddress());
  auto b = Formatter::json(jsonStruct(R"({"x": {"y": "%UPSTREAM_LOCAL_ADDRESS%"}})"), false);
  ASSERT_TRUE(b.isOk());
  EXPECT_FALSE((*b)->usesDownstreamLocalAddress());
  EXPECT_TRUE((*b)->usesUpstreamLocalAddress());
}

TEST(LogFilter, StatusDurationFlagsAndOr) {
  Fixture x;
  LogFilter status{LogFilter::Kind::kStatusCode, LogFilter::Op::kGe, 400, {}, {}};
  EXPECT_FALSE(status.matches(x.context));
  x.context.response_code = 503;
  EXPECT_TRUE(status.matches(x.context));
  LogFilter duration{LogFilter::Kind::kDuration, LogFilter::Op::kLe, 25, {}, {}};
  EXPECT_TRUE(duration.matches(x.context));
  duration.value = 24;
  EXPECT_FALSE(duration.matches(x.context));
  LogFilter any_flag{LogFilter::Kind::kResponseFlag, LogFilter::Op::kEq, 0, {}, {}};
  EXPECT_FALSE(any_flag.matches(x.context));
  x.context.response_flags = "UF,URX";
  EXPECT_TRUE(any_flag.matches(x.context));
  LogFilter uh{LogFilter::Kind::kResponseFlag, LogFilter::Op::kEq, 0, {"UH", "URX"}, {}};
  EXPECT_TRUE(uh.matches(x.context));
  uh.flags = {"UH", "U"};
  EXPECT_FALSE(uh.matches(x.context));
  LogFilter both{LogFilter::Kind::kAnd, LogFilter::Op::kEq, 0, {}, {status, duration}};
  EXPECT_FALSE(both.matches(x.context));
  LogFilter either{LogFilter::Kind::kOr, LogFilter::Op::kEq, 0, {}, {status, duration}};
  EXPECT_TRUE(either.matches(x.context));
}

std::string readFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(LogFile, LinesReachTheFileThroughTheWriterAndSurviveAReopen) {
  std::string path = testing::TempDir() + "skiff_access_log_test.log";
  std::remove(path.c_str());
  auto file = LogFile::open(path);
  ASSERT_TRUE(file.isOk()) << file.status().message();
  auto again = LogFile::open(path);
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(file->get(), again->get());  // One LogFile per path.
  (*file)->append("one\n", nullptr);
  (*file)->append("two\n", nullptr);
  EXPECT_EQ(readFile(path), "");  // Buffered on this thread until handed over.
  LogFile::flushThread();
  LogFile::waitWritten();
  EXPECT_EQ(readFile(path), "one\ntwo\n");
  // Rotation: the file is moved away, SIGUSR1 reopens the path.
  std::string rotated = path + ".1";
  std::rename(path.c_str(), rotated.c_str());
  LogFile::reopenAll();
  LogFile::waitWritten();
  (*file)->append("three\n", nullptr);
  LogFile::flushThread();
  LogFile::waitWritten();
  EXPECT_EQ(readFile(rotated), "one\ntwo\n");
  EXPECT_EQ(readFile(path), "three\n");
  std::remove(path.c_str());
  std::remove(rotated.c_str());
}

TEST(LogFile, AFullBufferIsHandedOverWithoutAFlush) {
  std::string path = testing::TempDir() + "skiff_access_log_big.log";
  std::remove(path.c_str());
  auto file = LogFile::open(path);
  ASSERT_TRUE(file.isOk());
  std::string line(1023, 'x');
  line += '\n';
  for (int i = 0; i < 64; ++i) (*file)->append(line, nullptr);
  LogFile::waitWritten();
  EXPECT_EQ(readFile(path).size(), 64u * 1024u);
  LogFile::flushThread();
  std::remove(path.c_str());
}

TEST(LogFile, OpenErrorNamesThePath) {
  auto file = LogFile::open("/nonexistent-dir/x.log");
  ASSERT_FALSE(file.isOk());
  EXPECT_EQ(file.status().message(),
            "cannot open '/nonexistent-dir/x.log': No such file or directory");
}

}  // namespace
}  // namespace skiff::access_log
