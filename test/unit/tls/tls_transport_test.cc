// Two TlsTransports (client and server) pumped against each other in memory.
// Certificates are made by the openssl command at test time, never committed.
#include "proxy/net/tls/tls_transport.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "proxy/net/tls/tls_context.h"

namespace skiff::tls {
namespace {

namespace fs = std::filesystem;

class TlsTransportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/skiff-tls-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // A CA; leaf certificates signed by it with the given SANs; one expired.
    std::string script = "set -e; cd '" + dir_ + R"('
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
key ca
openssl req -x509 -new -key ca.key -out ca.pem -days 3650 -subj /CN=skiff-test-ca
leaf() {
  key "$1"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1"
  printf 'subjectAltName=%s\n' "$2" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
leaf server 'DNS:example.test,URI:spiffe://cluster.local/ns/default/sa/server'
leaf server-new 'DNS:example.test,URI:spiffe://cluster.local/ns/default/sa/server'
leaf other 'DNS:other.test'
leaf client 'URI:spiffe://cluster.local/ns/default/sa/client'
leaf wrongsan 'DNS:wrong.test,URI:spiffe://cluster.local/ns/default/sa/wrong'
key expired
openssl req -new -key expired.key -out expired.csr -subj /CN=expired
touch index.txt; echo 01 > serial
printf '[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n' > ca.cnf
printf 'subjectAltName=DNS:example.test\n' > expired.ext
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \
  -startdate 20200101000000Z -enddate 20200102000000Z -extfile expired.ext -notext 2>/dev/null
)";
    std::ofstream(dir_ + "/make-certs.sh") << script;
    ASSERT_EQ(std::system(("bash " + dir_ + "/make-certs.sh").c_str()), 0);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string path(const std::string& name) { return dir_ + "/" + name; }

  static TlsContextConfig serverConfig(const std::string& cert = "server") {
    TlsContextConfig c;
    c.server = true;
    c.certificates.push_back({path(cert + ".pem"), path(cert + ".key"), "", ""});
    return c;
  }
  static TlsContextConfig clientConfig(const std::string& sni = "example.test") {
    TlsContextConfig c;
    c.server = false;
    c.ca_file = path("ca.pem");
    c.sni = sni;
    return c;
  }
  static std::shared_ptr<TlsContext> make(const TlsContextConfig& config) {
    auto r = TlsContext::create(config);
    EXPECT_TRUE(r.isOk()) << r.status().message();
    return r.isOk() ? *r : nullptr;
  }

  struct Side {
    BufferChain plain;  // Plaintext this side has received.
    Status error;       // First error this side reported.
  };
  // Moves bytes both ways until neither side has anything to send.
  static void pump(TlsTransport& client, TlsTransport& server, Side& c, Side& s) {
    for (int i = 0; i < 1000; ++i) {
      BufferChain to_server, to_client;
      client.takeOutput(to_server);
      server.takeOutput(to_client);
      if (to_server.empty() && to_client.empty()) return;
      if (!to_server.empty()) {
        Status st = server.onRead(to_server, s.plain);
        if (!st && s.error) s.error = st;
      }
      if (!to_client.empty()) {
        Status st = client.onRead(to_client, c.plain);
        if (!st && c.error) c.error = st;
      }
    }
    ADD_FAILURE() << "pump did not settle";
  }
  static void handshake(TlsTransport& client, TlsTransport& server, Side& c, Side& s) {
    client.startHandshake();
    pump(client, server, c, s);
  }
  // Writes plaintext on one side; the ciphertext waits for deliver().
  static void send(TlsTransport& from, std::string_view bytes) {
    BufferChain plain, out;
    plain.appendCopy(bytes);
    ASSERT_TRUE(from.write(plain, out).isOk());
    EXPECT_TRUE(plain.empty());
    pending_out_[&from].move(out);
  }
  // Like pump, but first delivers what send() produced.
  static void deliver(TlsTransport& client, TlsTransport& server, Side& c, Side& s) {
    BufferChain& cs = pending_out_[&client];
    BufferChain& sc = pending_out_[&server];
    if (!cs.empty()) {
      Status st = server.onRead(cs, s.plain);
      if (!st && s.error) s.error = st;
    }
    if (!sc.empty()) {
      Status st = client.onRead(sc, c.plain);
      if (!st && c.error) c.error = st;
    }
    pump(client, server, c, s);
  }

