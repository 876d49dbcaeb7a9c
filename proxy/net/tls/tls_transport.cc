#include "proxy/net/tls/tls_transport.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <utility>

namespace skiff::tls {

namespace {

// Below this, SSL_read_ex starts a fresh slab rather than fill a small tail.
constexpr size_t kMinReadTail = 2048;
// Slices smaller than this are gathered into one record (see writeChain).
constexpr size_t kCoalesceBelow = 2048;
constexpr size_t kMaxRecord = 16384;

struct SanEntry {
  SanMatcher::Type type;
  std::string text;
};

// The certificate's DNS, URI, email and IP subject alt names as text.
std::vector<SanEntry> sanEntries(X509* cert) {
  std::vector<SanEntry> out;
  if (!cert) return out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    auto text = [](const ASN1_STRING* s) {
      return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<size_t>(ASN1_STRING_length(s)));
    };
    switch (name->type) {
      case GEN_DNS:
        out.push_back({SanMatcher::Type::kDns, text(name->d.dNSName)});
        break;
      case GEN_URI:
        out.push_back({SanMatcher::Type::kUri, text(name->d.uniformResourceIdentifier)});
        break;
      case GEN_EMAIL:
        out.push_back({SanMatcher::Type::kEmail, text(name->d.rfc822Name)});
        break;
      case GEN_IPADD: {
        const ASN1_OCTET_STRING* ip = name->d.iPAddress;
        char buf[INET6_ADDRSTRLEN] = {};
        int len = ASN1_STRING_length(ip);
        int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
        if (family && inet_ntop(family, ASN1_STRING_get0_data(ip), buf, sizeof(buf))) {
          out.push_back({SanMatcher::Type::kIpAddress, buf});
        }
        break;
      }
      default:
        break;
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// Envoy's DNS SAN rule: an exact matcher "a.example.com" also matches a
// certificate's "*.example.com" (one label, RFC 6125 §6.4.3).
bool wildcardDnsMatch(std::string_view san, std::string_view name) {
  if (!san.starts_with("*.")) return false;
  size_t dot = name.find('.');
  return dot != std::string_view::npos && dot > 0 &&
         equalsIgnoreCase(name.substr(dot), san.substr(1));
}

bool sansMatch(X509* cert, const std::vector<SanMatcher>& matchers) {
  std::vector<SanEntry> sans = sanEntries(cert);
  for (const SanMatcher& m : matchers) {
    for (const SanEntry& san : sans) {
      if (m.type != SanMatcher::Type::kAny && m.type != san.type) continue;
      if (m.matcher.matches(san.text)) return true;
      if (san.type == SanMatcher::Type::kDns && m.matcher.kind == StringMatch::Kind::kExact &&
          wildcardDnsMatch(san.text, m.matcher.value)) {
        return true;
      }
    }
  }
  return false;
}

std::string opensslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    char buf[256];
    if (!reason) {
      ERR_error_string_n(e, buf, sizeof(buf));
      reason = buf;
    }
    if (!out.empty()) out += "; ";
    out += reason;
  }
  return out;
}

}  // namespace

TlsTransport::TlsTransport(std::shared_ptr<const TlsContext> ctx, bool server, std::string sni)
    : server_(server), sni_(std::move(sni)) {
  if (!server_ && sni_.empty() && ctx) sni_ = ctx->config().sni;
  init(ctx);
}

TlsTransport::TlsTransport(std::shared_ptr<const SniSelector> selector)
    : server_(true), selector_(std::move(selector)) {
  init(selector_ ? selector_->initial() : nullptr);
}

TlsTransport::~TlsTransport() {
  if (!ssl_) return;
  // OpenSSL marks the session of a connection freed without close_notify as
  // not resumable. Connections are routinely closed without it (Envoy and
  // browsers resume them all the same); only a failed one loses its session.
  if (handshake_complete_ && !failure_) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN);
  SSL_free(ssl_);  // Frees the BIO too.
}

