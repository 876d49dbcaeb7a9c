#include "proxy/upstream/tcp_tunnel_codec.h"

#include <gtest/gtest.h>

#include "test/unit/http/codec_fakes.h"

namespace skiff::upstream {
namespace {

using http::testing::chainOf;
using http::testing::FakeDecoder;
using http::testing::FakeOwner;
using http::testing::FakeStreamCallbacks;
using http::testing::makeHeaders;

class TcpTunnelCodecTest : public ::testing::Test {
 protected:
  http::RequestEncoder& start() {
    http::RequestEncoder& enc = codec_.newStream(decoder_);
    enc.stream().setCallbacks(&callbacks_);
    auto h = makeHeaders({{":method", "CONNECT"}, {":authority", "db.example:5432"}});
    enc.encodeHeaders(*h, false);
    return enc;
  }

  FakeOwner owner_;
  TcpTunnelCodec codec_{owner_};
  FakeDecoder decoder_;
  FakeStreamCallbacks callbacks_;
  http::CodecError error_;
};

TEST_F(TcpTunnelCodecTest, AnswersTwoHundredAndSendsNoHeaders) {
  EXPECT_TRUE(codec_.canStartStream());
  start();
  ASSERT_TRUE(decoder_.headers);
  EXPECT_EQ(decoder_.headers->status(), 200);
  EXPECT_FALSE(decoder_.ended);
  EXPECT_EQ(owner_.take(), "");  // The upstream gets the tunnel's bytes only.
  EXPECT_FALSE(codec_.canStartStream());
  EXPECT_FALSE(codec_.isReusable());
}

TEST_F(TcpTunnelCodecTest, BytesBothWaysAndHalfCloseEachWay) {
  http::RequestEncoder& enc = start();
  BufferChain out = chainOf("to upstream");
  enc.encodeData(out, false);
  EXPECT_EQ(owner_.take(), "to upstream");
  BufferChain in = chainOf("from upstream");
  ASSERT_TRUE(codec_.dispatch(in, error_));
  EXPECT_EQ(decoder_.body, "from upstream");

  // The upstream's FIN ends the response; the request goes on.
  EXPECT_TRUE(codec_.onRemoteEof());
  EXPECT_TRUE(decoder_.ended);
  EXPECT_EQ(codec_.activeStreams(), 1u);
  BufferChain last = chainOf("last");
  enc.encodeData(last, true);
  EXPECT_EQ(owner_.take(), "last");
  EXPECT_EQ(owner_.shutdown_after_flush, 1);
  EXPECT_EQ(codec_.activeStreams(), 0u);
  EXPECT_TRUE(callbacks_.resets.empty());
}

TEST_F(TcpTunnelCodecTest, CloseResetsTheStreamAndUndoesReadDisables) {
  http::RequestEncoder& enc = start();
  enc.stream().readDisable(true);
  enc.stream().readDisable(true);
  EXPECT_EQ(owner_.read_disabled, 2);
  codec_.onTransportClosed(http::ResetReason::kRemoteReset);
  ASSERT_EQ(callbacks_.resets.size(), 1u);
  EXPECT_EQ(callbacks_.resets[0], http::ResetReason::kConnectionTermination);
  EXPECT_EQ(owner_.read_disabled, 0);
  EXPECT_FALSE(codec_.onRemoteEof());
}

}  // namespace
}  // namespace skiff::upstream
