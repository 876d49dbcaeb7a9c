#include "filters/rbac/rbac_engine.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "envoy/config/rbac/v3/rbac.pb.h"

namespace skiff::filters::rbac {
namespace {

Result<RbacEngine> compile(const std::string& json) {
  envoy::config::rbac::v3::RBAC proto;
  auto st = google::protobuf::util::JsonStringToMessage(json, &proto);
  EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << json;
  return compileRbacEngine(proto, "rules");
}

RbacEngine mustCompile(const std::string& json) {
  auto r = compile(json);
  EXPECT_TRUE(r.isOk()) << (r.isOk() ? "" : r.status().message());
  return r.isOk() ? std::move(r.value()) : RbacEngine{};
}

std::string refusal(const std::string& json) {
  auto r = compile(json);
  EXPECT_FALSE(r.isOk()) << json;
  return r.isOk() ? "" : r.status().message();
}

// One policy named p with these permissions and principals (JSON arrays).
std::string policy(const std::string& action, const std::string& permissions,
                   const std::string& principals = R"([{"any": true}])") {
  return R"({"action": ")" + action + R"(", "policies": {"p": {"permissions": )" + permissions +
         R"(, "principals": )" + principals + "}}}";
}

std::unique_ptr<HeaderMap> request(const std::string& path = "/",
                                   std::vector<std::pair<std::string, std::string>> extra = {}) {
  auto h = std::make_unique<HeaderMap>();
  h->addCopy(":method", "GET");
  h->addCopy(":path", path);
  h->addCopy(":authority", "a");
  for (auto& [k, v] : extra) h->addCopy(k, v);
  return h;
}

http::IpAddress ip(const char* text) { return *http::parseIp(text); }

struct Request {
  std::unique_ptr<HeaderMap> headers = request();
  DownstreamConnectionInfo connection;
  std::optional<http::IpAddress> remote_ip;
  bool with_connection = true;

  RequestView view() const {
    return {headers.get(), with_connection ? &connection : nullptr, remote_ip};
  }
};

bool allowed(const RbacEngine& e, const Request& r) { return e.evaluate(r.view()).allowed; }

TEST(RbacEngineTest, AllowNeedsAMatchDenyRefusesOne) {
  const std::string header = R"([{"header": {"name": "x-user", "string_match": {"exact": "a"}}}])";
  RbacEngine allow = mustCompile(policy("ALLOW", header));
  RbacEngine deny = mustCompile(policy("DENY", header));
  Request alice;
  alice.headers = request("/", {{"x-user", "a"}});
  Request bob;
  bob.headers = request("/", {{"x-user", "b"}});
  EXPECT_TRUE(allow.evaluate(alice.view()).allowed);
  EXPECT_EQ(allow.evaluate(alice.view()).policy->name, "p");
  EXPECT_FALSE(allow.evaluate(bob.view()).allowed);
  EXPECT_EQ(allow.evaluate(bob.view()).policy, nullptr);  // Denied by none: details say none.
  EXPECT_FALSE(deny.evaluate(alice.view()).allowed);
  EXPECT_EQ(deny.evaluate(alice.view()).policy->denied_details,
            "rbac_access_denied_matched_policy[p]");
  EXPECT_TRUE(deny.evaluate(bob.view()).allowed);
  EXPECT_EQ(allow.needs, 0);  // Headers only: the filter asks the connection nothing.
}

TEST(RbacEngineTest, DeniedDetailsWriteWhitespaceAsUnderscores) {
  RbacEngine e = mustCompile(R"({"action": "DENY", "policies": {"no\tbots here": {
      "permissions": [{"any": true}], "principals": [{"any": true}]}}})");
  Request r;
  EXPECT_EQ(e.evaluate(r.view()).policy->denied_details,
            "rbac_access_denied_matched_policy[no_bots_here]");
  EXPECT_EQ(e.evaluate(r.view()).policy->name, "no\tbots here");
}

TEST(RbacEngineTest, EmptyPoliciesAllowDeniesEverythingDenyNothingLogAll) {
  Request r;
  EXPECT_FALSE(allowed(mustCompile(R"({"action": "ALLOW"})"), r));
  EXPECT_TRUE(allowed(mustCompile(R"({"action": "DENY"})"), r));
  RbacEngine log = mustCompile(policy("LOG", R"([{"any": true}])"));
  EXPECT_TRUE(allowed(log, r));
  EXPECT_EQ(log.evaluate(r.view()).policy->name, "p");
}

TEST(RbacEngineTest, FirstMatchingPolicyInNameOrderDecides) {
  RbacEngine e = mustCompile(R"({"action": "DENY", "policies": {
      "zeta": {"permissions": [{"any": true}], "principals": [{"any": true}]},
      "alpha": {"permissions": [{"url_path": {"path": {"prefix": "/a"}}}],
                "principals": [{"any": true}]},
      "mid": {"permissions": [{"any": true}], "principals": [{"any": true}]}}})");
  Request a;
  a.headers = request("/a");
  EXPECT_EQ(e.evaluate(a.view()).policy->name, "alpha");
  Request b;
  b.headers = request("/b");
  EXPECT_EQ(e.evaluate(b.view()).policy->name, "mid");
}

