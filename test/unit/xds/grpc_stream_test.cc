// skiff's own gRPC client against a real gRPC server (Debian's libgrpc++,
// test/control_plane/), over real sockets on 127.0.0.1.
#include "xds/grpc_stream.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "envoy/service/discovery/v3/discovery.pb.h"
#include "test/unit/xds/control_plane_process.h"
#include "xds/ads_client.h"

namespace skiff::xds {
namespace {

using testing::ControlPlaneProcess;
using testing::Event;
using testing::str;
using testing::TestLoop;
namespace ds = envoy::service::discovery::v3;

struct Recorder : GrpcStream::Callbacks {
  void onStreamReady() override { ++ready; }
  void onReceiveMessage(std::string_view bytes) override {
    messages.emplace_back(bytes);
    if (on_message) on_message(bytes);
  }
  void onRemoteClose(int grpc_status, std::string_view text) override {
    ++closes;
    status = grpc_status;
    message = std::string(text);
    if (on_close) on_close();
  }

  int ready = 0;
  std::vector<std::string> messages;
  int closes = 0;
  int status = -1;
  std::string message;
  std::function<void(std::string_view)> on_message;
  std::function<void()> on_close;
};

std::string clusterRequest() {
  ds::DiscoveryRequest request;
  request.set_type_url(testing::kCluster);
  request.mutable_node()->set_id("grpc-stream-test");
  return request.SerializeAsString();
}

ds::DiscoveryResponse parseResponse(const std::string& bytes) {
  ds::DiscoveryResponse response;
  EXPECT_TRUE(response.ParseFromString(bytes));
  return response;
}

class GrpcStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cp_.start());
    loop_ = std::make_unique<TestLoop>(cp_.port());
  }
  void TearDown() override {
    stream_.reset();
    loop_.reset();
    cp_.stop();
  }
  void open(std::string_view path = AdsClient::kSotwPath,
            size_t max_bytes = GrpcStream::kDefaultMaxMessageBytes) {
    stream_ = std::make_unique<GrpcStream>(loop_->worker(), TestLoop::kCluster, std::string(path),
                                           recorder_, max_bytes);
  }

  ControlPlaneProcess cp_;
  std::unique_ptr<TestLoop> loop_;
  Recorder recorder_;
  std::unique_ptr<GrpcStream> stream_;
};

TEST_F(GrpcStreamTest, MessageSentBeforeTheStreamExistsGetsAnAnswer) {
  cp_.set(testing::kCluster, "1", {testing::clusterJson("a")});
  open();
  stream_->send(clusterRequest());  // Queued: the connection is not up yet.
  stream_->start();
  ASSERT_TRUE(loop_->runUntil([&] { return !recorder_.messages.empty(); }));
  EXPECT_EQ(recorder_.ready, 1);
  ds::DiscoveryResponse response = parseResponse(recorder_.messages[0]);
  EXPECT_EQ(response.version_info(), "1");
  EXPECT_EQ(response.type_url(), testing::kCluster);
  EXPECT_EQ(response.resources_size(), 1);
  auto request =
      testing::waitEvent(*loop_, cp_, [](const Event& e) { return str(e, "event") == "request"; });
  ASSERT_TRUE(request);
  EXPECT_EQ(str(*request, "request.node.id"), "grpc-stream-test");
  auto open_event = testing::waitEvent(
      *loop_, cp_, [](const Event& e) { return str(e, "event") == "stream_open"; });
  ASSERT_TRUE(open_event);
  EXPECT_EQ(str(*open_event, "kind"), "sotw");
  EXPECT_EQ(recorder_.closes, 0);
}

TEST_F(GrpcStreamTest, ServerStatusInTrailersEndsTheCall) {
  cp_.set(testing::kCluster, "1", {testing::clusterJson("a")});
  open();
  stream_->start();
  stream_->send(clusterRequest());
  ASSERT_TRUE(loop_->runUntil([&] { return !recorder_.messages.empty(); }));
  cp_.disconnect();
  ASSERT_TRUE(loop_->runUntil([&] { return recorder_.closes > 0; }));
  EXPECT_EQ(recorder_.status, grpc_status::kUnavailable);
  EXPECT_EQ(recorder_.message, "control plane disconnected the stream");
  // Nothing more arrives after the close.
  stream_->send(clusterRequest());
  loop_->runFor(std::chrono::milliseconds(50));
  EXPECT_EQ(recorder_.closes, 1);
  EXPECT_EQ(recorder_.messages.size(), 1u);
}

TEST_F(GrpcStreamTest, UnknownMethodIsATrailersOnlyAnswer) {
  open("/envoy.service.discovery.v3.AggregatedDiscoveryService/NoSuchMethod");
  stream_->start();
  stream_->send(clusterRequest());
  ASSERT_TRUE(loop_->runUntil([&] { return recorder_.closes > 0; }));
  EXPECT_EQ(recorder_.status, 12);  // UNIMPLEMENTED
  EXPECT_TRUE(recorder_.messages.empty());
}

