// A getaddrinfo() the integration tests preload (LD_PRELOAD) into skiff to
// decide when a DNS answer comes, so that what skiff does before its first
// resolution is seen without depending on timing:
//   gate.skiff.test  blocks until the file SKIFF_TEST_DNS_GATE names exists
//                    (at most 30 s), then resolves as localhost;
//   fail.skiff.test  fails at once (EAI_NONAME);
//   any other name   goes to the C library's getaddrinfo.
#include <dlfcn.h>
#include <netdb.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints,
                           addrinfo** res) {
  using Fn = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "getaddrinfo"));
  if (node != nullptr && std::strcmp(node, "fail.skiff.test") == 0) return EAI_NONAME;
  if (node != nullptr && std::strcmp(node, "gate.skiff.test") == 0) {
    const char* gate = std::getenv("SKIFF_TEST_DNS_GATE");
    for (int i = 0; gate != nullptr && i < 3000 && access(gate, F_OK) != 0; ++i) usleep(10000);
    if (gate == nullptr || access(gate, F_OK) != 0) return EAI_AGAIN;
    node = "localhost";
  }
  return real(node, service, hints, res);
}
