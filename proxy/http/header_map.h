// An ordered list of header fields whose bytes usually stay where the codec
// read them. Entries are string_views: into slabs that the map pins, into the
// map's own arena (for bytes that had to be copied or were made up), or into
// static storage. Request pseudo-headers follow HTTP/2 on every protocol:
// :method, :scheme, :authority (HTTP/1 Host), :path; responses carry :status.
//
// Names compare case-insensitively. Lookups are linear: a request has a few
// dozen fields at most, and a scan over adjacent views beats hashing them.
#pragma once

#include <cstdint>
#include <forward_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/buffer/buffer.h"

namespace skiff {

// ASCII case-insensitive comparison of n bytes (header names are tokens).
bool equalsIgnoreCaseSameSize(const char* a, const char* b, size_t n);
// Inline so that the common case, names of different lengths, costs a
// compare and no call (lookups and serialization compare every field).
inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && equalsIgnoreCaseSameSize(a.data(), b.data(), a.size());
}

class HeaderMap;
// Envoy's test for a gRPC request: content-type is application/grpc, or
// starts with application/grpc+ or application/grpc; (application/grpc+proto).
bool isGrpcRequest(const HeaderMap& request);

class HeaderMap {
 public:
  struct Entry {
    std::string_view name;
    std::string_view value;
  };

  HeaderMap() = default;
  HeaderMap(const HeaderMap&) = delete;
  HeaderMap& operator=(const HeaderMap&) = delete;

  // Keeps a slab alive for as long as the map, so views into it stay valid.
  void pin(const Slice& slice) { pins_.push_back(slice); }
  // Adds a field whose bytes outlive the map (a pinned slab, a literal).
  void addView(std::string_view name, std::string_view value) { entries_.push_back({name, value}); }
  // Adds a field by copying its bytes into the map's arena.
  void addCopy(std::string_view name, std::string_view value);
  // Replaces every field called name with one field (copied), or adds it.
  void set(std::string_view name, std::string_view value);
  // Removes every field called name; returns how many were removed.
  size_t remove(std::string_view name);

  // The first field called name, if any.
  std::optional<std::string_view> get(std::string_view name) const;
  bool has(std::string_view name) const { return get(name).has_value(); }
  // Stores bytes in the arena and returns a view of them.
  std::string_view intern(std::string_view bytes);

  const std::vector<Entry>& entries() const { return entries_; }
  std::vector<Entry>& mutableEntries() { return entries_; }
  size_t size() const { return entries_.size(); }

  // Shorthands for the pseudo-headers.
  std::string_view method() const { return get(":method").value_or(""); }
  std::string_view path() const { return get(":path").value_or(""); }
  std::string_view authority() const { return get(":authority").value_or(""); }
  std::string_view scheme() const { return get(":scheme").value_or(""); }
  int status() const;  // 0 when :status is missing or not a number.

 private:
  std::vector<Entry> entries_;
  std::vector<Slice> pins_;
  // A list, not a deque: it allocates nothing until used (libstdc++'s deque
  // allocates when constructed), and a node never moves, so views into a
  // short string's inline buffer stay valid.
  std::forward_list<std::string> arena_;
};

using HeaderMapPtr = std::unique_ptr<HeaderMap>;

}  // namespace skiff
