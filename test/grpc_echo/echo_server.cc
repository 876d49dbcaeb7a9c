// skiff_grpc_echo_server: the gRPC server of skiff's integration tests, built
// on Debian's libgrpc++ (an implementation skiff did not write).
//
//   skiff_grpc_echo_server --port N     (0: any free port on 127.0.0.1)
//
// Once it listens it prints one JSON line, {"port": P}, and serves until it is
// killed. Each request says what to do (skiff_test_echo.proto): echo its
// payload reply_count times, fail with a status, or sleep first.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "skiff_test_echo.grpc.pb.h"

namespace {

using skiff::test::Echo;
using skiff::test::EchoReply;
using skiff::test::EchoRequest;

// Milliseconds left before the call's deadline, or -1 for a call without one.
int64_t deadlineMs(const grpc::ServerContext& ctx) {
  auto deadline = ctx.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return -1;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::system_clock::now());
  return std::max<int64_t>(0, left.count());
}

// Sleeps ms in short steps, so that a call cancelled meanwhile (the client's
// deadline passed, or skiff reset the stream) frees its thread early. False
// when the call was cancelled.
bool sleepUnlessCancelled(grpc::ServerContext& ctx, uint32_t ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until) {
    if (ctx.IsCancelled()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return !ctx.IsCancelled();
}

class EchoService final : public Echo::Service {
 public:
  grpc::Status Unary(grpc::ServerContext* ctx, const EchoRequest* req, EchoReply* reply) override {
    ctx->AddInitialMetadata("x-echo-server", "grpc-echo");
    ctx->AddTrailingMetadata("x-echo-trailer", "unary");
    int64_t deadline = deadlineMs(*ctx);
    if (!sleepUnlessCancelled(*ctx, req->sleep_ms())) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while sleeping");
    }
    if (req->fail_code() != 0) {
      return grpc::Status(static_cast<grpc::StatusCode>(req->fail_code()), req->fail_message());
    }
    reply->set_payload(req->payload());
    reply->set_index(0);
    reply->set_deadline_ms(deadline);
    return grpc::Status::OK;
  }

  grpc::Status Bidi(grpc::ServerContext* ctx,
                    grpc::ServerReaderWriter<EchoReply, EchoRequest>* stream) override {
    ctx->AddInitialMetadata("x-echo-server", "grpc-echo");
    ctx->AddTrailingMetadata("x-echo-trailer", "bidi");
    EchoRequest req;
    while (stream->Read(&req)) {
      int64_t deadline = deadlineMs(*ctx);
      if (!sleepUnlessCancelled(*ctx, req.sleep_ms())) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while sleeping");
      }
      if (req.fail_code() != 0) {
        return grpc::Status(static_cast<grpc::StatusCode>(req.fail_code()), req.fail_message());
      }
      uint32_t count = std::max<uint32_t>(1, req.reply_count());
      EchoReply reply;
      reply.set_payload(req.payload());
      reply.set_deadline_ms(deadline);
      for (uint32_t i = 0; i < count; ++i) {
        reply.set_index(i);
        if (!stream->Write(reply)) {
          return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
        }
      }
    }
    return grpc::Status::OK;
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string port = "0";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
      return 2;
    }
  }
  EchoService service;
  grpc::ServerBuilder builder;
  int selected = 0;
  builder.AddListeningPort("127.0.0.1:" + port, grpc::InsecureServerCredentials(), &selected);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || selected == 0) {
    std::fprintf(stderr, "cannot listen on 127.0.0.1:%s\n", port.c_str());
    return 1;
  }
  std::printf("{\"port\": %d}\n", selected);
  std::fflush(stdout);
  server->Wait();
  return 0;
}
