#include "xds/tls_translator.h"

#include <set>
#include <vector>

namespace skiff::xds {

namespace tlsv3 = envoy::extensions::transport_sockets::tls::v3;

namespace {

using Errors = std::vector<std::string>;

std::string join(const Errors& errors) {
  std::string out;
  for (const std::string& e : errors) {
    if (!out.empty()) out += '\n';
    out += e;
  }
  return out;
}

// Names every set field of msg outside `supported`.
void refuseOthers(const google::protobuf::Message& msg, const std::string& path,
                  const std::set<std::string>& supported, Errors& errors) {
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  msg.GetReflection()->ListFields(msg, &fields);
  for (const auto* f : fields) {
    if (!supported.contains(f->name()))
      errors.push_back(path + "." + f->name() + ": not supported yet");
  }
}

// A DataSource as PEM text or a file name (one of the two is set).
void dataSource(const envoy::config::core::v3::DataSource& ds, const std::string& path,
                std::string& file, std::string& pem, Errors& errors) {
  refuseOthers(ds, path, {"filename", "inline_string", "inline_bytes"}, errors);
  switch (ds.specifier_case()) {
    case envoy::config::core::v3::DataSource::kFilename:
      file = ds.filename();
      break;
    case envoy::config::core::v3::DataSource::kInlineString:
      pem = ds.inline_string();
      break;
    case envoy::config::core::v3::DataSource::kInlineBytes:
      pem = ds.inline_bytes();
      break;
    case envoy::config::core::v3::DataSource::kEnvironmentVariable:
      break;  // Named by refuseOthers.
    default:
      errors.push_back(path + ": needs filename or inline_string");
  }
}

void stringMatcher(const envoy::type::matcher::v3::StringMatcher& m, const std::string& path,
                   tls::StringMatch& out, Errors& errors) {
  refuseOthers(m, path, {"exact", "prefix", "suffix", "contains", "ignore_case"}, errors);
  out.ignore_case = m.ignore_case();
  switch (m.match_pattern_case()) {
    case envoy::type::matcher::v3::StringMatcher::kExact:
      out.kind = tls::StringMatch::Kind::kExact;
      out.value = m.exact();
      break;
    case envoy::type::matcher::v3::StringMatcher::kPrefix:
      out.kind = tls::StringMatch::Kind::kPrefix;
      out.value = m.prefix();
      break;
    case envoy::type::matcher::v3::StringMatcher::kSuffix:
      out.kind = tls::StringMatch::Kind::kSuffix;
      out.value = m.suffix();
      break;
    case envoy::type::matcher::v3::StringMatcher::kContains:
      out.kind = tls::StringMatch::Kind::kContains;
      out.value = m.contains();
      break;
    case envoy::type::matcher::v3::StringMatcher::MATCH_PATTERN_NOT_SET:
      errors.push_back(path + ": needs one of exact, prefix, suffix, contains");
      break;
    default:
      break;  // safe_regex, custom: named by refuseOthers.
  }
}

int protocolVersion(tlsv3::TlsParameters::TlsProtocol v, int automatic, const std::string& path,
                    Errors& errors) {
  switch (v) {
    case tlsv3::TlsParameters::TLS_AUTO:
      return automatic;
    case tlsv3::TlsParameters::TLSv1_2:
      return TLS1_2_VERSION;
    case tlsv3::TlsParameters::TLSv1_3:
      return TLS1_3_VERSION;
    default:
      errors.push_back(path + ": " + tlsv3::TlsParameters::TlsProtocol_Name(v) +
                       " is not supported yet (skiff speaks TLSv1_2 and TLSv1_3)");
      return automatic;
  }
}

void commonTlsContext(const tlsv3::CommonTlsContext& common, const std::string& path,
                      tls::TlsContextConfig& out, Errors& errors) {
  // SDS references reach here only from a static file: xds/dynamic_config
  // writes a control plane's secrets in before translating its resources.
  for (const char* sds : {"tls_certificate_sds_secret_configs",
                          "validation_context_sds_secret_config", "combined_validation_context"}) {
    const auto* field = common.GetDescriptor()->FindFieldByName(sds);
    const auto* reflection = common.GetReflection();
    bool set = field->is_repeated() ? reflection->FieldSize(common, field) > 0
                                    : reflection->HasField(common, field);
    if (set) {
      errors.push_back(path + "." + sds +
                       ": secrets over SDS work in resources from ADS only; a static file names "
                       "its certificates inline or by filename");
    }
  }
  refuseOthers(common, path,
               {"tls_params", "tls_certificates", "validation_context", "alpn_protocols",
                "tls_certificate_sds_secret_configs", "validation_context_sds_secret_config",
                "combined_validation_context"},
               errors);

  if (common.has_tls_params()) {
    const tlsv3::TlsParameters& params = common.tls_params();
    std::string p = path + ".tls_params";
    refuseOthers(params, p,
                 {"tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites"},
                 errors);
    out.min_version = protocolVersion(params.tls_minimum_protocol_version(), TLS1_2_VERSION,
                                      p + ".tls_minimum_protocol_version", errors);
    out.max_version = protocolVersion(params.tls_maximum_protocol_version(), TLS1_3_VERSION,
                                      p + ".tls_maximum_protocol_version", errors);
    if (out.min_version > out.max_version) {
      errors.push_back(p + ".tls_minimum_protocol_version: above tls_maximum_protocol_version");
    }
    for (int i = 0; i < params.cipher_suites_size(); ++i) {
      const std::string& c = params.cipher_suites(i);
      // BoringSSL's equal-preference groups ("[A|B]") have no OpenSSL form.
      if (c.find_first_of("[]|") != std::string::npos) {
        errors.push_back(p + ".cipher_suites[" + std::to_string(i) + "]: '" + c +
                         "': equal-preference groups are not supported yet; list the ciphers");
        continue;
      }
      out.cipher_suites.push_back(c);
    }
  }

  for (int i = 0; i < common.tls_certificates_size(); ++i) {
    const tlsv3::TlsCertificate& cert = common.tls_certificates(i);
    std::string p = path + ".tls_certificates[" + std::to_string(i) + "]";
    refuseOthers(cert, p, {"certificate_chain", "private_key"}, errors);
    tls::CertificatePaths paths;
    if (!cert.has_certificate_chain()) {
      errors.push_back(p + ".certificate_chain: is required");
    } else {
      dataSource(cert.certificate_chain(), p + ".certificate_chain", paths.cert_chain_file,
                 paths.cert_chain_pem, errors);
    }
    if (!cert.has_private_key()) {
      errors.push_back(p + ".private_key: is required");
    } else {
      dataSource(cert.private_key(), p + ".private_key", paths.private_key_file,
                 paths.private_key_pem, errors);
    }
    out.certificates.push_back(std::move(paths));
  }

  if (common.has_validation_context()) {
    const tlsv3::CertificateValidationContext& vc = common.validation_context();
    std::string p = path + ".validation_context";
    refuseOthers(vc, p, {"trusted_ca", "match_typed_subject_alt_names", "match_subject_alt_names"},
                 errors);
    if (vc.has_trusted_ca()) {
      dataSource(vc.trusted_ca(), p + ".trusted_ca", out.ca_file, out.ca_pem, errors);
    }
    for (int i = 0; i < vc.match_typed_subject_alt_names_size(); ++i) {
      const tlsv3::SubjectAltNameMatcher& m = vc.match_typed_subject_alt_names(i);
      std::string mp = p + ".match_typed_subject_alt_names[" + std::to_string(i) + "]";
      refuseOthers(m, mp, {"san_type", "matcher"}, errors);
      tls::SanMatcher san;
      switch (m.san_type()) {
        case tlsv3::SubjectAltNameMatcher::DNS:
          san.type = tls::SanMatcher::Type::kDns;
          break;
        case tlsv3::SubjectAltNameMatcher::URI:
          san.type = tls::SanMatcher::Type::kUri;
          break;
        case tlsv3::SubjectAltNameMatcher::IP_ADDRESS:
          san.type = tls::SanMatcher::Type::kIpAddress;
          break;
        case tlsv3::SubjectAltNameMatcher::EMAIL:
          san.type = tls::SanMatcher::Type::kEmail;
          break;
        case tlsv3::SubjectAltNameMatcher::SAN_TYPE_UNSPECIFIED:
          errors.push_back(mp + ".san_type: is required");
          break;
        default:
          errors.push_back(
              mp + ".san_type: " + tlsv3::SubjectAltNameMatcher::SanType_Name(m.san_type()) +
              " is not supported yet");
      }
      if (!m.has_matcher()) {
        errors.push_back(mp + ".matcher: is required");
      } else {
        stringMatcher(m.matcher(), mp + ".matcher", san.matcher, errors);
      }
      out.san_matchers.push_back(std::move(san));
    }
    // The deprecated form matches any SAN type (Envoy: DNS, URI, email, IP).
    // Envoy still honours it and Istio still sends it, so skiff reads it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    for (int i = 0; i < vc.match_subject_alt_names_size(); ++i) {
      tls::SanMatcher san;
      san.type = tls::SanMatcher::Type::kAny;
      stringMatcher(vc.match_subject_alt_names(i),
                    p + ".match_subject_alt_names[" + std::to_string(i) + "]", san.matcher, errors);
      out.san_matchers.push_back(std::move(san));
    }
#pragma GCC diagnostic pop
    if (!out.san_matchers.empty() && !vc.has_trusted_ca()) {
      errors.push_back(p + ".trusted_ca: is required to match subject alt names");
    }
  }

