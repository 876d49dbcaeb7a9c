#include "proxy/access_log/formatter.h"

#include <google/protobuf/struct.pb.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>

#include "proxy/common/json.h"

namespace skiff::access_log {

namespace {

// The command operators skiff implements. Each renders a string, a number,
// or nothing (missing: "-" in text, null in JSON).
enum class Op {
  kLiteral,
  kStartTime,
  kRequestHeader,
  kResponseHeader,
  kResponseTrailer,
  kProtocol,
  kResponseCode,
  kResponseFlags,
  kBytesReceived,
  kBytesSent,
  kDuration,
  kRequestDuration,
  kResponseDuration,
  kResponseTxDuration,
  kUpstreamHost,
  kUpstreamCluster,
  kUpstreamLocalAddress,
  kDownstreamRemoteAddress,
  kDownstreamRemoteAddressWithoutPort,
  kDownstreamLocalAddress,
  kDownstreamLocalAddressWithoutPort,
  kRequestedServerName,
  kRouteName,
  kHostname,
  kResponseCodeDetails,
  kConnectionTerminationDetails,
  kUpstreamTransportFailureReason,
};

enum class ArgRule { kNone, kRequired, kOptional };

struct OpSpec {
  std::string_view name;
  Op op;
  ArgRule arg;
  bool numeric;  // Typed as a number in JSON.
};

// Envoy's names; REQUEST_HEADER, RESPONSE_HEADER and RESPONSE_TRAILER are the
// newer spellings of REQ, RESP and TRAILER.
constexpr OpSpec kOps[] = {
    {"START_TIME", Op::kStartTime, ArgRule::kOptional, false},
    {"REQ", Op::kRequestHeader, ArgRule::kRequired, false},
    {"REQUEST_HEADER", Op::kRequestHeader, ArgRule::kRequired, false},
    {"RESP", Op::kResponseHeader, ArgRule::kRequired, false},
    {"RESPONSE_HEADER", Op::kResponseHeader, ArgRule::kRequired, false},
    {"TRAILER", Op::kResponseTrailer, ArgRule::kRequired, false},
    {"RESPONSE_TRAILER", Op::kResponseTrailer, ArgRule::kRequired, false},
    {"PROTOCOL", Op::kProtocol, ArgRule::kNone, false},
    {"RESPONSE_CODE", Op::kResponseCode, ArgRule::kNone, true},
    {"RESPONSE_FLAGS", Op::kResponseFlags, ArgRule::kNone, false},
    {"BYTES_RECEIVED", Op::kBytesReceived, ArgRule::kNone, true},
    {"BYTES_SENT", Op::kBytesSent, ArgRule::kNone, true},
    {"DURATION", Op::kDuration, ArgRule::kNone, true},
    {"REQUEST_DURATION", Op::kRequestDuration, ArgRule::kNone, true},
    {"RESPONSE_DURATION", Op::kResponseDuration, ArgRule::kNone, true},
    {"RESPONSE_TX_DURATION", Op::kResponseTxDuration, ArgRule::kNone, true},
    {"UPSTREAM_HOST", Op::kUpstreamHost, ArgRule::kNone, false},
    {"UPSTREAM_CLUSTER", Op::kUpstreamCluster, ArgRule::kNone, false},
    // Envoy's cluster name whatever alt_stat_name says; skiff has no
    // alt_stat_name, so both print the name.
    {"UPSTREAM_CLUSTER_RAW", Op::kUpstreamCluster, ArgRule::kNone, false},
    {"UPSTREAM_LOCAL_ADDRESS", Op::kUpstreamLocalAddress, ArgRule::kNone, false},
    {"DOWNSTREAM_REMOTE_ADDRESS", Op::kDownstreamRemoteAddress, ArgRule::kNone, false},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", Op::kDownstreamRemoteAddressWithoutPort,
     ArgRule::kNone, false},
    {"DOWNSTREAM_LOCAL_ADDRESS", Op::kDownstreamLocalAddress, ArgRule::kNone, false},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", Op::kDownstreamLocalAddressWithoutPort,
     ArgRule::kNone, false},
    {"REQUESTED_SERVER_NAME", Op::kRequestedServerName, ArgRule::kNone, false},
    {"ROUTE_NAME", Op::kRouteName, ArgRule::kNone, false},
    {"HOSTNAME", Op::kHostname, ArgRule::kNone, false},
    {"RESPONSE_CODE_DETAILS", Op::kResponseCodeDetails, ArgRule::kNone, false},
    {"CONNECTION_TERMINATION_DETAILS", Op::kConnectionTerminationDetails, ArgRule::kNone, false},
    {"UPSTREAM_TRANSPORT_FAILURE_REASON", Op::kUpstreamTransportFailureReason, ArgRule::kNone,
     false},
};

