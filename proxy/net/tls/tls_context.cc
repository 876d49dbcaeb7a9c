#include "proxy/net/tls/tls_context.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "proxy/common/log.h"
#include "proxy/net/tls/tls_transport.h"

namespace skiff::tls {

// Envoy's default TLS 1.2 list (BoringSSL's equal-preference groups
// "[A|B]" flattened in order, since OpenSSL has no such groups).
const char* const kDefaultCipherList =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The oldest error on OpenSSL's queue as text (and clears the queue).
std::string opensslError() {
  unsigned long e = ERR_peek_error();
  std::string out = "unknown OpenSSL error";
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    const char* reason = ERR_reason_error_string(e);
    out = reason ? reason : buf;
  }
  ERR_clear_error();
  return out;
}

Result<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return configError(path + ": cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int64_t monotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr memBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Loads a PEM chain (leaf first) and its key as one more certificate of ctx.
Status useCertificate(SSL_CTX* ctx, const std::string& chain_pem, const std::string& key_pem,
                      const std::string& what) {
  BioPtr bio = memBio(chain_pem);
  X509* leaf = PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, nullptr);
  if (!leaf) return configError(what + ": no PEM certificate (" + opensslError() + ")");
  int ok = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  if (!ok) return configError(what + ": " + opensslError());
  // The rest of the file is the chain of the certificate just set.
  SSL_CTX_clear_chain_certs(ctx);
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (!SSL_CTX_add0_chain_cert(ctx, extra)) {
      X509_free(extra);
      return configError(what + ": " + opensslError());
    }
  }
  ERR_clear_error();  // The loop ends on "no start line".

  BioPtr key_bio = memBio(key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  if (!key) return configError(what + ": no PEM private key (" + opensslError() + ")");
  ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (!ok || !SSL_CTX_check_private_key(ctx)) {
    return configError(what + ": private key does not match the certificate (" + opensslError() +
                       ")");
  }
  return Status::ok();
}

Status useTrustedCa(SSL_CTX* ctx, const std::string& pem, const std::string& what) {
  BioPtr bio = memBio(pem);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int count = 0;
  while (X509* ca = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    int ok = X509_STORE_add_cert(store, ca);
    X509_free(ca);
    if (!ok) return configError(what + ": " + opensslError());
    ++count;
  }
  ERR_clear_error();
  if (count == 0) return configError(what + ": no PEM certificate");
  return Status::ok();
}

std::string alpnWire(const std::vector<std::string>& protocols) {
  std::string out;
  for (const std::string& p : protocols) {
    if (p.empty() || p.size() > 255) continue;  // The translator refuses these.
    out.push_back(static_cast<char>(p.size()));
    out += p;
  }
  return out;
}

}  // namespace

bool StringMatch::matches(std::string_view s) const {
  std::string folded_s, folded_v;
  std::string_view v = value;
  if (ignore_case) {
    folded_s = lower(s);
    folded_v = lower(value);
    s = folded_s;
    v = folded_v;
  }
  switch (kind) {
    case Kind::kExact:
      return s == v;
    case Kind::kPrefix:
      return s.starts_with(v);
    case Kind::kSuffix:
      return s.ends_with(v);
    case Kind::kContains:
      return s.find(v) != std::string_view::npos;
  }
  return false;
}

TlsContext::TlsContext(TlsContextConfig config) : config_(std::move(config)) {
  if (config_.cipher_suites.empty()) {
    cipher_string_ = kDefaultCipherList;
  } else {
    for (const std::string& c : config_.cipher_suites) {
      if (!cipher_string_.empty()) cipher_string_ += ':';
      cipher_string_ += c;
    }
  }
  alpn_wire_ = alpnWire(config_.alpn_protocols);
  watched_ = listWatchedFiles(config_);
}

TlsContext::~TlsContext() {
  for (auto& [sni, session] : sessions_) SSL_SESSION_free(session);
}

Result<std::shared_ptr<TlsContext>> TlsContext::create(const TlsContextConfig& config) {
  if (config.server && config.certificates.empty()) {
    return configError("a server TLS context needs at least one certificate");
  }
  bool has_ca = !config.ca_file.empty() || !config.ca_pem.empty();
  if (!has_ca && !config.san_matchers.empty()) {
    return configError(
        "subject alt name matching needs validation_context.trusted_ca (verifying SANs of an "
        "untrusted certificate proves nothing)");
  }
  if (!has_ca && config.require_client_certificate) {
    return configError("require_client_certificate needs validation_context.trusted_ca");
  }
  if (config.allow_renegotiation) return configError("allow_renegotiation is not supported");
  if (config.min_version > config.max_version) {
    return configError("tls_minimum_protocol_version is above tls_maximum_protocol_version");
  }
  std::shared_ptr<TlsContext> ctx(new TlsContext(config));
  std::vector<FileStamp> stamps;
  auto built = ctx->build(stamps);
  if (!built) return built.status();
  ctx->ctx_ = std::move(*built);
  ctx->stamps_ = std::move(stamps);
  ctx->next_check_ms_.store(monotonicMs() + config.reload_check_interval.count());
  return ctx;
}

