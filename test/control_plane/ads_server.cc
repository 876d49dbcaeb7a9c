#include "test/control_plane/ads_server.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <ctime>
#include <memory>

namespace skiff::control_plane {

namespace {

constexpr std::string_view kListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener";
constexpr std::string_view kClusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

// Envoy's xds_protocol: LDS and CDS are wildcard types (a request without
// names asks for everything); RDS and EDS are asked for by name.
bool isWildcardType(std::string_view type_url) {
  return type_url == kListenerType || type_url == kClusterType;
}

std::mutex emit_mu;

std::string toJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "null";
  return out;
}

std::string jsonList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ",";
    out += jsonString(items[i]);
  }
  return out + "]";
}

// A resource's name: the `name` field of Listener, Cluster and
// RouteConfiguration, `cluster_name` of ClusterLoadAssignment.
std::string resourceName(const google::protobuf::Any& any, std::string& error) {
  std::string_view type = any.type_url();
  type = type.substr(type.rfind('/') + 1);
  const google::protobuf::Descriptor* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(std::string(type));
  if (!descriptor) {
    error = "unknown type " + any.type_url();
    return "";
  }
  std::unique_ptr<google::protobuf::Message> message(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor)->New());
  if (!message->ParseFromString(any.value())) {
    error = "cannot decode " + any.type_url();
    return "";
  }
  for (const char* field_name : {"name", "cluster_name"}) {
    const google::protobuf::FieldDescriptor* field = descriptor->FindFieldByName(field_name);
    if (field && field->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
        !field->is_repeated()) {
      return message->GetReflection()->GetString(*message, field);
    }
  }
  error = any.type_url() + " has no name field";
  return "";
}

std::string field(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end()) return "";
  if (it->second.has_string_value()) return it->second.string_value();
  if (it->second.has_number_value()) {
    return std::to_string(static_cast<int64_t>(it->second.number_value()));
  }
  return "";
}

}  // namespace