  static std::string dir_;
  static inline std::map<const TlsTransport*, BufferChain> pending_out_;
  void TearDown() override { pending_out_.clear(); }
};

std::string TlsTransportTest::dir_;

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

TEST_F(TlsTransportTest, TlsHandshakeTls13AndDataBothWays) {
  auto server_ctx = make(serverConfig());
  auto client_ctx = make(clientConfig());
  TlsTransport client(client_ctx, false), server(server_ctx, true);
  Side c, s;
  // Written before the handshake: held, then sent once it completes.
  send(client, "early request");
  handshake(client, server, c, s);
  ASSERT_TRUE(c.error.isOk()) << c.error.message();
  ASSERT_TRUE(s.error.isOk()) << s.error.message();
  EXPECT_TRUE(client.handshakeComplete());
  EXPECT_TRUE(server.handshakeComplete());
  EXPECT_EQ(client.protocolVersion(), "TLSv1.3");
  EXPECT_EQ(server.sni(), "example.test");
  EXPECT_EQ(client.failureReason(), nullptr);
  EXPECT_EQ(s.plain.toString(), "early request");
  s.plain.clear();

  send(server, "response");
  deliver(client, server, c, s);
  EXPECT_EQ(c.plain.toString(), "response");
  c.plain.clear();

  // 1 MiB each way, as many slices.
  std::string big = pattern(1 << 20);
  send(client, big);
  send(server, big);
  deliver(client, server, c, s);
  ASSERT_TRUE(c.error.isOk()) << c.error.message();
  ASSERT_TRUE(s.error.isOk()) << s.error.message();
  EXPECT_EQ(s.plain.length(), big.size());
  EXPECT_TRUE(s.plain.toString() == big);
  EXPECT_TRUE(c.plain.toString() == big);

  // The client sees the server's identity.
  EXPECT_EQ(client.peerSubject(), "CN=server");
  EXPECT_EQ(client.peerUriSans(),
            std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/server"});
  EXPECT_FALSE(server.peerCertificatePresented());

  // close_notify.
  BufferChain out;
  client.shutdown(out);
  BufferChain plain;
  EXPECT_TRUE(server.onRead(out, plain).isOk());
  EXPECT_TRUE(server.peerClosed());
}

TEST_F(TlsTransportTest, TlsSmallSlicesShareRecords) {
  auto server_ctx = make(serverConfig());
  auto client_ctx = make(clientConfig());
  TlsTransport client(client_ctx, false), server(server_ctx, true);
  Side c, s;
  handshake(client, server, c, s);
  BufferChain plain, out;
  // Ten slices in ten slabs.
  std::string expect;
  for (int i = 0; i < 10; ++i) {
    BufferChain piece;
    piece.appendCopy("slice" + std::to_string(i) + ";");
    expect += "slice" + std::to_string(i) + ";";
    plain.move(piece);
  }
  ASSERT_TRUE(client.write(plain, out).isOk());
  // One record: 5 bytes header + payload + 1 content type + 16 tag.
  EXPECT_EQ(out.length(), 5 + expect.size() + 1 + 16);
  ASSERT_TRUE(server.onRead(out, s.plain).isOk());
  EXPECT_EQ(s.plain.toString(), expect);
}

TEST_F(TlsTransportTest, TlsHandshakeTls12) {
  TlsContextConfig sc = serverConfig();
  sc.max_version = TLS1_2_VERSION;
  auto server_ctx = make(sc);
  auto client_ctx = make(clientConfig());
  TlsTransport client(client_ctx, false), server(server_ctx, true);
  Side c, s;
  handshake(client, server, c, s);
  ASSERT_TRUE(c.error.isOk()) << c.error.message();
  ASSERT_TRUE(s.error.isOk()) << s.error.message();
  EXPECT_EQ(client.protocolVersion(), "TLSv1.2");
  send(client, "ping");
  send(server, "pong");
  deliver(client, server, c, s);
  EXPECT_EQ(s.plain.toString(), "ping");
  EXPECT_EQ(c.plain.toString(), "pong");
}

TEST_F(TlsTransportTest, TlsAlpnNegotiation) {
  TlsContextConfig sc = serverConfig();
  sc.alpn_protocols = {"h2", "http/1.1"};
  auto server_ctx = make(sc);
  struct Case {
    std::vector<std::string> offer;
    std::string expect;
  };
  for (const Case& k : std::vector<Case>{
           {{"http/1.1", "h2"}, "h2"}, {{"http/1.1"}, "http/1.1"}, {{}, ""}, {{"h3"}, ""}}) {
    TlsContextConfig cc = clientConfig();
    cc.alpn_protocols = k.offer;
    auto client_ctx = make(cc);
    TlsTransport client(client_ctx, false), server(server_ctx, true);
    Side c, s;
    handshake(client, server, c, s);
    ASSERT_TRUE(c.error.isOk()) << c.error.message();
    EXPECT_EQ(client.alpn(), k.expect);
    EXPECT_EQ(server.alpn(), k.expect);
  }
}

TEST_F(TlsTransportTest, TlsSniSelectsContext) {
  auto main_ctx = make(serverConfig("server"));
  auto other_ctx = make(serverConfig("other"));
  auto selector = std::make_shared<SniSelector>();
  selector->add({"example.test"}, main_ctx);
  selector->add({"other.test", "*.wild.test"}, other_ctx);
  selector->setDefault(main_ctx);

  struct Case {
    std::string sni;
    std::string subject;
  };
  for (const Case& k : std::vector<Case>{{"other.test", "CN=other"},
                                         {"a.wild.test", "CN=other"},
                                         {"example.test", "CN=server"},
                                         {"unknown.test", "CN=server"},
                                         {"", "CN=server"}}) {
    TlsContextConfig cc = clientConfig(k.sni);
    cc.ca_file.clear();  // No hostname check: the test looks at what was presented.
    auto client_ctx = make(cc);
    TlsTransport client(client_ctx, false), server{std::shared_ptr<const SniSelector>(selector)};
    Side c, s;
    handshake(client, server, c, s);
    ASSERT_TRUE(c.error.isOk()) << k.sni << ": " << c.error.message();
    EXPECT_EQ(client.peerSubject(), k.subject) << k.sni;
    EXPECT_EQ(server.sni(), k.sni);
    EXPECT_EQ(server.context().get(), k.subject == "CN=other" ? other_ctx.get() : main_ctx.get());
  }

  // With the CA, a client asking for other.test verifies other.test's cert.
  auto verifying = make(clientConfig("other.test"));
  TlsTransport client(verifying, false), server{std::shared_ptr<const SniSelector>(selector)};
  Side c, s;
  handshake(client, server, c, s);
  EXPECT_TRUE(c.error.isOk()) << c.error.message();
  EXPECT_EQ(client.peerDnsSans(), std::vector<std::string>{"other.test"});

  // No default: an unknown name is refused.
  auto strict = std::make_shared<SniSelector>();
  strict->add({"example.test"}, main_ctx);
  TlsContextConfig cc = clientConfig("nope.test");
  cc.ca_file.clear();
  auto client_ctx = make(cc);
  TlsTransport client2(client_ctx, false), server2{std::shared_ptr<const SniSelector>(strict)};
  Side c2, s2;
  handshake(client2, server2, c2, s2);
  EXPECT_FALSE(s2.error.isOk());
  EXPECT_FALSE(c2.error.isOk());
  EXPECT_FALSE(client2.handshakeComplete());
}

TEST_F(TlsTransportTest, TlsSniSelectedContextKeepsItsVerification) {
  // The default context asks for no client certificate; the one for
  // secure.test requires one. The switch must carry the verify mode over.
  auto open_ctx = make(serverConfig("server"));
  TlsContextConfig sc = serverConfig("other");
  sc.ca_file = path("ca.pem");
  sc.require_client_certificate = true;
  sc.alpn_protocols = {"h2"};
  auto secure_ctx = make(sc);
  auto selector = std::make_shared<SniSelector>();
  selector->add({"secure.test"}, secure_ctx);
  selector->setDefault(open_ctx);

  TlsContextConfig cc = clientConfig("secure.test");
  cc.ca_file.clear();
  cc.alpn_protocols = {"h2"};
  auto anonymous = make(cc);
  {
    TlsTransport client(anonymous, false), server{std::shared_ptr<const SniSelector>(selector)};
    Side c, s;
    handshake(client, server, c, s);
    ASSERT_NE(server.failureReason(), nullptr);
    EXPECT_STREQ(server.failureReason(), "fail_verify_no_cert");
  }
  cc.certificates.push_back({path("client.pem"), path("client.key"), "", ""});
  auto with_cert = make(cc);
  {
    TlsTransport client(with_cert, false), server{std::shared_ptr<const SniSelector>(selector)};
    Side c, s;
    handshake(client, server, c, s);
    ASSERT_TRUE(s.error.isOk()) << s.error.message();
    EXPECT_EQ(server.peerSubject(), "CN=client");
    EXPECT_EQ(server.alpn(), "h2");  // The selected context's ALPN.
    EXPECT_EQ(client.peerSubject(), "CN=other");
  }
}

TEST_F(TlsTransportTest, TlsOneByteAtATime) {
  auto server_ctx = make(serverConfig());
  auto client_ctx = make(clientConfig());
  TlsTransport client(client_ctx, false), server(server_ctx, true);
  BufferChain c_plain, s_plain;
  client.startHandshake();
  // Every flight is fed one byte per onRead call.
  auto trickle = [](TlsTransport& from, TlsTransport& to, BufferChain& plain) {
    BufferChain out;
    from.takeOutput(out);
    bool any = !out.empty();
    while (!out.empty()) {
      BufferChain one;
      one.move(out, 1);
      EXPECT_TRUE(to.onRead(one, plain).isOk());
    }
    return any;
  };
  for (int i = 0; i < 20; ++i) {
    bool a = trickle(client, server, s_plain);
    bool b = trickle(server, client, c_plain);
    if (!a && !b) break;
  }
  ASSERT_TRUE(client.handshakeComplete());
  ASSERT_TRUE(server.handshakeComplete());
  BufferChain plain, out;
  std::string msg = pattern(40000);
  plain.appendCopy(msg);
  ASSERT_TRUE(client.write(plain, out).isOk());
  while (!out.empty()) {
    BufferChain one;
    one.move(out, 1);
    ASSERT_TRUE(server.onRead(one, s_plain).isOk());
  }
  EXPECT_TRUE(s_plain.toString() == msg);
}

TEST_F(TlsTransportTest, TlsMutualTls) {
  TlsContextConfig sc = serverConfig();
  sc.ca_file = path("ca.pem");
  sc.require_client_certificate = true;
  sc.san_matchers.push_back(
      {SanMatcher::Type::kUri,
       {StringMatch::Kind::kPrefix, "spiffe://cluster.local/ns/default/", false}});
  auto server_ctx = make(sc);

  {  // A client without a certificate is refused.
    auto client_ctx = make(clientConfig());
    TlsTransport client(client_ctx, false), server(server_ctx, true);
    Side c, s;
    handshake(client, server, c, s);
    EXPECT_FALSE(s.error.isOk());
    ASSERT_NE(server.failureReason(), nullptr);
    EXPECT_STREQ(server.failureReason(), "fail_verify_no_cert");
    EXPECT_FALSE(c.error.isOk());  // The alert reaches the client.
  }
  {  // With one it passes, and the server sees who it is.
    TlsContextConfig cc = clientConfig();
    cc.certificates.push_back({path("client.pem"), path("client.key"), "", ""});
    auto client_ctx = make(cc);
    TlsTransport client(client_ctx, false), server(server_ctx, true);
    Side c, s;
    handshake(client, server, c, s);
    ASSERT_TRUE(s.error.isOk()) << s.error.message();
    ASSERT_TRUE(c.error.isOk()) << c.error.message();
    EXPECT_TRUE(server.peerCertificatePresented());
    EXPECT_EQ(server.peerSubject(), "CN=client");
    EXPECT_EQ(server.peerUriSans(),
              std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/client"});
  }
  {  // A client certificate from the right CA but with the wrong SAN.
    TlsContextConfig cc = clientConfig();
    cc.certificates.push_back({path("wrongsan.pem"), path("wrongsan.key"), "", ""});
    TlsContextConfig sc2 = sc;
    sc2.san_matchers = {
        {SanMatcher::Type::kUri, {StringMatch::Kind::kSuffix, "/sa/client", false}}};
    auto strict_server = make(sc2);
    auto client_ctx = make(cc);
    TlsTransport client(client_ctx, false), server(strict_server, true);
    Side c, s;
    handshake(client, server, c, s);
    ASSERT_NE(server.failureReason(), nullptr);
    EXPECT_STREQ(server.failureReason(), "fail_verify_san");
  }
}

TEST_F(TlsTransportTest, TlsSanMismatchFailsUpstream) {
  auto server_ctx = make(serverConfig("wrongsan"));
  {  // Typed SAN matcher.
    TlsContextConfig cc = clientConfig();
    cc.san_matchers.push_back(
        {SanMatcher::Type::kUri,
         {StringMatch::Kind::kExact, "spiffe://cluster.local/ns/default/sa/server", false}});
    auto client_ctx = make(cc);
    TlsTransport client(client_ctx, false), server(server_ctx, true);
    Side c, s;
    handshake(client, server, c, s);
    EXPECT_FALSE(c.error.isOk());
    ASSERT_NE(client.failureReason(), nullptr);
    EXPECT_STREQ(client.failureReason(), "fail_verify_san");
    EXPECT_NE(c.error.message().find("fail_verify_san"), std::string::npos) << c.error.message();
    EXPECT_EQ(c.error.source(), ErrorSource::kUpstream);
    EXPECT_FALSE(s.error.isOk());  // The server got the alert.
  }
  {  // No matcher: the SNI must be named by the certificate.
    auto client_ctx = make(clientConfig("example.test"));
    TlsTransport client(client_ctx, false), server(server_ctx, true);
    Side c, s;
    handshake(client, server, c, s);
    ASSERT_NE(client.failureReason(), nullptr);
    EXPECT_STREQ(client.failureReason(), "fail_verify_san");
  }
  {  // A matching DNS matcher (the legacy, any-type form) passes.
    TlsContextConfig cc = clientConfig();
    cc.san_matchers.push_back(
        {SanMatcher::Type::kAny, {StringMatch::Kind::kExact, "wrong.test", false}});
    auto client_ctx = make(cc);
    TlsTransport client(client_ctx, false), server(server_ctx, true);
    Side c, s;
    handshake(client, server, c, s);
    EXPECT_TRUE(c.error.isOk()) << c.error.message();
  }
}

TEST_F(TlsTransportTest, TlsExpiredCertificateFails) {
  auto server_ctx = make(serverConfig("expired"));
  auto client_ctx = make(clientConfig());
  TlsTransport client(client_ctx, false), server(server_ctx, true);
  Side c, s;
  handshake(client, server, c, s);
  EXPECT_FALSE(c.error.isOk());
  ASSERT_NE(client.failureReason(), nullptr);
  EXPECT_STREQ(client.failureReason(), "fail_verify_error");
  EXPECT_NE(client.failureDetail().find("expired"), std::string::npos) << client.failureDetail();
  EXPECT_FALSE(client.handshakeComplete());
  // Later calls keep failing without touching OpenSSL.
  BufferChain more, plain;
  more.appendCopy("x");
  EXPECT_FALSE(client.onRead(more, plain).isOk());
}

TEST_F(TlsTransportTest, TlsGarbageIsAConnectionError) {
  auto server_ctx = make(serverConfig());
  TlsTransport server(server_ctx, true);
  BufferChain in, plain;
  in.appendCopy("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  Status st = server.onRead(in, plain);
  EXPECT_FALSE(st.isOk());
  EXPECT_EQ(st.source(), ErrorSource::kDownstream);
  ASSERT_NE(server.failureReason(), nullptr);
  EXPECT_STREQ(server.failureReason(), "connection_error");
}

TEST_F(TlsTransportTest, TlsSessionResumption) {
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    TlsContextConfig sc = serverConfig();
    sc.max_version = version;
    auto server_ctx = make(sc);
    auto client_ctx = make(clientConfig());
    for (int round = 0; round < 2; ++round) {
      TlsTransport client(client_ctx, false), server(server_ctx, true);
      Side c, s;
      handshake(client, server, c, s);
      ASSERT_TRUE(c.error.isOk()) << c.error.message();
      // TLS 1.3 tickets come after the handshake; exchange some data so the
      // client reads it.
      send(server, "x");
      deliver(client, server, c, s);
      EXPECT_EQ(client.sessionReused(), round == 1) << version << " round " << round;
      EXPECT_EQ(server.sessionReused(), round == 1) << version << " round " << round;
    }
  }
}

TEST_F(TlsTransportTest, TlsCertificateReload) {
  fs::copy_file(path("server.pem"), path("reload.pem"), fs::copy_options::overwrite_existing);
  fs::copy_file(path("server.key"), path("reload.key"), fs::copy_options::overwrite_existing);
  TlsContextConfig sc = serverConfig("reload");
  sc.reload_check_interval = std::chrono::milliseconds(0);
  auto server_ctx = make(sc);
  auto client_ctx = make(clientConfig());

  TlsTransport client1(client_ctx, false), server1(server_ctx, true);
  Side c1, s1;
  handshake(client1, server1, c1, s1);
  ASSERT_TRUE(c1.error.isOk()) << c1.error.message();
  EXPECT_EQ(client1.peerSubject(), "CN=server");

  // Rewrite both files in place and move their mtime on.
  fs::copy_file(path("server-new.pem"), path("reload.pem"), fs::copy_options::overwrite_existing);
  fs::copy_file(path("server-new.key"), path("reload.key"), fs::copy_options::overwrite_existing);
  for (const char* f : {"reload.pem", "reload.key"}) {
    fs::last_write_time(path(f), fs::last_write_time(path(f)) + std::chrono::seconds(5));
  }

  TlsTransport client2(client_ctx, false), server2(server_ctx, true);
  Side c2, s2;
  handshake(client2, server2, c2, s2);
  ASSERT_TRUE(c2.error.isOk()) << c2.error.message();
  EXPECT_EQ(client2.peerSubject(), "CN=server-new");
  EXPECT_EQ(server_ctx->reloadCount(), 1u);

  // The connection made before the reload goes on.
  send(client1, "still here");
  deliver(client1, server1, c1, s1);
  EXPECT_EQ(s1.plain.toString(), "still here");

  // A half-written update (a key that doesn't match) keeps the old cert.
  fs::copy_file(path("other.key"), path("reload.key"), fs::copy_options::overwrite_existing);
  fs::last_write_time(path("reload.key"),
                      fs::last_write_time(path("reload.key")) + std::chrono::seconds(10));
  TlsTransport client3(client_ctx, false), server3(server_ctx, true);
  Side c3, s3;
  handshake(client3, server3, c3, s3);
  ASSERT_TRUE(c3.error.isOk()) << c3.error.message();
  EXPECT_EQ(client3.peerSubject(), "CN=server-new");
  EXPECT_EQ(server_ctx->reloadCount(), 1u);
}

TEST_F(TlsTransportTest, TlsContextConfigErrors) {
  TlsContextConfig sc = serverConfig();
  sc.certificates[0].private_key_file = path("other.key");
  auto r = TlsContext::create(sc);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("does not match"), std::string::npos) << r.status().message();

  sc = serverConfig();
  sc.certificates[0].cert_chain_file = path("missing.pem");
  r = TlsContext::create(sc);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("missing.pem"), std::string::npos) << r.status().message();

  sc = serverConfig();
  sc.cipher_suites = {"ECDHE-RSA-AES128-GCM-SHA256", "NOT-A-CIPHER"};
  r = TlsContext::create(sc);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("NOT-A-CIPHER"), std::string::npos) << r.status().message();

