#include "filters/common/fractional_percent.h"

#include "envoy/type/v3/percent.pb.h"

namespace skiff::filters {

FractionalPercent FractionalPercent::from(const envoy::type::v3::FractionalPercent& proto) {
  FractionalPercent p;
  p.numerator = proto.numerator();
  switch (proto.denominator()) {
    case envoy::type::v3::FractionalPercent::TEN_THOUSAND:
      p.denominator = 10000;
      break;
    case envoy::type::v3::FractionalPercent::MILLION:
      p.denominator = 1000000;
      break;
    default:
      p.denominator = 100;
      break;
  }
  return p;
}

FractionalPercent FractionalPercent::cappedBy(std::optional<std::string_view> header) const {
  if (!header) return *this;
  std::optional<uint64_t> n = parseDecimal(*header);
  if (!n || *n > UINT32_MAX) return *this;
  return {std::min(static_cast<uint32_t>(*n), numerator), denominator};
}

std::optional<uint64_t> parseDecimal(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;  // 19 digits fit in 64 bits.
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

}  // namespace skiff::filters