void emit(const std::string& json_object) {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  char t[48];
  std::snprintf(t, sizeof(t), "{\"t\":%lld.%06ld", static_cast<long long>(now.tv_sec),
                now.tv_nsec / 1000);
  // json_object is "{...}": "t" goes first.
  std::string line = t;
  if (json_object.size() > 2) line += ",";
  line.append(json_object, 1);
  std::lock_guard<std::mutex> lock(emit_mu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// One call, either flavour. gRPC runs the reactions on its threads; each is
// posted to the control thread, which also makes every Start*/Finish call.
// Only one read and one write are outstanding at a time: responses queue in
// writes_ (a deque, so the message being written keeps its address).
template <class Request, class Response>
class Stream : public grpc::ServerBidiReactor<Request, Response> {
 public:
  Stream(AdsServer& server, const char* kind, std::string peer)
      : server_(server), kind_(kind), peer_(std::move(peer)) {}

  const char* kind() const { return kind_; }
  const std::string& peer() const { return peer_; }

  void write(Response response) {
    if (finishing_) return;
    writes_.push_back(std::move(response));
    if (!writing_) startNextWrite();
  }

  // Ends the call with status; waits for a write in progress (gRPC allows
  // one outstanding write, and the status goes after it).
  void finish(grpc::Status status) {
    if (finishing_) return;
    finishing_ = true;
    writes_.clear();
    if (writing_) {
      finish_status_ = std::move(status);
      finish_pending_ = true;
      return;
    }
    this->Finish(std::move(status));
  }

  // gRPC threads.
  void OnReadDone(bool ok) override {
    server_.post([this, ok] {
      if (!ok) {
        // The client half-closed or the call broke: no more requests.
        finish(grpc::Status::OK);
        return;
      }
      if (finishing_) return;
      handle(request_);
      if (!finishing_) this->StartRead(&request_);
    });
  }
  void OnWriteDone(bool ok) override {
    server_.post([this, ok] {
      writing_ = false;
      if (!writes_.empty()) writes_.pop_front();
      if (finish_pending_) {
        finish_pending_ = false;
        this->Finish(std::move(finish_status_));
        return;
      }
      if (!ok) {
        writes_.clear();
        return;
      }
      if (!writes_.empty()) startNextWrite();
    });
  }
  void OnDone() override {
    // The last reaction: nothing else is posted for this call after it.
    server_.post([this] { done(); });
  }

 protected:
  virtual void handle(const Request& request) = 0;
  virtual void done() = 0;
  void startReading() { this->StartRead(&request_); }

  AdsServer& server_;

 private:
  void startNextWrite() {
    writing_ = true;
    this->StartWrite(&writes_.front());
  }

  const char* kind_;
  std::string peer_;
  Request request_;
  std::deque<Response> writes_;
  bool writing_ = false;
  bool finishing_ = false;
  bool finish_pending_ = false;
  grpc::Status finish_status_;
};

class SotwStream final : public Stream<ds::DiscoveryRequest, ds::DiscoveryResponse> {
 public:
  // Per type URL on this stream.
  struct TypeSubscription {
    bool requested = false;       // A request for this type arrived.
    bool wildcard = false;        // No names (LDS/CDS) or "*".
    std::set<std::string> names;  // Explicit names.
    std::string nonce;            // The latest nonce sent for this type.
  };

  SotwStream(AdsServer& server, std::string peer) : Stream(server, "sotw", std::move(peer)) {
    startReading();
  }
  std::map<std::string, TypeSubscription> types;

 private:
  void handle(const ds::DiscoveryRequest& request) override { server_.onRequest(*this, request); }
  void done() override { server_.onStreamDone(*this); }
};

class DeltaStream final : public Stream<ds::DeltaDiscoveryRequest, ds::DeltaDiscoveryResponse> {
 public:
  struct TypeSubscription {
    bool requested = false;
    bool wildcard = false;
    std::set<std::string> names;
    // What the client holds, as far as this server knows: name → version.
    std::map<std::string, std::string> known;
    std::string nonce;
  };

  DeltaStream(AdsServer& server, std::string peer) : Stream(server, "delta", std::move(peer)) {
    startReading();
  }
  std::map<std::string, TypeSubscription> types;

 private:
  void handle(const ds::DeltaDiscoveryRequest& request) override {
    server_.onRequest(*this, request);
  }
  void done() override { server_.onStreamDone(*this); }
};

// ---- gRPC threads

grpc::ServerBidiReactor<ds::DiscoveryRequest, ds::DiscoveryResponse>*
AdsServer::StreamAggregatedResources(grpc::CallbackServerContext* context) {
  auto* stream = new SotwStream(*this, context->peer());
  post([this, stream] { onStreamOpen(*stream); });
  return stream;
}

grpc::ServerBidiReactor<ds::DeltaDiscoveryRequest, ds::DeltaDiscoveryResponse>*
AdsServer::DeltaAggregatedResources(grpc::CallbackServerContext* context) {
  auto* stream = new DeltaStream(*this, context->peer());
  post([this, stream] { onStreamOpen(*stream); });
  return stream;
}

void AdsServer::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(fn));
  }
  cv_.notify_one();
}

void AdsServer::run() {
  for (;;) {
    std::function<void()> fn;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return quit_ || !queue_.empty(); });
      if (queue_.empty()) return;  // quit_ and nothing left.
      fn = std::move(queue_.front());
      queue_.pop_front();
    }
    fn();
  }
}

void AdsServer::quit() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
  }
  cv_.notify_one();
}

// ---- The control thread

void AdsServer::onStreamOpen(SotwStream& stream) {
  sotw_.insert(&stream);
  emit(R"({"event":"stream_open","kind":"sotw","peer":)" + jsonString(stream.peer()) + "}");
  if (shutting_down_) stream.finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
}

void AdsServer::onStreamOpen(DeltaStream& stream) {
  delta_.insert(&stream);
  emit(R"({"event":"stream_open","kind":"delta","peer":)" + jsonString(stream.peer()) + "}");
  if (shutting_down_) stream.finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
}