TEST_F(GrpcStreamTest, UnknownClusterClosesFromTheLoopNotFromStart) {
  stream_ = std::make_unique<GrpcStream>(loop_->worker(), "no_such_cluster",
                                         std::string(AdsClient::kSotwPath), recorder_);
  stream_->start();
  EXPECT_EQ(recorder_.closes, 0);
  ASSERT_TRUE(loop_->runUntil([&] { return recorder_.closes > 0; }));
  EXPECT_EQ(recorder_.status, grpc_status::kUnavailable);
  EXPECT_NE(recorder_.message.find("no_such_cluster"), std::string::npos) << recorder_.message;
  EXPECT_EQ(recorder_.ready, 0);
}

TEST_F(GrpcStreamTest, MessageOverTheMaximumEndsTheCall) {
  cp_.set(testing::kCluster, "1", {testing::clusterJson("a")});
  open(AdsClient::kSotwPath, /*max_bytes=*/16);
  stream_->start();
  stream_->send(clusterRequest());
  ASSERT_TRUE(loop_->runUntil([&] { return recorder_.closes > 0; }));
  EXPECT_EQ(recorder_.status, grpc_status::kResourceExhausted);
  EXPECT_TRUE(recorder_.messages.empty());
  // The server sees its stream end.
  EXPECT_TRUE(loop_->runUntil([&] {
    return cp_.find([](const Event& e) { return str(e, "event") == "stream_closed"; }).has_value();
  }));
}

TEST_F(GrpcStreamTest, MessageLargerThanADataFrameIsReassembled) {
  std::string body(200 * 1024, 'x');
  cp_.set(testing::kRoute, "7", {testing::routeJson("big", body)});
  open();
  stream_->start();
  ds::DiscoveryRequest request;
  request.set_type_url(testing::kRoute);
  request.add_resource_names("big");
  stream_->send(request.SerializeAsString());
  ASSERT_TRUE(loop_->runUntil([&] { return !recorder_.messages.empty(); }));
  EXPECT_GT(recorder_.messages[0].size(), body.size());
  ds::DiscoveryResponse response = parseResponse(recorder_.messages[0]);
  ASSERT_EQ(response.resources_size(), 1);
  EXPECT_NE(response.resources(0).value().find(body), std::string::npos);
  EXPECT_EQ(recorder_.closes, 0);
}

TEST_F(GrpcStreamTest, CallbackMayDestroyTheStreamAndStartAnother) {
  cp_.set(testing::kCluster, "1", {testing::clusterJson("a")});
  Recorder second;
  std::unique_ptr<GrpcStream> next;
  recorder_.on_message = [&](std::string_view) {
    stream_.reset();  // From inside the call's own callback.
    next = std::make_unique<GrpcStream>(loop_->worker(), TestLoop::kCluster,
                                        std::string(AdsClient::kSotwPath), second);
    next->start();
    next->send(clusterRequest());
  };
  open();
  stream_->start();
  stream_->send(clusterRequest());
  ASSERT_TRUE(loop_->runUntil([&] { return !second.messages.empty(); }));
  EXPECT_EQ(recorder_.messages.size(), 1u);
  EXPECT_EQ(recorder_.closes, 0);  // Destroyed: no callback.
  EXPECT_EQ(parseResponse(second.messages[0]).version_info(), "1");
  // The first call's stream was reset: the server saw it end.
  EXPECT_TRUE(loop_->runUntil([&] {
    return cp_.find([](const Event& e) { return str(e, "event") == "stream_closed"; }).has_value();
  }));
  next.reset();
}

TEST_F(GrpcStreamTest, ServerThatDiesEndsTheCallAsUnavailable) {
  cp_.set(testing::kCluster, "1", {testing::clusterJson("a")});
  open();
  stream_->start();
  stream_->send(clusterRequest());
  ASSERT_TRUE(loop_->runUntil([&] { return !recorder_.messages.empty(); }));
  cp_.kill();
  ASSERT_TRUE(loop_->runUntil([&] { return recorder_.closes > 0; }));
  EXPECT_EQ(recorder_.status, grpc_status::kUnavailable);
  EXPECT_FALSE(recorder_.message.empty());
}

TEST(GrpcStreamNoServerTest, ConnectFailureIsUnavailable) {
  testing::ReservedPort reserved;
  TestLoop loop(reserved.port());
  Recorder recorder;
  {
    GrpcStream stream(loop.worker(), TestLoop::kCluster, std::string(AdsClient::kSotwPath),
                      recorder);
    stream.start();
    stream.send(clusterRequest());
    ASSERT_TRUE(loop.runUntil([&] { return recorder.closes > 0; }));
  }
  EXPECT_EQ(recorder.status, grpc_status::kUnavailable);
  EXPECT_NE(recorder.message.find("connect"), std::string::npos) << recorder.message;
  EXPECT_EQ(recorder.ready, 0);
}

}  // namespace
}  // namespace skiff::xds
