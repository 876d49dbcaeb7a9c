#include "proxy/http/header_map.h"

#include <gtest/gtest.h>

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