void AdsServer::onStreamDone(SotwStream& stream) {
  sotw_.erase(&stream);
  emit(R"({"event":"stream_closed","kind":"sotw"})");
  delete &stream;
}

void AdsServer::onStreamDone(DeltaStream& stream) {
  delta_.erase(&stream);
  emit(R"({"event":"stream_closed","kind":"delta"})");
  delete &stream;
}

std::string AdsServer::nextNonce() { return std::to_string(++nonce_); }

void AdsServer::onRequest(SotwStream& stream, const ds::DiscoveryRequest& request) {
  const std::string& type_url = request.type_url();
  SotwStream::TypeSubscription& sub = stream.types[type_url];
  // xds_protocol: a request whose nonce is not the latest one sent for its
  // type on this stream is stale and is ignored. A nonce when nothing was
  // sent yet (one kept from an earlier stream) is not held against it.
  bool stale = !request.response_nonce().empty() && !sub.nonce.empty() &&
               request.response_nonce() != sub.nonce;
  emit(R"({"event":"request","kind":"sotw","stale":)" + std::string(stale ? "true" : "false") +
       R"(,"request":)" + toJson(request) + "}");
  if (stale) return;

  std::set<std::string> names(request.resource_names().begin(), request.resource_names().end());
  bool wildcard = names.erase("*") > 0 || (names.empty() && isWildcardType(type_url));
  bool changed = !sub.requested || names != sub.names || wildcard != sub.wildcard;
  sub.requested = true;
  sub.names = std::move(names);
  sub.wildcard = wildcard;
  // A request that only acknowledges (ACK or NACK) gets no response.
  if (changed) pushSotw(stream, type_url);
}

void AdsServer::onRequest(DeltaStream& stream, const ds::DeltaDiscoveryRequest& request) {
  const std::string& type_url = request.type_url();
  DeltaStream::TypeSubscription& sub = stream.types[type_url];
  bool stale = !request.response_nonce().empty() && !sub.nonce.empty() &&
               request.response_nonce() != sub.nonce;
  emit(R"({"event":"request","kind":"delta","stale":)" + std::string(stale ? "true" : "false") +
       R"(,"request":)" + toJson(request) + "}");
  if (stale) return;

  bool first = !sub.requested;
  if (first) {
    sub.requested = true;
    for (const auto& [name, version] : request.initial_resource_versions()) {
      sub.known[name] = version;
    }
    // xds_protocol: the first request of a wildcard type with no names
    // subscribes to everything.
    if (request.resource_names_subscribe().empty() && isWildcardType(type_url)) {
      sub.wildcard = true;
    }
  }
  for (const std::string& name : request.resource_names_subscribe()) {
    if (name == "*") {
      sub.wildcard = true;
    } else {
      sub.names.insert(name);
    }
  }
  for (const std::string& name : request.resource_names_unsubscribe()) {
    if (name == "*") {
      sub.wildcard = false;
    } else {
      sub.names.erase(name);
      sub.known.erase(name);
    }
  }
  if (first || !request.resource_names_subscribe().empty()) pushDelta(stream, type_url);
}

void AdsServer::pushSotw(SotwStream& stream, const std::string& type_url) {
  auto type = types_.find(type_url);
  if (type == types_.end()) return;  // Never set: the first set pushes it.
  SotwStream::TypeSubscription& sub = stream.types[type_url];
  ds::DiscoveryResponse response;
  response.set_type_url(type_url);
  response.set_version_info(type->second.version);
  std::vector<std::string> names;
  for (const auto& [name, any] : type->second.resources) {
    if (!sub.wildcard && !sub.names.count(name)) continue;
    *response.add_resources() = any;
    names.push_back(name);
  }
  if (names.empty() && !sub.wildcard) return;
  response.set_nonce(nextNonce());
  sub.nonce = response.nonce();
  emit(R"({"event":"response","kind":"sotw","type_url":)" + jsonString(type_url) +
       R"(,"version":)" + jsonString(response.version_info()) + R"(,"nonce":)" +
       jsonString(response.nonce()) + R"(,"names":)" + jsonList(names) + "}");
  stream.write(std::move(response));
}