  for (int i = 0; i < common.alpn_protocols_size(); ++i) {
    const std::string& a = common.alpn_protocols(i);
    if (a.empty() || a.size() > 255) {
      errors.push_back(path + ".alpn_protocols[" + std::to_string(i) +
                       "]: must be 1 to 255 bytes long");
      continue;
    }
    out.alpn_protocols.push_back(a);
  }
}

template <typename T>
Result<std::shared_ptr<tls::TlsContext>> make(Result<T> config, const std::string& path) {
  if (!config) return config.status();
  auto ctx = tls::TlsContext::create(*config);
  if (!ctx) return configError(path + ": " + ctx.status().message());
  return *ctx;
}

}  // namespace

Result<tls::TlsContextConfig> translateDownstreamTlsContext(
    const tlsv3::DownstreamTlsContext& context, const std::string& path) {
  Errors errors;
  tls::TlsContextConfig out;
  out.server = true;
  refuseOthers(context, path, {"common_tls_context", "require_client_certificate"}, errors);
  commonTlsContext(context.common_tls_context(), path + ".common_tls_context", out, errors);
  out.require_client_certificate =
      context.has_require_client_certificate() && context.require_client_certificate().value();
  if (out.certificates.empty()) {
    errors.push_back(path +
                     ".common_tls_context.tls_certificates: a DownstreamTlsContext needs "
                     "a certificate");
  }
  if (out.require_client_certificate && out.ca_file.empty() && out.ca_pem.empty()) {
    errors.push_back(path +
                     ".require_client_certificate: needs common_tls_context.validation_context."
                     "trusted_ca to verify client certificates");
  }
  if (!errors.empty()) return configError(join(errors));
  return out;
}

Result<tls::TlsContextConfig> translateUpstreamTlsContext(const tlsv3::UpstreamTlsContext& context,
                                                          const std::string& path) {
  Errors errors;
  tls::TlsContextConfig out;
  out.server = false;
  refuseOthers(context, path, {"common_tls_context", "sni", "allow_renegotiation"}, errors);
  commonTlsContext(context.common_tls_context(), path + ".common_tls_context", out, errors);
  out.sni = context.sni();
  if (context.allow_renegotiation()) {
    errors.push_back(path + ".allow_renegotiation: true is not supported yet");
  }
  if (!errors.empty()) return configError(join(errors));
  return out;
}

Result<std::shared_ptr<tls::TlsContext>> makeDownstreamTlsContext(
    const tlsv3::DownstreamTlsContext& context, const std::string& path) {
  return make(translateDownstreamTlsContext(context, path), path);
}

Result<std::shared_ptr<tls::TlsContext>> makeUpstreamTlsContext(
    const tlsv3::UpstreamTlsContext& context, const std::string& path) {
  return make(translateUpstreamTlsContext(context, path), path);
}

}  // namespace skiff::xds