  TlsContextConfig empty;
  EXPECT_FALSE(TlsContext::create(empty).isOk());  // A server needs a certificate.

  TlsContextConfig cc = clientConfig();
  cc.ca_file.clear();
  cc.san_matchers.push_back({SanMatcher::Type::kDns, {StringMatch::Kind::kExact, "a", false}});
  EXPECT_FALSE(TlsContext::create(cc).isOk());  // SAN matching without a CA.

  // Inline PEM works like files.
  auto read = [](const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  TlsContextConfig inline_cfg;
  inline_cfg.certificates.push_back({"", "", read(path("server.pem")), read(path("server.key"))});
  EXPECT_TRUE(TlsContext::create(inline_cfg).isOk());
}

TEST(TlsStringMatch, Kinds) {
  StringMatch m{StringMatch::Kind::kPrefix, "Spiffe://", true};
  EXPECT_TRUE(m.matches("spiffe://x"));
  m.ignore_case = false;
  EXPECT_FALSE(m.matches("spiffe://x"));
  EXPECT_TRUE((StringMatch{StringMatch::Kind::kSuffix, ".test", false}.matches("a.test")));
  EXPECT_TRUE((StringMatch{StringMatch::Kind::kContains, "ns/", false}.matches("a/ns/b")));
  EXPECT_FALSE((StringMatch{StringMatch::Kind::kExact, "a", false}.matches("ab")));
}

}  // namespace
}  // namespace skiff::tls
