#include "proxy/http/header_name.h"

#include <gtest/gtest.h>

#include <cctype>
#include <iterator>
#include <string>
#include <utility>

#include "proxy/http/header_map.h"
#include "proxy/http/http1/http1_codec.h"

namespace skiff {
namespace {

// Checks name against equalsIgnoreCase(·, lower) for the name in both cases,
// one byte longer or shorter, and every byte value at every position (so
// '\r' for '-', '@' for '`', '[' for '{' are told apart).
void expectMatchesLikeEqualsIgnoreCase(const HeaderName& name, std::string_view lower) {
  EXPECT_EQ(name.size(), lower.size()) << lower;
  EXPECT_TRUE(name.matches(lower)) << lower;
  std::string upper(lower);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_TRUE(name.matches(upper)) << upper;
  EXPECT_FALSE(name.matches(std::string(lower) + "x")) << lower;
  EXPECT_FALSE(name.matches(lower.substr(1))) << lower;
  for (size_t pos = 0; pos < lower.size(); ++pos) {
    std::string v(lower);
    for (int b = 0; b < 256; ++b) {
      v[pos] = static_cast<char>(b);
      ASSERT_EQ(name.matches(v), equalsIgnoreCase(v, lower))
          << lower << " byte " << b << " at " << pos;
    }
  }
}

TEST(HeaderName, MatchesWhatEqualsIgnoreCaseSays) {
  // Every size class: 2-byte words (2, 3 bytes), 4-byte words (4 to 7),
  // two 8-byte words (8 to 16), three (17 to 24).
  static constexpr HeaderName kNames[] = {HeaderName("te"),
                                          HeaderName("abc"),
                                          HeaderName("host"),
                                          HeaderName(":status"),
                                          HeaderName("x-custom"),
                                          HeaderName("content-length"),
                                          HeaderName("x-abcdefghijklmn"),
                                          HeaderName("transfer-encoding"),
                                          HeaderName("x-twenty-four-bytes-long")};
  const std::string_view literals[] = {"te",
                                       "abc",
                                       "host",
                                       ":status",
                                       "x-custom",
                                       "content-length",
                                       "x-abcdefghijklmn",
                                       "transfer-encoding",
                                       "x-twenty-four-bytes-long"};
  static_assert(std::size(kNames) == std::size(literals));
  for (size_t i = 0; i < std::size(literals); ++i) {
    expectMatchesLikeEqualsIgnoreCase(kNames[i], literals[i]);
  }
}

// Names longer than HeaderName's 24 bytes (Envoy's x-envoy-upstream-service-
// time and x-envoy-expected-rq-timeout-ms) are classified by a byte loop.
template <size_t I>
void expectWellKnownName() {
  if constexpr (kWellKnownHeaderNames[I].size() <= 24) {
    expectMatchesLikeEqualsIgnoreCase(kHeaderName<static_cast<WellKnownHeader>(I)>,
                                      kWellKnownHeaderNames[I]);
  }
}

template <size_t... I>
void expectEveryWellKnownName(std::index_sequence<I...>) {
  (expectWellKnownName<I>(), ...);
}

TEST(HeaderName, WellKnownPatternsMatchTheirNames) {
  expectEveryWellKnownName(std::make_index_sequence<kWellKnownHeaders>());
}

TEST(HeaderName, CodecConstantsAreTheWellKnownNames) {
  using namespace http::http1_detail;
  expectMatchesLikeEqualsIgnoreCase(kHostName, "host");
  expectMatchesLikeEqualsIgnoreCase(kUpgradeName, "upgrade");
  expectMatchesLikeEqualsIgnoreCase(kConnectionName, "connection");
  expectMatchesLikeEqualsIgnoreCase(kKeepAliveName, "keep-alive");
  expectMatchesLikeEqualsIgnoreCase(kContentLengthName, "content-length");
  expectMatchesLikeEqualsIgnoreCase(kProxyConnectionName, "proxy-connection");
  expectMatchesLikeEqualsIgnoreCase(kTransferEncodingName, "transfer-encoding");
}

}  // namespace
}  // namespace skiff