void AdsServer::pushDelta(DeltaStream& stream, const std::string& type_url) {
  auto type = types_.find(type_url);
  if (type == types_.end()) return;
  DeltaStream::TypeSubscription& sub = stream.types[type_url];
  const std::string& version = type->second.version;
  ds::DeltaDiscoveryResponse response;
  response.set_type_url(type_url);
  response.set_system_version_info(version);
  std::vector<std::string> names;
  for (const auto& [name, any] : type->second.resources) {
    if (!sub.wildcard && !sub.names.count(name)) continue;
    const std::string& resource_version = type->second.versions.at(name);
    auto known = sub.known.find(name);
    if (known != sub.known.end() && known->second == resource_version) continue;  // Has it.
    ds::Resource* resource = response.add_resources();
    resource->set_name(name);
    resource->set_version(resource_version);
    *resource->mutable_resource() = any;
    sub.known[name] = resource_version;
    names.push_back(name);
  }
  std::vector<std::string> removed;
  for (auto it = sub.known.begin(); it != sub.known.end();) {
    bool subscribed = sub.wildcard || sub.names.count(it->first);
    if (subscribed && !type->second.resources.count(it->first)) {
      removed.push_back(it->first);
      response.add_removed_resources(it->first);
      it = sub.known.erase(it);
    } else {
      ++it;
    }
  }
  if (names.empty() && removed.empty()) return;
  response.set_nonce(nextNonce());
  sub.nonce = response.nonce();
  emit(R"({"event":"response","kind":"delta","type_url":)" + jsonString(type_url) +
       R"(,"version":)" + jsonString(version) + R"(,"nonce":)" + jsonString(response.nonce()) +
       R"(,"names":)" + jsonList(names) + R"(,"removed":)" + jsonList(removed) + "}");
  stream.write(std::move(response));
}

std::string AdsServer::set(const std::string& type_url, const std::string& version,
                           std::vector<google::protobuf::Any> resources) {
  TypeState state;
  state.version = version;
  for (google::protobuf::Any& any : resources) {
    if (any.type_url() != type_url) {
      return "resource of type " + any.type_url() + " in a set of " + type_url;
    }
    std::string error;
    std::string name = resourceName(any, error);
    if (!error.empty()) return error;
    state.versions[name] = version;
    state.resources[name] = std::move(any);
  }
  types_[type_url] = std::move(state);
  pushAll(type_url);
  return "";
}

std::string AdsServer::update(const std::string& type_url, const std::string& version,
                              std::vector<google::protobuf::Any> resources,
                              const std::vector<std::string>& removed) {
  TypeState state = types_[type_url];  // A copy: nothing changes unless all is well.
  state.version = version;
  for (google::protobuf::Any& any : resources) {
    if (any.type_url() != type_url) {
      return "resource of type " + any.type_url() + " in an update of " + type_url;
    }
    std::string error;
    std::string name = resourceName(any, error);
    if (!error.empty()) return error;
    state.versions[name] = version;
    state.resources[name] = std::move(any);
  }
  for (const std::string& name : removed) {
    state.resources.erase(name);
    state.versions.erase(name);
  }
  types_[type_url] = std::move(state);
  pushAll(type_url);
  return "";
}

void AdsServer::pushAll(const std::string& type_url) {
  for (SotwStream* stream : sotw_) {
    auto sub = stream->types.find(type_url);
    if (sub != stream->types.end() && sub->second.requested) pushSotw(*stream, type_url);
  }
  for (DeltaStream* stream : delta_) {
    auto sub = stream->types.find(type_url);
    if (sub != stream->types.end() && sub->second.requested) pushDelta(*stream, type_url);
  }
}

