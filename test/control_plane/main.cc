// skiff_control_plane [--port N] [--tls-cert F --tls-key F [--tls-client-ca F]]:
// the test ADS server (README.md in this folder), in plaintext or over TLS
// (with --tls-client-ca, mutual TLS: clients must present a certificate
// that CA signed). Commands arrive on stdin and events leave on stdout, one JSON
// object per line.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "test/control_plane/ads_server.h"

namespace {

std::string readFile(const char* path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  using skiff::control_plane::emit;
  using skiff::control_plane::jsonString;
  int port = 0;
  const char* cert = nullptr;
  const char* key = nullptr;
  const char* client_ca = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
      cert = argv[++i];
    } else if (std::strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
      key = argv[++i];
    } else if (std::strcmp(argv[i], "--tls-client-ca") == 0 && i + 1 < argc) {
      client_ca = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--port N] [--tls-cert F --tls-key F [--tls-client-ca F]]\n",
                   argv[0]);
      return 2;
    }
  }
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (cert != nullptr && key != nullptr) {
    grpc::SslServerCredentialsOptions options(
        client_ca != nullptr ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                             : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    options.pem_key_cert_pairs.push_back({readFile(key), readFile(cert)});
    if (client_ca != nullptr) options.pem_root_certs = readFile(client_ca);
    credentials = grpc::SslServerCredentials(options);
  }

  skiff::control_plane::AdsServer service;
  grpc::ServerBuilder builder;
  int bound_port = 0;
  // gRPC sets SO_REUSEADDR on its listeners, so a restarted control plane
  // can bind the port its predecessor just left. SO_REUSEPORT it would also
  // set is turned off: two control planes must not share a port by mistake.
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), credentials, &bound_port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(INT_MAX);
  builder.SetMaxSendMessageSize(INT_MAX);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    emit(R"({"event":"error","message":)" +
         jsonString("cannot listen on 127.0.0.1:" + std::to_string(port)) + "}");
    return 1;
  }

  // Shutdown: every stream is told to end; gRPC's Shutdown waits for the
  // calls (their reactions still run on the control thread), so it runs on
  // a thread of its own and ends the control loop when it returns.
  service.setShutdownHandler([&service, &server] {
    std::thread([&service, &server] {
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
      service.quit();
    }).detach();
  });
  std::thread([&service] {
    std::string line;
    while (std::getline(std::cin, line)) {
      service.post([&service, line] { service.handleCommand(line); });
    }
    // The test went away without a word: behave as if it said shutdown.
    service.post([&service] { service.handleCommand(R"({"op":"shutdown"})"); });
  }).detach();

  emit(R"({"event":"listening","port":)" + std::to_string(bound_port) + "}");
  service.run();
  emit(R"({"event":"exiting"})");
  // Detached threads (stdin) may still be blocked; leave without running
  // static destructors under them.
  std::fflush(stdout);
  std::_Exit(0);
}