void TlsTransport::init(const std::shared_ptr<const TlsContext>& ctx) {
  context_ = ctx;
  if (!ctx) {
    failure_ = "connection_error";
    failure_detail_ = "no TLS context";
    return;
  }
  std::shared_ptr<SSL_CTX> ssl_ctx = ctx->current();
  ssl_ = SSL_new(ssl_ctx.get());  // Holds its own reference on the SSL_CTX.
  if (!ssl_) {
    failure_ = "connection_error";
    failure_detail_ = "SSL_new: " + opensslErrors();
    return;
  }
  SSL_set_app_data(ssl_, this);
  // One BIO serves both directions: it reads input_ and appends to output_.
  BIO* bio = BIO_new(bioMethod());
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);

  if (server_) {
    SSL_set_accept_state(ssl_);
    return;
  }
  SSL_set_connect_state(ssl_);
  const TlsContextConfig& config = ctx->config();
  if (!sni_.empty()) {
    SSL_set_tlsext_host_name(ssl_, sni_.c_str());
    // With a CA and no SAN matchers, the server's certificate must name the
    // SNI (stricter than Envoy, which checks only the chain unless told).
    bool has_ca = !config.ca_file.empty() || !config.ca_pem.empty();
    if (has_ca && config.san_matchers.empty()) SSL_set1_host(ssl_, sni_.c_str());
  }
  if (SSL_SESSION* session = ctx->takeSession(sni_)) {
    SSL_set_session(ssl_, session);
    SSL_SESSION_free(session);
  }
}

void TlsTransport::startHandshake() {
  if (!ssl_ || server_ || handshake_complete_ || failure_) return;
  (void)advanceHandshake();
}

Status TlsTransport::advanceHandshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    handshake_complete_ = true;
    // Kept until now: a HelloRetryRequest brings a second ClientHello.
    chooser_.reset();
    return flushPending();
  }
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Status::ok();
  return fail(nullptr, err);
}

Status TlsTransport::fail(const char* reason, int ssl_error) {
  std::string detail = opensslErrors();
  if (!reason && ssl_) {
    long verify = SSL_get_verify_result(ssl_);
    if (san_failed_ || verify == X509_V_ERR_HOSTNAME_MISMATCH) {
      reason = "fail_verify_san";
      detail = san_failed_ ? "peer certificate has no subject alt name that matches"
                           : "peer certificate does not name " + sni_;
    } else if (verify != X509_V_OK) {
      reason = "fail_verify_error";
      detail = X509_verify_cert_error_string(verify);
    } else if (detail.find("peer did not return a certificate") != std::string::npos) {
      reason = "fail_verify_no_cert";
    } else {
      reason = "connection_error";
    }
  }
  if (detail.empty()) {
    detail = ssl_error == SSL_ERROR_SYSCALL ? "unexpected end of stream"
                                            : "SSL error " + std::to_string(ssl_error);
  }
  failure_ = reason;
  failure_detail_ = detail;
  return Status(peerSource(), std::string("TLS ") + (handshake_complete_ ? "" : "handshake ") +
                                  "failed (" + reason + "): " + detail);
}

Status TlsTransport::onRead(BufferChain& ciphertext, BufferChain& plaintext) {
  if (failure_) {
    ciphertext.clear();
    return Status(peerSource(), std::string("TLS failed earlier (") + failure_ + ")");
  }
  input_.move(ciphertext);  // No copy: the read BIO takes from these slices.
  if (!handshake_complete_) {
    Status s = advanceHandshake();
    if (!s || !handshake_complete_) return s;
  }
  while (true) {
    // Copy (TLS forces it): SSL_read_ex writes the decrypted record from
    // OpenSSL's buffer into the slab tail, which becomes plaintext's slice.
    std::span<char> tail = read_buffer_.prepare(kMinReadTail);
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl_, tail.data(), tail.size(), &n) == 1) {
      read_buffer_.commit(n, plaintext);
      continue;
    }
    int err = SSL_get_error(ssl_, 0);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      break;
    }
    read_buffer_.release();
    return fail(nullptr, err);
  }
  // Hold no slab between reads (an idle connection should cost little); the
  // slab lives on in plaintext's slices.
  read_buffer_.release();
  return Status::ok();
}

