// The ADS client against the real test control plane (Debian's libgrpc++,
// test/control_plane/), state of the world and delta, over real sockets.
#include "xds/ads_client.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "test/unit/xds/control_plane_process.h"

namespace skiff::xds {
namespace {

using testing::ControlPlaneProcess;
using testing::Event;
using testing::list;
using testing::str;
using testing::TestLoop;

struct Update {
  std::string type_url;
  std::map<std::string, std::string> updated;  // name → version
  std::vector<std::string> removed;
  std::string version;
  size_t bytes = 0;  // Of all resources' values.
};

class FakeWatcher : public AdsClient::Watcher {
 public:
  std::string onResources(const std::string& type_url, const std::vector<XdsResource>& updated,
                          const std::vector<std::string>& removed,
                          const std::string& version_info) override {
    Update u;
    u.type_url = type_url;
    for (const XdsResource& r : updated) {
      u.updated[r.name] = r.version;
      u.bytes += r.resource.value().size();
    }
    u.removed = removed;
    u.version = version_info;
    updates.push_back(u);
    return decide ? decide(u) : "";
  }
  void onStreamStatus(bool connected) override { connected ? ++connects : ++disconnects; }

  size_t count(const std::string& type_url) const {
    size_t n = 0;
    for (const Update& u : updates) n += u.type_url == type_url ? 1 : 0;
    return n;
  }
  const Update* last(const std::string& type_url) const {
    for (auto it = updates.rbegin(); it != updates.rend(); ++it) {
      if (it->type_url == type_url) return &*it;
    }
    return nullptr;
  }

  std::vector<Update> updates;
  int connects = 0;
  int disconnects = 0;
  std::function<std::string(const Update&)> decide;  // "" (ACK) when unset.
};

bool isRequest(const Event& e, const std::string& type_url) {
  return str(e, "event") == "request" && str(e, "request.type_url") == type_url;
}

bool isResponse(const Event& e, const std::string& version) {
  return str(e, "event") == "response" && str(e, "version") == version;
}

class AdsClientTest : public ::testing::TestWithParam<bool> {
 protected:
  bool delta() const { return GetParam(); }

  void SetUp() override {
    ASSERT_TRUE(cp_.start());
    loop_ = std::make_unique<TestLoop>(cp_.port());
  }
  void TearDown() override {
    client_.reset();
    loop_.reset();
    cp_.stop();
  }

  void makeClient(bool delta) {
    AdsClient::Options options;
    options.cluster_name = TestLoop::kCluster;
    options.delta = delta;
    options.node.set_id("node-1");
    options.node.set_cluster("test");
    options.backoff_base = std::chrono::milliseconds(20);
    options.backoff_max = std::chrono::milliseconds(200);
    client_ = std::make_unique<AdsClient>(loop_->worker(), options, watcher_);
  }

  // The first event from `since` on that pred accepts, running the loop
  // until it shows up.
  std::optional<Event> waitEvent(const std::function<bool(const Event&)>& pred, size_t since = 0) {
    return testing::waitEvent(*loop_, cp_, pred, since);
  }

