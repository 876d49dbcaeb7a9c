// TLS as a pure transform on buffers: ciphertext chains in, plaintext chains
// out, and the other way. One TlsTransport per connection; it never touches a
// socket, so the connection reads and writes as for plaintext and the codecs
// never know (DESIGN.md, "Protocols").
//
// OpenSSL talks to two small BIOs over BufferChains instead of to a socket:
// the read BIO takes bytes from the front of a ciphertext chain, the write BIO
// appends to an output chain. Compared with BIO_s_mem this saves one copy each
// way (no intermediate BUF_MEM). The copies left are the ones TLS forces:
//
//   in:  ciphertext slices -> OpenSSL's record buffer   (read BIO; records are
//        decrypted in place there)
//        record buffer -> slab tails of `plaintext`     (SSL_read_ex)
//   out: plaintext slices -> encrypted record buffer    (SSL_write_ex encrypts)
//        record buffer -> slab tails of the output      (write BIO)
//
// Use:
//   client: startHandshake(); takeOutput(out) -> socket
//   both:   socket bytes -> onRead(cipher, plain); takeOutput(out) -> socket
//           write(plain, out) -> socket (buffered until the handshake is done;
//           after the handshake completes, onRead's takeOutput carries it)
//   When onRead returns an error, takeOutput() may still hold an alert to
//   send before closing; failureReason() names the stat to count.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/buffer/buffer.h"
#include "proxy/common/status.h"
#include "proxy/net/tls/tls_context.h"

namespace skiff::tls {

// Server side: picks the context for a ClientHello by more than its SNI (a
// listener's filter chains that match on addresses or ALPN). Called once,
// from the ClientHello callback.
class ContextChooser {
 public:
  virtual ~ContextChooser() = default;
  // server_name: "" for none; alpn: the protocols offered, in the client's
  // order. nullptr refuses the handshake.
  virtual std::shared_ptr<const TlsContext> chooseContext(
      std::string_view server_name, std::span<const std::string_view> alpn) = 0;
};

class TlsTransport {
 public:
  // One context. server picks the side; sni (client) overrides the context's
  // configured sni for this connection.
  TlsTransport(std::shared_ptr<const TlsContext> ctx, bool server, std::string sni = "");
  // Server side, choosing the context by the ClientHello's SNI.
  explicit TlsTransport(std::shared_ptr<const SniSelector> selector);
  // Server side: chooser, when set before the handshake, picks the context
  // instead of the selector (which still gives the one a connection starts
  // with). It is let go of when the handshake completes.
  void setContextChooser(std::unique_ptr<ContextChooser> chooser) { chooser_ = std::move(chooser); }
  ~TlsTransport();
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  // Ciphertext read from the socket (all of it is consumed) -> plaintext
  // appended to `plaintext`. Drives the handshake; bytes to send afterwards
  // wait in takeOutput(). An error is final: the connection should send
  // takeOutput() (an alert) and close.
  Status onRead(BufferChain& ciphertext, BufferChain& plaintext);
  // Plaintext to send (all of it is consumed) -> ciphertext appended to out.
  // Before the handshake completes the plaintext is held and leaves with the
  // output of the onRead() that completes it.
  Status write(BufferChain& plaintext, BufferChain& out);
  // Bytes the TLS engine wants sent now (handshake, alerts, session tickets,
  // held application data).
  void takeOutput(BufferChain& out);
  bool hasOutput() const { return !output_.empty(); }
  // Client side: produces the ClientHello (takeOutput() then has it).
  void startHandshake();
  // Sends close_notify (appended to out). Reading may go on.
  void shutdown(BufferChain& out);

  bool handshakeComplete() const { return handshake_complete_; }
  bool failed() const { return failure_ != nullptr; }
  // The peer sent close_notify: no more plaintext will come.
  bool peerClosed() const { return peer_closed_; }
  bool isServer() const { return server_; }

  // Negotiated ALPN protocol ("h2", "http/1.1"), "" if none.
  std::string_view alpn() const;
  // Server: the client's SNI ("" if none). Client: the name sent.
  std::string_view sni() const;
  // "TLSv1.3", "TLSv1.2".
  std::string_view protocolVersion() const;
  bool sessionReused() const;

  bool peerCertificatePresented() const;
  // RFC 2253 subject of the peer's certificate, "" without one.
  std::string peerSubject() const;
  std::vector<std::string> peerUriSans() const;
  std::vector<std::string> peerDnsSans() const;
  // For x-forwarded-client-cert: the SHA-256 of the peer certificate's DER
  // as lowercase hex; the peer certificate in PEM, and with the chain it
  // sent after it; the URI SANs of this end's own certificate. All "" (or
  // empty) without a certificate.
  std::string peerCertificateSha256() const;
  std::string peerCertificatePem() const;
  std::string peerCertificateChainPem() const;
  std::vector<std::string> localUriSans() const;

  // Why the connection failed, as Envoy's ssl.* stat suffix:
  // "connection_error", "fail_verify_error", "fail_verify_no_cert",
  // "fail_verify_san"; nullptr while nothing failed.
  const char* failureReason() const { return failure_; }
  // OpenSSL's detail for logs ("certificate has expired", ...).
  const std::string& failureDetail() const { return failure_detail_; }

  // The context in use (server: the one SNI selected).
  const std::shared_ptr<const TlsContext>& context() const { return context_; }

  // OpenSSL callbacks, installed on every SSL_CTX by TlsContext.
  static int verifyCallback(int preverify_ok, X509_STORE_CTX* store);
  static int clientHelloCallback(SSL* ssl, int* alert, void* arg);
  static int newSessionCallback(SSL* ssl, SSL_SESSION* session);

 private:
  void init(const std::shared_ptr<const TlsContext>& ctx);
  // Runs the handshake as far as the buffered input allows.
  Status advanceHandshake();
  // Moves held plaintext into records once the handshake is done.
  Status flushPending();
  // Encrypts every byte of chain into output_.
  Status writeChain(const BufferChain& chain);
  Status fail(const char* reason, int ssl_error);
  ErrorSource peerSource() const {
    return server_ ? ErrorSource::kDownstream : ErrorSource::kUpstream;
  }

  static int bioWrite(BIO* bio, const char* data, int len);
  static int bioRead(BIO* bio, char* data, int len);
  static long bioCtrl(BIO* bio, int cmd, long num, void* ptr);
  static BIO_METHOD* bioMethod();

  SSL* ssl_ = nullptr;
  bool server_;
  std::string sni_;                              // Client: the name sent.
  std::shared_ptr<const TlsContext> context_;    // Current context (SNI may switch it).
  std::shared_ptr<const SniSelector> selector_;  // Server with SNI selection, else null.
  std::unique_ptr<ContextChooser> chooser_;      // Server, on some listeners.
  BufferChain input_;       // Ciphertext not yet taken by OpenSSL (read BIO's source).
  BufferChain output_;      // Ciphertext waiting for takeOutput() (write BIO's sink).
  BufferChain pending_;     // Plaintext written before the handshake completed.
  ReadBuffer read_buffer_;  // Slab tails that SSL_read_ex decrypts into.
  bool handshake_complete_ = false;
  bool peer_closed_ = false;
  bool san_failed_ = false;  // The verify callback refused the peer's SANs.
  const char* failure_ = nullptr;
  std::string failure_detail_;
};

}  // namespace skiff::tls
