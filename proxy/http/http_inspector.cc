#include "proxy/http/http_inspector.h"

#include <llhttp.h>

#include <algorithm>
#include <array>

namespace skiff::http {

namespace {

// RFC 9113 section 3.4: a client that knows the server speaks HTTP/2 starts
// with this preface.
constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// The request methods the HTTP/1 codec (llhttp) accepts: a line with any
// other is no request it could serve.
#define SKIFF_METHOD_NAME(num, name, string) #string,
constexpr std::array kMethods = {HTTP_METHOD_MAP(SKIFF_METHOD_NAME)};
#undef SKIFF_METHOD_NAME

// Whether method, whole (complete) or so far, names a known method.
bool knownMethod(std::string_view method, bool complete) {
  return std::any_of(kMethods.begin(), kMethods.end(), [&](std::string_view m) {
    return complete ? m == method : m.starts_with(method);
  });
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// A request-target byte: anything visible (obs-text too), no space or
// control character.
bool isTargetByte(char c) {
  auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u != 0x7f;
}

}  // namespace

InspectedProtocol inspectHttpProtocol(std::string_view data) {
  if (data.empty()) return InspectedProtocol::kNeedMore;
  const size_t n = std::min(data.size(), kHttp2Preface.size());
  if (data.substr(0, n) == kHttp2Preface.substr(0, n)) {
    return n == kHttp2Preface.size() ? InspectedProtocol::kHttp2 : InspectedProtocol::kNeedMore;
  }
  // RFC 9112 section 3: request-line = method SP request-target SP
  // HTTP-version, ended by CRLF (a lone CR or LF ends it here, as for
  // Envoy's inspector; the codec is stricter later). Envoy's parser allows
  // more than one space between the parts, and so does this.
  size_t i = 0;
  while (i < data.size() && data[i] != ' ') {
    if (data[i] == '\r' || data[i] == '\n') return InspectedProtocol::kNotHttp;
    ++i;
  }
  if (!knownMethod(data.substr(0, i), /*complete=*/i < data.size())) {
    return InspectedProtocol::kNotHttp;
  }
  if (i == data.size()) return InspectedProtocol::kNeedMore;
  while (i < data.size() && data[i] == ' ') ++i;
  const size_t target = i;
  while (i < data.size() && isTargetByte(data[i])) ++i;
  if (i == data.size()) return InspectedProtocol::kNeedMore;
  if (i == target || data[i] != ' ') return InspectedProtocol::kNotHttp;
  while (i < data.size() && data[i] == ' ') ++i;
  // HTTP-version = "HTTP/" DIGIT "." DIGIT, then the line's end.
  constexpr std::string_view kName = "HTTP/";
  const std::string_view version = data.substr(i);
  for (size_t k = 0; k < version.size() && k < kName.size() + 4; ++k) {
    const char c = version[k];
    bool ok = k < kName.size()        ? c == kName[k]
              : k == kName.size() + 1 ? c == '.'
              : k < kName.size() + 3  ? isDigit(c)
                                      : c == '\r' || c == '\n';
    if (!ok) return InspectedProtocol::kNotHttp;
  }
  if (version.size() < kName.size() + 4) return InspectedProtocol::kNeedMore;
  return version.substr(kName.size(), 3) == "1.1" ? InspectedProtocol::kHttp11
                                                  : InspectedProtocol::kHttp10;
}

std::string_view applicationProtocolName(InspectedProtocol protocol) {
  switch (protocol) {
    case InspectedProtocol::kHttp10:
      return "http/1.0";
    case InspectedProtocol::kHttp11:
      return "http/1.1";
    case InspectedProtocol::kHttp2:
      return "h2c";
    default:
      return "";
  }
}

}  // namespace skiff::http
