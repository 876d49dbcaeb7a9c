#include "xds/ads_client.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <algorithm>

#include "envoy/service/discovery/v3/discovery.pb.h"
#include "proxy/common/log.h"

namespace skiff::xds {

namespace ds = envoy::service::discovery::v3;

namespace {

// Envoy's xds_protocol: Listener and Cluster are the wildcard types; asking
// for one of them with no names (the "legacy" wildcard) asks for all.
bool isWildcardType(std::string_view type_url) {
  return type_url == kListenerType || type_url == kClusterType;
}

// Checks that any holds a message of expected_type whose bytes decode, and
// finds its name (Listener, Cluster and RouteConfiguration: `name`;
// ClusterLoadAssignment: `cluster_name`). Returns "" or what is wrong.
std::string checkResource(const google::protobuf::Any& any, const std::string& expected_type,
                          std::string& name) {
  if (any.type_url() != expected_type) {
    return "resource of type " + any.type_url() + " in a response of type " + expected_type;
  }
  std::string_view type_name = any.type_url();
  type_name = type_name.substr(type_name.rfind('/') + 1);
  const google::protobuf::Descriptor* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
          std::string(type_name));
  if (!descriptor) return "unknown resource type " + any.type_url();
  std::unique_ptr<google::protobuf::Message> message(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor)->New());
  if (!message->ParseFromString(any.value())) {
    return "cannot decode a resource of type " + any.type_url();
  }
  for (const char* field_name : {"name", "cluster_name"}) {
    const google::protobuf::FieldDescriptor* field = descriptor->FindFieldByName(field_name);
    if (field && field->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
        !field->is_repeated()) {
      name = message->GetReflection()->GetString(*message, field);
      return "";
    }
  }
  name.clear();
  return "";
}

}  // namespace

AdsClient::AdsClient(Worker& worker, Options options, Watcher& watcher)
    : worker_(worker), options_(std::move(options)), watcher_(watcher) {}