  ControlPlaneProcess cp_;
  std::unique_ptr<TestLoop> loop_;
  FakeWatcher watcher_;
  std::unique_ptr<AdsClient> client_;
};

INSTANTIATE_TEST_SUITE_P(Both, AdsClientTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("Delta") : std::string("Sotw");
                         });

TEST_P(AdsClientTest, FirstResponseReachesTheWatcherAndIsAcked) {
  cp_.set(testing::kCluster, "1", {testing::clusterJson("a"), testing::clusterJson("b")});
  makeClient(delta());
  client_->subscribe(testing::kCluster, {}, /*wildcard=*/true);
  client_->start();
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kCluster) == 1; }));
  const Update& u = *watcher_.last(testing::kCluster);
  EXPECT_EQ(u.version, "1");
  EXPECT_EQ(u.updated, (std::map<std::string, std::string>{{"a", "1"}, {"b", "1"}}));
  EXPECT_TRUE(u.removed.empty());
  EXPECT_EQ(watcher_.connects, 1);
  EXPECT_TRUE(client_->connected());

  // The first request carries the node and, as the legacy wildcard, no names.
  auto first = waitEvent([](const Event& e) { return isRequest(e, testing::kCluster); });
  ASSERT_TRUE(first);
  EXPECT_EQ(str(*first, "request.node.id"), "node-1");
  EXPECT_TRUE(list(*first, "request.resource_names").empty());
  EXPECT_TRUE(list(*first, "request.resource_names_subscribe").empty());

  // The ACK echoes the response's nonce (and, state of the world, its version).
  auto response = waitEvent([](const Event& e) { return isResponse(e, "1"); });
  ASSERT_TRUE(response);
  std::string nonce = str(*response, "nonce");
  auto ack = waitEvent([&](const Event& e) {
    return isRequest(e, testing::kCluster) && str(e, "request.response_nonce") == nonce;
  });
  ASSERT_TRUE(ack);
  if (!delta()) {
    EXPECT_EQ(str(*ack, "request.version_info"), "1");
  }
  EXPECT_EQ(str(*ack, "request.error_detail.code"), "");
  EXPECT_EQ(str(*ack, "request.node.id"), "");  // Only the first request names the node.
  EXPECT_EQ(client_->acceptedVersion(testing::kCluster), "1");

  // An update that drops "b": SotW infers the removal for a wildcard type;
  // delta is told in removed_resources.
  cp_.set(testing::kCluster, "2", {testing::clusterJson("a")});
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kCluster) == 2; }));
  const Update& u2 = *watcher_.last(testing::kCluster);
  EXPECT_EQ(u2.version, "2");
  EXPECT_EQ(u2.removed, std::vector<std::string>{"b"});
  if (delta()) {
    EXPECT_EQ(u2.updated, (std::map<std::string, std::string>{{"a", "2"}}));
  } else {
    EXPECT_EQ(u2.updated.size(), 1u);
  }
  // No request was answered twice: the control plane saw no stale nonce.
  EXPECT_EQ(cp_.count([](const Event& e) { return str(e, "stale") == "true"; }), 0u);
}

TEST_P(AdsClientTest, NackKeepsThePreviousVersionAndCarriesTheError) {
  cp_.set(testing::kCluster, "1", {testing::clusterJson("a")});
  makeClient(delta());
  watcher_.decide = [](const Update& u) {
    return u.version == "2" ? std::string("cluster a: bad thing") : std::string();
  };
  client_->subscribe(testing::kCluster, {}, true);
  client_->start();
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kCluster) == 1; }));
  size_t mark = cp_.eventCount();
  cp_.set(testing::kCluster, "2", {testing::clusterJson("a"), testing::clusterJson("b")});
  auto response = waitEvent([](const Event& e) { return isResponse(e, "2"); }, mark);
  ASSERT_TRUE(response);
  auto nack = waitEvent(
      [&](const Event& e) {
        return isRequest(e, testing::kCluster) &&
               str(e, "request.response_nonce") == str(*response, "nonce");
      },
      mark);
  ASSERT_TRUE(nack);
  EXPECT_EQ(str(*nack, "request.error_detail.code"), "3");
  EXPECT_EQ(str(*nack, "request.error_detail.message"), "cluster a: bad thing");
  if (!delta()) {
    EXPECT_EQ(str(*nack, "request.version_info"), "1");
  }
  EXPECT_EQ(client_->acceptedVersion(testing::kCluster), "1");

  // The next good version is accepted.
  mark = cp_.eventCount();
  cp_.set(testing::kCluster, "3", {testing::clusterJson("a"), testing::clusterJson("b")});
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kCluster) == 3; }));
  response = waitEvent([](const Event& e) { return isResponse(e, "3"); }, mark);
  ASSERT_TRUE(response);
  auto ack = waitEvent(
      [&](const Event& e) {
        return isRequest(e, testing::kCluster) &&
               str(e, "request.response_nonce") == str(*response, "nonce");
      },
      mark);
  ASSERT_TRUE(ack);
  EXPECT_EQ(str(*ack, "request.error_detail.code"), "");
  if (!delta()) {
    EXPECT_EQ(str(*ack, "request.version_info"), "3");
  }
  EXPECT_EQ(client_->acceptedVersion(testing::kCluster), "3");
  if (!delta()) {
    // SotW reports "b" as gone only relative to what was accepted (v1 had none).
    EXPECT_TRUE(watcher_.last(testing::kCluster)->removed.empty());
  }
}