std::vector<std::string> TlsContext::listWatchedFiles(const TlsContextConfig& config) {
  std::vector<std::string> files;
  for (const CertificatePaths& c : config.certificates) {
    if (c.cert_chain_pem.empty() && !c.cert_chain_file.empty()) files.push_back(c.cert_chain_file);
    if (c.private_key_pem.empty() && !c.private_key_file.empty()) {
      files.push_back(c.private_key_file);
    }
  }
  if (config.ca_pem.empty() && !config.ca_file.empty()) files.push_back(config.ca_file);
  return files;
}

namespace {

// Identity of a file's contents for the reload check: a rewrite in place
// changes mtime (and usually size); an atomic rename (Kubernetes secret
// volumes swap a symlink) changes the inode. stat() follows symlinks.
bool stampFile(const std::string& path, uint64_t& inode, uint64_t& size, int64_t& mtime_ns) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  inode = st.st_ino;
  size = static_cast<uint64_t>(st.st_size);
  mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return true;
}

}  // namespace

Result<std::shared_ptr<SSL_CTX>> TlsContext::build(std::vector<FileStamp>& stamps_out) const {
  // Stamp before reading, so that a change made while we read shows up at the
  // next check.
  stamps_out.clear();
  for (const std::string& f : watched_) {
    FileStamp st;
    stampFile(f, st.inode, st.size, st.mtime_ns);
    stamps_out.push_back(st);
  }

  ERR_clear_error();
  std::shared_ptr<SSL_CTX> ctx(
      SSL_CTX_new(config_.server ? TLS_server_method() : TLS_client_method()), SSL_CTX_free);
  if (!ctx) return Status(ErrorSource::kInternal, "SSL_CTX_new: " + opensslError());
  SSL_CTX* c = ctx.get();

  SSL_CTX_set_min_proto_version(c, config_.min_version);
  SSL_CTX_set_max_proto_version(c, config_.max_version);
  // Each configured name alone first, so that an error names the bad one.
  for (const std::string& name : config_.cipher_suites) {
    if (!SSL_CTX_set_cipher_list(c, name.c_str())) {
      ERR_clear_error();
      return configError("cipher suite '" + name + "' is not a TLS 1.2 cipher OpenSSL knows");
    }
  }
  if (!SSL_CTX_set_cipher_list(c, cipher_string_.c_str())) {
    return configError("cipher list '" + cipher_string_ + "': " + opensslError());
  }
  // No renegotiation (a DoS vector, and not in TLS 1.3), no compression (CRIME).
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                             (config_.server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  // Idle connections give their record buffers back (DESIGN.md: small idle
  // connections).
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);

  for (size_t i = 0; i < config_.certificates.size(); ++i) {
    const CertificatePaths& cert = config_.certificates[i];
    std::string what = "tls_certificates[" + std::to_string(i) + "]";
    std::string chain = cert.cert_chain_pem, key = cert.private_key_pem;
    if (chain.empty()) {
      auto r = readFile(cert.cert_chain_file);
      if (!r) return configError(what + ".certificate_chain: " + r.status().message());
      chain = std::move(*r);
      what += " (" + cert.cert_chain_file + ")";
    }
    if (key.empty()) {
      auto r = readFile(cert.private_key_file);
      if (!r) return configError(what + ".private_key: " + r.status().message());
      key = std::move(*r);
    }
    Status s = useCertificate(c, chain, key, what);
    if (!s) return s;
  }

  bool has_ca = !config_.ca_file.empty() || !config_.ca_pem.empty();
  if (has_ca) {
    std::string pem = config_.ca_pem;
    if (pem.empty()) {
      auto r = readFile(config_.ca_file);
      if (!r) return configError("trusted_ca: " + r.status().message());
      pem = std::move(*r);
    }
    Status s = useTrustedCa(c, pem, "trusted_ca");
    if (!s) return s;
  }

  int verify = SSL_VERIFY_NONE;
  if (has_ca) {
    // Server: ask for a client certificate and verify it when one comes;
    // refuse a client without one only under require_client_certificate.
    // Client: always verify the server. Without a CA, Envoy does not verify
    // the peer, and neither does skiff.
    verify = SSL_VERIFY_PEER;
    if (config_.server && config_.require_client_certificate) {
      verify |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
  }
  SSL_CTX_set_verify(c, verify, TlsTransport::verifyCallback);

  if (config_.server) {
    // Sessions (stateful cache and tickets, both on by default) resume only
    // in a context with the same certificates and verification settings.
    std::string identity = cipher_string_ + '\n' + config_.ca_file + '\n' + config_.ca_pem + '\n' +
                           (config_.require_client_certificate ? "mtls" : "") + '\n';
    for (const CertificatePaths& cert : config_.certificates) {
      identity += cert.cert_chain_file + '\n' + cert.cert_chain_pem + '\n';
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(identity.data(), identity.size(), digest, &len, EVP_sha256(), nullptr);
    SSL_CTX_set_session_id_context(c, digest, std::min<unsigned int>(len, SSL_MAX_SID_CTX_LENGTH));
    // One TLS 1.3 ticket per handshake is enough for a proxy's clients.
    SSL_CTX_set_num_tickets(c, 1);
    SSL_CTX_set_client_hello_cb(c, TlsTransport::clientHelloCallback, nullptr);
    if (!alpn_wire_.empty()) {
      SSL_CTX_set_alpn_select_cb(c, alpnSelect, const_cast<TlsContext*>(this));
    }
  } else {
    // The client keeps sessions itself (per SNI, in this object); OpenSSL's
    // internal store is for servers.
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c, TlsTransport::newSessionCallback);
    if (!alpn_wire_.empty() &&
        SSL_CTX_set_alpn_protos(c, reinterpret_cast<const unsigned char*>(alpn_wire_.data()),
                                static_cast<unsigned int>(alpn_wire_.size())) != 0) {
      return configError("alpn_protocols: " + opensslError());
    }
  }
  return ctx;
}

int TlsContext::alpnSelect(SSL*, const unsigned char** out, unsigned char* outlen,
                           const unsigned char* in, unsigned int inlen, void* arg) {
  auto* self = static_cast<TlsContext*>(arg);
  unsigned char* selected = nullptr;
  // SSL_select_next_proto walks the first list (ours) in order: server
  // preference, as Envoy. No overlap: carry on without ALPN, as Envoy does.
  if (SSL_select_next_proto(&selected, outlen,
                            reinterpret_cast<const unsigned char*>(self->alpn_wire_.data()),
                            static_cast<unsigned int>(self->alpn_wire_.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

void TlsContext::maybeReload() const {
  if (watched_.empty()) return;
  int64_t now = monotonicMs();
  int64_t next = next_check_ms_.load(std::memory_order_relaxed);
  if (now < next) return;
  // One thread checks per interval; the others go on with the current ctx.
  if (!next_check_ms_.compare_exchange_strong(next, now + config_.reload_check_interval.count(),
                                              std::memory_order_relaxed)) {
    return;
  }
  const std::vector<std::string>& files = watched_;
  std::vector<FileStamp> now_stamps(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    stampFile(files[i], now_stamps[i].inode, now_stamps[i].size, now_stamps[i].mtime_ns);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (now_stamps == stamps_) return;
  }
  std::vector<FileStamp> built_stamps;
  auto built = build(built_stamps);
  if (!built) {
    // Likely a half-written update (new cert, old key): keep serving the old
    // certificate and look again at the next interval.
    SKIFF_LOG(kWarn, "TLS certificate reload failed, keeping the previous certificate: " +
                         built.status().message());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ctx_ = std::move(*built);
    stamps_ = std::move(built_stamps);
    // Sessions of the old certificate (client side) may name the old client
    // identity; start fresh.
    for (auto& [sni, session] : sessions_) SSL_SESSION_free(session);
    sessions_.clear();
  }
  reloads_.fetch_add(1, std::memory_order_relaxed);
  std::string names;
  for (const std::string& f : files) names += (names.empty() ? "" : ", ") + f;
  SKIFF_LOG(kInfo, "TLS certificates reloaded from " + names);
}

std::shared_ptr<SSL_CTX> TlsContext::current() const {
  maybeReload();
  std::lock_guard<std::mutex> lock(mu_);
  return ctx_;
}

SSL_SESSION* TlsContext::takeSession(const std::string& sni) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(sni);
  if (it == sessions_.end()) return nullptr;
  SSL_SESSION_up_ref(it->second);
  return it->second;
}

void TlsContext::storeSession(const std::string& sni, SSL_SESSION* session) const {
  std::lock_guard<std::mutex> lock(mu_);
  SSL_SESSION*& slot = sessions_[sni];
  if (slot) SSL_SESSION_free(slot);
  slot = session;
}

void SniSelector::add(const std::vector<std::string>& server_names,
                      std::shared_ptr<const TlsContext> ctx) {
  if (!first_) first_ = ctx;
  for (const std::string& name : server_names) {
    std::string n = lower(name);
    if (n.starts_with("*.")) {
      wildcards_.emplace_back(n.substr(1), ctx);
    } else {
      exact_.emplace(n, ctx);
    }
  }
  std::stable_sort(wildcards_.begin(), wildcards_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

const std::shared_ptr<const TlsContext>& SniSelector::select(std::string_view server_name) const {
  if (!server_name.empty()) {
    std::string n = lower(server_name);
    auto it = exact_.find(n);
    if (it != exact_.end()) return it->second;
    for (const auto& [suffix, ctx] : wildcards_) {
      if (n.size() > suffix.size() && n.ends_with(suffix)) return ctx;
    }
  }
  return default_;
}

const std::shared_ptr<const TlsContext>& SniSelector::initial() const {
  return default_ ? default_ : first_;
}

}  // namespace skiff::tls
