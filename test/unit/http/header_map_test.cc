#include "proxy/http/header_map.h"

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <vector>

namespace skiff {
namespace {

TEST(HeaderMap, NamesCompareCaseInsensitively) {
  EXPECT_TRUE(equalsIgnoreCase("Content-Length", "content-length"));
  EXPECT_FALSE(equalsIgnoreCase("content-length", "content-lengt"));
  EXPECT_FALSE(equalsIgnoreCase("a-b", "a_b"));
  // Only letters fold: '@' (0x40) and '`' (0x60) differ by the case bit.
  EXPECT_FALSE(equalsIgnoreCase("@", "`"));
  HeaderMap h;
  h.addView("Host", "a");
  EXPECT_EQ(h.get("host"), "a");
  EXPECT_FALSE(h.get("hos").has_value());
}

TEST(HeaderMap, GrowsPastItsInlineEntriesInOrder) {
  HeaderMap h;
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) names.push_back("x-field-" + std::to_string(i));
  for (const auto& n : names) h.addView(n, "v");
  ASSERT_EQ(h.size(), 40u);
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(h.entries()[i].name, names[i]);
  EXPECT_EQ(h.get("X-FIELD-39"), "v");
}

TEST(HeaderMap, InternedBytesStayPutWhateverFollows) {
  HeaderMap h;
  std::vector<std::string_view> views;
  std::vector<std::string> want;
  // Small ones fill the inline arena, then blocks; one is larger than a block.
  for (int i = 0; i < 200; ++i)
    want.push_back(std::string(static_cast<size_t>(i % 37), 'a' + i % 26));
  want.push_back(std::string(5000, 'z'));
  for (const auto& w : want) views.push_back(h.intern(w));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(views[i], want[i]);
}

TEST(HeaderMap, CopiesOutliveTheirSource) {
  HeaderMap h;
  {
    std::string name = "x-request-id";
    std::string value = "0b2d7c4e-7b5a-4d39-9a57-3f61e2d0c0aa";
    h.addCopy(name, value);
    name.assign(name.size(), '?');
    value.assign(value.size(), '?');
  }
  EXPECT_EQ(h.get("x-request-id"), "0b2d7c4e-7b5a-4d39-9a57-3f61e2d0c0aa");
}

TEST(HeaderMap, SetReplacesTheFirstAndDropsDuplicates) {
  HeaderMap h;
  h.addView("a", "1");
  h.addView("x-forwarded-for", "1.1.1.1");
  h.addView("b", "2");
  h.addView("X-Forwarded-For", "2.2.2.2");
  h.set("x-forwarded-for", "3.3.3.3");
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h.entries()[1].value, "3.3.3.3");
  EXPECT_EQ(h.entries()[2].name, "b");
  h.set("new", "n");
  EXPECT_EQ(h.entries()[3].name, "new");
}

TEST(HeaderMap, RemoveKeepsOrder) {
  HeaderMap h;
  h.addView("a", "1");
  h.addView("te", "trailers");
  h.addView("b", "2");
  h.addView("TE", "x");
  EXPECT_EQ(h.remove("te"), 2u);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h.entries()[0].name, "a");
  EXPECT_EQ(h.entries()[1].name, "b");
  h.removeAt(0);
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h.entries()[0].name, "b");
}

TEST(HeaderMap, ClassifiesEveryWellKnownNameInAnyCase) {
  for (size_t i = 0; i < kWellKnownHeaders; ++i) {
    auto h = static_cast<WellKnownHeader>(i);
    std::string name(wellKnownHeaderName(h));
    EXPECT_EQ(classifyHeaderName(name), h) << name;
    std::string upper = name;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(classifyHeaderName(upper), h) << upper;
    // One byte off anywhere, and it is another name.
    for (size_t at = 0; at < name.size(); ++at) {
      std::string off = name;
      off[at] = static_cast<char>(off[at] ^ 0x01);
      EXPECT_EQ(classifyHeaderName(off), WellKnownHeader::kCount) << off;
    }
  }
  // Only letters fold: a CR where the name has '-' (0x2d = 0x0d | 0x20) is
  // not a '-', nor '@' a '`'.
  EXPECT_EQ(classifyHeaderName("content\rlength"), WellKnownHeader::kCount);
  EXPECT_EQ(classifyHeaderName("x-request-id"), WellKnownHeader::kXRequestId);
  EXPECT_EQ(classifyHeaderName("x-request-i"), WellKnownHeader::kCount);
  EXPECT_EQ(classifyHeaderName(""), WellKnownHeader::kCount);
}

