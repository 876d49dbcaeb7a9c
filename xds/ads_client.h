// The Aggregated Discovery Service protocol, state of the world and delta,
// over one GrpcStream on the main loop (DESIGN.md, "xDS"; Envoy's
// xds_protocol). Per type URL it keeps what Envoy keeps: the subscribed
// names (or wildcard), the last accepted version_info, the nonce of the last
// response on this stream, and for delta the versions of the resources held.
//
//   subscribe(T) ──▶ request T ──▶ response T ──▶ decode every Any
//                                                   │ fails: NACK (no watcher call)
//                                                   ▼
//                                   Watcher::onResources ── "" ──▶ ACK (version, nonce)
//                                                   └──── text ──▶ NACK (old version,
//                                                                  nonce, error_detail)
//
// When the stream ends, the client reconnects after a jittered exponential
// backoff (reset once a response is accepted) and sends every subscription
// again, in the order the types were first subscribed: state of the world
// with the last accepted version, delta with initial_resource_versions.
// The last accepted configuration is the watcher's to keep serving.
#pragma once

#include <google/protobuf/any.pb.h>
#include <uv.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "envoy/config/core/v3/base.pb.h"
#include "proxy/worker/worker.h"
#include "xds/grpc_stream.h"

namespace skiff::xds {

// The v3 type URLs of the resources skiff subscribes to.
inline constexpr std::string_view kListenerType =
    "type.googleapis.com/envoy.config.listener.v3.Listener";
inline constexpr std::string_view kRouteConfigurationType =
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
inline constexpr std::string_view kClusterType =
    "type.googleapis.com/envoy.config.cluster.v3.Cluster";
inline constexpr std::string_view kClusterLoadAssignmentType =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

struct XdsResource {
  std::string name;
  std::string version;  // Delta: the resource's version. State of the world: the response's.
  google::protobuf::Any resource;  // Checked: its type is the response's and its bytes decode.
};

class AdsClient : private GrpcStream::Callbacks {
 public:
  static constexpr std::string_view kSotwPath =
      "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
  static constexpr std::string_view kDeltaPath =
      "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

  // Called on the worker's loop. A watcher may call subscribe() and stop()
  // from inside a callback, and may even destroy the AdsClient there.
  class Watcher {
   public:
    virtual ~Watcher() = default;
    // Resources of one type arrived. State of the world: `updated` is every
    // resource in the response, and `removed` (wildcard types only) names
    // those the previous accepted response had and this one lacks. Delta:
    // `updated` from resources, `removed` from removed_resources. Return ""
    // to ACK, or the error text to NACK with (error_detail.code 3
    // INVALID_ARGUMENT, error_detail.message = text).
    virtual std::string onResources(const std::string& type_url,
                                    const std::vector<XdsResource>& updated,
                                    const std::vector<std::string>& removed,
                                    const std::string& version_info) = 0;
    // true: a stream is open to a host and the requests are sent (may come
    // from inside start()); false: a stream ended, or could not be opened,
    // and a reconnect is scheduled (so it repeats while the control plane
    // stays away).
    virtual void onStreamStatus(bool connected) = 0;
  };

  struct Options {
    std::string cluster_name;  // A static cluster in the worker's ClusterManager.
    bool delta = false;        // DeltaAggregatedResources instead of StreamAggregatedResources.
    envoy::config::core::v3::Node node;  // Sent in the first request of each stream.
    std::chrono::milliseconds backoff_base{500};
    std::chrono::milliseconds backoff_max{30000};
    size_t max_message_bytes = GrpcStream::kDefaultMaxMessageBytes;
  };

  AdsClient(Worker& worker, Options options, Watcher& watcher);
  // Stops. Destroy it before the worker's shutdown() (it holds a timer and
  // a pool stream on the loop).
  ~AdsClient() override;
  AdsClient(const AdsClient&) = delete;
  AdsClient& operator=(const AdsClient&) = delete;

