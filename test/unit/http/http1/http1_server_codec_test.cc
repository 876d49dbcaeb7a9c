#include <gtest/gtest.h>

#include <string>

#include "proxy/http/http1/http1_codec.h"
#include "test/unit/http/codec_fakes.h"

namespace skiff::http {
namespace {

using testing::chainOf;
using testing::FakeOwner;
using testing::FakeServerCallbacks;
using testing::makeHeaders;
using testing::Reader;

class Http1ServerTest : public ::testing::Test {
 protected:
  bool feed(std::string_view bytes) {
    BufferChain data = reader_.read(bytes);
    return codec_.dispatch(data, error_);
  }
  bool dispatchEmpty() {
    BufferChain none;
    return codec_.dispatch(none, error_);
  }
  void respond(size_t i, std::string_view body = "hi", std::string_view status = "200") {
    auto h = makeHeaders({{":status", status}});
    ResponseEncoder& enc = *callbacks_.exchanges.at(i)->encoder;
    if (body.empty()) {
      h->addView("content-length", "0");
      enc.encodeHeaders(*h, true);
      return;
    }
    std::string len = std::to_string(body.size());
    h->addView("content-length", len);
    enc.encodeHeaders(*h, false);
    BufferChain b = chainOf(body);
    enc.encodeData(b, true);
  }

  FakeOwner owner_;
  FakeServerCallbacks callbacks_;
  Http1Settings settings_;
  Http1ServerCodec codec_{owner_, callbacks_, settings_};
  CodecError error_;
  Reader reader_;
};

// Envoy's http_protocol_options.enable_trailers on.
class Http1ServerTrailersTest : public ::testing::Test {
 protected:
  static Http1Settings withTrailers() {
    Http1Settings s;
    s.enable_trailers = true;
    return s;
  }
  bool feed(std::string_view bytes) {
    BufferChain data = reader_.read(bytes);
    return codec_.dispatch(data, error_);
  }

  FakeOwner owner_;
  FakeServerCallbacks callbacks_;
  Http1ServerCodec codec_{owner_, callbacks_, withTrailers()};
  CodecError error_;
  Reader reader_;
};

constexpr std::string_view kGet =
    "GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n";

TEST_F(Http1ServerTest, DecodesRequestIntoPseudoHeaders) {
  ASSERT_TRUE(feed(kGet));
  ASSERT_EQ(callbacks_.exchanges.size(), 1u);
  auto& d = callbacks_.last().decoder;
  ASSERT_TRUE(d.headers);
  EXPECT_TRUE(d.ended);
  EXPECT_EQ(d.headers->method(), "GET");
  EXPECT_EQ(d.headers->path(), "/a/b?x=1");
  EXPECT_EQ(d.headers->authority(), "example.com");
  EXPECT_EQ(d.headers->scheme(), "http");
  EXPECT_FALSE(d.headers->has("host"));
  EXPECT_EQ(d.header("user-agent"), "t");
  EXPECT_EQ(d.headers->entries()[0].name, ":method");  // Pseudo-headers first.
  EXPECT_EQ(codec_.activeStreams(), 1u);
  EXPECT_EQ(codec_.protocol(), Protocol::kHttp11);
}

TEST_F(Http1ServerTest, HoldsParseStateOnlyWhileAMessageIsParsed) {
  EXPECT_FALSE(codec_.holdsMessageState());
  ASSERT_TRUE(feed("GET / HTTP/1.1\r\nHo"));  // Half a head: the parser holds it.
  EXPECT_TRUE(codec_.holdsMessageState());
  ASSERT_TRUE(feed("st: a\r\n\r\n"));
  // The request was parsed to its end: waiting for the response costs no
  // parser and no header block.
  ASSERT_EQ(callbacks_.exchanges.size(), 1u);
  EXPECT_FALSE(codec_.holdsMessageState());
  respond(0, "hello");
  EXPECT_FALSE(codec_.holdsMessageState());
  // The next request on the idle keep-alive connection gets a fresh parser.
  ASSERT_TRUE(feed(kGet));
  ASSERT_EQ(callbacks_.exchanges.size(), 2u);
  EXPECT_EQ(callbacks_.last().decoder.headers->path(), "/a/b?x=1");
  EXPECT_FALSE(codec_.holdsMessageState());
}

TEST_F(Http1ServerTest, RequestBodyKeepsParseStateUntilItEnds) {
  ASSERT_TRUE(feed("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc"));
  EXPECT_TRUE(codec_.holdsMessageState());
  ASSERT_TRUE(feed("def"));
  EXPECT_FALSE(codec_.holdsMessageState());
  EXPECT_EQ(callbacks_.last().decoder.body, "abcdef");
  EXPECT_TRUE(callbacks_.last().decoder.ended);
}

TEST_F(Http1ServerTest, EncodesResponseWithContentLength) {
  ASSERT_TRUE(feed(kGet));
  respond(0, "hello");
  EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
  EXPECT_EQ(codec_.activeStreams(), 0u);
  EXPECT_EQ(owner_.close_after_flush, 0);
}

TEST_F(Http1ServerTest, EndStreamWithoutLengthSendsContentLengthZero) {
  ASSERT_TRUE(feed(kGet));
  auto h = makeHeaders({{":status", "404"}, {"x-a", "b"}});
  callbacks_.last().encoder->encodeHeaders(*h, true);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 404 Not Found\r\nx-a: b\r\ncontent-length: 0\r\n\r\n");
}

TEST_F(Http1ServerTest, KeepAliveServesSequentialRequests) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(feed(kGet));
    ASSERT_EQ(callbacks_.exchanges.size(), static_cast<size_t>(i + 1));
    respond(i);
    EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi");
  }
  EXPECT_EQ(owner_.close_after_flush, 0);
  EXPECT_EQ(owner_.scheduled, 0);
  EXPECT_EQ(owner_.read_disable_calls, 0);  // No syscall-ish call per request.
}

