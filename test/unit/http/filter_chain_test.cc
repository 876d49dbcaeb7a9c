#include "proxy/http/filter_chain.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace skiff::http {
namespace {

using filters::FilterStatus;

// Records every call into a shared log as "<name>.<what>".
class LogFilter : public filters::HttpFilter {
 public:
  LogFilter(std::string name, std::vector<std::string>& log, int& alive)
      : name_(std::move(name)), log_(log), alive_(alive) {
    ++alive_;
  }
  ~LogFilter() override { --alive_; }
  void setCallbacks(filters::FilterCallbacks&) override {}
  FilterStatus decodeHeaders(HeaderMap&, bool) override { return note("dh", stop_headers); }
  FilterStatus decodeData(BufferChain&, bool) override {
    return note("dd", FilterStatus::kContinue);
  }
  FilterStatus decodeTrailers(HeaderMap&) override { return note("dt", FilterStatus::kContinue); }
  FilterStatus encodeHeaders(HeaderMap&, bool) override {
    return note("eh", FilterStatus::kContinue);
  }
  FilterStatus encodeData(BufferChain&, bool) override {
    return note("ed", FilterStatus::kContinue);
  }
  FilterStatus encodeTrailers(HeaderMap&) override { return note("et", FilterStatus::kContinue); }
  void onDestroy() override { log_.push_back(name_ + ".destroy"); }

  FilterStatus stop_headers = FilterStatus::kContinue;

 private:
  FilterStatus note(const char* what, FilterStatus st) {
    log_.push_back(name_ + "." + what);
    return st;
  }
  std::string name_;
  std::vector<std::string>& log_;
  int& alive_;
};

class Sink : public EncodeSink {
 public:
  void sinkHeaders(HeaderMapPtr, bool end_stream) override {
    headers = true;
    ended = end_stream;
  }
  void sinkData(BufferChain& data, bool end_stream) override {
    body += data.toString();
    data.clear();
    ended = end_stream;
  }
  void sinkTrailers(HeaderMapPtr) override { ended = true; }
  void onBufferLimitExceeded(bool) override { ++over_limit; }
  bool headers = false;
  bool ended = false;
  std::string body;
  int over_limit = 0;
};

TEST(FilterChain, RunsManyFiltersInOrderBothWays) {
  std::vector<std::string> log;
  int alive = 0;
  Sink sink;
  {
    FilterChain chain(sink, 1 << 20);
    // More than the chain keeps inline.
    for (int i = 0; i < 6; ++i) {
      chain.add(std::make_unique<LogFilter>("f" + std::to_string(i), log, alive));
    }
    EXPECT_EQ(chain.filters().size(), 6u);
    chain.decodeHeaders(std::make_unique<HeaderMap>(), true);
    std::vector<std::string> want;
    for (int i = 0; i < 6; ++i) want.push_back("f" + std::to_string(i) + ".dh");
    EXPECT_EQ(log, want);
    log.clear();
    chain.encodeHeaders(std::make_unique<HeaderMap>(), false);
    BufferChain body;
    body.appendCopy("ok");
    chain.encodeData(body, true);
    want.clear();
    for (int i = 5; i >= 0; --i) want.push_back("f" + std::to_string(i) + ".eh");
    for (int i = 5; i >= 0; --i) want.push_back("f" + std::to_string(i) + ".ed");
    EXPECT_EQ(log, want);
    EXPECT_TRUE(sink.headers);
    EXPECT_EQ(sink.body, "ok");
    EXPECT_TRUE(sink.ended);
    log.clear();
    chain.destroy();
    EXPECT_EQ(log.size(), 6u);
    EXPECT_EQ(log.front(), "f0.destroy");
    EXPECT_EQ(alive, 6);
  }
  EXPECT_EQ(alive, 0);  // Every filter, inline or not, is freed with the chain.
}

TEST(FilterChain, AStoppedFilterHoldsTheRestUntilItContinues) {
  std::vector<std::string> log;
  int alive = 0;
  Sink sink;
  FilterChain chain(sink, 1 << 20);
  auto first = std::make_unique<LogFilter>("a", log, alive);
  first->stop_headers = FilterStatus::kStopIteration;
  chain.add(std::move(first));
  chain.add(std::make_unique<LogFilter>("b", log, alive));
  chain.decodeHeaders(std::make_unique<HeaderMap>(), false);
  EXPECT_EQ(log, (std::vector<std::string>{"a.dh"}));
  BufferChain body;
  body.appendCopy("held");
  chain.decodeData(body, true);  // Waits behind a.
  EXPECT_EQ(log, (std::vector<std::string>{"a.dh"}));
  chain.continueDecoding();
  EXPECT_EQ(log, (std::vector<std::string>{"a.dh", "b.dh", "b.dd"}));
  chain.destroy();
}

}  // namespace
}  // namespace skiff::http