TEST(HeaderMap, WellKnownLookupsFollowAddsAndRemovals) {
  HeaderMap h;
  h.addView(":method", "GET");
  h.addView("X-Custom", "c");
  h.addView("Content-Length", "5");
  h.addView("Via", "v");
  h.addView("Host", "h");
  EXPECT_EQ(h.method(), "GET");
  EXPECT_EQ(h.get(WellKnownHeader::kContentLength), "5");
  EXPECT_EQ(h.get("CONTENT-LENGTH"), "5");
  EXPECT_EQ(h.get("host"), "h");
  EXPECT_FALSE(h.has(WellKnownHeader::kTe));
  EXPECT_EQ(h.get("x-custom"), "c");

  h.removeAt(1);  // x-custom: the fields after it move up.
  EXPECT_EQ(h.get("content-length"), "5");
  EXPECT_EQ(h.get("host"), "h");
  EXPECT_EQ(h.remove("content-length"), 1u);
  EXPECT_FALSE(h.has("content-length"));
  EXPECT_EQ(h.get("host"), "h");
  EXPECT_EQ(h.remove("content-length"), 0u);
  EXPECT_EQ(h.remove("via"), 1u);
  EXPECT_EQ(h.get("host"), "h");
  ASSERT_EQ(h.size(), 2u);

  // Values may change in place.
  h.mutableEntries()[1].value = "other";
  EXPECT_EQ(h.get(WellKnownHeader::kHost), "other");
}

TEST(HeaderMap, DuplicatedWellKnownFieldsKeepTheFirstAndSetCollapsesThem) {
  HeaderMap h;
  h.addView("x-forwarded-for", "1.1.1.1");
  h.addView("a", "1");
  h.addView("X-Forwarded-For", "2.2.2.2");
  h.addView("te", "trailers");
  EXPECT_EQ(h.get("x-forwarded-for"), "1.1.1.1");
  h.removeAt(0);  // The second becomes the first.
  EXPECT_EQ(h.get("x-forwarded-for"), "2.2.2.2");
  EXPECT_EQ(h.get("te"), "trailers");

  h.addView("x-forwarded-for", "3.3.3.3");
  h.set(WellKnownHeader::kXForwardedFor, "4.4.4.4");
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h.entries()[1].name, "X-Forwarded-For");
  EXPECT_EQ(h.entries()[1].value, "4.4.4.4");
  EXPECT_EQ(h.get("te"), "trailers");
  // No duplicate is left: set and remove now take the indexed path.
  h.set("x-forwarded-for", "5.5.5.5");
  EXPECT_EQ(h.get("x-forwarded-for"), "5.5.5.5");
  EXPECT_EQ(h.remove("x-forwarded-for"), 1u);
  EXPECT_FALSE(h.has(WellKnownHeader::kXForwardedFor));
  EXPECT_EQ(h.get("te"), "trailers");

  h.addView("te", "x");
  EXPECT_EQ(h.remove("TE"), 2u);
  EXPECT_FALSE(h.has("te"));
  EXPECT_EQ(h.get("a"), "1");
  h.set(WellKnownHeader::kXRequestId, "id");
  EXPECT_EQ(h.entries().back().name, "x-request-id");
  EXPECT_EQ(h.get("X-Request-Id"), "id");
}

TEST(HeaderMap, SetViewKeepsTheCallersBytesAndSetCopiesThem) {
  HeaderMap h;
  static constexpr std::string_view kProto = "https";
  h.setView(WellKnownHeader::kXForwardedProto, kProto);
  EXPECT_EQ(h.get("x-forwarded-proto")->data(), kProto.data());
  EXPECT_EQ(h.entries()[0].name, "x-forwarded-proto");
  h.setView(WellKnownHeader::kXForwardedProto, "http");
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h.get("x-forwarded-proto"), "http");
  std::string id = "abc";
  h.set(WellKnownHeader::kXRequestId, id);
  id = "xyz";
  EXPECT_EQ(h.get("x-request-id"), "abc");
}

TEST(HeaderMap, AddsByWellKnownNameAsByItsSpelling) {
  HeaderMap h;
  h.addView(WellKnownHeader::kMethod, "GET");
  h.addView(WellKnownHeader::kStatus, "200");
  h.addView("x-a", "1");
  h.addView(WellKnownHeader::kStatus, "204");  // A second :status, as addView("...") would add.
  std::string length = "12";
  h.addCopy(WellKnownHeader::kContentLength, length);
  length = "99";
  // Classified the caller's way, kept in the caller's spelling.
  h.addView(WellKnownHeader::kHost, "Host", "example");
  ASSERT_EQ(h.size(), 6u);
  EXPECT_EQ(h.entries()[0].name, ":method");
  EXPECT_EQ(h.entries()[1].name, ":status");
  EXPECT_EQ(h.entries()[4].name, "content-length");
  EXPECT_EQ(h.entries()[5].name, "Host");
  EXPECT_EQ(h.method(), "GET");
  EXPECT_EQ(h.status(), 200);
  EXPECT_EQ(h.get("Content-Length"), "12");
  EXPECT_EQ(h.get(WellKnownHeader::kHost), "example");
  // The duplicate :status is known: set collapses both into one.
  h.set(WellKnownHeader::kStatus, "404");
  ASSERT_EQ(h.size(), 5u);
  EXPECT_EQ(h.status(), 404);
  EXPECT_EQ(h.remove(":status"), 1u);
  EXPECT_FALSE(h.has(WellKnownHeader::kStatus));
  EXPECT_EQ(h.get(WellKnownHeader::kHost), "example");
}