const OpSpec* findOp(std::string_view name) {
  for (const OpSpec& s : kOps) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string lowered(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view withoutPort(std::string_view address) {
  if (address.starts_with("[")) return address.substr(1, address.find(']') - 1);
  size_t colon = address.rfind(':');
  return colon == std::string_view::npos ? address : address.substr(0, colon);
}

void appendNumber(std::string& out, uint64_t n) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), n);
  out.append(buf, end);
}

// The first `digits` digits of a fraction of a second given in nanoseconds.
void appendFraction(std::string& out, int64_t frac, int digits) {
  char buf[9];
  int64_t v = frac;
  for (int i = 9; i > digits; --i) v /= 10;
  for (int i = digits - 1; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  out.append(buf, static_cast<size_t>(digits));
}

void appendStrftime(std::string& out, const std::string& spec, time_t secs) {
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[256];
  size_t len = strftime(buf, sizeof(buf), spec.c_str(), &tm);
  out.append(buf, len);
}

// The last START_TIME text made on this thread for a whole second: most lines
// of a second share it, and strftime and gmtime_r cost about 1,500
// instructions a line.
struct TimeCache {
  time_t secs = -1;
  std::string format;
  std::string text;
};
thread_local TimeCache t_time_cache;

// Whether a START_TIME format prints fractions of a second (then its text
// changes within a second, and is not cached).
bool hasSubsecond(std::string_view fmt) {
  for (size_t i = 0; i + 1 < fmt.size(); ++i) {
    if (fmt[i] != '%') continue;
    char n = fmt[i + 1];
    if (n == 'f' || (n >= '1' && n <= '9' && i + 2 < fmt.size() && fmt[i + 2] == 'f') ||
        (n == 'E' && i + 3 < fmt.size() && fmt[i + 3] == 'S')) {
      return true;
    }
    ++i;  // Skips the specifier's letter (%% too).
  }
  return false;
}

// Appends t (nanoseconds since the epoch) in UTC as fmt says: strftime's
// specifiers, plus Envoy's %f (nanoseconds, 9 digits), %1f..%9f (that many
// digits of the fraction), %E3S..%E9S (seconds with that many) and %s (seconds
// since the epoch). An empty fmt is Envoy's default, 2026-11-28T06:50:00.123Z.
void appendTime(std::string& out, const std::string& fmt, bool subsecond, int64_t t) {
  time_t secs = static_cast<time_t>(t / 1000000000);
  int64_t frac = t % 1000000000;
  TimeCache& cache = t_time_cache;
  if (fmt.empty() || !subsecond) {
    if (cache.secs != secs || cache.format != fmt) {
      cache.secs = secs;
      cache.format = fmt;
      cache.text.clear();
      if (fmt.empty()) {
        appendStrftime(cache.text, "%Y-%m-%dT%H:%M:%S", secs);
      } else {
        appendTime(cache.text, fmt, true, t);  // No fraction in it: the same all second.
      }
    }
    out += cache.text;
    if (fmt.empty()) {
      out += '.';
      appendFraction(out, frac, 3);
      out += 'Z';
    }
    return;
  }
  auto fraction = [&](int digits) {
    std::string s;
    appendFraction(s, frac, digits);
    return s;
  };
  std::string spec;
  {
    for (size_t i = 0; i < fmt.size(); ++i) {
      char c = fmt[i];
      if (c != '%' || i + 1 == fmt.size()) {
        spec += c;
        continue;
      }
      char n = fmt[i + 1];
      if (n == 'f') {
        spec += fraction(9);
        ++i;
      } else if (n >= '1' && n <= '9' && i + 2 < fmt.size() && fmt[i + 2] == 'f') {
        spec += fraction(n - '0');
        i += 2;
      } else if (n == 's') {
        spec += std::to_string(static_cast<int64_t>(secs));
        ++i;
      } else if (n == 'E' && i + 3 < fmt.size() && fmt[i + 2] >= '1' && fmt[i + 2] <= '9' &&
                 fmt[i + 3] == 'S') {
        spec += "%S." + fraction(fmt[i + 2] - '0');
        i += 3;
      } else {
        spec += c;
        spec += n;  // Any other specifier (%% too) is strftime's.
        ++i;
      }
    }
  }
  appendStrftime(out, spec, secs);
}

std::string hostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "";
  return buf;
}

}  // namespace