  // Opens the stream (now; later ones after backoff) and keeps it open.
  void start();
  // LDS/CDS: wildcard=true, names empty. RDS/EDS: by name. Sends the request
  // now if the stream is up (state of the world: the full names list with
  // the type's last accepted version and nonce; delta: the subscribe and
  // unsubscribe difference) and again after every reconnect. An empty
  // non-wildcard set unsubscribes from everything of the type.
  void subscribe(const std::string& type_url, const std::set<std::string>& names, bool wildcard);
  // The same by difference: costs the names that change, not the
  // subscription's size (state of the world still sends the full list, as
  // its protocol asks).
  void updateSubscription(const std::string& type_url, const std::set<std::string>& added,
                          const std::set<std::string>& removed);
  // Holds the replies (ACK or NACK) to type_url's responses until resume(),
  // which sends one for the newest response of this stream if any came:
  // Envoy holds CDS's this way while a cluster warms, so that a control
  // plane that waits for the ACK knows the cluster serves before routes
  // name it.
  void pause(const std::string& type_url);
  void resume(const std::string& type_url);
  // Closes the stream and stops reconnecting; subscriptions and accepted
  // versions are kept for a later start().
  void stop();

  bool connected() const { return connected_; }
  // The version_info last accepted for type_url ("" before any).
  std::string acceptedVersion(const std::string& type_url) const;

 private:
  // Everything kept per type URL.
  struct TypeState {
    std::string type_url;
    bool wildcard = false;
    std::set<std::string> names;
    // State of the world.
    std::string version;                   // The last accepted version_info.
    std::string nonce;                     // The last response's nonce on this stream.
    std::set<std::string> accepted_names;  // Resource names of the last accepted response.
    // Delta.
    std::map<std::string, std::string> resource_versions;  // What we hold: name → version.
    std::string system_version;                            // The last accepted system_version_info.
    bool sent_wildcard = false;                            // As the server knows it on this stream.
    // Names added to and removed from `names` since the last request on this
    // stream: a delta request carries only these, so an ACK costs nothing
    // per subscribed name.
    std::set<std::string> to_subscribe;
    std::set<std::string> to_unsubscribe;
    bool requested = false;   // A request for the type went out on this stream.
    bool paused = false;      // Replies held (pause).
    bool reply_held = false;  // A reply to this stream's newest response waits for resume.
    std::string held_error;   // Its error_detail ("": an ACK).
  };

  // GrpcStream::Callbacks
  void onStreamReady() override;
  void onReceiveMessage(std::string_view bytes) override;
  void onRemoteClose(int grpc_status, std::string_view message) override;

  void connect();
  void scheduleReconnect();
  std::chrono::milliseconds nextBackoff();
  TypeState* find(std::string_view type_url);
  TypeState& findOrAdd(const std::string& type_url);
  // Adds or removes one name of t's subscription.
  void setSubscribed(TypeState& t, const std::string& name, bool subscribed);
  // Sends the subscription of t: in full (first request of the type on this
  // stream) or, for delta, the difference.
  void sendSubscription(TypeState& t);
  void sendSotwRequest(TypeState& t, const std::string& version, const std::string* error_detail);
  // acknowledge: an ACK (or, with error_detail, a NACK) of the last response.
  void sendDeltaRequest(TypeState& t, bool acknowledge, const std::string* error_detail);
  // The ACK (error null) or NACK of t's newest response, or held if t is paused.
  void reply(TypeState& t, const std::string* error);
  void onSotwResponse(std::string_view bytes);
  void onDeltaResponse(std::string_view bytes);
  // Fills node on the stream's first request.
  template <class Request>
  void send(Request& request);

  Worker& worker_;
  Options options_;
  Watcher& watcher_;
  std::vector<std::unique_ptr<TypeState>> types_;  // In the order first subscribed.
  std::unique_ptr<GrpcStream> stream_;
  bool started_ = false;
  bool connected_ = false;
  bool node_sent_ = false;        // The node went out on this stream.
  uint32_t backoff_attempt_ = 0;  // Reconnects since a response was last accepted.
  uv_timer_t* retry_timer_ = nullptr;
  // Set to false when the AdsClient is destroyed, so that a watcher callback
  // that destroys it is noticed afterwards.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace skiff::xds