AdsClient::~AdsClient() {
  *alive_ = false;
  stop();
  if (retry_timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(retry_timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    retry_timer_ = nullptr;
  }
}

void AdsClient::start() {
  if (started_) return;
  started_ = true;
  backoff_attempt_ = 0;
  connect();
}

void AdsClient::stop() {
  started_ = false;
  connected_ = false;
  stream_.reset();
  if (retry_timer_) uv_timer_stop(retry_timer_);
}

std::string AdsClient::acceptedVersion(const std::string& type_url) const {
  for (const auto& t : types_) {
    if (t->type_url == type_url) return options_.delta ? t->system_version : t->version;
  }
  return "";
}

AdsClient::TypeState* AdsClient::find(std::string_view type_url) {
  for (auto& t : types_) {
    if (t->type_url == type_url) return t.get();
  }
  return nullptr;
}

AdsClient::TypeState& AdsClient::findOrAdd(const std::string& type_url) {
  if (TypeState* t = find(type_url)) return *t;
  types_.push_back(std::make_unique<TypeState>());
  types_.back()->type_url = type_url;
  return *types_.back();
}

void AdsClient::setSubscribed(TypeState& t, const std::string& name, bool subscribed) {
  if (subscribed) {
    if (!t.names.insert(name).second) return;
    if (t.to_unsubscribe.erase(name) == 0) t.to_subscribe.insert(name);
    return;
  }
  if (t.names.erase(name) == 0) return;
  if (t.to_subscribe.erase(name) == 0) t.to_unsubscribe.insert(name);
  // Delta: what we no longer ask for, we no longer hold.
  if (!t.wildcard) t.resource_versions.erase(name);
}

void AdsClient::subscribe(const std::string& type_url, const std::set<std::string>& names,
                          bool wildcard) {
  TypeState& t = findOrAdd(type_url);
  t.wildcard = wildcard;
  std::vector<std::string> gone;
  for (const std::string& name : t.names) {
    if (names.count(name) == 0) gone.push_back(name);
  }
  for (const std::string& name : gone) setSubscribed(t, name, false);
  for (const std::string& name : names) setSubscribed(t, name, true);
  if (!wildcard) {
    std::erase_if(t.resource_versions, [&](const auto& kv) { return names.count(kv.first) == 0; });
  }
  if (stream_) sendSubscription(t);
}

void AdsClient::updateSubscription(const std::string& type_url, const std::set<std::string>& added,
                                   const std::set<std::string>& removed) {
  TypeState& t = findOrAdd(type_url);
  for (const std::string& name : removed) setSubscribed(t, name, false);
  for (const std::string& name : added) setSubscribed(t, name, true);
  if (stream_) sendSubscription(t);
}

void AdsClient::pause(const std::string& type_url) {
  TypeState* t = find(type_url);
  if (t) t->paused = true;
}

void AdsClient::resume(const std::string& type_url) {
  TypeState* t = find(type_url);
  if (!t || !t->paused) return;
  t->paused = false;
  if (!t->reply_held) return;
  t->reply_held = false;
  std::string error = std::move(t->held_error);
  if (stream_) reply(*t, error.empty() ? nullptr : &error);
}

void AdsClient::reply(TypeState& t, const std::string* error) {
  if (t.paused) {
    t.reply_held = true;
    t.held_error = error ? *error : std::string();
    return;
  }
  if (options_.delta) {
    sendDeltaRequest(t, /*acknowledge=*/true, error);
  } else {
    sendSotwRequest(t, t.version, error);
  }
}

// ---- The stream

void AdsClient::connect() {
  std::string path(options_.delta ? kDeltaPath : kSotwPath);
  GrpcStream::Callbacks& callbacks = *this;
  stream_ = std::make_unique<GrpcStream>(worker_, options_.cluster_name, std::move(path), callbacks,
                                         options_.max_message_bytes);
  node_sent_ = false;
  connected_ = false;
  for (auto& t : types_) {
    // A new stream knows nothing of the old one's nonces or subscriptions.
    t->nonce.clear();
    t->requested = false;
    t->reply_held = false;  // Its nonce was of the stream that ended.
    t->sent_wildcard = false;
    t->to_subscribe.clear();
    t->to_unsubscribe.clear();
  }
  // Queued in the GrpcStream until its HTTP/2 stream exists.
  for (auto& t : types_) sendSubscription(*t);
  stream_->start();
}

void AdsClient::onStreamReady() {
  SKIFF_LOG(kInfo, "ADS stream to cluster '" + options_.cluster_name + "' open");
  connected_ = true;
  watcher_.onStreamStatus(true);
}

void AdsClient::onRemoteClose(int grpc_status, std::string_view message) {
  SKIFF_LOG(kWarn, "ADS stream to cluster '" + options_.cluster_name +
                       "' closed: " + std::to_string(grpc_status) + ", " + std::string(message));
  connected_ = false;
  stream_.reset();  // Safe here: the call itself is deleted at the end of the loop iteration.
  scheduleReconnect();
  watcher_.onStreamStatus(false);
}

std::chrono::milliseconds AdsClient::nextBackoff() {
  // Exponential, capped, with jitter over the upper half of the interval so
  // that many proxies that lost one control plane do not come back at once.
  uint64_t base = static_cast<uint64_t>(std::max<int64_t>(1, options_.backoff_base.count()));
  uint64_t max = static_cast<uint64_t>(std::max<int64_t>(1, options_.backoff_max.count()));
  uint64_t interval = base;
  for (uint32_t i = 0; i < backoff_attempt_ && interval < max; ++i) interval *= 2;
  interval = std::min(interval, max);
  if (backoff_attempt_ < 32) ++backoff_attempt_;
  uint64_t half = interval / 2;
  return std::chrono::milliseconds(half + worker_.random() % (interval - half + 1));
}

void AdsClient::scheduleReconnect() {
  if (!started_) return;
  if (!retry_timer_) {
    retry_timer_ = new uv_timer_t;
    uv_timer_init(worker_.loop(), retry_timer_);
    retry_timer_->data = this;
  }
  std::chrono::milliseconds delay = nextBackoff();
  SKIFF_LOG(kDebug, "ADS: reconnecting in " + std::to_string(delay.count()) + " ms");
  uv_timer_start(
      retry_timer_,
      [](uv_timer_t* timer) {
        auto* self = static_cast<AdsClient*>(timer->data);
        if (self->started_ && !self->stream_) self->connect();
      },
      static_cast<uint64_t>(delay.count()), 0);
}

// ---- Requests

template <class Request>
void AdsClient::send(Request& request) {
  if (!node_sent_) {
    // xds_protocol: the node identifies the client in the first request of
    // a stream; later requests may leave it out.
    *request.mutable_node() = options_.node;
    node_sent_ = true;
  }
  stream_->send(request.SerializeAsString());
}

void AdsClient::sendSubscription(TypeState& t) {
  if (t.requested && t.wildcard == t.sent_wildcard && t.to_subscribe.empty() &&
      t.to_unsubscribe.empty()) {
    return;
  }
  // Nothing asked for, and nothing to take back on this stream.
  if (!t.requested && !t.wildcard && t.names.empty()) return;
  if (options_.delta) {
    sendDeltaRequest(t, /*acknowledge=*/false, nullptr);
  } else {
    sendSotwRequest(t, t.version, nullptr);
  }
}

void AdsClient::sendSotwRequest(TypeState& t, const std::string& version,
                                const std::string* error_detail) {
  ds::DiscoveryRequest request;
  request.set_type_url(t.type_url);
  request.set_version_info(version);
  request.set_response_nonce(t.nonce);
  // A wildcard type with no names: the legacy wildcard (no names at all).
  // Otherwise "*" asks for everything explicitly, beside any names.
  if (t.wildcard && !(t.names.empty() && isWildcardType(t.type_url))) {
    request.add_resource_names("*");
  }
  for (const std::string& name : t.names) request.add_resource_names(name);
  if (error_detail) {
    request.mutable_error_detail()->set_code(grpc_status::kInvalidArgument);
    request.mutable_error_detail()->set_message(*error_detail);
  }
  t.requested = true;
  t.sent_wildcard = t.wildcard;
  t.to_subscribe.clear();
  t.to_unsubscribe.clear();
  send(request);
}

void AdsClient::sendDeltaRequest(TypeState& t, bool acknowledge, const std::string* error_detail) {
  ds::DeltaDiscoveryRequest request;
  request.set_type_url(t.type_url);
  // Only an ACK or NACK names a response; a change of subscription does not.
  if (acknowledge) request.set_response_nonce(t.nonce);
  if (!t.requested) {
    // The first request of the type on this stream: everything we want, and
    // the versions of what we already hold so the server need not resend it.
    if (t.wildcard && !(t.names.empty() && isWildcardType(t.type_url))) {
      request.add_resource_names_subscribe("*");
    }
    for (const std::string& name : t.names) request.add_resource_names_subscribe(name);
    for (const auto& [name, version] : t.resource_versions) {
      (*request.mutable_initial_resource_versions())[name] = version;
    }
  } else {
    // Later requests carry only the difference.
    if (t.wildcard && !t.sent_wildcard) request.add_resource_names_subscribe("*");
    if (!t.wildcard && t.sent_wildcard) request.add_resource_names_unsubscribe("*");
    for (const std::string& name : t.to_subscribe) request.add_resource_names_subscribe(name);
    for (const std::string& name : t.to_unsubscribe) request.add_resource_names_unsubscribe(name);
  }
  if (error_detail) {
    request.mutable_error_detail()->set_code(grpc_status::kInvalidArgument);
    request.mutable_error_detail()->set_message(*error_detail);
  }
  t.requested = true;
  t.sent_wildcard = t.wildcard;
  t.to_subscribe.clear();
  t.to_unsubscribe.clear();
  send(request);
}

// ---- Responses

void AdsClient::onReceiveMessage(std::string_view bytes) {
  if (options_.delta) {
    onDeltaResponse(bytes);
  } else {
    onSotwResponse(bytes);
  }
}

void AdsClient::onSotwResponse(std::string_view bytes) {
  ds::DiscoveryResponse response;
  if (!response.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    // Without a type URL there is nothing to NACK; the server is broken.
    SKIFF_LOG(kWarn, "ADS: a DiscoveryResponse that does not decode; ignored");
    return;
  }
  TypeState* t = find(response.type_url());
  if (!t) {
    SKIFF_LOG(kWarn, "ADS: ignoring a response for unsubscribed type " + response.type_url());
    return;
  }
  t->nonce = response.nonce();
  std::vector<XdsResource> updated;
  std::set<std::string> names;
  for (int i = 0; i < response.resources_size(); ++i) {
    XdsResource r;
    std::string error = checkResource(response.resources(i), response.type_url(), r.name);
    if (!error.empty()) {
      error = "resources[" + std::to_string(i) + "]: " + error;
      SKIFF_LOG(kWarn, "ADS: NACK " + response.type_url() + " version " + response.version_info() +
                           ": " + error);
      reply(*t, &error);
      return;
    }
    r.version = response.version_info();
    r.resource = response.resources(i);
    names.insert(r.name);
    updated.push_back(std::move(r));
  }
  std::vector<std::string> removed;
  if (t->wildcard) {
    for (const std::string& name : t->accepted_names) {
      if (!names.count(name)) removed.push_back(name);
    }
  }
  std::shared_ptr<bool> alive = alive_;
  GrpcStream* stream = stream_.get();
  std::string error =
      watcher_.onResources(response.type_url(), updated, removed, response.version_info());
  // The watcher may have stopped us, or destroyed us.
  if (!*alive || stream_.get() != stream || !stream_) return;
  if (error.empty()) {
    t->version = response.version_info();
    t->accepted_names = std::move(names);
    backoff_attempt_ = 0;
    reply(*t, nullptr);
  } else {
    SKIFF_LOG(kWarn, "ADS: NACK " + response.type_url() + " version " + response.version_info() +
                         ": " + error);
    reply(*t, &error);
  }
}

void AdsClient::onDeltaResponse(std::string_view bytes) {
  ds::DeltaDiscoveryResponse response;
  if (!response.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    SKIFF_LOG(kWarn, "ADS: a DeltaDiscoveryResponse that does not decode; ignored");
    return;
  }
  TypeState* t = find(response.type_url());
  if (!t) {
    SKIFF_LOG(kWarn, "ADS: ignoring a response for unsubscribed type " + response.type_url());
    return;
  }
  t->nonce = response.nonce();
  std::vector<XdsResource> updated;
  for (int i = 0; i < response.resources_size(); ++i) {
    const ds::Resource& resource = response.resources(i);
    if (!resource.has_resource()) continue;  // A name without a body: nothing to apply.
    XdsResource r;
    std::string error = checkResource(resource.resource(), response.type_url(), r.name);
    if (!error.empty()) {
      error = "resources[" + std::to_string(i) + "] (" + resource.name() + "): " + error;
      SKIFF_LOG(kWarn, "ADS: NACK " + response.type_url() + ": " + error);
      reply(*t, &error);
      return;
    }
    if (!resource.name().empty()) r.name = resource.name();
    r.version = resource.version();
    r.resource = resource.resource();
    updated.push_back(std::move(r));
  }
  std::vector<std::string> removed(response.removed_resources().begin(),
                                   response.removed_resources().end());
  std::shared_ptr<bool> alive = alive_;
  GrpcStream* stream = stream_.get();
  std::string error =
      watcher_.onResources(response.type_url(), updated, removed, response.system_version_info());
  if (!*alive || stream_.get() != stream || !stream_) return;
  if (error.empty()) {
    for (const XdsResource& r : updated) t->resource_versions[r.name] = r.version;
    for (const std::string& name : removed) t->resource_versions.erase(name);
    t->system_version = response.system_version_info();
    backoff_attempt_ = 0;
    reply(*t, nullptr);
  } else {
    SKIFF_LOG(kWarn, "ADS: NACK " + response.type_url() + ": " + error);
    reply(*t, &error);
  }
}

}  // namespace skiff::xds