Status TlsTransport::write(BufferChain& plaintext, BufferChain& out) {
  if (failure_) {
    plaintext.clear();
    return Status(peerSource(), std::string("TLS failed earlier (") + failure_ + ")");
  }
  if (!handshake_complete_) {
    pending_.move(plaintext);
    return Status::ok();
  }
  BufferChain chain = std::move(plaintext);
  plaintext.clear();
  Status s = writeChain(chain);
  takeOutput(out);
  return s;
}

Status TlsTransport::flushPending() {
  if (pending_.empty()) return Status::ok();
  BufferChain chain = std::move(pending_);
  pending_.clear();
  return writeChain(chain);
}

Status TlsTransport::writeChain(const BufferChain& chain) {
  // Small slices (a header block, a chunk-size line) go out together in one
  // record: a record per slice would cost 22+ bytes and an AEAD call each.
  // Copy: those small slices are gathered into staging first.
  thread_local char staging[kMaxRecord];
  size_t staged = 0;
  auto encrypt = [this](const char* data, size_t size) -> Status {
    size_t written = 0;
    ERR_clear_error();
    // Copy (TLS forces it): the plaintext is encrypted into OpenSSL's record
    // buffer; the write BIO then moves the records into slabs.
    if (SSL_write_ex(ssl_, data, size, &written) != 1) {
      return fail(nullptr, SSL_get_error(ssl_, 0));
    }
    return Status::ok();
  };
  for (const Slice& slice : chain.slices()) {
    if (slice.size() < kCoalesceBelow) {
      if (staged + slice.size() > kMaxRecord) {
        Status s = encrypt(staging, staged);
        if (!s) return s;
        staged = 0;
      }
      std::memcpy(staging + staged, slice.data(), slice.size());
      staged += slice.size();
      continue;
    }
    if (staged > 0) {
      Status s = encrypt(staging, staged);
      if (!s) return s;
      staged = 0;
    }
    Status s = encrypt(slice.data(), slice.size());
    if (!s) return s;
  }
  if (staged > 0) return encrypt(staging, staged);
  return Status::ok();
}

void TlsTransport::takeOutput(BufferChain& out) { out.move(output_); }

void TlsTransport::shutdown(BufferChain& out) {
  if (ssl_ && handshake_complete_ && !failure_) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // Queues close_notify; we don't wait for the peer's.
    ERR_clear_error();
  }
  takeOutput(out);
}

std::string_view TlsTransport::alpn() const {
  if (!ssl_) return {};
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &data, &len);
  return {reinterpret_cast<const char*>(data), len};
}

std::string_view TlsTransport::sni() const {
  if (!server_ || !ssl_) return sni_;
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return name ? name : "";
}

std::string_view TlsTransport::protocolVersion() const { return ssl_ ? SSL_get_version(ssl_) : ""; }

bool TlsTransport::sessionReused() const { return ssl_ && SSL_session_reused(ssl_); }

bool TlsTransport::peerCertificatePresented() const {
  return ssl_ && SSL_get0_peer_certificate(ssl_) != nullptr;
}

std::string TlsTransport::peerSubject() const {
  X509* cert = ssl_ ? SSL_get0_peer_certificate(ssl_) : nullptr;
  if (!cert) return "";
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  return out;
}

namespace {
std::vector<std::string> sansOfType(SSL* ssl, SanMatcher::Type type) {
  std::vector<std::string> out;
  X509* cert = ssl ? SSL_get0_peer_certificate(ssl) : nullptr;
  for (SanEntry& e : sanEntries(cert)) {
    if (e.type == type) out.push_back(std::move(e.text));
  }
  return out;
}
}  // namespace