TEST(RbacEngineTest, PermissionsAndPrincipalsBothMustMatchAnyOfEach) {
  RbacEngine e = mustCompile(policy(
      "ALLOW",
      R"([{"url_path": {"path": {"exact": "/x"}}}, {"url_path": {"path": {"exact": "/y"}}}])",
      R"([{"header": {"name": "x-id", "present_match": true}}, {"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}])"));
  Request r;
  r.connection.peer_ip = ip("127.0.0.1");
  r.headers = request("/y", {{"x-id", "1"}});
  EXPECT_TRUE(allowed(e, r));
  r.headers = request("/z", {{"x-id", "1"}});
  EXPECT_FALSE(allowed(e, r));  // No permission.
  r.headers = request("/x");
  EXPECT_FALSE(allowed(e, r));  // No principal.
  r.connection.peer_ip = ip("10.1.2.3");
  EXPECT_TRUE(allowed(e, r));  // The other principal.
}

TEST(RbacEngineTest, UrlPathIgnoresTheQueryAndHeaderSeesIt) {
  RbacEngine path = mustCompile(policy("ALLOW", R"([{"url_path": {"path": {"exact": "/a"}}}])"));
  RbacEngine regex = mustCompile(
      policy("ALLOW", R"([{"url_path": {"path": {"safe_regex": {"regex": "/v[0-9]+/.*"}}}}])"));
  RbacEngine header = mustCompile(
      policy("ALLOW", R"([{"header": {"name": ":path", "string_match": {"exact": "/a?q=1"}}}])"));
  Request r;
  r.headers = request("/a?q=1");
  EXPECT_TRUE(allowed(path, r));
  EXPECT_TRUE(allowed(header, r));
  r.headers = request("/a#frag");
  EXPECT_TRUE(allowed(path, r));
  r.headers = request("/ab");
  EXPECT_FALSE(allowed(path, r));
  r.headers = request("/v2/things?x");
  EXPECT_TRUE(allowed(regex, r));
  r.headers = request("/v/things");
  EXPECT_FALSE(allowed(regex, r));
}

TEST(RbacEngineTest, AndOrNotCompose) {
  // (path /admin AND NOT method GET) OR port 8443.
  RbacEngine e = mustCompile(policy("DENY", R"([{"or_rules": {"rules": [
      {"and_rules": {"rules": [
          {"url_path": {"path": {"prefix": "/admin"}}},
          {"not_rule": {"header": {"name": ":method", "string_match": {"exact": "GET"}}}}]}},
      {"destination_port": 8443}]}}])"));
  EXPECT_EQ(e.needs, RbacEngine::kNeedsConnection);
  Request r;
  r.connection.has_local = true;
  r.connection.local_port = 80;
  r.headers = request("/admin/x");
  EXPECT_TRUE(allowed(e, r));  // A GET.
  r.headers->set(":method", "POST");
  EXPECT_FALSE(allowed(e, r));
  r.headers = request("/public");
  r.headers->set(":method", "POST");
  EXPECT_TRUE(allowed(e, r));
  r.connection.local_port = 8443;
  EXPECT_FALSE(allowed(e, r));
  r.with_connection = false;  // Unknown connection: port matchers are false.
  EXPECT_TRUE(allowed(e, r));
}

TEST(RbacEngineTest, DestinationIpAndPortRange) {
  RbacEngine e = mustCompile(policy("ALLOW", R"([{"and_rules": {"rules": [
      {"destination_ip": {"address_prefix": "127.0.0.0", "prefix_len": 8}},
      {"destination_port_range": {"start": 8000, "end": 9000}}]}}])"));
  Request r;
  r.connection.has_local = true;
  r.connection.local_ip = ip("127.0.0.2");
  r.connection.local_port = 8000;
  EXPECT_TRUE(allowed(e, r));
  r.connection.local_port = 9000;  // The end is excluded.
  EXPECT_FALSE(allowed(e, r));
  r.connection.local_port = 8999;
  r.connection.local_ip = ip("::1");  // Another family never matches.
  EXPECT_FALSE(allowed(e, r));
}

