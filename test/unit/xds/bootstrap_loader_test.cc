#include "xds/bootstrap_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace skiff::xds {
namespace {

using ::testing::HasSubstr;

std::string json(std::string_view yaml) {
  auto result = yamlToJson(yaml);
  EXPECT_TRUE(result.isOk()) << result.status().message();
  return result.isOk() ? *result : "";
}

std::string error(std::string_view yaml) {
  auto result = loadBootstrapYaml(yaml);
  EXPECT_FALSE(result.isOk());
  return result.isOk() ? "" : result.status().message();
}

TEST(BootstrapYamlToJson, PlainScalarsFollowTheCoreSchema) {
  EXPECT_EQ(json("a: true\nb: False\nc: TRUE"), R"({"a":true,"b":false,"c":true})");
  EXPECT_EQ(json("a: 10\nb: -3\nc: +5\nd: 007\ne: 0"), R"({"a":10,"b":-3,"c":5,"d":7,"e":0})");
  EXPECT_EQ(json("a: 0x1F\nb: 0o17"), R"({"a":31,"b":15})");
  EXPECT_EQ(json("a: 1.5\nb: 1e3"), R"({"a":1.5,"b":1000})");
  EXPECT_EQ(json("a: .inf\nb: -.Inf\nc: .nan"), R"({"a":"Infinity","b":"-Infinity","c":"NaN"})");
  EXPECT_EQ(json("a: null\nb: ~\nc:\nd: Null"), R"({"a":null,"b":null,"c":null,"d":null})");
  EXPECT_EQ(json("a: 18446744073709551615"), R"({"a":18446744073709551615})");
}

TEST(BootstrapYamlToJson, QuotedAndOtherScalarsStayStrings) {
  EXPECT_EQ(json("a: \"true\"\nb: '10'\nc: 'null'\nd: \"~\""),
            R"({"a":"true","b":"10","c":"null","d":"~"})");
  EXPECT_EQ(json("a: 5s\nb: yes\nc: 1.2.3.4\nd: 0.25s"),
            R"({"a":"5s","b":"yes","c":"1.2.3.4","d":"0.25s"})");
  EXPECT_EQ(json("a: |\n  x\"y\\z\n"), R"({"a":"x\"y\\z\n"})");
  EXPECT_EQ(json("a: !!str 10"), R"({"a":"10"})");
}

TEST(BootstrapYamlToJson, SequencesMapsAnchorsAndMergeKeys) {
  EXPECT_EQ(json("a: [1, 'b', {c: d}]"), R"({"a":[1,"b",{"c":"d"}]})");
  EXPECT_EQ(json("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3"),
            R"({"base":{"x":1,"y":2},"use":{"y":3,"x":1}})");
  EXPECT_EQ(json(""), "{}");
}

TEST(BootstrapYamlToJson, ErrorsGiveLineAndColumn) {
  auto dup = yamlToJson("a: 1\nb:\n  c: 1\n  c: 2\n");
  ASSERT_FALSE(dup.isOk());
  EXPECT_EQ(dup.status().message(), "yaml:4:3: duplicate key 'c'");

  auto bad = yamlToJson("a: [1, 2\nb: 3\n");
  ASSERT_FALSE(bad.isOk());
  EXPECT_THAT(bad.status().message(), HasSubstr("yaml:"));
  EXPECT_EQ(bad.status().source(), ErrorSource::kConfig);

  auto list = yamlToJson("- a\n- b\n");
  ASSERT_FALSE(list.isOk());
  EXPECT_EQ(list.status().message(), "yaml:1:1: the bootstrap must be a mapping");

  auto two = yamlToJson("a: 1\n---\nb: 2\n");
  ASSERT_FALSE(two.isOk());
  EXPECT_EQ(two.status().message(), "yaml: expected one document, found 2");
}