std::vector<std::string> TlsTransport::peerUriSans() const {
  return sansOfType(ssl_, SanMatcher::Type::kUri);
}

std::vector<std::string> TlsTransport::peerDnsSans() const {
  return sansOfType(ssl_, SanMatcher::Type::kDns);
}

std::string TlsTransport::peerCertificateSha256() const {
  X509* cert = ssl_ ? SSL_get0_peer_certificate(ssl_) : nullptr;
  if (!cert) return "";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md, &n) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

namespace {
void appendPem(X509* cert, std::string& out) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return;
  if (PEM_write_bio_X509(bio, cert) == 1) {
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    out.append(data, static_cast<size_t>(len));
  }
  BIO_free(bio);
}
}  // namespace

std::string TlsTransport::peerCertificatePem() const {
  std::string out;
  if (X509* cert = ssl_ ? SSL_get0_peer_certificate(ssl_) : nullptr) appendPem(cert, out);
  return out;
}

std::string TlsTransport::peerCertificateChainPem() const {
  std::string out;
  X509* leaf = ssl_ ? SSL_get0_peer_certificate(ssl_) : nullptr;
  if (!leaf) return out;
  appendPem(leaf, out);
  // On a server, OpenSSL's peer chain leaves the leaf out (a client's has
  // it first): the rest follows the leaf once.
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl_);
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    X509* c = sk_X509_value(chain, i);
    if (X509_cmp(c, leaf) != 0) appendPem(c, out);
  }
  return out;
}

std::vector<std::string> TlsTransport::localUriSans() const {
  std::vector<std::string> out;
  X509* cert = ssl_ ? SSL_get_certificate(ssl_) : nullptr;
  for (SanEntry& e : sanEntries(cert)) {
    if (e.type == SanMatcher::Type::kUri) out.push_back(std::move(e.text));
  }
  return out;
}

int TlsTransport::verifyCallback(int preverify_ok, X509_STORE_CTX* store) {
  if (!preverify_ok) return 0;  // The chain failed; SSL_get_verify_result says why.
  if (X509_STORE_CTX_get_error_depth(store) != 0) return 1;
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* self = ssl ? static_cast<TlsTransport*>(SSL_get_app_data(ssl)) : nullptr;
  if (!self || !self->context_) return 1;
  const std::vector<SanMatcher>& matchers = self->context_->config().san_matchers;
  if (matchers.empty()) return 1;
  if (sansMatch(X509_STORE_CTX_get_current_cert(store), matchers)) return 1;
  self->san_failed_ = true;
  X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

namespace {

// RFC 7301 3.1: ProtocolNameList = uint16 length, then entries of
// { uint8 length, bytes }. Stops at the first malformed entry (OpenSSL
// refuses such a ClientHello later anyway); at most out.size() names.
size_t offeredAlpn(SSL* ssl, std::span<std::string_view> out) {
  const unsigned char* p = nullptr;
  size_t len = 0;
  if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
                                 &len) ||
      len < 2) {
    return 0;
  }
  size_t end = std::min(len, 2 + ((static_cast<size_t>(p[0]) << 8) | p[1]));
  size_t n = 0;
  for (size_t i = 2; i < end && n < out.size();) {
    size_t name_len = p[i];
    if (name_len == 0 || i + 1 + name_len > end) break;
    out[n++] = {reinterpret_cast<const char*>(p + i + 1), name_len};
    i += 1 + name_len;
  }
  return n;
}

}  // namespace