void AdsServer::setGarbage(const std::string& type_url, const std::string& version) {
  google::protobuf::Any garbage;
  garbage.set_type_url(type_url);
  // A varint longer than ten bytes: no message parses from it.
  garbage.set_value(std::string(12, '\xff'));
  for (SotwStream* stream : sotw_) {
    auto sub = stream->types.find(type_url);
    if (sub == stream->types.end() || !sub->second.requested) continue;
    ds::DiscoveryResponse response;
    response.set_type_url(type_url);
    response.set_version_info(version);
    *response.add_resources() = garbage;
    response.set_nonce(nextNonce());
    sub->second.nonce = response.nonce();
    emit(R"({"event":"response","kind":"sotw","type_url":)" + jsonString(type_url) +
         R"(,"version":)" + jsonString(version) + R"(,"nonce":)" + jsonString(response.nonce()) +
         R"(,"names":["garbage"]})");
    stream->write(std::move(response));
  }
  for (DeltaStream* stream : delta_) {
    auto sub = stream->types.find(type_url);
    if (sub == stream->types.end() || !sub->second.requested) continue;
    ds::DeltaDiscoveryResponse response;
    response.set_type_url(type_url);
    response.set_system_version_info(version);
    ds::Resource* resource = response.add_resources();
    resource->set_name("garbage");
    resource->set_version(version);
    *resource->mutable_resource() = garbage;
    response.set_nonce(nextNonce());
    sub->second.nonce = response.nonce();
    emit(R"({"event":"response","kind":"delta","type_url":)" + jsonString(type_url) +
         R"(,"version":)" + jsonString(version) + R"(,"nonce":)" + jsonString(response.nonce()) +
         R"(,"names":["garbage"],"removed":[]})");
    stream->write(std::move(response));
  }
}

void AdsServer::disconnectAll() {
  grpc::Status status(grpc::StatusCode::UNAVAILABLE, "control plane disconnected the stream");
  for (SotwStream* stream : sotw_) stream->finish(status);
  for (DeltaStream* stream : delta_) stream->finish(status);
}

void AdsServer::handleCommand(const std::string& line) {
  if (line.find_first_not_of(" \t\r") == std::string::npos) return;
  google::protobuf::Struct command;
  auto fail = [&](const std::string& why) {
    emit(R"({"event":"error","command":)" + jsonString(line) + R"(,"message":)" + jsonString(why) +
         "}");
  };
  auto parsed = google::protobuf::util::JsonStringToMessage(line, &command);
  if (!parsed.ok()) return fail(std::string(parsed.message()));
  std::string op = field(command, "op");
  std::string type_url = field(command, "type_url");
  std::string version = field(command, "version");
  if (op == "set" || op == "update") {
    std::vector<google::protobuf::Any> resources;
    auto list = command.fields().find("resources");
    if (list != command.fields().end()) {
      for (const google::protobuf::Value& value : list->second.list_value().values()) {
        std::string json;
        google::protobuf::Any any;
        // Through JSON again: Any's "@type" form is parsed against the
        // generated pool, where every Envoy type skiff knows is registered.
        if (!google::protobuf::util::MessageToJsonString(value, &json).ok()) {
          return fail("resource is not JSON");
        }
        auto status = google::protobuf::util::JsonStringToMessage(json, &any);
        if (!status.ok()) return fail(std::string(status.message()));
        resources.push_back(std::move(any));
      }
    }
    std::string error;
    if (op == "set") {
      error = set(type_url, version, std::move(resources));
    } else {
      std::vector<std::string> removed;
      auto names = command.fields().find("removed");
      if (names != command.fields().end()) {
        for (const google::protobuf::Value& value : names->second.list_value().values()) {
          removed.push_back(value.string_value());
        }
      }
      error = update(type_url, version, std::move(resources), removed);
    }
    if (!error.empty()) fail(error);
  } else if (op == "set_garbage") {
    setGarbage(type_url, version);
  } else if (op == "disconnect") {
    disconnectAll();
  } else if (op == "shutdown") {
    shutting_down_ = true;
    disconnectAll();
    if (shutdown_) shutdown_();
  } else {
    fail("unknown op " + jsonString(op));
  }
}

}  // namespace skiff::control_plane