// One piece of a format: a literal, or an operator with its arguments.
struct Piece {
  Op op = Op::kLiteral;
  bool numeric = false;
  bool subsecond = false;  // START_TIME: the format prints fractions of a second.
  std::string text;        // Literal text; header name; START_TIME's format; HOSTNAME's value.
  std::string alt;         // The header tried when `text` is absent (REQ(A?B)).
  // The headers' classes, found once here rather than at each lookup.
  WellKnownHeader known = WellKnownHeader::kCount;
  WellKnownHeader alt_known = WellKnownHeader::kCount;
  size_t max_length = std::string::npos;
};

struct Formatter::Node {
  enum class Kind { kPieces, kObject, kList, kJsonLiteral };
  Kind kind = Kind::kPieces;
  std::vector<Piece> pieces;
  std::vector<std::pair<std::string, std::unique_ptr<Node>>> members;
  std::vector<std::unique_ptr<Node>> items;
  std::string json;  // kJsonLiteral: a number, true, false or null.
};

namespace {

// Parses a format string into pieces; error says what is wrong where.
bool parsePieces(std::string_view format, std::vector<Piece>& out, std::string& error) {
  std::string literal;
  auto flushLiteral = [&] {
    if (literal.empty()) return;
    Piece p;
    p.text = std::move(literal);
    out.push_back(std::move(p));
    literal.clear();
  };
  size_t i = 0;
  while (i < format.size()) {
    char c = format[i];
    if (c != '%') {
      literal += c;
      ++i;
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '%') {
      literal += '%';
      i += 2;
      continue;
    }
    // %NAME%, %NAME(ARG)%, either followed by :LENGTH before the closing %.
    size_t at = i;
    size_t j = i + 1;
    while (j < format.size() && ((format[j] >= 'A' && format[j] <= 'Z') ||
                                 (format[j] >= '0' && format[j] <= '9') || format[j] == '_')) {
      ++j;
    }
    std::string_view name = format.substr(i + 1, j - i - 1);
    bool has_arg = false;
    std::string_view arg;
    if (j < format.size() && format[j] == '(') {
      size_t close = format.find(')', j);
      if (close == std::string_view::npos) {
        error = "command operator at position " + std::to_string(at) + " has no closing ')'";
        return false;
      }
      has_arg = true;
      arg = format.substr(j + 1, close - j - 1);
      j = close + 1;
    }
    size_t max_length = std::string::npos;
    if (j < format.size() && format[j] == ':') {
      size_t k = j + 1;
      while (k < format.size() && format[k] >= '0' && format[k] <= '9') ++k;
      size_t len = 0;
      auto [p, ec] = std::from_chars(format.data() + j + 1, format.data() + k, len);
      if (k == j + 1 || ec != std::errc()) {
        error = "command operator at position " + std::to_string(at) +
                " has an invalid length after ':'";
        return false;
      }
      max_length = len;
      j = k;
    }
    if (name.empty() || j >= format.size() || format[j] != '%') {
      error = "'%' at position " + std::to_string(at) +
              " does not start a command operator (write %% for a literal %)";
      return false;
    }
    const OpSpec* spec = findOp(name);
    if (!spec) {
      error = "command operator %" + std::string(name) + "% is not supported";
      return false;
    }
    if (spec->arg == ArgRule::kNone && has_arg) {
      error = "command operator %" + std::string(name) + "% takes no argument";
      return false;
    }
    if (spec->arg == ArgRule::kRequired && (!has_arg || arg.empty())) {
      error = "command operator %" + std::string(name) + "% needs a header name: %" +
              std::string(name) + "(NAME)%";
      return false;
    }
    Piece p;
    p.op = spec->op;
    p.numeric = spec->numeric;
    p.max_length = max_length;
    if (spec->arg == ArgRule::kRequired) {
      size_t q = arg.find('?');
      p.text = lowered(arg.substr(0, q));
      if (q != std::string_view::npos) {
        p.alt = lowered(arg.substr(q + 1));
        if (p.text.empty() || p.alt.empty() || p.alt.find('?') != std::string::npos) {
          error = "command operator %" + std::string(name) + "(" + std::string(arg) +
                  ")% must name one header, or two as A?B";
          return false;
        }
        p.alt_known = classifyHeaderName(p.alt);
      }
      p.known = classifyHeaderName(p.text);
    } else if (spec->op == Op::kStartTime) {
      p.text = std::string(arg);
      p.subsecond = hasSubsecond(arg);
    } else if (spec->op == Op::kHostname) {
      p.text = hostName();
    }
    flushLiteral();
    out.push_back(std::move(p));
    i = j + 1;
  }
  flushLiteral();
  return true;
}

std::string_view protocolOrEmpty(const LogContext& c) { return c.protocol; }

// Appends s with each space as '_', as Envoy prints details that may hold
// spaces; false when s is empty.
bool appendWithoutSpaces(std::string_view s, std::string& out) {
  if (s.empty()) return false;
  size_t at = out.size();
  out.append(s);
  std::replace(out.begin() + static_cast<std::ptrdiff_t>(at), out.end(), ' ', '_');
  return true;
}

// %RESPONSE_CODE_DETAILS%. A failure before the upstream's response that
// has a transport failure reason reads as Envoy's does:
// upstream_reset_before_response_started{reason|transport failure reason}.
bool appendDetails(const StreamRecord& r, std::string& out) {
  std::string_view d = r.response_code_details;
  if (d.empty()) return false;
  constexpr std::string_view kBeforeStarted = "upstream_reset_before_response_started{";
  if (r.upstream_transport_failure_reason.empty() || !d.starts_with(kBeforeStarted)) {
    out.append(d);
    return true;
  }
  out.append(d.substr(0, d.size() - 1));  // Without its closing brace.
  out += '|';
  appendWithoutSpaces(r.upstream_transport_failure_reason, out);
  out += '}';
  return true;
}

// Appends p's value; false when it has none (nothing appended).
bool appendValue(const Piece& p, const LogContext& c, std::string& out) {
  const StreamRecord* r = c.record;
  auto view = [&](std::string_view v) {
    if (v.empty()) return false;
    out.append(v);
    return true;
  };
  auto lookup = [](const HeaderMap& h, WellKnownHeader known, const std::string& name) {
    return known != WellKnownHeader::kCount ? h.get(known) : h.get(name);
  };
  auto header = [&](const HeaderMap* h) {
    if (!h) return false;
    auto v = lookup(*h, p.known, p.text);
    if (!v && !p.alt.empty()) v = lookup(*h, p.alt_known, p.alt);
    return v ? view(*v) : false;
  };
  auto since = [&](uint64_t from, uint64_t to) {
    if (from == 0 || to == 0 || to < from) return false;
    appendNumber(out, (to - from) / 1000000);
    return true;
  };
  switch (p.op) {
    case Op::kLiteral:
      out.append(p.text);
      return true;
    case Op::kStartTime:
      if (!r) return false;
      appendTime(out, p.text, p.subsecond, r->start_unix_ns);
      return true;
    case Op::kRequestHeader:
      return header(c.request_headers);
    case Op::kResponseHeader:
      return header(c.response_headers);
    case Op::kResponseTrailer:
      return header(r ? r->response_trailers.get() : nullptr);
    case Op::kProtocol:
      return view(protocolOrEmpty(c));
    case Op::kResponseCode:
      appendNumber(out, c.response_code);  // Envoy prints 0 when nothing was sent.
      return true;
    case Op::kResponseFlags:
      return view(c.response_flags);
    case Op::kBytesReceived:
      appendNumber(out, r ? r->bytes_received : 0);
      return true;
    case Op::kBytesSent:
      appendNumber(out, r ? r->bytes_sent : 0);
      return true;
    case Op::kDuration:
      return r && since(r->start_ns, c.end_ns);
    case Op::kRequestDuration:
      return r && since(r->start_ns, r->request_end_ns);
    case Op::kResponseDuration:
      return r && since(r->start_ns, r->upstream_first_byte_ns);
    case Op::kResponseTxDuration:
      return r && since(r->upstream_first_byte_ns, r->response_end_ns);
    case Op::kUpstreamHost:
      return r && view(r->upstream_host);
    case Op::kUpstreamCluster:
      return r && view(r->upstream_cluster);
    case Op::kUpstreamLocalAddress:
      return r && view(r->upstream_local_address);
    case Op::kDownstreamRemoteAddress:
      return view(c.downstream_remote_address);
    case Op::kDownstreamRemoteAddressWithoutPort:
      return view(withoutPort(c.downstream_remote_address));
    case Op::kDownstreamLocalAddress:
      return view(c.downstream_local_address);
    case Op::kDownstreamLocalAddressWithoutPort:
      return view(withoutPort(c.downstream_local_address));
    case Op::kRequestedServerName:
      return view(c.requested_server_name);
    case Op::kRouteName:
      return view(c.route_name);
    case Op::kHostname:
      return view(p.text);
    case Op::kResponseCodeDetails:
      return r && appendDetails(*r, out);
    case Op::kConnectionTerminationDetails:
      // Envoy's network filters (RBAC, ext_authz, ...) set these when they
      // close a connection; skiff has none, so there are never any.
      return false;
    case Op::kUpstreamTransportFailureReason:
      return r && appendWithoutSpaces(r->upstream_transport_failure_reason, out);
  }
  return false;
}

// Appends p's value, truncated to its :LENGTH; false when it has none.
bool appendPiece(const Piece& p, const LogContext& c, std::string& out) {
  size_t before = out.size();
  if (!appendValue(p, c, out)) return false;
  if (p.max_length != std::string::npos && out.size() - before > p.max_length) {
    out.resize(before + p.max_length);
  }
  return true;
}

// The pieces as one string: a missing value is "-", or nothing with
// omit_empty_values (Envoy's rule).
void appendText(const std::vector<Piece>& pieces, const LogContext& c, bool omit_empty,
                std::string& out) {
  for (const Piece& p : pieces) {
    if (!appendPiece(p, c, out) && !omit_empty) out += '-';
  }
}

bool uses(const std::vector<Piece>& pieces, Op a, Op b) {
  return std::any_of(pieces.begin(), pieces.end(),
                     [&](const Piece& p) { return p.op == a || p.op == b; });
}

std::string jsonNumber(double v) {
  if (std::isfinite(v) && v == std::trunc(v) && std::fabs(v) < 9.007199254740992e15) {
    return std::to_string(static_cast<int64_t>(v));
  }
  char buf[32];
  int n = snprintf(buf, sizeof(buf), "%.17g", v);
  return std::string(buf, static_cast<size_t>(n));
}

using Node = Formatter::Node;

Result<std::unique_ptr<Node>> fromValue(const google::protobuf::Value& v, const std::string& where);

Result<std::unique_ptr<Node>> fromStruct(const google::protobuf::Struct& s,
                                         const std::string& where) {
  auto node = std::make_unique<Node>();
  node->kind = Node::Kind::kObject;
  std::vector<std::string> keys;
  for (const auto& [k, v] : s.fields()) keys.push_back(k);
  std::sort(keys.begin(), keys.end());  // A map has no order; print a stable one.
  for (const std::string& k : keys) {
    auto child = fromValue(s.fields().at(k), where + "." + k);
    if (!child) return child.status();
    node->members.emplace_back(k, std::move(*child));
  }
  return node;
}

Result<std::unique_ptr<Node>> fromValue(const google::protobuf::Value& v,
                                        const std::string& where) {
  auto node = std::make_unique<Node>();
  switch (v.kind_case()) {
    case google::protobuf::Value::kStringValue: {
      std::string error;
      if (!parsePieces(v.string_value(), node->pieces, error)) {
        return configError(where + ": " + error);
      }
      return node;
    }
    case google::protobuf::Value::kStructValue:
      return fromStruct(v.struct_value(), where);
    case google::protobuf::Value::kListValue:
      node->kind = Node::Kind::kList;
      for (int i = 0; i < v.list_value().values_size(); ++i) {
        auto child = fromValue(v.list_value().values(i), where + "[" + std::to_string(i) + "]");
        if (!child) return child.status();
        node->items.push_back(std::move(*child));
      }
      return node;
    case google::protobuf::Value::kNumberValue:
      node->kind = Node::Kind::kJsonLiteral;
      node->json = jsonNumber(v.number_value());
      return node;
    case google::protobuf::Value::kBoolValue:
      node->kind = Node::Kind::kJsonLiteral;
      node->json = v.bool_value() ? "true" : "false";
      return node;
    default:
      node->kind = Node::Kind::kJsonLiteral;
      node->json = "null";
      return node;
  }
}

void scanUses(const Node& n, bool& downstream_local, bool& upstream_local) {
  downstream_local = downstream_local || uses(n.pieces, Op::kDownstreamLocalAddress,
                                              Op::kDownstreamLocalAddressWithoutPort);
  upstream_local =
      upstream_local || uses(n.pieces, Op::kUpstreamLocalAddress, Op::kUpstreamLocalAddress);
  for (const auto& [k, child] : n.members) scanUses(*child, downstream_local, upstream_local);
  for (const auto& child : n.items) scanUses(*child, downstream_local, upstream_local);
}

// Appends n as JSON; false when omit_empty drops it (nothing appended).
bool appendJson(const Node& n, const LogContext& c, bool omit_empty, std::string& out) {
  switch (n.kind) {
    case Node::Kind::kJsonLiteral:
      out += n.json;
      return true;
    case Node::Kind::kObject: {
      out += '{';
      bool first = true;
      for (const auto& [key, child] : n.members) {
        size_t mark = out.size();
        if (!first) out += ',';
        appendJsonString(out, key);
        out += ':';
        if (appendJson(*child, c, omit_empty, out)) {
          first = false;
        } else {
          out.resize(mark);
        }
      }
      out += '}';
      return true;
    }
    case Node::Kind::kList: {
      out += '[';
      bool first = true;
      for (const auto& child : n.items) {
        size_t mark = out.size();
        if (!first) out += ',';
        if (appendJson(*child, c, omit_empty, out)) {
          first = false;
        } else {
          out.resize(mark);
        }
      }
      out += ']';
      return true;
    }
    case Node::Kind::kPieces:
      break;
  }
  // A value that is one operator keeps the operator's type, as Envoy's
  // json_format does: a number, or null when it has no value.
  if (n.pieces.size() == 1 && n.pieces[0].op != Op::kLiteral) {
    const Piece& p = n.pieces[0];
    std::string value;
    if (!appendPiece(p, c, value)) {
      if (omit_empty) return false;
      out += "null";
      return true;
    }
    if (value.empty() && omit_empty) return false;
    if (p.numeric) {
      out += value;
    } else {
      appendJsonString(out, value);
    }
    return true;
  }
  std::string value;
  appendText(n.pieces, c, omit_empty, value);
  if (value.empty() && omit_empty) return false;
  appendJsonString(out, value);
  return true;
}

}  // namespace

