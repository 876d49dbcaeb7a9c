// Runs one stream's HTTP filters in order: decode* from the first filter to
// the last (the router), encode* from the last back to the first, then out
// through the EncodeSink (the connection manager's response path). Knows the
// three filter states and nothing about connections or routing.
#pragma once

#include <memory>
#include <span>

#include "filters/filter.h"

namespace skiff::http {

class EncodeSink {
 public:
  virtual ~EncodeSink() = default;
  virtual void sinkHeaders(HeaderMapPtr headers, bool end_stream) = 0;
  virtual void sinkData(BufferChain& data, bool end_stream) = 0;
  virtual void sinkTrailers(HeaderMapPtr trailers) = 0;
  // A filter held back more body than the buffer limit allows.
  virtual void onBufferLimitExceeded(bool decoding) = 0;
};

class FilterChain {
 public:
  using FilterPtr = std::unique_ptr<filters::HttpFilter>;

  FilterChain(EncodeSink& sink, uint32_t buffer_limit) : sink_(sink), buffer_limit_(buffer_limit) {}
  ~FilterChain();
  FilterChain(const FilterChain&) = delete;
  FilterChain& operator=(const FilterChain&) = delete;

  void add(FilterPtr filter);
  std::span<FilterPtr> filters() { return {filters_, count_}; }

  // Request direction. The chain keeps the headers (filters see them by
  // reference for the life of the stream).
  void decodeHeaders(HeaderMapPtr headers, bool end_stream);
  void decodeData(BufferChain& data, bool end_stream);
  void decodeTrailers(HeaderMapPtr trailers);
  void continueDecoding();
  HeaderMap* requestHeaders() { return request_headers_.get(); }

  // Response direction.
  void encodeHeaders(HeaderMapPtr headers, bool end_stream);
  void encodeData(BufferChain& data, bool end_stream);
  void encodeTrailers(HeaderMapPtr trailers);
  void continueEncoding();
  bool responseStarted() const { return encode_headers_started_; }

  void destroy();

 private:
  // One direction's iteration state.
  struct Direction {
    size_t stopped_at = 0;  // Index of the filter that stopped, when stopped.
    bool stopped = false;
    bool headers_done = false;  // Headers went past every filter.
    bool end_stream_seen = false;
    bool buffering = false;  // The end of the body arrived while held.
    BufferChain buffered;    // Body held while stopped.
    HeaderMapPtr trailers;   // Trailers held while stopped.
    bool trailers_pending = false;
  };

  void runDecode(size_t from, bool headers, bool data_end);
  void runEncode(size_t from, bool headers, bool data_end);

  EncodeSink& sink_;
  uint32_t buffer_limit_;
  // A stream's filters: the first few (most chains are the router alone)
  // inline, so a stream allocates no filter list; more move to the heap.
  static constexpr uint32_t kInlineFilters = 4;
  FilterPtr* filters_ = inline_filters_;
  uint32_t count_ = 0;
  uint32_t capacity_ = kInlineFilters;
  FilterPtr inline_filters_[kInlineFilters];
  HeaderMapPtr request_headers_;
  HeaderMapPtr response_headers_;
  Direction dec_;
  Direction enc_;
  bool encode_headers_started_ = false;
  bool destroyed_ = false;
};

}  // namespace skiff::http
