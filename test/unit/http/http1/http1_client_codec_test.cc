#include <gtest/gtest.h>

#include <string>

#include "proxy/http/http1/http1_codec.h"
#include "test/unit/http/codec_fakes.h"

namespace skiff::http {
namespace {

using testing::chainOf;
using testing::FakeDecoder;
using testing::FakeOwner;
using testing::FakeStreamCallbacks;
using testing::makeHeaders;
using testing::Reader;

class Http1ClientTest : public ::testing::Test {
 protected:
  RequestEncoder& start(std::string_view method = "GET", bool end_stream = true) {
    RequestEncoder& enc = codec_.newStream(decoder_);
    enc.stream().setCallbacks(&callbacks_);
    auto h = makeHeaders(
        {{":method", method}, {":scheme", "http"}, {":authority", "up.example"}, {":path", "/r"}});
    enc.encodeHeaders(*h, end_stream);
    return enc;
  }
  bool feed(std::string_view bytes) {
    BufferChain data = reader_.read(bytes);
    return codec_.dispatch(data, error_);
  }

  static Http1Settings withTrailers() {
    Http1Settings s;
    s.enable_trailers = true;
    return s;
  }

  FakeOwner owner_;
  // enable_trailers on; Http1ClientDefaultsTest has Envoy's default, off.
  Http1ClientCodec codec_{owner_, withTrailers()};
  FakeDecoder decoder_;
  FakeStreamCallbacks callbacks_;
  CodecError error_;
  Reader reader_;
};

TEST_F(Http1ClientTest, EncodesGetWithHostAndNoLength) {
  EXPECT_TRUE(codec_.canStartStream());
  start();
  EXPECT_EQ(owner_.take(), "GET /r HTTP/1.1\r\nhost: up.example\r\n\r\n");
  EXPECT_FALSE(codec_.canStartStream());
  EXPECT_EQ(codec_.activeStreams(), 1u);
}

// HeaderWriter copies short names and values with overlapping word moves:
// every length from 0 to 40, on either side, comes out whole.
TEST(Http1HeaderWriterTest, FieldsOfEveryLengthAreWrittenWhole) {
  std::string letters;
  for (int i = 0; i < 41; ++i) letters += static_cast<char>('a' + i % 26);
  std::string expected;
  BufferChain out;
  {
    http1_detail::HeaderWriter w(out);
    for (size_t n = 0; n <= 40; ++n) {
      for (size_t v = 0; v <= 40; v += 3) {
        std::string name = "x" + letters.substr(0, n);
        std::string value = letters.substr(41 - v);
        w.addField(name, value);
        w.add(value);
        expected += name + ": " + value + "\r\n" + value;
      }
    }
  }
  EXPECT_EQ(out.toString(), expected);
}

TEST_F(Http1ClientTest, EncodesPostEndStreamWithContentLengthZero) {
  start("POST");
  EXPECT_EQ(owner_.take(), "POST /r HTTP/1.1\r\nhost: up.example\r\ncontent-length: 0\r\n\r\n");
}

TEST_F(Http1ClientTest, EncodesChunkedRequestWithTrailers) {
  RequestEncoder& enc = codec_.newStream(decoder_);
  auto h = makeHeaders({{":method", "POST"},
                        {":authority", "a"},
                        {":path", "/u"},
                        {"host", "ignored"},
                        {"connection", "keep-alive"},
                        {"x-y", "z"}});
  enc.encodeHeaders(*h, false);
  BufferChain b = chainOf("0123456789abcdefg");
  enc.encodeData(b, false);
  auto t = makeHeaders({{"x-sum", "1"}});
  enc.encodeTrailers(*t);
  EXPECT_EQ(owner_.take(),
            "POST /u HTTP/1.1\r\nhost: a\r\nx-y: z\r\ntransfer-encoding: chunked\r\n\r\n"
            "11\r\n0123456789abcdefg\r\n0\r\nx-sum: 1\r\n\r\n");
}

TEST_F(Http1ClientTest, EncodesContentLengthBodyAsIs) {
  RequestEncoder& enc = codec_.newStream(decoder_);
  auto h = makeHeaders(
      {{":method", "PUT"}, {":authority", "a"}, {":path", "/"}, {"content-length", "3"}});
  enc.encodeHeaders(*h, false);
  BufferChain b = chainOf("abc");
  enc.encodeData(b, true);
  EXPECT_EQ(owner_.take(), "PUT / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc");
}

TEST_F(Http1ClientTest, DecodesContentLengthResponseAndIsReusable) {
  start();
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello"));
  ASSERT_TRUE(decoder_.headers);
  EXPECT_EQ(decoder_.headers->status(), 200);
  EXPECT_EQ(decoder_.header(":status"), "200");
  EXPECT_EQ(decoder_.header("server"), "x");
  EXPECT_EQ(decoder_.header("content-length"), "5");
  EXPECT_EQ(decoder_.body, "hello");
  EXPECT_TRUE(decoder_.ended);
  EXPECT_TRUE(codec_.isReusable());
  EXPECT_TRUE(codec_.canStartStream());
  EXPECT_EQ(codec_.activeStreams(), 0u);
}

TEST_F(Http1ClientTest, PooledConnectionHoldsNoParseState) {
  start();
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nContent-Le"));
  EXPECT_TRUE(codec_.holdsMessageState());
  ASSERT_TRUE(feed("ngth: 2\r\n\r\nok"));
  EXPECT_TRUE(decoder_.ended);
  EXPECT_FALSE(codec_.holdsMessageState());
}

TEST_F(Http1ClientTest, InformationalThenFinalResponseEachGetAParser) {
  start();
  ASSERT_TRUE(feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"))
      << error_.detail;
  EXPECT_EQ(decoder_.header(":status"), "200");
  EXPECT_EQ(decoder_.body, "x");
  EXPECT_TRUE(decoder_.ended);
  EXPECT_FALSE(codec_.holdsMessageState());
}

TEST_F(Http1ClientTest, ResponseEndedByCloseIsDeliveredAndLetGo) {
  start();
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\n\r\npart"));
  EXPECT_TRUE(codec_.holdsMessageState());
  codec_.onTransportClosed(ResetReason::kConnectionTermination);
  EXPECT_EQ(decoder_.body, "part");
  EXPECT_TRUE(decoder_.ended);
  EXPECT_FALSE(codec_.holdsMessageState());
}

TEST_F(Http1ClientTest, ResponseBodyIsZeroCopy) {
  start();
  Reader r;
  BufferChain in = r.read("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody");
  Slab* slab = in.slices().front().slab();
  ASSERT_TRUE(codec_.dispatch(in, error_));
  ASSERT_EQ(decoder_.body_slabs.size(), 1u);
  EXPECT_EQ(decoder_.body_slabs[0], slab);
}

TEST_F(Http1ClientTest, KeepAliveReusesConnection) {
  for (int i = 0; i < 3; ++i) {
    FakeDecoder d;
    RequestEncoder& enc = codec_.newStream(d);
    auto h = makeHeaders({{":method", "GET"}, {":authority", "a"}, {":path", "/"}});
    enc.encodeHeaders(*h, true);
    ASSERT_TRUE(feed("HTTP/1.1 204 No Content\r\n\r\n")) << error_.detail;
    EXPECT_TRUE(d.ended);
    EXPECT_EQ(d.headers->status(), 204);
    EXPECT_TRUE(codec_.canStartStream());
  }
}

TEST_F(Http1ClientTest, NextRequestMayStartFromInsideTheLastCallback) {
  FakeDecoder second;
  decoder_.on_end = [&] {
    ASSERT_TRUE(codec_.canStartStream());
    RequestEncoder& enc = codec_.newStream(second);
    auto h = makeHeaders({{":method", "GET"}, {":authority", "a"}, {":path", "/2"}});
    enc.encodeHeaders(*h, true);
  };
  start();
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"));
  EXPECT_EQ(codec_.activeStreams(), 1u);
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny"));
  EXPECT_EQ(second.body, "y");
  EXPECT_TRUE(second.ended);
}

TEST_F(Http1ClientTest, ChunkedResponseWithTrailersByteByByte) {
  start();
  std::string_view resp =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n";
  for (char c : resp) {
    reader_.release();
    ASSERT_TRUE(feed(std::string_view(&c, 1))) << error_.detail;
  }
  EXPECT_FALSE(decoder_.headers->has("transfer-encoding"));
  EXPECT_EQ(decoder_.body, "hello world");
  ASSERT_TRUE(decoder_.trailers);
  EXPECT_EQ(decoder_.trailers->get("grpc-status").value_or(""), "0");
  EXPECT_EQ(decoder_.trailers->get("grpc-message").value_or(""), "ok");
  EXPECT_TRUE(codec_.isReusable());
}

TEST_F(Http1ClientTest, EverySplitPointDecodesTheSame) {
  std::string_view resp =
      "HTTP/1.1 201 Created\r\nX-Some-Header: value here\r\nContent-Length: 7\r\n\r\npayload";
  for (size_t i = 1; i < resp.size(); ++i) {
    SCOPED_TRACE(i);
    FakeOwner owner;
    Http1ClientCodec codec(owner);
    FakeDecoder d;
    auto h = makeHeaders({{":method", "GET"}, {":authority", "a"}, {":path", "/"}});
    codec.newStream(d).encodeHeaders(*h, true);
    Reader r;
    CodecError err;
    BufferChain a = r.read(resp.substr(0, i));
    ASSERT_TRUE(codec.dispatch(a, err));
    r.release();
    BufferChain b = r.read(resp.substr(i));
    ASSERT_TRUE(codec.dispatch(b, err)) << err.detail;
    ASSERT_TRUE(d.headers);
    EXPECT_EQ(d.headers->status(), 201);
    EXPECT_EQ(d.header("x-some-header"), "value here");
    EXPECT_EQ(d.body, "payload");
    EXPECT_TRUE(d.ended);
  }
}

TEST_F(Http1ClientTest, HeadResponseHasNoBody) {
  start("HEAD");
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"));
  EXPECT_TRUE(decoder_.ended);
  EXPECT_EQ(decoder_.header("content-length"), "1234");
  EXPECT_EQ(decoder_.body, "");
  EXPECT_TRUE(codec_.isReusable());
}

TEST_F(Http1ClientTest, InformationalResponsesGoToDecode1xx) {
  start("POST", false);
  ASSERT_TRUE(feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"));
  ASSERT_EQ(decoder_.informational.size(), 2u);
  EXPECT_EQ(decoder_.informational[0]->status(), 100);
  EXPECT_EQ(decoder_.informational[1]->status(), 103);
  EXPECT_EQ(decoder_.informational[1]->get("link").value_or(""), "</s>");
  EXPECT_FALSE(decoder_.headers);
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  EXPECT_EQ(decoder_.headers->status(), 200);
  EXPECT_EQ(decoder_.body, "ok");
}

TEST_F(Http1ClientTest, SwitchingProtocolsToAPlainRequestIsAnError) {
  start();
  EXPECT_FALSE(
      feed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\nConnection: upgrade\r\n\r\n"));
  ASSERT_EQ(callbacks_.resets.size(), 1u);
  EXPECT_EQ(callbacks_.resets[0], ResetReason::kProtocolError);
  EXPECT_FALSE(codec_.isReusable());
}

RequestEncoder& startUpgrade(Http1ClientCodec& codec, FakeDecoder& decoder,
                             FakeStreamCallbacks& callbacks) {
  RequestEncoder& enc = codec.newStream(decoder);
  enc.stream().setCallbacks(&callbacks);
  auto h = makeHeaders({{":method", "GET"},
                        {":scheme", "http"},
                        {":authority", "up.example"},
                        {":path", "/ws"},
                        {"connection", "upgrade"},
                        {"upgrade", "websocket"},
                        {"sec-websocket-key", "k"}});
  enc.encodeHeaders(*h, false);
  return enc;
}

TEST_F(Http1ClientTest, UpgradeRequestKeepsItsFieldsAndHasNoFraming) {
  RequestEncoder& enc = startUpgrade(codec_, decoder_, callbacks_);
  EXPECT_EQ(owner_.take(),
            "GET /ws HTTP/1.1\r\nhost: up.example\r\nsec-websocket-key: k\r\nconnection: "
            "upgrade\r\nupgrade: websocket\r\n\r\n");
  BufferChain early = chainOf("early");
  enc.encodeData(early, false);
  EXPECT_EQ(owner_.take(), "early");  // Raw, not a chunk.
}

TEST_F(Http1ClientTest, SwitchingProtocolsOpensATunnelBothWays) {
  RequestEncoder& enc = startUpgrade(codec_, decoder_, callbacks_);
  owner_.take();
  // The 101 and the first tunnel bytes in one read; then bytes that look
  // like HTTP but are the tunnel's.
  ASSERT_TRUE(
      feed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Accept: a\r\n\r\n\x81\x02hi"));
  ASSERT_TRUE(decoder_.headers);
  EXPECT_EQ(decoder_.headers->status(), 101);
  EXPECT_EQ(decoder_.header("upgrade"), "websocket");
  EXPECT_EQ(decoder_.header("connection"), "upgrade");
  EXPECT_EQ(decoder_.header("sec-websocket-accept"), "a");
  EXPECT_EQ(decoder_.body, "\x81\x02hi");
  EXPECT_FALSE(decoder_.ended);
  EXPECT_FALSE(codec_.isReusable());
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\n\r\n"));
  EXPECT_EQ(decoder_.body, "\x81\x02hiHTTP/1.1 200 OK\r\n\r\n");
  EXPECT_TRUE(callbacks_.resets.empty());

  // The upstream's FIN ends its direction; ours goes on.
  EXPECT_TRUE(codec_.onRemoteEof());
  EXPECT_TRUE(decoder_.ended);
  EXPECT_EQ(codec_.activeStreams(), 1u);
  BufferChain more = chainOf("bye");
  enc.encodeData(more, true);
  EXPECT_EQ(owner_.take(), "bye");
  EXPECT_EQ(owner_.shutdown_after_flush, 1);
  EXPECT_EQ(codec_.activeStreams(), 0u);
  EXPECT_TRUE(callbacks_.resets.empty());
}

TEST_F(Http1ClientTest, TunnelBytesWaitWhileTheStreamStopsReading) {
  RequestEncoder& enc = startUpgrade(codec_, decoder_, callbacks_);
  ASSERT_TRUE(
      feed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
           "upgrade\r\n\r\n"));
  enc.stream().readDisable(true);
  ASSERT_TRUE(feed("held"));
  EXPECT_EQ(decoder_.body, "");
  EXPECT_TRUE(codec_.onRemoteEof());  // The FIN waits behind the bytes.
  EXPECT_FALSE(decoder_.ended);
  int scheduled = owner_.scheduled;
  enc.stream().readDisable(false);
  EXPECT_GT(owner_.scheduled, scheduled);
  BufferChain none;
  ASSERT_TRUE(codec_.dispatch(none, error_));
  EXPECT_EQ(decoder_.body, "held");
  EXPECT_TRUE(decoder_.ended);
}

TEST_F(Http1ClientTest, RefusedUpgradeIsAnOrdinaryResponse) {
  startUpgrade(codec_, decoder_, callbacks_);
  ASSERT_TRUE(feed("HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno"));
  EXPECT_EQ(decoder_.headers->status(), 400);
  EXPECT_EQ(decoder_.body, "no");
  EXPECT_TRUE(decoder_.ended);
  EXPECT_EQ(codec_.activeStreams(), 0u);
  EXPECT_FALSE(codec_.isReusable());  // The request never ended.
}

TEST_F(Http1ClientTest, ConnectUsesAuthorityFormAndTunnelsAfter2xx) {
  RequestEncoder& enc = codec_.newStream(decoder_);
  enc.stream().setCallbacks(&callbacks_);
  auto h = makeHeaders({{":method", "CONNECT"}, {":authority", "db.example:5432"}});
  enc.encodeHeaders(*h, false);
  EXPECT_EQ(owner_.take(), "CONNECT db.example:5432 HTTP/1.1\r\nhost: db.example:5432\r\n\r\n");
  // A 200 to CONNECT has no body framing: what follows is the tunnel.
  ASSERT_TRUE(feed("HTTP/1.1 200 Connection established\r\n\r\nserver-first"));
  EXPECT_EQ(decoder_.headers->status(), 200);
  EXPECT_EQ(decoder_.body, "server-first");
  EXPECT_FALSE(decoder_.ended);
}

TEST_F(Http1ClientTest, ConnectionCloseMakesItNotReusable) {
  start();
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_TRUE(decoder_.ended);
  EXPECT_FALSE(decoder_.headers->has("connection"));
  EXPECT_FALSE(codec_.isReusable());
  EXPECT_FALSE(codec_.canStartStream());
}

TEST_F(Http1ClientTest, Http10ResponseIsNotReusable) {
  start();
  ASSERT_TRUE(feed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_TRUE(decoder_.ended);
  EXPECT_FALSE(codec_.isReusable());
}

TEST_F(Http1ClientTest, CloseDelimitedResponseEndsAtClose) {
  start();
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\n\r\nsome "));
  ASSERT_TRUE(feed("bytes"));
  EXPECT_FALSE(decoder_.ended);
  codec_.onTransportClosed(ResetReason::kRemoteReset);
  EXPECT_TRUE(decoder_.ended);
  EXPECT_EQ(decoder_.body, "some bytes");
  EXPECT_TRUE(callbacks_.resets.empty());
  EXPECT_FALSE(codec_.isReusable());
}

TEST_F(Http1ClientTest, CloseBeforeResponseCompleteResets) {
  start();
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
  codec_.onTransportClosed(ResetReason::kRemoteReset);
  ASSERT_EQ(callbacks_.resets.size(), 1u);
  EXPECT_EQ(callbacks_.resets[0], ResetReason::kConnectionTermination);
  EXPECT_FALSE(decoder_.ended);
  EXPECT_EQ(codec_.activeStreams(), 0u);
}

TEST_F(Http1ClientTest, CloseBeforeAnyResponseResets) {
  start();
  codec_.onTransportClosed(ResetReason::kRemoteReset);
  ASSERT_EQ(callbacks_.resets.size(), 1u);
  EXPECT_EQ(callbacks_.resets[0], ResetReason::kConnectionTermination);
}

TEST_F(Http1ClientTest, ProtocolErrorResetsAndSpoilsConnection) {
  start();
  EXPECT_FALSE(feed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"));
  EXPECT_FALSE(error_.detail.empty());
  ASSERT_EQ(callbacks_.resets.size(), 1u);
  EXPECT_EQ(callbacks_.resets[0], ResetReason::kProtocolError);
  EXPECT_FALSE(codec_.isReusable());
}

TEST_F(Http1ClientTest, ObsFoldInResponseIsAnError) {
  start();
  EXPECT_FALSE(feed("HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(codec_.isReusable());
}

// An empty value is no fold (it was refused as one).
TEST_F(Http1ClientTest, EmptyFieldValueInResponsePasses) {
  start();
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nX-E:\r\nX-F: \r\nContent-Length: 0\r\n\r\n"))
      << error_.detail;
  ASSERT_TRUE(decoder_.headers);
  EXPECT_EQ(decoder_.headers->get("x-e"), "");
  EXPECT_EQ(decoder_.headers->get("x-f"), "");
  EXPECT_TRUE(codec_.isReusable());
}

TEST_F(Http1ClientTest, UnsolicitedDataIsAnError) {
  EXPECT_FALSE(feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(codec_.isReusable());
}

TEST_F(Http1ClientTest, ExtraBytesAfterResponseAreAnError) {
  start();
  EXPECT_FALSE(feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n"));
  EXPECT_TRUE(decoder_.ended);
  EXPECT_FALSE(codec_.isReusable());
}

TEST_F(Http1ClientTest, EarlyResponseSpoilsReuse) {
  start("POST", false);
  ASSERT_TRUE(feed("HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_TRUE(decoder_.ended);
  EXPECT_FALSE(codec_.isReusable());
}

TEST_F(Http1ClientTest, ReadDisableForwardsAndClearsAtStreamEnd) {
  RequestEncoder& enc = start();
  enc.stream().readDisable(true);
  EXPECT_EQ(owner_.read_disabled, 1);
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_FALSE(decoder_.ended);  // Held.
  enc.stream().readDisable(false);
  EXPECT_EQ(owner_.scheduled, 1);
  BufferChain none;
  ASSERT_TRUE(codec_.dispatch(none, error_));
  EXPECT_TRUE(decoder_.ended);
  EXPECT_EQ(owner_.read_disabled, 0);
}

TEST_F(Http1ClientTest, ResetFromInsideDecodeHeadersStopsSafely) {
  RequestEncoder& enc = start();
  decoder_.on_headers = [&] { enc.stream().resetStream(ResetReason::kLocalReset); };
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"));
  EXPECT_EQ(decoder_.body, "");
  EXPECT_EQ(callbacks_.resets.size(), 1u);
  EXPECT_FALSE(codec_.isReusable());
  EXPECT_EQ(codec_.activeStreams(), 0u);
  EXPECT_TRUE(feed("lo"));  // Dropped.
  EXPECT_EQ(decoder_.body, "");
}

TEST_F(Http1ClientTest, ResetWhileTheWholeResponseIsHandedOverDropsTheRest) {
  RequestEncoder& enc = start();
  decoder_.on_headers = [&] { enc.stream().resetStream(ResetReason::kLocalReset); };
  ASSERT_TRUE(feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"));
  EXPECT_EQ(decoder_.body, "");
  EXPECT_EQ(decoder_.data_calls, 0);
  EXPECT_TRUE(codec_.isReusable());  // The response was read to its end.
}

TEST_F(Http1ClientTest, ResponseHeadersTooLargeIsAnError) {
  start();
  std::string big = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 70; ++i)
    big += "X-" + std::to_string(i) + ": " + std::string(1000, 'a') + "\r\n";
  EXPECT_FALSE(feed(big));
  EXPECT_FALSE(codec_.isReusable());
}

TEST(Http1ClientDefaultsTest, DropsTrailersBothWays) {
  FakeOwner owner;
  Http1ClientCodec codec{owner};
  FakeDecoder decoder;
  RequestEncoder& enc = codec.newStream(decoder);
  auto h = makeHeaders({{":method", "POST"}, {":authority", "a"}, {":path", "/u"}});
  enc.encodeHeaders(*h, false);
  BufferChain b = chainOf("abc");
  enc.encodeData(b, false);
  auto t = makeHeaders({{"x-sum", "1"}});
  enc.encodeTrailers(*t);
  EXPECT_EQ(owner.take(),
            "POST /u HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
            "3\r\nabc\r\n0\r\n\r\n");
  Reader reader;
  CodecError error;
  BufferChain in = reader.read(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n");
  ASSERT_TRUE(codec.dispatch(in, error)) << error.detail;
  EXPECT_EQ(decoder.body, "ok");
  EXPECT_FALSE(decoder.trailers);
  EXPECT_TRUE(decoder.ended);
}

}  // namespace
}  // namespace skiff::http