TEST_P(AdsClientTest, PausedTypeHoldsItsAckUntilResumed) {
  // Envoy holds CDS's ACK while a cluster warms: pause() holds the reply,
  // resume() sends one for the newest response.
  cp_.set(testing::kCluster, "1", {testing::clusterJson("a")});
  makeClient(delta());
  client_->subscribe(testing::kCluster, {}, true);
  client_->start();
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kCluster) == 1; }));
  ASSERT_TRUE(waitEvent([](const Event& e) { return isResponse(e, "1"); }));
  client_->pause(testing::kCluster);
  size_t mark = cp_.eventCount();
  cp_.set(testing::kCluster, "2", {testing::clusterJson("a"), testing::clusterJson("b")});
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kCluster) == 2; }));
  auto response = waitEvent([](const Event& e) { return isResponse(e, "2"); }, mark);
  ASSERT_TRUE(response);
  const std::string nonce = str(*response, "nonce");
  auto answers = [&] {
    return cp_.count([&](const Event& e) {
      return isRequest(e, testing::kCluster) && str(e, "request.response_nonce") == nonce;
    });
  };
  loop_->runFor(std::chrono::milliseconds(100));
  EXPECT_EQ(answers(), 0u);
  EXPECT_EQ(client_->acceptedVersion(testing::kCluster), "2");  // Applied, not yet ACKed.
  client_->resume(testing::kCluster);
  auto ack = waitEvent(
      [&](const Event& e) {
        return isRequest(e, testing::kCluster) && str(e, "request.response_nonce") == nonce;
      },
      mark);
  ASSERT_TRUE(ack);
  EXPECT_EQ(str(*ack, "request.error_detail.code"), "");
  if (!delta()) {
    EXPECT_EQ(str(*ack, "request.version_info"), "2");
  }
  loop_->runFor(std::chrono::milliseconds(50));
  EXPECT_EQ(answers(), 1u);  // Once.
}

TEST_P(AdsClientTest, GarbageIsNackedWithoutCallingTheWatcher) {
  cp_.set(testing::kCluster, "1", {testing::clusterJson("a")});
  makeClient(delta());
  client_->subscribe(testing::kCluster, {}, true);
  client_->start();
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kCluster) == 1; }));
  size_t mark = cp_.eventCount();
  cp_.setGarbage(testing::kCluster, "9");
  auto nack = waitEvent(
      [](const Event& e) {
        return isRequest(e, testing::kCluster) && !str(e, "request.error_detail.code").empty();
      },
      mark);
  ASSERT_TRUE(nack);
  EXPECT_EQ(str(*nack, "request.error_detail.code"), "3");
  EXPECT_NE(str(*nack, "request.error_detail.message").find("cannot decode"), std::string::npos)
      << str(*nack, "request.error_detail.message");
  if (!delta()) {
    EXPECT_EQ(str(*nack, "request.version_info"), "1");
  }
  EXPECT_EQ(watcher_.count(testing::kCluster), 1u);
  EXPECT_EQ(client_->acceptedVersion(testing::kCluster), "1");
}

