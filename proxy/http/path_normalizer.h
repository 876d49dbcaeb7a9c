// The HTTP connection manager's path normalization (Envoy's normalize_path,
// merge_slashes and path_with_escaped_slashes_action), applied to a
// request's :path before routing and before any filter sees it. Only the
// path part changes; a query ('?' and after) is kept byte for byte.
//
// normalize_path follows what Envoy does (its PathUtil::canonicalPath, a
// snapshot of Chromium's URL path canonicalizer), since RBAC and route rules
// written for Envoy assume exactly that path:
//   - dot segments go: "/a/./b" is "/a/b", "/a/../b" is "/b", and ".." never
//     climbs above the first slash ("/../a" is "/a");
//   - a percent-encoded unreserved character (RFC 3986 §2.3: ALPHA, DIGIT,
//     '-', '.', '_', '~') is decoded; "%2e" counts as a dot for the rule
//     above. Other escapes (%2F, %5C, %20, ...) stay as they came, with
//     their hex digits' case;
//   - a backslash is a slash;
//   - characters a path may not hold raw (controls, space, '"', '#', '<',
//     '>', '^', '`', '{', '|', '}', DEL and every byte of 0x80 and up) are
//     percent-encoded with uppercase hex digits;
//   - '%' not followed by two hex digits is kept as it is, and if decoding
//     the escapes right after it would make it look like a valid escape
//     ("%%30%30"), it becomes "%25";
//   - "%00" fails: the request is refused.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace skiff::http {

// path_with_escaped_slashes_action (IMPLEMENTATION_SPECIFIC_DEFAULT is
// Envoy's KEEP_UNCHANGED).
enum class EscapedSlashesAction : uint8_t {
  kKeepUnchanged,
  kRejectRequest,        // A path with %2F or %5C (any case) gets a 400.
  kUnescapeAndRedirect,  // ... gets a 307 to the path with them decoded.
  kUnescapeAndForward,   // ... goes on with them decoded.
};

// The HCM's options; all off is the default and costs a request one test.
struct PathNormalizationConfig {
  bool normalize_path = false;
  bool merge_slashes = false;
  EscapedSlashesAction escaped_slashes = EscapedSlashesAction::kKeepUnchanged;
  bool enabled() const {
    return normalize_path || merge_slashes ||
           escaped_slashes != EscapedSlashesAction::kKeepUnchanged;
  }
};

enum class PathRewrite : uint8_t {
  kUnchanged,  // The path is already in its normal form: out is untouched.
  kChanged,    // out holds the new path (query included).
  kFailed,     // The path cannot be normalized ("%00"): a 400.
};

// normalize_path on a :path starting with '/'. A path that needs no change is
// found by a scan that allocates nothing.
PathRewrite canonicalizePath(std::string_view path, std::string& out);

// The rewrite itself on a path part (no query), with no scan first: what
// canonicalizePath uses once its scan found work; tests compare the two.
// False when the path is refused.
bool canonicalizePathPart(std::string_view part, std::string& out);

// merge_slashes: runs of '/' in the path part become one.
PathRewrite mergeSlashes(std::string_view path, std::string& out);

// The escaped slashes actions' decoding: %2F/%2f become '/', %5C/%5c '\'.
PathRewrite unescapeSlashes(std::string_view path, std::string& out);

// What the connection manager does with a request after
// normalizeRequestPath (Envoy's ConnectionManagerUtility::maybeNormalizePath).
enum class PathVerdict : uint8_t {
  kContinue,  // Route it (with out as its path if changed).
  kReject,    // 400, details path_normalization_failed.
  kRedirect,  // 307 with location: out.
};

// The three steps in Envoy's order: the escaped slashes action, then
// normalize_path, then merge_slashes (after the decoding, so that "%2e"
// and backslashes cannot leave a "//" behind). changed says whether out
// holds a new path.
PathVerdict normalizeRequestPath(const PathNormalizationConfig& config, std::string_view path,
                                 std::string& out, bool& changed);

}  // namespace skiff::http