TEST(BootstrapLoader, ParsesIntoTheEnvoyMessage) {
  auto result = loadBootstrapYaml(R"(
node: {id: "n1", cluster: edge}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
static_resources:
  clusters:
  - name: backend
    connect_timeout: 0.25s
    type: STRICT_DNS
    per_connection_buffer_limit_bytes: 32768
)");
  ASSERT_TRUE(result.isOk()) << result.status().message();
  const auto& b = *result;
  EXPECT_EQ(b.node().id(), "n1");
  EXPECT_EQ(b.admin().address().socket_address().port_value(), 9901u);
  ASSERT_EQ(b.static_resources().clusters_size(), 1);
  const auto& c = b.static_resources().clusters(0);
  EXPECT_EQ(c.connect_timeout().nanos(), 250000000);
  EXPECT_EQ(c.type(), envoy::config::cluster::v3::Cluster::STRICT_DNS);
  EXPECT_EQ(c.per_connection_buffer_limit_bytes().value(), 32768u);
}

TEST(BootstrapLoader, RefusesUnknownFields) {
  EXPECT_THAT(error("static_resources:\n  clusters:\n  - name: a\n    no_such_field: 1\n"),
              HasSubstr("no_such_field"));
  EXPECT_THAT(error("admin: {adress: {}}\n"), HasSubstr("adress"));
}

TEST(BootstrapLoader, RefusesWrongTypes) {
  // A plain boolean where a string belongs, and a string where a number does.
  EXPECT_THAT(error("node: {id: true}\n"), HasSubstr("invalid bootstrap"));
  EXPECT_THAT(error("admin: {address: {socket_address: {port_value: abc}}}\n"),
              HasSubstr("invalid bootstrap"));
}

TEST(BootstrapLoader, RefusesAnUnknownTypeUrl) {
  EXPECT_THAT(error(R"(
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - name: x
        typed_config: {"@type": type.googleapis.com/no.such.Type}
)"),
              HasSubstr("no.such.Type"));
}

TEST(BootstrapLoader, UnknownTypeUrlsAreNamedByTheirWholePath) {
  // Istio can configure Envoy's gRPC access logger, whose proto skiff does
  // not build: each unknown Any is named by its path from the root, nested
  // ones and map entries too, rather than protobuf's innermost-Any error.
  EXPECT_EQ(error(R"(
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          access_log:
          - name: envoy.access_loggers.http_grpc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig
              common_config: {log_name: x}
  clusters:
  - name: c
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.Other: {"@type": type.googleapis.com/no.such.Type}
)"),
            "static_resources.clusters[0].typed_extension_protocol_options[\"envoy.extensions."
            "upstreams.http.v3.Other\"]: unknown type URL 'type.googleapis.com/no.such.Type'\n"
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.access_log[0]."
            "typed_config: unknown type URL 'type.googleapis.com/envoy.extensions.access_loggers."
            "grpc.v3.HttpGrpcAccessLogConfig'");
}

class BootstrapFileTest : public ::testing::Test {
 protected:
  std::string write(const std::string& suffix, const std::string& text) {
    std::string path =
        ::testing::TempDir() + "skiff_bootstrap_" + std::to_string(::getpid()) + suffix;
    std::ofstream(path) << text;
    paths_.push_back(path);
    return path;
  }
  void TearDown() override {
    for (const auto& p : paths_) std::remove(p.c_str());
  }
  std::vector<std::string> paths_;
};

TEST_F(BootstrapFileTest, ReadsYamlAndJson) {
  auto yaml = loadBootstrapFile(write(".yaml", "node: {id: a}\n"));
  ASSERT_TRUE(yaml.isOk()) << yaml.status().message();
  EXPECT_EQ(yaml->node().id(), "a");
  auto json = loadBootstrapFile(write(".json", R"({"node": {"id": "b"}})"));
  ASSERT_TRUE(json.isOk()) << json.status().message();
  EXPECT_EQ(json->node().id(), "b");
}

TEST_F(BootstrapFileTest, ErrorsNameTheFile) {
  const std::string path = write(".yaml", "node: {id: a, bogus: 1}\n");
  auto result = loadBootstrapFile(path);
  ASSERT_FALSE(result.isOk());
  EXPECT_THAT(result.status().message(), HasSubstr(path + ": invalid bootstrap"));
  auto missing = loadBootstrapFile("/nonexistent/skiff.yaml");
  ASSERT_FALSE(missing.isOk());
  EXPECT_EQ(missing.status().message(),
            "/nonexistent/skiff.yaml: cannot read: No such file or directory");
}

}  // namespace
}  // namespace skiff::xds