TEST_P(AdsClientTest, NamedSubscriptionsFollowSubscribeCalls) {
  cp_.set(testing::kEndpoint, "1",
          {testing::claJson("a", 1001), testing::claJson("b", 1002), testing::claJson("c", 1003)});
  makeClient(delta());
  client_->subscribe(testing::kEndpoint, {"a", "b"}, /*wildcard=*/false);
  client_->start();
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kEndpoint) == 1; }));
  EXPECT_EQ(watcher_.last(testing::kEndpoint)->updated,
            (std::map<std::string, std::string>{{"a", "1"}, {"b", "1"}}));

  size_t mark = cp_.eventCount();
  client_->subscribe(testing::kEndpoint, {"b", "c"}, false);
  // Delta sends the difference, without a nonce; state of the world the
  // whole list, with the accepted version and the last nonce.
  bool is_delta = delta();
  auto change = waitEvent(
      [&](const Event& e) {
        if (!isRequest(e, testing::kEndpoint)) return false;
        if (is_delta)
          return list(e, "request.resource_names_subscribe") == std::vector<std::string>{"c"};
        return list(e, "request.resource_names") == std::vector<std::string>{"b", "c"};
      },
      mark);
  ASSERT_TRUE(change);
  if (delta()) {
    EXPECT_EQ(str(*change, "request.response_nonce"), "");
    EXPECT_EQ(list(*change, "request.resource_names_subscribe"), std::vector<std::string>{"c"});
    EXPECT_EQ(list(*change, "request.resource_names_unsubscribe"), std::vector<std::string>{"a"});
  }
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kEndpoint) == 2; }));
  if (delta()) {
    // Only what the client lacks.
    EXPECT_EQ(watcher_.last(testing::kEndpoint)->updated,
              (std::map<std::string, std::string>{{"c", "1"}}));
  } else {
    EXPECT_EQ(watcher_.last(testing::kEndpoint)->updated,
              (std::map<std::string, std::string>{{"b", "1"}, {"c", "1"}}));
  }
  if (!delta()) {
    EXPECT_EQ(str(*change, "request.version_info"), "1");
  }

  // "c" goes away on the server.
  cp_.set(testing::kEndpoint, "2", {testing::claJson("a", 1001), testing::claJson("b", 1002)});
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kEndpoint) == 3; }));
  const Update& u = *watcher_.last(testing::kEndpoint);
  if (delta()) {
    EXPECT_EQ(u.removed, std::vector<std::string>{"c"});
    EXPECT_EQ(u.updated, (std::map<std::string, std::string>{{"b", "2"}}));
  } else {
    // Not a wildcard type: no inferred removals, just what is there.
    EXPECT_TRUE(u.removed.empty());
    EXPECT_EQ(u.updated, (std::map<std::string, std::string>{{"b", "2"}}));
  }
}

TEST_P(AdsClientTest, ReconnectResubscribesInOrder) {
  cp_.set(testing::kCluster, "1", {testing::clusterJson("a"), testing::clusterJson("b")});
  cp_.set(testing::kEndpoint, "1", {testing::claJson("a", 1001), testing::claJson("b", 1002)});
  makeClient(delta());
  client_->subscribe(testing::kCluster, {}, true);
  client_->subscribe(testing::kEndpoint, {"a", "b"}, false);
  client_->start();
  ASSERT_TRUE(loop_->runUntil([&] {
    return watcher_.count(testing::kCluster) == 1 && watcher_.count(testing::kEndpoint) == 1;
  }));
  // Both ACKs reached the server before it drops the stream.
  ASSERT_TRUE(waitEvent([](const Event& e) {
    return isRequest(e, testing::kEndpoint) && !str(e, "request.response_nonce").empty();
  }));

  size_t mark = cp_.eventCount();
  cp_.disconnect();
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.disconnects >= 1; }));
  ASSERT_TRUE(waitEvent([](const Event& e) { return str(e, "event") == "stream_open"; }, mark));
  auto cds = waitEvent([](const Event& e) { return isRequest(e, testing::kCluster); }, mark);
  auto eds = waitEvent([](const Event& e) { return isRequest(e, testing::kEndpoint); }, mark);
  ASSERT_TRUE(cds && eds);
  // In subscription order, the node in the first, and no old nonce.
  std::vector<Event> requests;
  for (const Event& e : cp_.events(mark)) {
    if (str(e, "event") == "request") requests.push_back(e);
  }
  ASSERT_GE(requests.size(), 2u);
  EXPECT_EQ(str(requests[0], "request.type_url"), testing::kCluster);
  EXPECT_EQ(str(requests[1], "request.type_url"), testing::kEndpoint);
  EXPECT_EQ(str(requests[0], "request.node.id"), "node-1");
  EXPECT_EQ(str(*cds, "request.response_nonce"), "");
  if (delta()) {
    EXPECT_TRUE(list(*cds, "request.resource_names_subscribe").empty());  // Legacy wildcard.
    const google::protobuf::Value* versions =
        testing::lookup(*eds, "request.initial_resource_versions");
    ASSERT_NE(versions, nullptr);
    EXPECT_EQ(versions->struct_value().fields().size(), 2u);
    EXPECT_EQ(str(*eds, "request.initial_resource_versions.a"), "1");
    EXPECT_EQ(str(*cds, "request.initial_resource_versions.b"), "1");
    EXPECT_EQ(list(*eds, "request.resource_names_subscribe"), (std::vector<std::string>{"a", "b"}));
    // It holds everything at the current version: nothing is sent again,
    // and the next change arrives as usual.
    cp_.set(testing::kEndpoint, "2", {testing::claJson("a", 2001), testing::claJson("b", 1002)});
    ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kEndpoint) == 2; }));
    EXPECT_EQ(watcher_.last(testing::kEndpoint)->updated,
              (std::map<std::string, std::string>{{"a", "2"}, {"b", "2"}}));
    EXPECT_EQ(watcher_.count(testing::kCluster), 1u);
  } else {
    EXPECT_EQ(str(*cds, "request.version_info"), "1");
    EXPECT_EQ(str(*eds, "request.version_info"), "1");
    EXPECT_EQ(list(*eds, "request.resource_names"), (std::vector<std::string>{"a", "b"}));
    // State of the world answers every new subscription again.
    ASSERT_TRUE(loop_->runUntil([&] {
      return watcher_.count(testing::kCluster) == 2 && watcher_.count(testing::kEndpoint) == 2;
    }));
    EXPECT_TRUE(watcher_.last(testing::kCluster)->removed.empty());
  }
  EXPECT_TRUE(client_->connected());
  EXPECT_GE(watcher_.connects, 2);
}

