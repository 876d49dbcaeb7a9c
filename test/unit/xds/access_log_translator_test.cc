#include "xds/access_log_translator.h"

#include <gtest/gtest.h>

#include <string>

#include "xds/bootstrap_loader.h"
#include "xds/translator.h"

namespace skiff::xds {
namespace {

// A listener whose HttpConnectionManager carries `logs` as its access_log.
std::string bootstrapWith(const std::string& logs) {
  return R"(
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: h
          route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: "/"}, direct_response: {status: 200}}]}]}
          http_filters: [{name: router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
          access_log:
)" + logs;
}

const std::string kHcm = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";

Result<std::shared_ptr<const config::Snapshot>> translate(const std::string& logs) {
  auto b = loadBootstrapYaml(bootstrapWith(logs));
  if (!b) return b.status();
  return translateBootstrap(*b);
}

std::string errorOf(const std::string& logs) {
  auto s = translate(logs);
  EXPECT_FALSE(s.isOk());
  return s.isOk() ? "" : s.status().message();
}

const config::HttpConnectionManagerConfig& hcmOf(const config::Snapshot& s) {
  return s.listeners.begin()->second->filter_chains[0]->http;
}

TEST(AccessLogTranslator, FileStdoutStderrWithFormatsAndFilters) {
  std::string path = testing::TempDir() + "skiff_translator_access.log";
  auto s = translate(R"(
          - name: f
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: )" +
                     path + R"(
          - name: out
            filter:
              and_filter:
                filters:
                - status_code_filter: {comparison: {op: GE, value: {default_value: 500, runtime_key: k}}}
                - or_filter: {filters: [{duration_filter: {comparison: {value: {default_value: 0, runtime_key: d}}}},
                                        {response_flag_filter: {flags: [UH, UF]}}, {not_health_check_filter: {}}]}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format: {text_format_source: {inline_string: "%DOWNSTREAM_LOCAL_ADDRESS%\n"}, omit_empty_values: true}
          - name: err
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog
              log_format: {json_format: {a: "%UPSTREAM_LOCAL_ADDRESS%"}}
)");
  ASSERT_TRUE(s.isOk()) << s.status().message();
  const auto& hcm = hcmOf(**s);
  ASSERT_EQ(hcm.access_logs.size(), 3u);
  EXPECT_EQ(hcm.access_logs[0]->file().path(), path);
  EXPECT_EQ(hcm.access_logs[1]->file().path(), "/dev/stdout");
  EXPECT_EQ(hcm.access_logs[2]->file().path(), "/dev/stderr");
  EXPECT_TRUE(hcm.access_log_downstream_local);
  EXPECT_TRUE(hcm.access_log_upstream_local);
  std::remove(path.c_str());
}

TEST(AccessLogTranslator, NoAccessLogNoRecord) {
  auto b = loadBootstrapYaml(bootstrapWith("          []\n"));
  ASSERT_TRUE(b.isOk()) << b.status().message();
  auto s = translateBootstrap(*b);
  ASSERT_TRUE(s.isOk()) << s.status().message();
  EXPECT_TRUE(hcmOf(**s).access_logs.empty());
}

TEST(AccessLogTranslator, UnknownOperatorIsNamedWithItsPath) {
  EXPECT_EQ(errorOf(R"(
          - typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format: {text_format_source: {inline_string: "%RESPONSE_CODE% %BOGUS%"}}
)"),
            kHcm +
                ".access_log[0].typed_config.log_format.text_format_source.inline_string: "
                "command operator %BOGUS% is not supported");
  EXPECT_EQ(errorOf(R"(
          - typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format: {json_format: {k: {deeper: "%NOPE%"}}}
)"),
            kHcm +
                ".access_log[0].typed_config.log_format.json_format.k.deeper: command operator "
                "%NOPE% is not supported");
  EXPECT_EQ(errorOf(R"(
          - typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format: {text_format: "%"}
)"),
            kHcm +
                ".access_log[0].typed_config.log_format.text_format: '%' at position 0 does "
                "not start a command operator (write %% for a literal %)");
}

TEST(AccessLogTranslator, UnsupportedPiecesAreRefusedByPath) {
  EXPECT_EQ(errorOf(R"(
          - typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/null
              log_format: {text_format: "x", content_type: "text/plain"}
)"),
            kHcm + ".access_log[0].typed_config.log_format.content_type: not supported yet");
  EXPECT_EQ(errorOf(R"(
          - filter: {runtime_filter: {runtime_key: x}}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/null
)"),
            kHcm + ".access_log[0].filter.runtime_filter: not supported yet");
  EXPECT_EQ(errorOf(R"(
          - filter: {response_flag_filter: {flags: [UH, XX]}}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/null
)"),
            kHcm +
                ".access_log[0].filter.response_flag_filter.flags[1]: 'XX' is not a response "
                "flag");
  EXPECT_EQ(errorOf(R"(
          - filter: {and_filter: {filters: [{not_health_check_filter: {}}]}}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/null
)"),
            kHcm + ".access_log[0].filter.and_filter.filters: needs at least 2 filters");
  EXPECT_EQ(errorOf(R"(
          - typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /nonexistent-dir/a.log
)"),
            kHcm +
                ".access_log[0].typed_config.path: cannot open '/nonexistent-dir/a.log': No "
                "such file or directory");
  EXPECT_EQ(errorOf(R"(
          - name: no-config
)"),
            kHcm +
                ".access_log[0].typed_config: is required (envoy.access_loggers.file, stdout "
                "or stderr)");
  EXPECT_EQ(errorOf(R"(
          - typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/null
              log_format: {text_format_source: {filename: /etc/hostname}}
)"),
            kHcm +
                ".access_log[0].typed_config.log_format.text_format_source: only "
                "inline_string and inline_bytes are supported");
}

}  // namespace
}  // namespace skiff::xds
