// A test xDS control plane on Debian's libgrpc++ (DESIGN.md, "Tests and
// checks": skiff's own gRPC is checked against an implementation it did not
// write). It serves envoy.service.discovery.v3.AggregatedDiscoveryService,
// state of the world and delta, with resources that a test sets over stdin.
//
// Threads: gRPC calls the reactors on its own threads; every reaction is
// posted to one control thread (run()), which alone reads and changes the
// resources, the per-stream state and stdout. So no lock guards the
// protocol state, and no gRPC call is made while holding a lock.
#pragma once

#include <google/protobuf/any.pb.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "envoy/service/discovery/v3/ads.grpc.pb.h"

namespace skiff::control_plane {

namespace ds = envoy::service::discovery::v3;

// Writes one JSON object as one line on stdout and flushes it, with "t": the
// time of writing on CLOCK_MONOTONIC in seconds (what Python's
// time.monotonic() reads), so a driver can time what follows an event.
void emit(const std::string& json_object);
// s as a JSON string literal (quoted, escaped).
std::string jsonString(std::string_view s);

class SotwStream;
class DeltaStream;

class AdsServer final : public ds::AggregatedDiscoveryService::CallbackService {
 public:
  // gRPC threads: a new call.
  grpc::ServerBidiReactor<ds::DiscoveryRequest, ds::DiscoveryResponse>* StreamAggregatedResources(
      grpc::CallbackServerContext* context) override;
  grpc::ServerBidiReactor<ds::DeltaDiscoveryRequest, ds::DeltaDiscoveryResponse>*
  DeltaAggregatedResources(grpc::CallbackServerContext* context) override;

  // Any thread: runs fn on the control thread, in order.
  void post(std::function<void()> fn);
  // The control thread: runs posted work until quit().
  void run();
  void quit();

  // The control thread: one stdin command line.
  void handleCommand(const std::string& line);
  // The control thread: ends every open stream with UNAVAILABLE.
  void disconnectAll();
  // What a `shutdown` command does once every stream is told to end (run on
  // the control thread; it must not block it).
  void setShutdownHandler(std::function<void()> fn) { shutdown_ = std::move(fn); }

  // The control thread, from the streams.
  void onStreamOpen(SotwStream& stream);
  void onStreamOpen(DeltaStream& stream);
  void onStreamDone(SotwStream& stream);
  void onStreamDone(DeltaStream& stream);
  void onRequest(SotwStream& stream, const ds::DiscoveryRequest& request);
  void onRequest(DeltaStream& stream, const ds::DeltaDiscoveryRequest& request);

 private:
  // The resources of one type, as the last `set` and the `update`s since
  // gave them.
  struct TypeState {
    std::string version;
    std::map<std::string, google::protobuf::Any> resources;  // By resource name.
    // By resource name: the version each resource last changed in (delta
    // sends a resource only when this differs from what the client holds).
    std::map<std::string, std::string> versions;
  };

  std::string set(const std::string& type_url, const std::string& version,
                  std::vector<google::protobuf::Any> resources);
  // Adds or replaces `resources` and removes `removed`, leaving the other
  // resources of the type, and their versions, as they were: delta streams
  // get only what changed, state of the world ones the whole set.
  std::string update(const std::string& type_url, const std::string& version,
                     std::vector<google::protobuf::Any> resources,
                     const std::vector<std::string>& removed);
  // Sends the current resources of type_url to every stream that asked for
  // the type.
  void pushAll(const std::string& type_url);
  void setGarbage(const std::string& type_url, const std::string& version);
  // Sends the current resources of type_url that stream subscribes to: all
  // of them for a wildcard subscription (even none), else the named ones
  // that exist, if any.
  void pushSotw(SotwStream& stream, const std::string& type_url);
  // Sends what the stream lacks (added or changed) and what it holds that is
  // gone, when there is any.
  void pushDelta(DeltaStream& stream, const std::string& type_url);
  std::string nextNonce();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // Guarded by mu_.
  bool quit_ = false;                        // Guarded by mu_.

  // Control thread only from here on.
  std::map<std::string, TypeState> types_;  // By type URL; present once set.
  std::set<SotwStream*> sotw_;
  std::set<DeltaStream*> delta_;
  uint64_t nonce_ = 0;
  bool shutting_down_ = false;
  std::function<void()> shutdown_;
};

}  // namespace skiff::control_plane