TEST_P(AdsClientTest, ResourceLargerThanADataFrame) {
  std::string body(200 * 1024, 'y');
  cp_.set(testing::kRoute, "1", {testing::routeJson("big", body)});
  makeClient(delta());
  client_->subscribe(testing::kRoute, {"big"}, false);
  client_->start();
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kRoute) == 1; }));
  EXPECT_GT(watcher_.last(testing::kRoute)->bytes, body.size());
  EXPECT_TRUE(waitEvent([](const Event& e) {
    return isRequest(e, testing::kRoute) && !str(e, "request.response_nonce").empty();
  }));
}

TEST_P(AdsClientTest, WatcherMayStopTheClientFromItsCallback) {
  cp_.set(testing::kCluster, "1", {testing::clusterJson("a")});
  makeClient(delta());
  watcher_.decide = [&](const Update&) {
    client_.reset();  // Destroyed inside its own callback.
    return std::string();
  };
  client_->subscribe(testing::kCluster, {}, true);
  client_->start();
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kCluster) == 1; }));
  EXPECT_EQ(client_, nullptr);
  EXPECT_TRUE(
      waitEvent([](const Event& e) { return str(e, "event") == "stream_closed"; }).has_value());
}

TEST_P(AdsClientTest, ControlPlaneAbsentThenAppears) {
  // A fresh port, nothing on it yet, and kept for this test until the end.
  cp_.stop();
  testing::ReservedPort reserved;
  uint16_t port = reserved.port();
  loop_ = std::make_unique<TestLoop>(port);
  makeClient(delta());
  client_->subscribe(testing::kCluster, {}, true);
  client_->start();
  // Several attempts fail, each followed by a backoff.
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.disconnects >= 3; }));
  EXPECT_EQ(watcher_.connects, 0);

  ControlPlaneProcess late;
  ASSERT_TRUE(late.start(port));
  late.set(testing::kCluster, "5", {testing::clusterJson("z")});
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.count(testing::kCluster) == 1; }));
  EXPECT_EQ(watcher_.last(testing::kCluster)->version, "5");
  EXPECT_TRUE(client_->connected());

  // The control plane dies and comes back on the same port: the client
  // reconnects and subscribes again.
  size_t updates = watcher_.updates.size();
  late.kill();
  ASSERT_TRUE(loop_->runUntil([&] { return !client_->connected(); }));
  ControlPlaneProcess again;
  ASSERT_TRUE(again.start(port));
  again.set(testing::kCluster, "6", {testing::clusterJson("y")});
  ASSERT_TRUE(loop_->runUntil([&] { return watcher_.updates.size() > updates; }));
  // A copy: waitEvent below runs the loop, which may add to updates.
  const Update u = *watcher_.last(testing::kCluster);
  EXPECT_EQ(u.version, "6");
  if (delta()) {
    // It offered what it had; the server said "z" is gone.
    auto first = testing::waitEvent(*loop_, again,
                                    [](const Event& e) { return isRequest(e, testing::kCluster); });
    ASSERT_TRUE(first);
    EXPECT_EQ(str(*first, "request.initial_resource_versions.z"), "5");
  }
  EXPECT_EQ(u.removed, std::vector<std::string>{"z"});
  client_.reset();
  loop_.reset();
}

}  // namespace
}  // namespace skiff::xds
