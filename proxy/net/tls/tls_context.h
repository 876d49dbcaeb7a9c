// TLS contexts: one OpenSSL SSL_CTX per configured DownstreamTlsContext or
// UpstreamTlsContext, built from TlsContextConfig (which xds/tls_translator
// fills from Envoy's protos), plus server-side SNI selection among several.
//
// A TlsContext is shared by every worker (it sits in config snapshots as a
// shared_ptr) and looks immutable to its users. Two things inside change:
//
//  * Certificate reload. Each new connection asks for the current SSL_CTX. At
//    most once per reload_check_interval (1 s) per context, that call stat()s
//    the certificate, key and CA files; when one's inode, size or mtime has
//    changed, it builds a new SSL_CTX and swaps it in. Connections already
//    open keep the SSL_CTX they started with (an SSL holds a reference). The
//    swap is a shared_ptr under a small mutex: one uncontended lock per new
//    connection, never per request, and the handshake that follows costs
//    thousands of times more. A rebuild that fails (say, the cert is written
//    but the key is not yet) keeps the old SSL_CTX and tries again on the
//    next check.
//  * Client session cache. An upstream context keeps the last SSL_SESSION per
//    SNI, under the same mutex, so that the next connection resumes.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/common/status.h"

namespace skiff::tls {

// A certificate and its private key: from files (reloaded when they change)
// or inline PEM text (when the *_pem field is not empty, it wins).
struct CertificatePaths {
  std::string cert_chain_file;   // PEM: leaf first, then intermediates.
  std::string private_key_file;  // PEM private key.
  std::string cert_chain_pem;    // Inline PEM chain (DataSource.inline_string).
  std::string private_key_pem;   // Inline PEM key.
};

// Envoy's type.matcher.v3.StringMatcher, the kinds skiff implements.
struct StringMatch {
  enum class Kind { kExact, kPrefix, kSuffix, kContains };
  Kind kind = Kind::kExact;  // How value is compared.
  std::string value;         // The string to compare with.
  bool ignore_case = false;  // ASCII case-insensitive comparison.

  bool matches(std::string_view s) const;
};

// One subject-alt-name matcher (match_typed_subject_alt_names entry, or a
// legacy match_subject_alt_names entry with type kAny).
struct SanMatcher {
  enum class Type { kAny, kDns, kUri, kIpAddress, kEmail };
  Type type = Type::kAny;  // Which SAN entries it looks at; kAny: DNS, URI, IP, email.
  StringMatch matcher;     // How a SAN entry's text must match.
};

struct TlsContextConfig {
  bool server = true;                          // Downstream (server) or upstream (client) side.
  std::vector<CertificatePaths> certificates;  // Our certificates (a server needs one).
  std::vector<std::string> alpn_protocols;     // Server: preference order; client: offer.
  std::string ca_file;                         // Trusted CA bundle (PEM) to verify the peer.
  std::string ca_pem;                          // Inline trusted CA PEM (wins over ca_file).
  bool require_client_certificate = false;     // Server: mTLS, refuse a client without cert.
  std::vector<SanMatcher> san_matchers;        // The peer's cert must have a SAN matching one.
  std::string sni;                             // Client: server name sent (and checked).
  int min_version = TLS1_2_VERSION;            // Lowest protocol version allowed.
  int max_version = TLS1_3_VERSION;            // Highest protocol version allowed.
  std::vector<std::string> cipher_suites;      // TLS 1.2 cipher names; empty: Envoy's defaults.
  bool allow_renegotiation = false;            // Only false is implemented.
  std::chrono::milliseconds reload_check_interval{1000};  // Min time between stat() checks.
};

// Envoy's default TLS 1.2 cipher list (TLS 1.3 suites are OpenSSL's defaults).
extern const char* const kDefaultCipherList;

class TlsContext {
 public:
  // Builds the SSL_CTX; a config error names what is wrong (unreadable file,
  // key that doesn't match its certificate, unknown cipher...).
  static Result<std::shared_ptr<TlsContext>> create(const TlsContextConfig& config);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  const TlsContextConfig& config() const { return config_; }
  // The OpenSSL cipher string in use (for SSL_set_cipher_list after an SNI switch).
  const std::string& cipherString() const { return cipher_string_; }
  bool server() const { return config_.server; }

  // The SSL_CTX for a new connection, after the cheap reload check. The
  // shared_ptr keeps it alive while the caller makes its SSL (SSL_new takes
  // its own reference).
  std::shared_ptr<SSL_CTX> current() const;
  // How many times the SSL_CTX was rebuilt after a file changed (for tests
  // and stats).
  uint64_t reloadCount() const { return reloads_.load(std::memory_order_relaxed); }

  // Client side session cache (last session per SNI). take* returns an owned
  // reference or nullptr; store takes ownership of session.
  SSL_SESSION* takeSession(const std::string& sni) const;
  void storeSession(const std::string& sni, SSL_SESSION* session) const;

 private:
  struct FileStamp {
    uint64_t inode = 0, size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileStamp&) const = default;
  };

  explicit TlsContext(TlsContextConfig config);
  // Reads the files and builds an SSL_CTX; stamps_out gets the files' stamps
  // as they were read.
  Result<std::shared_ptr<SSL_CTX>> build(std::vector<FileStamp>& stamps_out) const;
  static std::vector<std::string> listWatchedFiles(const TlsContextConfig& config);
  void maybeReload() const;

  static int alpnSelect(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                        const unsigned char* in, unsigned int inlen, void* arg);

  const TlsContextConfig config_;
  std::string cipher_string_;         // OpenSSL form of the TLS 1.2 cipher list.
  std::string alpn_wire_;             // alpn_protocols as length-prefixed bytes.
  std::vector<std::string> watched_;  // Files whose change triggers a rebuild.
  mutable std::mutex mu_;
  mutable std::shared_ptr<SSL_CTX> ctx_;                  // Guarded by mu_.
  mutable std::vector<FileStamp> stamps_;                 // Guarded by mu_; per watchedFiles().
  mutable std::map<std::string, SSL_SESSION*> sessions_;  // Guarded by mu_; client only.
  mutable std::atomic<int64_t> next_check_ms_{0};         // Monotonic ms of the next stat().
  mutable std::atomic<uint64_t> reloads_{0};
};

// Server-side SNI selection: one TlsContext per filter chain with
// server_names, picked by the ClientHello's server name; the default when no
// name matches (or the client sends none). Names are exact ("a.example.com")
// or a leading wildcard ("*.example.com", matching one or more labels, as
// Envoy's filter_chain_match.server_names). Exact names win over wildcards,
// and longer wildcards over shorter ones. Immutable once built; shared as
// shared_ptr<const SniSelector>.
class SniSelector {
 public:
  void add(const std::vector<std::string>& server_names, std::shared_ptr<const TlsContext> ctx);
  void setDefault(std::shared_ptr<const TlsContext> ctx) { default_ = std::move(ctx); }

  // The context for server_name (empty: no SNI); nullptr when nothing matches
  // and there is no default.
  const std::shared_ptr<const TlsContext>& select(std::string_view server_name) const;
  // The context a connection starts with, before the ClientHello is read.
  const std::shared_ptr<const TlsContext>& initial() const;

 private:
  std::map<std::string, std::shared_ptr<const TlsContext>, std::less<>> exact_;
  // Wildcard suffixes (".example.com"), longest first.
  std::vector<std::pair<std::string, std::shared_ptr<const TlsContext>>> wildcards_;
  std::shared_ptr<const TlsContext> default_;
  std::shared_ptr<const TlsContext> first_;  // The first added, when no default.
};

}  // namespace skiff::tls