TEST(RbacEngineTest, RemoteIpIsTheForwardedAddressDirectRemoteIpThePeer) {
  RbacEngine remote = mustCompile(
      policy("ALLOW", R"([{"any": true}])",
             R"([{"remote_ip": {"address_prefix": "203.0.113.0", "prefix_len": 24}}])"));
  RbacEngine direct = mustCompile(
      policy("ALLOW", R"([{"any": true}])",
             R"([{"direct_remote_ip": {"address_prefix": "203.0.113.0", "prefix_len": 24}}])"));
  RbacEngine source =
      mustCompile(policy("ALLOW", R"([{"any": true}])",
                         R"([{"source_ip": {"address_prefix": "127.0.0.1", "prefix_len": 32}}])"));
  EXPECT_EQ(remote.needs, RbacEngine::kNeedsRemoteIp);
  EXPECT_EQ(direct.needs, RbacEngine::kNeedsConnection);
  Request r;
  r.connection.peer_ip = ip("127.0.0.1");
  r.remote_ip = ip("203.0.113.9");
  EXPECT_TRUE(allowed(remote, r));
  EXPECT_FALSE(allowed(direct, r));
  EXPECT_TRUE(allowed(source, r));
  r.remote_ip.reset();
  EXPECT_FALSE(allowed(remote, r));
}

TEST(RbacEngineTest, AuthenticatedPrefersUriSansThenDnsSansThenSubject) {
  RbacEngine spiffe = mustCompile(
      policy("ALLOW", R"([{"any": true}])",
             R"([{"authenticated": {"principal_name": {"exact": "spiffe://td/ns/a/sa/web"}}}])"));
  RbacEngine dns =
      mustCompile(policy("ALLOW", R"([{"any": true}])",
                         R"([{"authenticated": {"principal_name": {"suffix": ".example.com"}}}])"));
  RbacEngine subject =
      mustCompile(policy("ALLOW", R"([{"any": true}])",
                         R"([{"authenticated": {"principal_name": {"prefix": "CN=client"}}}])"));
  RbacEngine anyone =
      mustCompile(policy("ALLOW", R"([{"any": true}])", R"([{"authenticated": {}}])"));
  Request r;
  EXPECT_FALSE(allowed(anyone, r));  // Plaintext: never authenticated.
  r.connection.tls = true;
  EXPECT_TRUE(allowed(anyone, r));
  r.connection.peer_uri_sans = {"spiffe://other", "spiffe://td/ns/a/sa/web"};
  r.connection.peer_dns_sans = {"web.example.com"};
  r.connection.peer_subject = "CN=client,O=test";
  EXPECT_TRUE(allowed(spiffe, r));
  EXPECT_TRUE(allowed(dns, r));
  EXPECT_TRUE(allowed(subject, r));
  r.connection.peer_uri_sans = {"spiffe://td/ns/b/sa/db"};
  EXPECT_FALSE(allowed(spiffe, r));
}

TEST(RbacEngineTest, RequestedServerNameIsEmptyWithoutSni) {
  RbacEngine e =
      mustCompile(policy("ALLOW", R"([{"requested_server_name": {"exact": "api.example.com"}}])"));
  RbacEngine none = mustCompile(policy("ALLOW", R"([{"requested_server_name": {"exact": ""}}])"));
  Request r;
  EXPECT_FALSE(allowed(e, r));
  EXPECT_TRUE(allowed(none, r));
  r.connection.sni = "api.example.com";
  EXPECT_TRUE(allowed(e, r));
  EXPECT_FALSE(allowed(none, r));
}

TEST(RbacEngineTest, RefusesWhatSkiffLacksByPath) {
  EXPECT_EQ(
      refusal(policy(
          "ALLOW",
          R"([{"metadata": {"filter": "f", "path": [{"key": "k"}], "value": {"present_match": true}}}])")),
      "rules.policies[\"p\"].permissions[0].metadata: not supported yet");
  EXPECT_EQ(refusal(policy(
                "ALLOW", R"([{"any": true}])",
                R"([{"not_id": {"filter_state": {"key": "k", "string_match": {"exact": "v"}}}}])")),
            "rules.policies[\"p\"].principals[0].not_id.filter_state: not supported yet");
  EXPECT_EQ(refusal(R"({"action": "ALLOW", "policies": {"p": {"permissions": [{"any": true}],
      "principals": [{"any": true}], "condition": {"const_expr": {"bool_value": true}}}}})"),
            "rules.policies[\"p\"].condition: not supported yet");
  EXPECT_EQ(refusal(policy("ALLOW", "[]")),
            "rules.policies[\"p\"].permissions: needs at least one entry");
  EXPECT_EQ(refusal(policy("ALLOW", R"([{"and_rules": {"rules": []}}])")),
            "rules.policies[\"p\"].permissions[0].and_rules.rules: needs at least one entry");
  EXPECT_EQ(refusal(policy("ALLOW", R"([{"destination_port_range": {"start": 90, "end": 90}}])")),
            "rules.policies[\"p\"].permissions[0].destination_port_range: [90, 90) is not a range "
            "of ports");
  EXPECT_EQ(refusal(policy("ALLOW", R"([{"any": false}])")),
            "rules.policies[\"p\"].permissions[0].any: must be true");
  EXPECT_EQ(refusal(policy("ALLOW",
                           R"([{"destination_ip": {"address_prefix": "nope", "prefix_len": 8}}])")),
            "rules.policies[\"p\"].permissions[0].destination_ip: 'nope/8' is not an IP range");
}

}  // namespace
}  // namespace skiff::filters::rbac