TEST_F(Http1ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  std::string two =
      std::string(kGet) + "POST /second HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
  ASSERT_TRUE(feed(two));
  ASSERT_EQ(callbacks_.exchanges.size(), 1u);  // The second waits.
  EXPECT_EQ(owner_.scheduled, 0);
  respond(0);
  EXPECT_EQ(owner_.scheduled, 1);
  ASSERT_EQ(callbacks_.exchanges.size(), 1u);  // Not from inside encode.
  ASSERT_TRUE(dispatchEmpty());
  ASSERT_EQ(callbacks_.exchanges.size(), 2u);
  auto& d = callbacks_.last().decoder;
  EXPECT_EQ(d.headers->path(), "/second");
  EXPECT_EQ(d.body, "abc");
  EXPECT_TRUE(d.ended);
  respond(1, "ok");
  EXPECT_EQ(owner_.take(),
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
}

TEST_F(Http1ServerTest, SynchronousResponseLetsPipelineContinueInSameDispatch) {
  callbacks_.on_new = [&](FakeServerCallbacks::Exchange& x) {
    x.decoder.on_headers = [&x] {
      auto h = makeHeaders({{":status", "204"}});
      x.encoder->encodeHeaders(*h, true);
    };
  };
  std::string two = std::string(kGet) + std::string(kGet);
  ASSERT_TRUE(feed(two));
  EXPECT_EQ(callbacks_.exchanges.size(), 2u);
  EXPECT_EQ(owner_.scheduled, 0);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
}

TEST_F(Http1ServerTrailersTest, ChunkedRequestWithTrailers) {
  ASSERT_TRUE(
      feed("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3\r\nabc\r\n5;ext=1\r\ndefgh\r\n0\r\nX-Checksum: 42\r\nX-Other: y\r\n\r\n"));
  auto& d = callbacks_.last().decoder;
  EXPECT_FALSE(d.headers->has("transfer-encoding"));
  EXPECT_EQ(d.body, "abcdefgh");
  ASSERT_TRUE(d.trailers);
  EXPECT_EQ(d.trailers->get("x-checksum").value_or(""), "42");
  EXPECT_EQ(d.trailers->get("x-other").value_or(""), "y");
  EXPECT_TRUE(d.ended);
}

TEST_F(Http1ServerTrailersTest, ChunkedResponseWithTrailers) {
  ASSERT_TRUE(feed(kGet));
  auto& enc = *callbacks_.last().encoder;
  auto h = makeHeaders({{":status", "200"}, {"content-type", "text/plain"}});
  enc.encodeHeaders(*h, false);
  BufferChain a = chainOf("hello world, ");
  enc.encodeData(a, false);
  EXPECT_TRUE(a.empty());
  BufferChain b = chainOf("bye");
  enc.encodeData(b, false);
  auto t = makeHeaders({{"grpc-status", "0"}});
  enc.encodeTrailers(*t);
  EXPECT_EQ(owner_.take(),
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
            "d\r\nhello world, \r\n3\r\nbye\r\n0\r\ngrpc-status: 0\r\n\r\n");
  EXPECT_EQ(codec_.activeStreams(), 0u);
}

TEST_F(Http1ServerTest, ChunkedResponseEndsWithLastChunk) {
  ASSERT_TRUE(feed(kGet));
  auto& enc = *callbacks_.last().encoder;
  auto h = makeHeaders({{":status", "200"}});
  enc.encodeHeaders(*h, false);
  BufferChain a = chainOf("xy");
  enc.encodeData(a, true);
  EXPECT_EQ(owner_.take(),
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n");
}

TEST_F(Http1ServerTest, ContentLengthBodyIsZeroCopy) {
  Reader r;
  BufferChain in = r.read("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789");
  Slab* slab = in.slices().front().slab();
  ASSERT_TRUE(codec_.dispatch(in, error_));
  auto& d = callbacks_.last().decoder;
  EXPECT_EQ(d.body, "0123456789");
  EXPECT_EQ(d.header("content-length"), "10");  // Kept.
  ASSERT_EQ(d.body_slabs.size(), 1u);
  EXPECT_EQ(d.body_slabs[0], slab);
  // Header views point into the read slab, which the map pins.
  std::string_view path = d.headers->path();
  EXPECT_GE(path.data(), slab->data);
  EXPECT_LT(path.data(), slab->data + Slab::kSize);
  std::string_view host = d.headers->authority();
  EXPECT_GE(host.data(), slab->data);
  EXPECT_LT(host.data(), slab->data + Slab::kSize);
}

TEST_F(Http1ServerTest, BodyAcrossReadsIsDeliveredPerRead) {
  ASSERT_TRUE(feed("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc"));
  auto& d = callbacks_.last().decoder;
  EXPECT_FALSE(d.ended);
  EXPECT_EQ(d.body, "abc");
  ASSERT_TRUE(feed("def"));
  EXPECT_EQ(d.body, "abcdef");
  EXPECT_TRUE(d.ended);
}

// The same request, whichever way the reads split it, decodes the same.
constexpr std::string_view kPost =
    "POST /upload?q=a%20b HTTP/1.1\r\nHost: example.com:8080\r\nX-Long-Header-Name: "
    "some value with spaces\r\nContent-Length: 11\r\nConnection: keep-alive, X-Hop\r\n"
    "X-Hop: gone\r\nCookie: a=b\r\n\r\nhello world";

void expectPostDecoded(const testing::FakeDecoder& d) {
  ASSERT_TRUE(d.headers);
  EXPECT_EQ(d.headers->method(), "POST");
  EXPECT_EQ(d.headers->path(), "/upload?q=a%20b");
  EXPECT_EQ(d.headers->authority(), "example.com:8080");
  EXPECT_EQ(d.header("x-long-header-name"), "some value with spaces");
  EXPECT_EQ(d.header("content-length"), "11");
  EXPECT_EQ(d.header("cookie"), "a=b");
  EXPECT_FALSE(d.headers->has("connection"));
  EXPECT_FALSE(d.headers->has("x-hop"));  // Named in Connection:.
  EXPECT_EQ(d.body, "hello world");
  EXPECT_TRUE(d.ended);
}

TEST_F(Http1ServerTest, EverySplitPointDecodesTheSame) {
  for (bool same_slab : {false, true}) {
    for (size_t i = 1; i < kPost.size(); ++i) {
      SCOPED_TRACE(::testing::Message() << "split at " << i << " same_slab " << same_slab);
      FakeOwner owner;
      FakeServerCallbacks cbs;
      Http1ServerCodec codec(owner, cbs);
      Reader r;
      CodecError err;
      BufferChain a = r.read(kPost.substr(0, i));
      ASSERT_TRUE(codec.dispatch(a, err));
      if (!same_slab) r.release();
      BufferChain b = r.read(kPost.substr(i));
      ASSERT_TRUE(codec.dispatch(b, err)) << err.detail;
      ASSERT_EQ(cbs.exchanges.size(), 1u);
      expectPostDecoded(cbs.last().decoder);
    }
  }
}

TEST_F(Http1ServerTest, ByteByByteDecodesTheSame) {
  for (bool same_slab : {false, true}) {
    FakeOwner owner;
    FakeServerCallbacks cbs;
    Http1ServerCodec codec(owner, cbs);
    Reader r;
    CodecError err;
    for (char c : kPost) {
      if (!same_slab) r.release();
      BufferChain one = r.read(std::string_view(&c, 1));
      ASSERT_TRUE(codec.dispatch(one, err)) << err.detail;
    }
    ASSERT_EQ(cbs.exchanges.size(), 1u);
    expectPostDecoded(cbs.last().decoder);
  }
}

TEST_F(Http1ServerTrailersTest, ChunkedByteByByte) {
  std::string_view req =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\nwiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\n";
  for (char c : req) {
    reader_.release();
    ASSERT_TRUE(feed(std::string_view(&c, 1))) << error_.detail;
  }
  auto& d = callbacks_.last().decoder;
  EXPECT_EQ(d.body, "wikipedia");
  ASSERT_TRUE(d.trailers);
  EXPECT_EQ(d.trailers->get("t").value_or(""), "v");
}

TEST_F(Http1ServerTest, HeadResponseHasNoBody) {
  ASSERT_TRUE(feed("HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n"));
  auto& enc = *callbacks_.last().encoder;
  auto h = makeHeaders({{":status", "200"}, {"content-length", "5"}});
  enc.encodeHeaders(*h, false);
  BufferChain body = chainOf("hello");
  enc.encodeData(body, true);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
  EXPECT_EQ(codec_.activeStreams(), 0u);
}

TEST_F(Http1ServerTest, HeadResponseWithoutLengthGetsNoFraming) {
  ASSERT_TRUE(feed("HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n"));
  auto h = makeHeaders({{":status", "200"}});
  callbacks_.last().encoder->encodeHeaders(*h, true);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\n\r\n");
}

TEST_F(Http1ServerTest, ExpectContinuePassesUpAndIsAnswered) {
  ASSERT_TRUE(
      feed("PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
  auto& x = callbacks_.last();
  EXPECT_EQ(x.decoder.header("expect"), "100-continue");
  auto c = makeHeaders({{":status", "100"}});
  x.encoder->encode1xxHeaders(*c);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(feed("data"));
  EXPECT_EQ(x.decoder.body, "data");
  respond(0, "ok", "201");
  EXPECT_EQ(owner_.take(), "HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok");
}

TEST_F(Http1ServerTest, ConnectionCloseClosesAfterResponse) {
  ASSERT_TRUE(feed("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
  EXPECT_FALSE(callbacks_.last().decoder.headers->has("connection"));
  EXPECT_EQ(owner_.close_after_flush, 0);
  respond(0);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi");
  EXPECT_EQ(owner_.close_after_flush, 1);
  // Anything after is ignored.
  EXPECT_TRUE(feed(kGet));
  EXPECT_EQ(callbacks_.exchanges.size(), 1u);
}

TEST_F(Http1ServerTest, Http10WithoutKeepAliveCloses) {
  ASSERT_TRUE(feed("GET / HTTP/1.0\r\n\r\n"));
  EXPECT_EQ(codec_.protocol(), Protocol::kHttp10);
  auto& d = callbacks_.last().decoder;
  EXPECT_FALSE(d.headers->has(":authority"));
  respond(0);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi");
  EXPECT_EQ(owner_.close_after_flush, 1);
}

TEST_F(Http1ServerTest, Http10KeepAliveStaysOpen) {
  ASSERT_TRUE(feed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  respond(0);
  EXPECT_EQ(owner_.take(),
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nhi");
  EXPECT_EQ(owner_.close_after_flush, 0);
}

TEST_F(Http1ServerTest, Http10StreamingResponseIsCloseDelimited) {
  ASSERT_TRUE(feed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  auto& enc = *callbacks_.last().encoder;
  auto h = makeHeaders({{":status", "200"}});
  enc.encodeHeaders(*h, false);
  BufferChain b = chainOf("abc");
  enc.encodeData(b, true);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nabc");
  EXPECT_EQ(owner_.close_after_flush, 1);
}

TEST_F(Http1ServerTest, GoAwayClosesAfterCurrentResponse) {
  ASSERT_TRUE(feed(kGet));
  codec_.goAway();
  EXPECT_EQ(owner_.close_after_flush, 0);
  respond(0);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi");
  EXPECT_EQ(owner_.close_after_flush, 1);
}

TEST_F(Http1ServerTest, GoAwayWhenIdleClosesNow) {
  codec_.goAway();
  EXPECT_EQ(owner_.close_after_flush, 1);
}

TEST_F(Http1ServerTest, AbsoluteFormTargetGivesAuthority) {
  ASSERT_TRUE(feed("GET http://origin.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n"));
  auto& d = callbacks_.last().decoder;
  EXPECT_EQ(d.headers->authority(), "origin.example:81");
  EXPECT_EQ(d.headers->path(), "/p?q");
}

TEST_F(Http1ServerTest, DropsConnectionSpecificFieldsFromResponses) {
  ASSERT_TRUE(feed(kGet));
  auto h = makeHeaders({{":status", "200"},
                        {"connection", "keep-alive"},
                        {"transfer-encoding", "chunked"},
                        {"keep-alive", "timeout=5"},
                        {"content-length", "0"}});
  callbacks_.last().encoder->encodeHeaders(*h, true);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
}

// Each case is a request that must get a 400 and a closed connection.
struct BadRequest {
  const char* name;
  std::string bytes;
  int status;
};

class Http1ServerRejectTest : public ::testing::TestWithParam<BadRequest> {};

TEST_P(Http1ServerRejectTest, AnswersErrorAndCloses) {
  const BadRequest& c = GetParam();
  // Whole, and byte by byte: the check must not depend on where reads split.
  for (bool bytewise : {false, true}) {
    SCOPED_TRACE(bytewise ? "byte by byte" : "whole");
    FakeOwner owner;
    FakeServerCallbacks cbs;
    Http1ServerCodec codec(owner, cbs);
    CodecError err;
    bool ok = true;
    Reader r;
    if (bytewise) {
      for (size_t i = 0; i < c.bytes.size() && ok; ++i) {
        r.release();
        BufferChain one = r.read(std::string_view(c.bytes).substr(i, 1));
        ok = codec.dispatch(one, err);
      }
    } else {
      BufferChain all = r.read(c.bytes);
      ok = codec.dispatch(all, err);
    }
    EXPECT_FALSE(ok);
    EXPECT_EQ(err.http_status, c.status);
    EXPECT_FALSE(err.detail.empty());
    std::string expect_line = "HTTP/1.1 " + std::to_string(c.status) + " ";
    EXPECT_EQ(owner.written.substr(0, expect_line.size()), expect_line) << owner.written;
    EXPECT_NE(owner.written.find("connection: close\r\n"), std::string::npos);
    EXPECT_NE(owner.written.find("content-type: text/plain\r\n"), std::string::npos);
    EXPECT_EQ(owner.close_after_flush, 1);
    for (auto& x : cbs.exchanges) EXPECT_FALSE(x->decoder.ended);
    // Later bytes are refused too.
    BufferChain more = chainOf("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_FALSE(codec.dispatch(more, err));
  }
}

std::string bigHeaders(size_t kb) {
  std::string s = "GET / HTTP/1.1\r\nHost: h\r\n";
  std::string value(1000, 'v');
  for (size_t i = 0; i <= kb; ++i) s += "X-" + std::to_string(i) + ": " + value + "\r\n";
  return s + "\r\n";
}

std::string manyHeaders(size_t n) {
  std::string s = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (size_t i = 0; i < n; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
  return s + "\r\n";
}

INSTANTIATE_TEST_SUITE_P(
    Http1Smuggling, Http1ServerRejectTest,
    ::testing::Values(
        BadRequest{"ClAndTe",
                   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n0\r\n\r\n",
                   400},
        BadRequest{"TeAndCl",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: "
                   "3\r\n\r\n0\r\n\r\n",
                   400},
        BadRequest{"DuplicateDifferingCl",
                   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: "
                   "4\r\n\r\nabcd",
                   400},
        BadRequest{"ObsFold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400},
        BadRequest{"ObsFoldTab", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n", 400},
        BadRequest{"ObsFoldEmptyFirstLine", "GET / HTTP/1.1\r\nHost: h\r\nX-A:\r\n b\r\n\r\n", 400},
        BadRequest{"ObsFoldOnHost", "GET / HTTP/1.1\r\nHost: h\r\n  evil\r\n\r\n", 400},
        BadRequest{"SpaceBeforeColon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
        BadRequest{"SpaceBeforeColonCl",
                   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 3\r\n\r\nabc", 400},
        BadRequest{"TabBeforeColon", "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400},
        // The name's error is its field's first, even before a value too large.
        BadRequest{"SpaceBeforeColonThenTooLarge",
                   "GET / HTTP/1.1\r\nHost: h\r\nX : " + std::string(61 * 1024, 'v') + "\r\n\r\n",
                   400},
        BadRequest{"EmptyNameThenTooLarge",
                   "GET / HTTP/1.1\r\nHost: h\r\n: " + std::string(61 * 1024, 'v') + "\r\n\r\n",
                   400},
        BadRequest{"BareLf", "GET / HTTP/1.1\nHost: h\n\n", 400},
        BadRequest{"BareLfInHeaders", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400},
        BadRequest{"BareCr", "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400},
        BadRequest{"InvalidNameChar", "GET / HTTP/1.1\r\nHost: h\r\nX\x01Y: v\r\n\r\n", 400},
        BadRequest{"InvalidValueChar", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400},
        BadRequest{"EmptyName", "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400},
        BadRequest{"BadChunkSize",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        BadRequest{"ChunkSizeOverflow",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
                   "chunked\r\n\r\nfffffffffffffffffffff\r\n",
                   400},
        // Envoy's codec: any transfer coding but a lone "chunked" is 501.
        BadRequest{"ChunkedNotLast",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501},
        BadRequest{"TeNotChunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
                   501},
        BadRequest{
            "GzipThenChunked",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
        BadRequest{"TeIdentity",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 501},
        BadRequest{"TwoTeFields",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n0\r\n\r\n",
                   501},
        BadRequest{"TeChunkedTwice",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n0\r\n\r\n",
                   501},
        BadRequest{"ConnectWithTe",
                   "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nTransfer-Encoding: chunked\r\n\r\n",
                   501},
        // Content-Length comes first: 400, whatever the coding.
        BadRequest{"TeIdentityWithCl",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\nContent-Length: "
                   "1\r\n\r\nx",
                   400},
        BadRequest{"NegativeCl", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
        BadRequest{"MissingHost", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400},
        BadRequest{"TwoHosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        BadRequest{"Http2Version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        BadRequest{"Garbage", "\x16\x03\x01\x02\x00 hello\r\n\r\n", 400},
        BadRequest{"HeadersTooLarge", bigHeaders(61), 431},
        BadRequest{"TooManyHeaders", manyHeaders(101), 431}),
    [](const ::testing::TestParamInfo<BadRequest>& info) { return info.param.name; });

// Envoy's response code details for what the codec refuses (its HTTP/1
// codec's words), for the access log; and whether a stream was open.
TEST(Http1ServerCodecDetails, NameEnvoysDetails) {
  struct Case {
    std::string bytes;
    std::string_view details;
    bool stream_reset;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n", "http1.codec_error", false},
      {bigHeaders(61), "http1.headers_too_large", false},
      {manyHeaders(101), "http1.too_many_headers", false},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", "http1.invalid_characters", false},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: "
       "3\r\n\r\n0\r\n\r\n",
       "http1.content_length_and_chunked_not_allowed", false},
      // Refused as the head ends, before a stream opens.
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
       "http1.invalid_transfer_encoding", false},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
       "http1.invalid_transfer_encoding", false},
      // llhttp refuses a coding after chunked as it reads the field.
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
       "http1.invalid_transfer_encoding", false},
      {"GET / HTTP/1.1\r\nX: y\r\n\r\n", "missing_host_header", false},
      // The head was parsed and its stream began: the stream is told.
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       "http1.codec_error", true},
  };
  for (const Case& c : cases) {
    FakeOwner owner;
    FakeServerCallbacks cbs;
    Http1ServerCodec codec(owner, cbs);
    CodecError err;
    Reader r;
    BufferChain all = r.read(c.bytes);
    EXPECT_FALSE(codec.dispatch(all, err)) << c.details;
    EXPECT_EQ(err.details, c.details) << err.detail;
    EXPECT_EQ(err.stream_reset, c.stream_reset) << c.details;
  }
}

// A fresh connection that reads req in pieces, each in a fresh slab: in two
// split at `at`, or one byte at a time when `at` is 0. Stops at the first
// refusal.
struct PiecewiseConnection {
  bool feed(std::string_view req, size_t at) {
    bool ok = true;
    for (size_t i = 0; i < req.size() && ok;) {
      size_t n = at == 0 ? 1 : (i == 0 ? at : req.size() - i);
      reader.release();
      BufferChain piece = reader.read(req.substr(i, n));
      ok = codec.dispatch(piece, err);
      i += n;
    }
    return ok;
  }
  FakeOwner owner;
  FakeServerCallbacks cbs;
  Http1ServerCodec codec{owner, cbs};
  Reader reader;
  CodecError err;
};

TEST_F(Http1ServerTest, ObsFoldDetectedAtEverySplitPoint) {
  std::string_view req = "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\nX-B:\r\n\tc\r\n\r\n";
  for (size_t i = 1; i < req.size(); ++i) {
    SCOPED_TRACE(i);
    PiecewiseConnection c;
    EXPECT_FALSE(c.feed(req, i));
    EXPECT_EQ(c.err.http_status, 400);
    EXPECT_TRUE(c.cbs.exchanges.empty());
  }
}

// Each fold on its own, the ones whose first line is empty too: llhttp hands
// those over as one piece, so only the bytes before them tell.
TEST_F(Http1ServerTest, EveryObsFoldIsRefusedAtEverySplitPoint) {
  for (std::string_view req : {"GET / HTTP/1.1\r\nHost: h\r\nX-B:\r\n\tc\r\n\r\n",
                               "GET / HTTP/1.1\r\nHost: h\r\nX-B: \r\n c\r\n\r\n",
                               "GET / HTTP/1.1\r\nHost: h\r\nX-B:\r\n \r\nX-C: c\r\n\r\n",
                               "GET / HTTP/1.1\r\nHost: h\r\nX-B: b\r\n \r\n\r\n"}) {
    // Split in two at every offset, then (at 0) one byte per read.
    for (size_t i = 0; i < req.size(); ++i) {
      SCOPED_TRACE(std::string(req) + " split at " + std::to_string(i));
      PiecewiseConnection c;
      EXPECT_FALSE(c.feed(req, i));
      EXPECT_EQ(c.err.http_status, 400);
      EXPECT_TRUE(c.cbs.exchanges.empty());
    }
  }
}

// RFC 9110 5.5: a field value may be empty ("X:" or "X: " then CRLF). llhttp
// hands an empty value over as an empty piece right after the line's LF, which
// the obs-fold check took for a fold (400) until it asked for SP or HTAB
// between that LF and the value.
TEST_F(Http1ServerTest, EmptyFieldValuesPassAtEverySplitPoint) {
  std::string_view req =
      "GET / HTTP/1.1\r\nHost: h\r\nX-A:\r\nX-B: \r\nX-C:\t \r\nX-D: d\r\nX-E:\r\n\r\n";
  // Split in two at every offset, then (at 0) one byte per read.
  for (size_t i = 0; i < req.size(); ++i) {
    SCOPED_TRACE(i);
    PiecewiseConnection c;
    ASSERT_TRUE(c.feed(req, i)) << c.err.detail;
    ASSERT_EQ(c.cbs.exchanges.size(), 1u);
    const HeaderMap& h = *c.cbs.last().decoder.headers;
    EXPECT_EQ(h.get("x-a"), "");
    EXPECT_EQ(h.get("x-b"), "");
    EXPECT_EQ(h.get("x-c"), "");
    EXPECT_EQ(h.get("x-d"), "d");
    EXPECT_EQ(h.get("x-e"), "");
  }
}

// What a field's value is, as llhttp's spans gave it: leading OWS is not part
// of it, trailing OWS is; names keep their spelling. The same at every split
// point, and after empty lines before the request line (RFC 9112 2.2).
TEST_F(Http1ServerTest, FieldValuesKeepTrailingWhitespaceAtEverySplitPoint) {
  std::string_view req =
      "\r\nGET /p HTTP/1.1\r\nHost:  h \r\nX-A: a \r\nx-b:\tb\t\r\nX-C:  c  d  \r\n"
      "X-D: d:e\r\nContent-Length: 0\r\n\r\n";
  for (size_t i = 0; i < req.size(); ++i) {
    SCOPED_TRACE(i);
    PiecewiseConnection c;
    ASSERT_TRUE(c.feed(req, i)) << c.err.detail;
    ASSERT_EQ(c.cbs.exchanges.size(), 1u);
    const HeaderMap& h = *c.cbs.last().decoder.headers;
    EXPECT_EQ(h.authority(), "h ");
    EXPECT_EQ(h.path(), "/p");
    EXPECT_EQ(h.get("x-a"), "a ");
    EXPECT_EQ(h.get("x-b"), "b\t");
    EXPECT_EQ(h.get("x-c"), "c  d  ");
    EXPECT_EQ(h.get("x-d"), "d:e");
    EXPECT_EQ(h.get("content-length"), "0");
    std::string names;
    for (const HeaderMap::Entry& e : h.entries()) names += std::string(e.name) + ",";
    EXPECT_EQ(names, ":method,:scheme,:path,:authority,X-A,x-b,X-C,X-D,Content-Length,");
  }
}

TEST_F(Http1ServerTest, HeadersJustUnderTheLimitPass) {
  ASSERT_TRUE(feed(manyHeaders(99)));
  ASSERT_EQ(callbacks_.exchanges.size(), 1u);
}

TEST_F(Http1ServerTest, ErrorMidBodyResetsStreamWithoutSecondResponse) {
  ASSERT_TRUE(feed("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"));
  auto& x = callbacks_.last();
  auto h = makeHeaders({{":status", "200"}});
  x.encoder->encodeHeaders(*h, false);  // A response is in progress.
  owner_.take();
  EXPECT_FALSE(feed("zz\r\n"));
  EXPECT_EQ(owner_.written, "");  // No 400 in the middle of a response.
  ASSERT_EQ(x.callbacks.resets.size(), 1u);
  EXPECT_EQ(x.callbacks.resets[0], ResetReason::kProtocolError);
  EXPECT_EQ(owner_.close_after_flush, 1);
  EXPECT_EQ(codec_.activeStreams(), 0u);
}

TEST_F(Http1ServerTest, ErrorMidBodyBeforeResponseAnswers400) {
  ASSERT_TRUE(feed("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"));
  auto& x = callbacks_.last();
  EXPECT_FALSE(feed("zz\r\n"));
  // Envoy's answer: the reason phrase as the body, not the parser's words.
  EXPECT_EQ(owner_.written,
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n"
            "content-length: 11\r\n\r\nBad Request");
  ASSERT_EQ(x.callbacks.resets.size(), 1u);
  EXPECT_EQ(x.callbacks.resets[0], ResetReason::kProtocolError);
  EXPECT_EQ(codec_.errorDetails(), "http1.codec_error");
}

TEST_F(Http1ServerTest, CodecErrorBodiesAreTheReasonPhrase) {
  EXPECT_EQ(codecErrorBody(400), "Bad Request");
  EXPECT_EQ(codecErrorBody(431), "Request Header Fields Too Large");
  EXPECT_EQ(codecErrorBody(501), "Not Implemented");
}

TEST_F(Http1ServerTest, TransportCloseResetsOpenStream) {
  ASSERT_TRUE(feed("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"));
  auto& x = callbacks_.last();
  codec_.onTransportClosed(ResetReason::kRemoteReset);
  ASSERT_EQ(x.callbacks.resets.size(), 1u);
  EXPECT_EQ(x.callbacks.resets[0], ResetReason::kRemoteReset);
  EXPECT_EQ(codec_.activeStreams(), 0u);
}

TEST_F(Http1ServerTest, StreamReadDisableNestsAndHoldsInput) {
  ASSERT_TRUE(feed("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nab"));
  auto& x = callbacks_.last();
  Stream& s = x.encoder->stream();
  s.readDisable(true);
  s.readDisable(true);
  EXPECT_EQ(owner_.read_disabled, 2);
  ASSERT_TRUE(feed("cd"));
  EXPECT_EQ(x.decoder.body, "ab");  // Held while disabled.
  s.readDisable(false);
  EXPECT_EQ(owner_.scheduled, 0);
  s.readDisable(false);
  EXPECT_EQ(owner_.read_disabled, 0);
  EXPECT_EQ(owner_.scheduled, 1);
  ASSERT_TRUE(dispatchEmpty());
  EXPECT_EQ(x.decoder.body, "abcd");
}

TEST_F(Http1ServerTest, BufferedPipelineInputDisablesReading) {
  settings_.max_buffered_input = 100;
  Http1ServerCodec codec(owner_, callbacks_, settings_);
  std::string many;
  for (int i = 0; i < 5; ++i) many += std::string(kGet);
  BufferChain in = chainOf(many);
  ASSERT_TRUE(codec.dispatch(in, error_));
  EXPECT_EQ(owner_.read_disabled, 1);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(callbacks_.exchanges.size(), static_cast<size_t>(i + 1));
    respond(i);
    BufferChain none;
    ASSERT_TRUE(codec.dispatch(none, error_));
  }
  EXPECT_EQ(owner_.read_disabled, 0);
  EXPECT_EQ(owner_.read_disable_calls, 2);
}

TEST_F(Http1ServerTest, WatermarksReachTheStream) {
  ASSERT_TRUE(feed(kGet));
  auto& x = callbacks_.last();
  codec_.onAboveWriteBufferHighWatermark();
  codec_.onBelowWriteBufferLowWatermark();
  EXPECT_EQ(x.callbacks.above, 1);
  EXPECT_EQ(x.callbacks.below, 1);
}

TEST_F(Http1ServerTest, LocalResetClosesConnection) {
  ASSERT_TRUE(feed(kGet));
  auto& x = callbacks_.last();
  x.encoder->stream().resetStream(ResetReason::kLocalReset);
  EXPECT_EQ(owner_.close_after_flush, 1);
  ASSERT_EQ(x.callbacks.resets.size(), 1u);
  EXPECT_EQ(codec_.activeStreams(), 0u);
}

TEST_F(Http1ServerTest, ResetFromInsideDecodeHeadersStopsSafely) {
  callbacks_.on_new = [&](FakeServerCallbacks::Exchange& x) {
    x.decoder.on_headers = [&x] { x.encoder->stream().resetStream(ResetReason::kLocalReset); };
  };
  // Body and a pipelined request follow in the same read.
  ASSERT_TRUE(
      feed("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" + std::string(kGet)));
  ASSERT_EQ(callbacks_.exchanges.size(), 1u);
  EXPECT_EQ(callbacks_.last().decoder.body, "");
  EXPECT_EQ(callbacks_.last().callbacks.resets.size(), 1u);
  EXPECT_EQ(owner_.close_after_flush, 1);
  EXPECT_TRUE(feed(kGet));
  EXPECT_EQ(callbacks_.exchanges.size(), 1u);
}

constexpr std::string_view kUpgrade =
    "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Key: k\r\n\r\n";

TEST_F(Http1ServerTest, UpgradeRequestKeepsItsFieldsAndItsBytesAreData) {
  // Early bytes after the head are the tunnel's, even ones that look like a
  // request.
  ASSERT_TRUE(feed(std::string(kUpgrade) + "\x81\x05hello"));
  ASSERT_TRUE(feed("GET /x HTTP/1.1\r\nHost: h\r\n\r\n"));
  ASSERT_EQ(callbacks_.exchanges.size(), 1u);
  auto& d = callbacks_.last().decoder;
  EXPECT_EQ(d.header("upgrade"), "websocket");
  EXPECT_EQ(d.header("connection"), "upgrade");
  EXPECT_EQ(upgradeType(*d.headers), "websocket");
  EXPECT_EQ(d.body, "\x81\x05helloGET /x HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_FALSE(d.ended);
}

TEST_F(Http1ServerTest, SwitchingProtocolsOpensATunnelWithHalfClose) {
  ASSERT_TRUE(feed(kUpgrade));
  ResponseEncoder& enc = *callbacks_.last().encoder;
  auto h = makeHeaders({{":status", "101"},
                        {"connection", "upgrade"},
                        {"upgrade", "websocket"},
                        {"sec-websocket-accept", "a"}});
  enc.encodeHeaders(*h, false);
  EXPECT_EQ(owner_.take(),
            "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: "
            "websocket\r\nsec-websocket-accept: a\r\n\r\n");
  Reader up;
  BufferChain out = up.read("from upstream");
  Slab* slab = out.slices().front().slab();
  enc.encodeData(out, false);
  EXPECT_EQ(owner_.take(), "from upstream");      // Unframed...
  EXPECT_TRUE(owner_.written_slabs.count(slab));  // ...and not copied.
  ASSERT_TRUE(feed("from client"));
  auto& d = callbacks_.last().decoder;
  EXPECT_EQ(d.body, "from client");

  // The client's FIN ends its direction; the other goes on.
  EXPECT_TRUE(codec_.onRemoteEof());
  EXPECT_TRUE(d.ended);
  EXPECT_EQ(codec_.activeStreams(), 1u);
  EXPECT_EQ(owner_.close_after_flush, 0);
  BufferChain last = chainOf("last");
  enc.encodeData(last, true);
  EXPECT_EQ(owner_.take(), "last");
  EXPECT_EQ(owner_.shutdown_after_flush, 1);
  // Both directions ended: the stream ends and the connection closes.
  EXPECT_EQ(codec_.activeStreams(), 0u);
  EXPECT_EQ(owner_.close_after_flush, 1);
  EXPECT_TRUE(callbacks_.last().callbacks.resets.empty());
}

TEST_F(Http1ServerTest, RefusedUpgradeIsAnsweredThenClosed) {
  ASSERT_TRUE(feed(std::string(kUpgrade) + "\x81\x05hello"));
  respond(0, "no", "403");
  std::string out = owner_.take();
  EXPECT_NE(out.find("HTTP/1.1 403 Forbidden\r\n"), std::string::npos);
  EXPECT_NE(out.find("connection: close\r\n"), std::string::npos);
  EXPECT_EQ(out.find("upgrade"), std::string::npos);
  EXPECT_EQ(owner_.close_after_flush, 1);
  EXPECT_EQ(callbacks_.exchanges.size(), 1u);
}

TEST_F(Http1ServerTest, UpgradeWithoutConnectionUpgradeIsPlainHttp) {
  ASSERT_TRUE(feed("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"));
  auto& d = callbacks_.last().decoder;
  EXPECT_FALSE(d.headers->has("upgrade"));
  EXPECT_TRUE(d.ended);
  respond(0);
  EXPECT_EQ(owner_.close_after_flush, 0);  // Keep-alive as usual.
}

TEST_F(Http1ServerTest, ConnectHasAuthorityOnlyAndItsAnswerNoFraming) {
  ASSERT_TRUE(feed("CONNECT db.example:5432 HTTP/1.1\r\nHost: other:1\r\n\r\nclient-first"));
  auto& d = callbacks_.last().decoder;
  EXPECT_EQ(d.headers->method(), "CONNECT");
  EXPECT_EQ(d.headers->authority(), "db.example:5432");  // The target, not Host.
  EXPECT_FALSE(d.headers->has(":path"));
  EXPECT_FALSE(d.headers->has(":scheme"));
  EXPECT_EQ(upgradeType(*d.headers), "CONNECT");
  EXPECT_EQ(d.body, "client-first");
  EXPECT_FALSE(d.ended);
  ResponseEncoder& enc = *callbacks_.last().encoder;
  auto h = makeHeaders({{":status", "200"}, {"content-length", "0"}, {"server", "skiff"}});
  enc.encodeHeaders(*h, false);
  // RFC 9110 9.3.6: no Content-Length or Transfer-Encoding in a 2xx to CONNECT.
  EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\nserver: skiff\r\n\r\n");
  BufferChain b = chainOf("server bytes");
  enc.encodeData(b, false);
  EXPECT_EQ(owner_.take(), "server bytes");
}

TEST_F(Http1ServerTest, ConnectWithAPathIsRefused) {
  EXPECT_FALSE(feed("CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n"));
  EXPECT_EQ(error_.http_status, 400);
}

TEST_F(Http1ServerTest, TunnelBytesWaitWhileTheStreamStopsReading) {
  ASSERT_TRUE(feed(kUpgrade));
  ResponseEncoder& enc = *callbacks_.last().encoder;
  enc.stream().readDisable(true);
  ASSERT_TRUE(feed("held"));
  auto& d = callbacks_.last().decoder;
  EXPECT_EQ(d.body, "");
  enc.stream().readDisable(false);
  EXPECT_EQ(owner_.scheduled, 1);
  ASSERT_TRUE(dispatchEmpty());
  EXPECT_EQ(d.body, "held");
}

TEST_F(Http1ServerTest, DropsRequestTrailersByDefault) {
  // Envoy's default: without enable_trailers the HTTP/1 codec drops them.
  ASSERT_TRUE(
      feed("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3\r\nabc\r\n0\r\nX-Checksum: 42\r\n\r\n"));
  auto& d = callbacks_.last().decoder;
  EXPECT_EQ(d.body, "abc");
  EXPECT_FALSE(d.trailers);
  EXPECT_TRUE(d.ended);
}

TEST_F(Http1ServerTest, DropsResponseTrailersByDefault) {
  ASSERT_TRUE(feed("GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n"));
  auto& enc = *callbacks_.last().encoder;
  auto h = makeHeaders({{":status", "200"}, {"content-length", "2"}});
  enc.encodeHeaders(*h, false);
  BufferChain a = chainOf("ok");
  enc.encodeData(a, false);
  auto t = makeHeaders({{"grpc-status", "0"}});
  enc.encodeTrailers(*t);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
  EXPECT_EQ(codec_.activeStreams(), 0u);
}

TEST_F(Http1ServerTest, ChunkedResponseEndsWithoutTrailersByDefault) {
  ASSERT_TRUE(feed(kGet));
  auto& enc = *callbacks_.last().encoder;
  auto h = makeHeaders({{":status", "200"}});
  enc.encodeHeaders(*h, false);
  BufferChain a = chainOf("xy");
  enc.encodeData(a, false);
  auto t = makeHeaders({{"grpc-status", "0"}});
  enc.encodeTrailers(*t);
  EXPECT_EQ(owner_.take(),
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n");
}

TEST_F(Http1ServerTrailersTest, ClientThatAcceptsTrailersGetsChunkedResponse) {
  // The upstream's length (an h2 upstream sends one with its trailers) gives
  // way to chunked framing, so that the trailers have a place.
  ASSERT_TRUE(feed("GET / HTTP/1.1\r\nHost: h\r\nTE: gzip;q=0.5, Trailers\r\n\r\n"));
  auto& enc = *callbacks_.last().encoder;
  auto h = makeHeaders({{":status", "200"}, {"content-length", "2"}, {"x-a", "b"}});
  enc.encodeHeaders(*h, false);
  BufferChain a = chainOf("ok");
  enc.encodeData(a, false);
  auto t = makeHeaders({{"x-trailer-check", "t-value"}});
  enc.encodeTrailers(*t);
  EXPECT_EQ(owner_.take(),
            "HTTP/1.1 200 OK\r\nx-a: b\r\ntransfer-encoding: chunked\r\n\r\n"
            "2\r\nok\r\n0\r\nx-trailer-check: t-value\r\n\r\n");
}

TEST_F(Http1ServerTrailersTest, KeepsLengthForClientsThatDoNotAskForTrailers) {
  ASSERT_TRUE(feed("GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\n\r\n"));
  auto& enc = *callbacks_.last().encoder;
  auto h = makeHeaders({{":status", "200"}, {"content-length", "2"}});
  enc.encodeHeaders(*h, false);
  BufferChain a = chainOf("ok");
  enc.encodeData(a, false);
  auto t = makeHeaders({{"x-t", "v"}});
  enc.encodeTrailers(*t);
  // A content-length body has no place for trailers.
  EXPECT_EQ(owner_.take(), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
}

TEST_F(Http1ServerTrailersTest, HeadersOnlyResponseKeepsItsLength) {
  ASSERT_TRUE(feed("GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n"));
  auto& enc = *callbacks_.last().encoder;
  auto h = makeHeaders({{":status", "404"}});
  enc.encodeHeaders(*h, true);
  EXPECT_EQ(owner_.take(), "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
}

}  // namespace
}  // namespace skiff::http
