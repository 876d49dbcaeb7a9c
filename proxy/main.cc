// skiff's command line, following Envoy's flags:
//   skiff -c FILE [--concurrency N] [--log-level L] [--mode validate|serve]
//         [--drain-time-s S] [--admin-address-path FILE]
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

#include "proxy/common/log.h"
#include "proxy/server.h"

namespace {

void usage(std::ostream& out) {
  out << "usage: skiff -c FILE [--concurrency N] [--log-level "
         "trace|debug|info|warning|error|critical|off]\n"
         "             [--mode serve|validate] [--drain-time-s S] [--admin-address-path FILE]\n";
}

bool parseUint(std::string_view s, uint32_t& out) {
  if (s.empty() || s.size() > 9) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  skiff::ServerOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    // Accept both "--flag value" and "--flag=value".
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc && arg != "-h" && arg != "--help") {
      value = argv[i + 1];
      ++i;
    }
    if (arg == "-h" || arg == "--help") {
      usage(std::cout);
      return 0;
    }
    if (value.empty()) {
      std::cerr << "skiff: " << arg << " needs a value\n";
      usage(std::cerr);
      return 1;
    }
    if (arg == "-c" || arg == "--config-path") {
      options.config_path = value;
    } else if (arg == "--concurrency") {
      if (!parseUint(value, options.concurrency)) {
        std::cerr << "skiff: --concurrency: not a number: " << value << "\n";
        return 1;
      }
    } else if (arg == "-l" || arg == "--log-level") {
      skiff::log::Level level;
      if (!skiff::log::parseLevel(value, level)) {
        std::cerr << "skiff: --log-level: unknown level: " << value << "\n";
        return 1;
      }
      skiff::log::setLevel(level);
    } else if (arg == "--mode") {
      if (value == "validate") {
        options.validate_only = true;
      } else if (value != "serve") {
        std::cerr << "skiff: --mode: expected serve or validate, got " << value << "\n";
        return 1;
      }
    } else if (arg == "--drain-time-s") {
      if (!parseUint(value, options.drain_time_s)) {
        std::cerr << "skiff: --drain-time-s: not a number: " << value << "\n";
        return 1;
      }
    } else if (arg == "--admin-address-path") {
      options.admin_address_path = value;
    } else {
      std::cerr << "skiff: unknown flag " << arg << "\n";
      usage(std::cerr);
      return 1;
    }
  }
  if (options.config_path.empty()) {
    std::cerr << "skiff: -c FILE is required\n";
    usage(std::cerr);
    return 1;
  }
  skiff::Server server(options);
  return server.run();
}
