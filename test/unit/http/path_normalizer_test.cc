#include "proxy/http/path_normalizer.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace skiff::http {
namespace {

// The path after canonicalizePath, "<unchanged>" or "<failed>".
std::string canon(std::string_view path) {
  std::string out = "not written";
  switch (canonicalizePath(path, out)) {
    case PathRewrite::kUnchanged:
      EXPECT_EQ(out, "not written") << path;
      return "<unchanged>";
    case PathRewrite::kFailed:
      return "<failed>";
    case PathRewrite::kChanged:
      EXPECT_NE(out, path);
      return out;
  }
  return {};
}

TEST(PathNormalizer, DotSegments) {
  EXPECT_EQ(canon("/"), "<unchanged>");
  EXPECT_EQ(canon("/shop/cart/item.json"), "<unchanged>");
  EXPECT_EQ(canon("/shop/./cart"), "/shop/cart");
  EXPECT_EQ(canon("/shop/../admin"), "/admin");
  EXPECT_EQ(canon("/shop/cart/../../admin/x"), "/admin/x");
  EXPECT_EQ(canon("/../../admin"), "/admin");  // Never above the root.
  EXPECT_EQ(canon("/shop/.."), "/");
  EXPECT_EQ(canon("/shop/."), "/shop/");
  EXPECT_EQ(canon("/."), "/");
  EXPECT_EQ(canon("/shop//../x"), "/shop/x");  // ".." takes the empty segment.
  // Dots inside names are names.
  EXPECT_EQ(canon("/v1.2/..hidden/.env/a..b/..."), "<unchanged>");
  // "%2e" is a dot, in either case, alone or mixed.
  EXPECT_EQ(canon("/shop/%2e%2E/admin"), "/admin");
  EXPECT_EQ(canon("/shop/.%2e/admin"), "/admin");
  EXPECT_EQ(canon("/shop/%2e/cart"), "/shop/cart");
  EXPECT_EQ(canon("/v%2e1"), "/v.1");
}

TEST(PathNormalizer, BackslashesAreSlashes) {
  EXPECT_EQ(canon("/shop\\cart"), "/shop/cart");
  EXPECT_EQ(canon("/shop\\..\\admin"), "/admin");
  EXPECT_EQ(canon("/shop/..\\admin"), "/admin");
}

TEST(PathNormalizer, Escapes) {
  // Unreserved characters are decoded (hex digits in either case).
  EXPECT_EQ(canon("/%61dmin/%4B%7e%2d%5F%39"), "/admin/K~-_9");
  // Everything else keeps its escape as it came.
  EXPECT_EQ(canon("/a%2Fb%2fc%5Cd%5ce%20f%3Fg%25h%40"), "<unchanged>");
  // A '%' without two hex digits stays.
  EXPECT_EQ(canon("/a%zz/b%4/c%"), "<unchanged>");
  // An escaped NUL refuses the path, in either case of hex digit.
  EXPECT_EQ(canon("/a%00b"), "<failed>");
  // A '%' that decoding would turn into an escape becomes "%25".
  EXPECT_EQ(canon("/%%30%30"), "/%2500");
  EXPECT_EQ(canon("/x%%411"), "/x%25A1");
  EXPECT_EQ(canon("/x%%41"), "/x%A");  // Nothing follows: no escape can form.
}

TEST(PathNormalizer, RawCharactersAreEncoded) {
  EXPECT_EQ(canon("/a b"), "/a%20b");
  EXPECT_EQ(canon("/\"<>^`{|}"), "/%22%3C%3E%5E%60%7B%7C%7D");
  EXPECT_EQ(canon("/a#frag"), "/a%23frag");
  EXPECT_EQ(canon(std::string("/\x7f\x80\xff\t", 5)), "/%7F%80%FF%09");
  EXPECT_EQ(canon(std::string("/a\0b", 4)), "<failed>");
  // These stay raw.
  EXPECT_EQ(canon("/!$&'()*+,;=:@[]~_-"), "<unchanged>");
}

TEST(PathNormalizer, QueryIsKeptAsItCame) {
  EXPECT_EQ(canon("/a/../b?x=/../y&%41=%00"), "/b?x=/../y&%41=%00");
  EXPECT_EQ(canon("/b?x=/../y"), "<unchanged>");
  EXPECT_EQ(canon("/a%41?q"), "/aA?q");
}

// The scan that spares unchanged paths an allocation agrees with the rewrite:
// random paths over the characters that matter.
TEST(PathNormalizer, ScanAgreesWithRewrite) {
  const std::string alphabet = "/./.%2eE5cCfF0aA\\?4 1%";
  std::mt19937 rng(12345);
  for (int n = 0; n < 50000; ++n) {
    std::string path = "/";
    const int len = static_cast<int>(rng() % 12);
    for (int i = 0; i < len; ++i) path.push_back(alphabet[rng() % alphabet.size()]);
    std::string part = path.substr(0, path.find('?'));
    std::string rewritten;
    const bool ok = canonicalizePathPart(part, rewritten);
    std::string out;
    const PathRewrite r = canonicalizePath(path, out);
    if (!ok) {
      EXPECT_EQ(r, PathRewrite::kFailed) << path;
    } else if (rewritten == part) {
      EXPECT_EQ(r, PathRewrite::kUnchanged) << path;
    } else {
      ASSERT_EQ(r, PathRewrite::kChanged) << path;
      EXPECT_EQ(out, rewritten + path.substr(part.size())) << path;
    }
  }
}

std::string merged(std::string_view path) {
  std::string out;
  return mergeSlashes(path, out) == PathRewrite::kChanged ? out : "<unchanged>";
}

TEST(PathNormalizer, MergeSlashes) {
  EXPECT_EQ(merged("/a/b/"), "<unchanged>");
  EXPECT_EQ(merged("//a///b//c"), "/a/b/c");
  EXPECT_EQ(merged("/a//b//"), "/a/b/");
  EXPECT_EQ(merged("//a?x=//y"), "/a?x=//y");
  EXPECT_EQ(merged("/a?x=//y"), "<unchanged>");
  // Envoy's rule keeps a leading and a trailing slash apart: "//" and "///"
  // both end as "//".
  EXPECT_EQ(merged("//"), "<unchanged>");
  EXPECT_EQ(merged("///"), "//");
}

std::string unescaped(std::string_view path) {
  std::string out;
  return unescapeSlashes(path, out) == PathRewrite::kChanged ? out : "<unchanged>";
}

TEST(PathNormalizer, UnescapeSlashes) {
  EXPECT_EQ(unescaped("/a%2Fb%2fc%5Cd%5ce"), "/a/b/c\\d\\e");
  EXPECT_EQ(unescaped("/a%2F?x=%2F"), "/a/?x=%2F");
  EXPECT_EQ(unescaped("/a?x=%2F"), "<unchanged>");
  EXPECT_EQ(unescaped("/a%252F%2%41"), "<unchanged>");
  EXPECT_EQ(unescaped("/a%5%2FC"), "/a%5/C");
}

struct Normalized {
  PathVerdict verdict;
  std::string path;  // "<unchanged>" when not changed.
};

Normalized run(const PathNormalizationConfig& config, std::string_view path) {
  std::string out;
  bool changed = true;
  PathVerdict v = normalizeRequestPath(config, path, out, changed);
  return {v, changed ? out : "<unchanged>"};
}

TEST(PathNormalizer, EnvoysOrder) {
  PathNormalizationConfig all{true, true, EscapedSlashesAction::kUnescapeAndRedirect};
  // Decoded, then dot segments, then merged; redirected to the result.
  Normalized n = run(all, "/a%2F%2Fb/../c?q=1");
  EXPECT_EQ(n.verdict, PathVerdict::kRedirect);
  EXPECT_EQ(n.path, "/a/c?q=1");
  // No escaped slash: no redirect, though the path changes.
  n = run(all, "/a//b/../c");
  EXPECT_EQ(n.verdict, PathVerdict::kContinue);
  EXPECT_EQ(n.path, "/a/c");
  // merge_slashes runs after normalize_path: "/./" leaves a "//" to merge.
  n = run({true, true, EscapedSlashesAction::kKeepUnchanged}, "/a/.//b");
  EXPECT_EQ(n.path, "/a/b");
  n = run({true, false, EscapedSlashesAction::kKeepUnchanged}, "/a/.//b");
  EXPECT_EQ(n.path, "/a//b");
  // An escaped backslash is a separator only once decoded.
  EXPECT_EQ(run({true, false, EscapedSlashesAction::kUnescapeAndForward}, "/a/..%5Cb").path, "/b");
  EXPECT_EQ(run({true, false, EscapedSlashesAction::kKeepUnchanged}, "/a/..%5Cb").path,
            "<unchanged>");
}

TEST(PathNormalizer, EscapedSlashesActions) {
  PathNormalizationConfig reject{false, false, EscapedSlashesAction::kRejectRequest};
  EXPECT_EQ(run(reject, "/a%2fb").verdict, PathVerdict::kReject);
  EXPECT_EQ(run(reject, "/a%5Cb").verdict, PathVerdict::kReject);
  Normalized n = run(reject, "/a/b?x=%2F");  // The query is not the path.
  EXPECT_EQ(n.verdict, PathVerdict::kContinue);
  EXPECT_EQ(n.path, "<unchanged>");
  n = run({false, false, EscapedSlashesAction::kUnescapeAndForward}, "/a%2Fb");
  EXPECT_EQ(n.verdict, PathVerdict::kContinue);
  EXPECT_EQ(n.path, "/a/b");
  n = run({false, false, EscapedSlashesAction::kKeepUnchanged}, "/a%2Fb");
  EXPECT_EQ(n.path, "<unchanged>");
  // normalize_path refusing the path refuses the request.
  EXPECT_EQ(run({true, false, EscapedSlashesAction::kKeepUnchanged}, "/a%00").verdict,
            PathVerdict::kReject);
  // No origin-form path, nothing to do.
  EXPECT_EQ(run({true, true, EscapedSlashesAction::kRejectRequest}, "*").path, "<unchanged>");
}

}  // namespace
}  // namespace skiff::http