int TlsTransport::clientHelloCallback(SSL* ssl, int* alert, void*) {
  auto* self = static_cast<TlsTransport*>(SSL_get_app_data(ssl));
  if (!self || (!self->selector_ && !self->chooser_)) return SSL_CLIENT_HELLO_SUCCESS;
  // RFC 6066 §3: ServerNameList = uint16 length, then entries of
  // { uint8 name_type (0 = host_name), uint16 length, bytes }.
  std::string_view name;
  const unsigned char* p = nullptr;
  size_t len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) && len >= 5) {
    size_t list = (static_cast<size_t>(p[0]) << 8) | p[1];
    size_t name_len = (static_cast<size_t>(p[3]) << 8) | p[4];
    if (list + 2 <= len && p[2] == TLSEXT_NAMETYPE_host_name && 3 + name_len <= list) {
      name = {reinterpret_cast<const char*>(p + 5), name_len};
    }
  }
  std::shared_ptr<const TlsContext> chosen;
  if (self->chooser_ != nullptr) {
    // A ClientHello offers a handful of protocols; more than 16 are not
    // looked at.
    std::array<std::string_view, 16> alpn;
    chosen = self->chooser_->chooseContext(name, std::span(alpn.data(), offeredAlpn(ssl, alpn)));
  } else {
    chosen = self->selector_->select(name);
  }
  if (!chosen) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_CLIENT_HELLO_ERROR;
  }
  if (chosen == self->context_) return SSL_CLIENT_HELLO_SUCCESS;
  std::shared_ptr<SSL_CTX> ctx = chosen->current();
  // SSL_set_SSL_CTX switches certificates, session id context, verify store
  // and ALPN callback; the settings an SSL copied at SSL_new follow by hand.
  SSL_set_SSL_CTX(ssl, ctx.get());
  SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx.get()), verifyCallback);
  SSL_set_min_proto_version(ssl, SSL_CTX_get_min_proto_version(ctx.get()));
  SSL_set_max_proto_version(ssl, SSL_CTX_get_max_proto_version(ctx.get()));
  SSL_set_cipher_list(ssl, chosen->cipherString().c_str());
  self->context_ = chosen;
  return SSL_CLIENT_HELLO_SUCCESS;
}

int TlsTransport::newSessionCallback(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<TlsTransport*>(SSL_get_app_data(ssl));
  if (!self || self->server_ || !self->context_) return 0;
  self->context_->storeSession(self->sni_, session);
  return 1;  // We keep the reference OpenSSL handed us.
}

// The BIO between OpenSSL and the buffers.

int TlsTransport::bioRead(BIO* bio, char* data, int len) {
  auto* self = static_cast<TlsTransport*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (self->input_.empty()) {
    BIO_set_retry_read(bio);
    return -1;
  }
  // Copy (TLS forces it): ciphertext into OpenSSL's record buffer, where the
  // record is authenticated and decrypted in place.
  size_t want = static_cast<size_t>(len), got = 0;
  for (const Slice& s : self->input_.slices()) {
    size_t n = std::min(s.size(), want - got);
    std::memcpy(data + got, s.data(), n);
    got += n;
    if (got == want) break;
  }
  self->input_.drain(got);
  return static_cast<int>(got);
}

int TlsTransport::bioWrite(BIO* bio, const char* data, int len) {
  auto* self = static_cast<TlsTransport*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  // Copy (TLS forces it): finished records from OpenSSL's write buffer into
  // slabs, from where they leave by writev with no further copy.
  self->output_.appendCopy({data, static_cast<size_t>(len)});
  return len;
}

long TlsTransport::bioCtrl(BIO* bio, int cmd, long, void*) {
  auto* self = static_cast<TlsTransport*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING:
      return static_cast<long>(self->input_.length());
    case BIO_CTRL_WPENDING:
      return static_cast<long>(self->output_.length());
    default:
      return 0;
  }
}

BIO_METHOD* TlsTransport::bioMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "skiff buffer chain");
    BIO_meth_set_write(m, bioWrite);
    BIO_meth_set_read(m, bioRead);
    BIO_meth_set_ctrl(m, bioCtrl);
    return m;
  }();
  return method;
}

}  // namespace skiff::tls