TEST(HeaderMap, NamesStayLowercaseOnlyWhileFieldsAreAddedByWellKnownName) {
  HeaderMap h;
  EXPECT_FALSE(h.namesLowercase());  // Nobody has vouched for any name yet.
  h.addView("content-type", "a");
  h.markNamesLowercase();
  // Well-known names in their own spelling keep it, and so does replacing a
  // value in place, whatever spelling set() was given.
  h.addView(WellKnownHeader::kServer, "s");
  h.addCopy(WellKnownHeader::kContentLength, "1");
  h.set(WellKnownHeader::kXRequestId, "id");
  h.setView(WellKnownHeader::kXForwardedProto, "http");
  h.set(WellKnownHeader::kServer, "t");
  h.set("Content-Type", "b");
  h.remove("server");
  EXPECT_TRUE(h.namesLowercase());
  EXPECT_EQ(h.get("x-request-id"), "id");
  EXPECT_EQ(h.get("content-type"), "b");

  // Any other way to add a field takes the caller's spelling, and clears it.
  auto cleared = [](auto add) {
    HeaderMap m;
    m.markNamesLowercase();
    add(m);
    return !m.namesLowercase();
  };
  EXPECT_TRUE(cleared([](HeaderMap& m) { m.addView("X-Upper", "1"); }));
  EXPECT_TRUE(cleared([](HeaderMap& m) { m.addCopy("x-lower", "1"); }));
  EXPECT_TRUE(cleared([](HeaderMap& m) { m.set("X-Set", "1"); }));
  EXPECT_TRUE(
      cleared([](HeaderMap& m) { m.addView(WellKnownHeader::kContentType, "Content-Type", "1"); }));
  EXPECT_TRUE(cleared([](HeaderMap& m) {
    m.addView("a", "1");
    m.addView("a", "2");
    m.set("A", "3");  // Duplicates collapse; a missing name is added as spelled.
    m.set("B", "4");
  }));
}

TEST(HeaderMap, IndexSurvivesGrowth) {
  HeaderMap h;
  for (int i = 0; i < 30; ++i) h.addCopy("x-field-" + std::to_string(i), "v");
  h.addView("content-type", "text/plain");
  for (int i = 30; i < 60; ++i) h.addCopy("x-field-" + std::to_string(i), "v");
  EXPECT_EQ(h.get("content-type"), "text/plain");
  h.removeAt(0);
  EXPECT_EQ(h.get(WellKnownHeader::kContentType), "text/plain");
  EXPECT_EQ(h.entries()[29].name, "content-type");
}

TEST(HeaderMap, StatusReadsDigitsOnly) {
  HeaderMap h;
  EXPECT_EQ(h.status(), 0);
  h.addView(":status", "204");
  EXPECT_EQ(h.status(), 204);
  h.set(":status", "2x4");
  EXPECT_EQ(h.status(), 0);
  h.set(":status", "1000");
  EXPECT_EQ(h.status(), 1000);
  h.set(":status", "");
  EXPECT_EQ(h.status(), 0);
}

TEST(HeaderMap, PinsKeepSlabsAlive) {
  SlabPool& pool = SlabPool::local();
  std::vector<Slab*> slabs;
  auto h = std::make_unique<HeaderMap>();
  for (int i = 0; i < 5; ++i) {
    pool.retireCurrent();
    BufferChain c;
    c.appendCopy("host");
    slabs.push_back(c.slices()[0].slab());
    h->pin(c.slices()[0]);
    h->addView(c.slices()[0].view(), "x");
  }
  pool.retireCurrent();
  for (Slab* s : slabs) EXPECT_EQ(s->refs, 1u);  // Only the map holds them now.
  for (const auto& e : h->entries()) EXPECT_EQ(e.name, "host");
  size_t live = pool.liveCount();
  h.reset();
  EXPECT_EQ(pool.liveCount(), live - 5);
}

}  // namespace
}  // namespace skiff