Formatter::Formatter() = default;
Formatter::~Formatter() = default;

Result<std::unique_ptr<Formatter>> Formatter::text(std::string_view format,
                                                   bool omit_empty_values) {
  std::unique_ptr<Formatter> f(new Formatter());
  f->root_ = std::make_unique<Node>();
  f->omit_empty_ = omit_empty_values;
  std::string error;
  if (!parsePieces(format, f->root_->pieces, error)) return configError(error);
  scanUses(*f->root_, f->uses_downstream_local_, f->uses_upstream_local_);
  return f;
}

Result<std::unique_ptr<Formatter>> Formatter::json(const google::protobuf::Struct& format,
                                                   bool omit_empty_values) {
  std::unique_ptr<Formatter> f(new Formatter());
  auto root = fromStruct(format, "json_format");
  if (!root) return root.status();
  f->root_ = std::move(*root);
  f->json_ = true;
  f->omit_empty_ = omit_empty_values;
  scanUses(*f->root_, f->uses_downstream_local_, f->uses_upstream_local_);
  return f;
}

void Formatter::format(const LogContext& context, std::string& out) const {
  if (json_) {
    appendJson(*root_, context, omit_empty_, out);
    out += '\n';  // One object per line, as Envoy writes them.
    return;
  }
  appendText(root_->pieces, context, omit_empty_, out);
}

}  // namespace skiff::access_log
