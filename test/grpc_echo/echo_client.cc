// skiff_grpc_echo_client: the gRPC client of skiff's integration tests, built
// on Debian's libgrpc++, over h2c (an insecure channel).
//
//   skiff_grpc_echo_client --target 127.0.0.1:P --call unary|bidi
//       [--sizes 16,70000,...]  payload size of each request message (unary: the first)
//       [--replies N]           replies per request (bidi)
//       [--fail-code C] [--fail-message M]   the server ends the call with this status
//       [--sleep-ms T]          the server sleeps before each answer
//       [--deadline-ms D]       the call's deadline (0: none)
//       [--metadata k=v]...     request metadata
//       [--linger-ms L]         keep the channel open L ms after the call (so
//                               that a cancellation's RST_STREAM leaves
//                               before the process and its socket end)
//
// It prints one JSON line: the final status (code, name, message), the replies
// (index, size, the deadline the server saw), whether every reply carried its
// request's payload, and the server's initial and trailing metadata.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "skiff_test_echo.grpc.pb.h"

namespace {

using skiff::test::Echo;
using skiff::test::EchoReply;
using skiff::test::EchoRequest;

struct Options {
  std::string target;
  std::string call = "unary";
  std::vector<size_t> sizes{16};
  uint32_t replies = 1;
  int fail_code = 0;
  std::string fail_message;
  uint32_t sleep_ms = 0;
  long deadline_ms = 0;
  long linger_ms = 0;
  std::vector<std::pair<std::string, std::string>> metadata;
};

// Payload of request message i: a pattern that differs per message, so a
// reply carrying another message's payload is caught.
std::string payloadFor(size_t i, size_t size) {
  std::string out(size, '\0');
  for (size_t j = 0; j < size; ++j) out[j] = static_cast<char>((i * 7 + j) & 0xff);
  return out;
}

std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string jsonMetadata(const std::multimap<grpc::string_ref, grpc::string_ref>& md) {
  std::string out = "{";
  for (const auto& [k, v] : md) {
    std::string key(k.data(), k.size());
    if (key.ends_with("-bin")) continue;
    if (out.size() > 1) out += ", ";
    out += jsonString(key) + ": " + jsonString(std::string_view(v.data(), v.size()));
  }
  return out + "}";
}

const char* codeName(grpc::StatusCode code) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  int c = static_cast<int>(code);
  return c >= 0 && c <= 16 ? kNames[c] : "?";
}

EchoRequest makeRequest(const Options& o, size_t i) {
  EchoRequest req;
  req.set_payload(payloadFor(i, o.sizes[i]));
  req.set_reply_count(o.replies);
  req.set_fail_code(o.fail_code);
  req.set_fail_message(o.fail_message);
  req.set_sleep_ms(o.sleep_ms);
  return req;
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --target HOST:PORT [--call unary|bidi] [--sizes N,N,...] "
               "[--replies N] [--fail-code C] [--fail-message M] [--sleep-ms T] "
               "[--deadline-ms D] [--metadata k=v]... [--linger-ms L]\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) return usage(argv[0]);
    std::string value = argv[++i];
    if (arg == "--target") {
      o.target = value;
    } else if (arg == "--call" && (value == "unary" || value == "bidi")) {
      o.call = value;
    } else if (arg == "--sizes") {
      o.sizes.clear();
      for (size_t pos = 0; pos <= value.size();) {
        size_t comma = value.find(',', pos);
        if (comma == std::string::npos) comma = value.size();
        o.sizes.push_back(std::strtoull(value.substr(pos, comma - pos).c_str(), nullptr, 10));
        pos = comma + 1;
      }
    } else if (arg == "--replies") {
      o.replies = static_cast<uint32_t>(std::strtoul(value.c_str(), nullptr, 10));
    } else if (arg == "--fail-code") {
      o.fail_code = std::atoi(value.c_str());
    } else if (arg == "--fail-message") {
      o.fail_message = value;
    } else if (arg == "--sleep-ms") {
      o.sleep_ms = static_cast<uint32_t>(std::strtoul(value.c_str(), nullptr, 10));
    } else if (arg == "--deadline-ms") {
      o.deadline_ms = std::strtol(value.c_str(), nullptr, 10);
    } else if (arg == "--linger-ms") {
      o.linger_ms = std::strtol(value.c_str(), nullptr, 10);
    } else if (arg == "--metadata" && value.find('=') != std::string::npos) {
      o.metadata.emplace_back(value.substr(0, value.find('=')), value.substr(value.find('=') + 1));
    } else {
      return usage(argv[0]);
    }
  }
  if (o.target.empty() || o.sizes.empty()) return usage(argv[0]);

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);  // Straight to the target, whatever http_proxy says.
  auto channel = grpc::CreateCustomChannel(o.target, grpc::InsecureChannelCredentials(), args);
  auto stub = Echo::NewStub(channel);

  grpc::ClientContext ctx;
  if (o.deadline_ms > 0) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(o.deadline_ms));
  }
  for (const auto& [k, v] : o.metadata) ctx.AddMetadata(k, v);

  std::vector<EchoReply> replies;
  grpc::Status status;
  size_t requests_sent = 0;
  if (o.call == "unary") {
    EchoReply reply;
    status = stub->Unary(&ctx, makeRequest(o, 0), &reply);
    requests_sent = 1;
    if (status.ok()) replies.push_back(std::move(reply));
  } else {
    auto stream = stub->Bidi(&ctx);
    // Replies are read while requests are written: a client that wrote
    // everything first would stall once flow control windows fill.
    std::thread reader([&] {
      EchoReply reply;
      while (stream->Read(&reply)) replies.push_back(reply);
    });
    for (size_t i = 0; i < o.sizes.size(); ++i) {
      if (!stream->Write(makeRequest(o, i))) break;
      ++requests_sent;
    }
    stream->WritesDone();
    reader.join();
    status = stream->Finish();
  }

  // Every request got its replies, in order, with its own payload.
  bool payload_ok =
      status.ok() && replies.size() == requests_sent * std::max<uint32_t>(1, o.replies);
  for (size_t r = 0; payload_ok && r < replies.size(); ++r) {
    size_t request = r / std::max<uint32_t>(1, o.replies);
    if (o.call == "unary") request = 0;
    payload_ok = replies[r].payload() == payloadFor(request, o.sizes[request]);
  }

  std::string out = "{\"code\": " + std::to_string(static_cast<int>(status.error_code())) +
                    ", \"code_name\": " + jsonString(codeName(status.error_code())) +
                    ", \"message\": " + jsonString(status.error_message()) +
                    ", \"payload_ok\": " + (payload_ok ? "true" : "false") + ", \"replies\": [";
  for (size_t r = 0; r < replies.size(); ++r) {
    if (r) out += ", ";
    out += "{\"index\": " + std::to_string(replies[r].index()) +
           ", \"size\": " + std::to_string(replies[r].payload().size()) +
           ", \"deadline_ms\": " + std::to_string(replies[r].deadline_ms()) + "}";
  }
  out += "], \"initial_metadata\": " + jsonMetadata(ctx.GetServerInitialMetadata()) +
         ", \"trailing_metadata\": " + jsonMetadata(ctx.GetServerTrailingMetadata()) + "}";
  std::printf("%s\n", out.c_str());
  std::fflush(stdout);
  if (o.linger_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o.linger_ms));
  return 0;
}
