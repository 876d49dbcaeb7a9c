// One bidirectional gRPC call over skiff's own HTTP/2 client, on a worker's
// loop (DESIGN.md, "xDS": no gRPC runtime, no second event loop). The call
// takes a stream from a static cluster's pool exactly as the router does, and
// speaks gRPC's framing on it (gRPC over HTTP/2, PROTOCOL-HTTP2.md):
//
//   request   HEADERS  :method POST, :scheme, :path /<service>/<method>,
//                      :authority <cluster>, content-type application/grpc,
//                      te trailers, user-agent skiff
//             DATA*    messages: 1 byte compressed flag (0), 4 bytes length
//                      (big-endian), then the message; one message may span
//                      DATA frames and one frame may hold several messages
//   response  HEADERS  :status 200, content-type application/grpc
//             DATA*    messages, framed the same way
//             HEADERS  trailers: grpc-status, grpc-message (percent-encoded)
//
// A trailers-only response (one HEADERS with END_STREAM and grpc-status)
// and a non-200 :status also end the call. Nothing is compressed: a message
// with the compressed flag set ends the call with INTERNAL.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/worker/worker.h"

namespace skiff::xds {

class GrpcCall;

// gRPC status codes (grpc/doc/statuscodes.md) that skiff produces itself.
namespace grpc_status {
inline constexpr int kOk = 0;
inline constexpr int kUnknown = 2;
inline constexpr int kInvalidArgument = 3;
inline constexpr int kResourceExhausted = 8;
inline constexpr int kInternal = 13;
inline constexpr int kUnavailable = 14;
}  // namespace grpc_status

class GrpcStream {
 public:
  static constexpr size_t kDefaultMaxMessageBytes = 100 * 1024 * 1024;

  // Called on the worker's loop. A callback may destroy the GrpcStream (and
  // start a new one): the call's state lives on until the end of the loop
  // iteration (Worker::deferDelete), and nothing arrives after destruction.
  class Callbacks {
   public:
    virtual ~Callbacks() = default;
    // The HTTP/2 stream is open on a connection to a host and the request
    // headers are sent (the server may not have answered yet). Messages
    // passed to send() before this leave now. May be called from inside
    // start(), when the pool has a connection ready.
    virtual void onStreamReady() = 0;
    // One whole message.
    virtual void onReceiveMessage(std::string_view bytes) = 0;
    // The call is over: the trailers' grpc-status and grpc-message, or 14
    // UNAVAILABLE with a message saying why (no such cluster, no host,
    // connect failure, reset, GOAWAY, connection closed), or 13 INTERNAL /
    // 8 RESOURCE_EXHAUSTED for a response skiff will not read. Called at
    // most once, never from inside start().
    virtual void onRemoteClose(int grpc_status, std::string_view message) = 0;
  };

  // cluster_name: a cluster of worker's ClusterManager; path: the method,
  // "/package.Service/Method". Messages above max_message_bytes end the call.
  GrpcStream(Worker& worker, std::string cluster_name, std::string path, Callbacks& callbacks,
             size_t max_message_bytes = kDefaultMaxMessageBytes);
  // Resets a call still open; no callback follows. Destroy every GrpcStream
  // before the worker's shutdown(): the call holds a host of its pool.
  ~GrpcStream();
  GrpcStream(const GrpcStream&) = delete;
  GrpcStream& operator=(const GrpcStream&) = delete;

  // Starts the call, once. Asynchronous: every failure arrives as
  // onRemoteClose.
  void start();
  // Sends one message (framed here). Queued until the stream exists;
  // dropped once the call is over.
  void send(std::string_view message);

 private:
  Worker& worker_;
  std::unique_ptr<GrpcCall> call_;
};

}  // namespace skiff::xds
