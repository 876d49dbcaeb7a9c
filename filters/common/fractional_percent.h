// Envoy's FractionalPercent (envoy.type.v3.FractionalPercent) as a sampler:
// a request is in the fraction when a random number modulo the denominator
// is below the numerator, as Envoy's runtime featureEnabled decides it. skiff
// has no runtime, so a RuntimeFractionalPercent is its default_value alone.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>

namespace envoy::type::v3 {
class FractionalPercent;
}

namespace skiff::filters {

struct FractionalPercent {
  uint32_t numerator = 0;
  uint32_t denominator = 100;  // 100, 10,000 or 1,000,000

  static FractionalPercent from(const envoy::type::v3::FractionalPercent& proto);

  // Whether a request drawn with this random number is in the fraction. A
  // numerator above the denominator takes every request.
  bool sample(uint64_t random) const { return random % denominator < numerator; }

  // Envoy's x-envoy-fault-*-percentage headers: the header's numerator over
  // this denominator, never above this numerator; an absent or unparsable
  // header leaves this one.
  FractionalPercent cappedBy(std::optional<std::string_view> header) const;
};

// An unsigned decimal (Envoy's SimpleAtoi on an untrusted header: the whole
// value, digits only, no overflow); nullopt otherwise.
std::optional<uint64_t> parseDecimal(std::string_view s);

}  // namespace skiff::filters
