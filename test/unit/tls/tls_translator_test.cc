#include "xds/tls_translator.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

namespace skiff::xds {
namespace {

namespace tlsv3 = envoy::extensions::transport_sockets::tls::v3;

template <typename T>
T parse(const std::string& text) {
  T msg;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &msg)) << text;
  return msg;
}

constexpr const char* kPath = "listeners[0].filter_chains[0].transport_socket.typed_config";

TEST(TlsTranslator, DownstreamSupportedFields) {
  auto proto = parse<tlsv3::DownstreamTlsContext>(R"(
    common_tls_context {
      tls_params { tls_minimum_protocol_version: TLSv1_3 cipher_suites: "ECDHE-RSA-AES128-GCM-SHA256" }
      tls_certificates {
        certificate_chain { filename: "/certs/cert.pem" }
        private_key { inline_string: "-----BEGIN PRIVATE KEY-----" }
      }
      validation_context {
        trusted_ca { filename: "/certs/ca.pem" }
        match_typed_subject_alt_names { san_type: URI matcher { prefix: "spiffe://cluster.local/" } }
        match_subject_alt_names { exact: "example.test" ignore_case: true }
      }
      alpn_protocols: "h2"
      alpn_protocols: "http/1.1"
    }
    require_client_certificate { value: true }
  )");
  auto r = translateDownstreamTlsContext(proto, kPath);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  const tls::TlsContextConfig& c = *r;
  EXPECT_TRUE(c.server);
  ASSERT_EQ(c.certificates.size(), 1u);
  EXPECT_EQ(c.certificates[0].cert_chain_file, "/certs/cert.pem");
  EXPECT_EQ(c.certificates[0].private_key_pem, "-----BEGIN PRIVATE KEY-----");
  EXPECT_EQ(c.ca_file, "/certs/ca.pem");
  EXPECT_TRUE(c.require_client_certificate);
  EXPECT_EQ(c.alpn_protocols, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(c.min_version, TLS1_3_VERSION);
  EXPECT_EQ(c.max_version, TLS1_3_VERSION);
  EXPECT_EQ(c.cipher_suites, std::vector<std::string>{"ECDHE-RSA-AES128-GCM-SHA256"});
  ASSERT_EQ(c.san_matchers.size(), 2u);
  EXPECT_EQ(c.san_matchers[0].type, tls::SanMatcher::Type::kUri);
  EXPECT_EQ(c.san_matchers[0].matcher.kind, tls::StringMatch::Kind::kPrefix);
  EXPECT_EQ(c.san_matchers[1].type, tls::SanMatcher::Type::kAny);
  EXPECT_TRUE(c.san_matchers[1].matcher.ignore_case);
}

TEST(TlsTranslator, UpstreamSupportedFields) {
  auto proto = parse<tlsv3::UpstreamTlsContext>(R"(
    common_tls_context {
      validation_context { trusted_ca { inline_string: "PEM" } }
      alpn_protocols: "h2"
    }
    sni: "backend.test"
  )");
  auto r = translateUpstreamTlsContext(proto, "clusters[0].transport_socket.typed_config");
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_FALSE(r->server);
  EXPECT_EQ(r->sni, "backend.test");
  EXPECT_EQ(r->ca_pem, "PEM");
  EXPECT_EQ(r->min_version, TLS1_2_VERSION);
  EXPECT_EQ(r->max_version, TLS1_3_VERSION);
}

TEST(TlsTranslator, UnsupportedFieldsAreNamedByPath) {
  auto proto = parse<tlsv3::DownstreamTlsContext>(R"(
    common_tls_context {
      tls_params { tls_minimum_protocol_version: TLSv1_0 ecdh_curves: "X25519" }
      tls_certificates {
        certificate_chain { environment_variable: "CERT" }
        private_key { filename: "/k" }
        password { inline_string: "x" }
      }
      validation_context {
        trusted_ca { filename: "/ca" }
        match_typed_subject_alt_names { san_type: OTHER_NAME matcher { safe_regex { regex: ".*" } } }
        allow_expired_certificate: true
      }
      alpn_protocols: ""
    }
    require_sni { value: true }
    session_timeout { seconds: 5 }
  )");
  auto r = translateDownstreamTlsContext(proto, kPath);
  ASSERT_FALSE(r.isOk());
  const std::string& m = r.status().message();
  EXPECT_EQ(r.status().source(), ErrorSource::kConfig);
  std::string p = std::string(kPath) + ".common_tls_context";
  for (const std::string& want : {
           std::string(kPath) + ".require_sni: not supported yet",
           std::string(kPath) + ".session_timeout: not supported yet",
           p + ".tls_params.ecdh_curves: not supported yet",
           p + ".tls_params.tls_minimum_protocol_version: TLSv1_0 is not supported yet",
           p + ".tls_certificates[0].password: not supported yet",
           p + ".tls_certificates[0].certificate_chain.environment_variable: not supported yet",
           p + ".validation_context.allow_expired_certificate: not supported yet",
           p + ".validation_context.match_typed_subject_alt_names[0].san_type: OTHER_NAME",
           p + ".validation_context.match_typed_subject_alt_names[0].matcher.safe_regex: not "
               "supported yet",
           p + ".alpn_protocols[0]: must be 1 to 255 bytes long",
       }) {
    EXPECT_NE(m.find(want), std::string::npos) << "missing: " << want << "\nin:\n" << m;
  }
}

TEST(TlsTranslator, MissingPiecesAreErrors) {
  // A server without a certificate; mTLS without a CA.
  auto down = parse<tlsv3::DownstreamTlsContext>("require_client_certificate { value: true }");
  auto r = translateDownstreamTlsContext(down, "d");
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("d.common_tls_context.tls_certificates: a "
                                      "DownstreamTlsContext needs a certificate"),
            std::string::npos);
  EXPECT_NE(r.status().message().find("d.require_client_certificate: needs"), std::string::npos);

  // SAN matching without a CA; renegotiation; a key without its certificate.
  auto up = parse<tlsv3::UpstreamTlsContext>(R"(
    common_tls_context {
      tls_certificates { private_key { filename: "/k" } }
      validation_context { match_typed_subject_alt_names { san_type: DNS matcher { exact: "a" } } }
    }
    allow_renegotiation: true
  )");
  auto u = translateUpstreamTlsContext(up, "u");
  ASSERT_FALSE(u.isOk());
  const std::string& m = u.status().message();
  EXPECT_NE(m.find("u.common_tls_context.validation_context.trusted_ca: is required"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("u.allow_renegotiation: true is not supported yet"), std::string::npos) << m;
  EXPECT_NE(m.find("u.common_tls_context.tls_certificates[0].certificate_chain: is required"),
            std::string::npos)
      << m;
}

TEST(TlsTranslator, MakeContextPrefixesBuildErrors) {
  auto down = parse<tlsv3::DownstreamTlsContext>(R"(
    common_tls_context {
      tls_certificates {
        certificate_chain { filename: "/nonexistent/cert.pem" }
        private_key { filename: "/nonexistent/key.pem" }
      }
    }
  )");
  auto r = makeDownstreamTlsContext(down, "listeners[0]");
  ASSERT_FALSE(r.isOk());
  EXPECT_TRUE(r.status().message().starts_with("listeners[0]: "));
  EXPECT_NE(r.status().message().find("/nonexistent/cert.pem"), std::string::npos);
}

}  // namespace
}  // namespace skiff::xds
