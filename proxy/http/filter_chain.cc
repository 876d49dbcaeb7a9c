#include "proxy/http/filter_chain.h"

namespace skiff::http {

using filters::FilterStatus;

FilterChain::~FilterChain() {
  // Front to back, as the filters were made.
  for (uint32_t i = 0; i < count_; ++i) filters_[i].reset();
  if (filters_ != inline_filters_) delete[] filters_;
}

void FilterChain::add(FilterPtr filter) {
  if (count_ == capacity_) {
    auto* bigger = new FilterPtr[capacity_ * 2];
    for (uint32_t i = 0; i < count_; ++i) bigger[i] = std::move(filters_[i]);
    if (filters_ != inline_filters_) delete[] filters_;
    filters_ = bigger;
    capacity_ *= 2;
  }
  filters_[count_++] = std::move(filter);
}

// Decode side. Filters run from index 0 up; a filter that stops holds the
// rest of the chain until it calls continueDecoding(). Body that arrives
// while a filter holds the chain waits in dec_.buffered and goes on to the
// filters after the one that stopped. (A filter stopped on headers does not
// see body chunks that arrive meanwhile; none needs that yet.)

void FilterChain::decodeHeaders(HeaderMapPtr headers, bool end_stream) {
  request_headers_ = std::move(headers);
  dec_.end_stream_seen = end_stream;
  runDecode(0, true, false);
}

void FilterChain::decodeData(BufferChain& data, bool end_stream) {
  if (end_stream) dec_.end_stream_seen = true;
  if (dec_.stopped) {
    dec_.buffered.move(data);
    if (end_stream) dec_.buffering = true;  // Remember that the end arrived.
    if (dec_.buffered.length() > buffer_limit_) sink_.onBufferLimitExceeded(true);
    return;
  }
  for (size_t i = 0; i < count_; ++i) {
    FilterStatus st = filters_[i]->decodeData(data, end_stream);
    if (destroyed_) return;
    if (st == FilterStatus::kContinue) continue;
    if (st == FilterStatus::kStopAndBuffer) {
      dec_.buffered.move(data);
      dec_.stopped = true;
      dec_.stopped_at = i;
      if (end_stream) dec_.buffering = true;
      if (dec_.buffered.length() > buffer_limit_) sink_.onBufferLimitExceeded(true);
    }
    return;
  }
}

void FilterChain::decodeTrailers(HeaderMapPtr trailers) {
  dec_.end_stream_seen = true;
  dec_.trailers = std::move(trailers);
  if (dec_.stopped) {
    dec_.trailers_pending = true;
    return;
  }
  for (size_t i = 0; i < count_; ++i) {
    FilterStatus st = filters_[i]->decodeTrailers(*dec_.trailers);
    if (destroyed_) return;
    if (st != FilterStatus::kContinue) {
      dec_.stopped = true;
      dec_.stopped_at = i;
      return;
    }
  }
}

void FilterChain::continueDecoding() {
  if (!dec_.stopped || destroyed_) return;
  dec_.stopped = false;
  runDecode(dec_.stopped_at + 1, !dec_.headers_done, true);
}

// Runs the decode side from filter `from`: headers if they have not passed
// every filter yet, then (when resuming) held body and trailers.
void FilterChain::runDecode(size_t from, bool headers, bool resuming) {
  size_t i = from;
  if (headers) {
    bool headers_end = dec_.end_stream_seen;
    if (resuming) {
      headers_end = dec_.end_stream_seen && dec_.buffered.empty() && !dec_.buffering &&
                    !dec_.trailers_pending;
    }
    for (; i < count_; ++i) {
      FilterStatus st = filters_[i]->decodeHeaders(*request_headers_, headers_end);
      if (destroyed_) return;
      if (st != FilterStatus::kContinue) {
        dec_.stopped = true;
        dec_.stopped_at = i;
        return;
      }
    }
    dec_.headers_done = true;
    i = from;  // Held body starts where the stop happened.
  }
  if (!resuming) return;
  if (!dec_.buffered.empty() || dec_.buffering) {
    bool end = dec_.buffering && !dec_.trailers_pending;
    dec_.buffering = false;
    BufferChain held;
    held.move(dec_.buffered);
    for (; i < count_; ++i) {
      FilterStatus st = filters_[i]->decodeData(held, end);
      if (destroyed_) return;
      if (st == FilterStatus::kContinue) continue;
      if (st == FilterStatus::kStopAndBuffer) {
        dec_.buffered.move(held);
        dec_.buffering = end;
        dec_.stopped = true;
        dec_.stopped_at = i;
      }
      return;
    }
  }
  if (dec_.trailers_pending) {
    dec_.trailers_pending = false;
    for (i = from; i < count_; ++i) {
      FilterStatus st = filters_[i]->decodeTrailers(*dec_.trailers);
      if (destroyed_) return;
      if (st != FilterStatus::kContinue) {
        dec_.stopped = true;
        dec_.stopped_at = i;
        return;
      }
    }
  }
}

// Encode side: the same, from the last filter down to the first, then out
// through the sink.

void FilterChain::encodeHeaders(HeaderMapPtr headers, bool end_stream) {
  encode_headers_started_ = true;
  response_headers_ = std::move(headers);
  enc_.end_stream_seen = end_stream;
  runEncode(count_, true, false);
}

void FilterChain::encodeData(BufferChain& data, bool end_stream) {
  if (end_stream) enc_.end_stream_seen = true;
  if (enc_.stopped) {
    enc_.buffered.move(data);
    if (end_stream) enc_.buffering = true;
    if (enc_.buffered.length() > buffer_limit_) sink_.onBufferLimitExceeded(false);
    return;
  }
  for (size_t k = count_; k > 0; --k) {
    FilterStatus st = filters_[k - 1]->encodeData(data, end_stream);
    if (destroyed_) return;
    if (st == FilterStatus::kContinue) continue;
    if (st == FilterStatus::kStopAndBuffer) {
      enc_.buffered.move(data);
      enc_.stopped = true;
      enc_.stopped_at = k - 1;
      if (end_stream) enc_.buffering = true;
    }
    return;
  }
  sink_.sinkData(data, end_stream);
}

void FilterChain::encodeTrailers(HeaderMapPtr trailers) {
  enc_.end_stream_seen = true;
  enc_.trailers = std::move(trailers);
  if (enc_.stopped) {
    enc_.trailers_pending = true;
    return;
  }
  for (size_t k = count_; k > 0; --k) {
    FilterStatus st = filters_[k - 1]->encodeTrailers(*enc_.trailers);
    if (destroyed_) return;
    if (st != FilterStatus::kContinue) {
      enc_.stopped = true;
      enc_.stopped_at = k - 1;
      return;
    }
  }
  sink_.sinkTrailers(std::move(enc_.trailers));
}

void FilterChain::continueEncoding() {
  if (!enc_.stopped || destroyed_) return;
  enc_.stopped = false;
  runEncode(enc_.stopped_at, !enc_.headers_done, true);
}

// `from` counts filters still to run: filters [0, from) in reverse order.
void FilterChain::runEncode(size_t from, bool headers, bool resuming) {
  if (headers) {
    bool headers_end = enc_.end_stream_seen;
    if (resuming) {
      headers_end = enc_.end_stream_seen && enc_.buffered.empty() && !enc_.buffering &&
                    !enc_.trailers_pending;
    }
    for (size_t k = from; k > 0; --k) {
      FilterStatus st = filters_[k - 1]->encodeHeaders(*response_headers_, headers_end);
      if (destroyed_) return;
      if (st != FilterStatus::kContinue) {
        enc_.stopped = true;
        enc_.stopped_at = k - 1;
        return;
      }
    }
    enc_.headers_done = true;
    sink_.sinkHeaders(std::move(response_headers_), headers_end);
    if (destroyed_) return;
  }
  if (!resuming) return;
  if (!enc_.buffered.empty() || enc_.buffering) {
    bool end = enc_.buffering && !enc_.trailers_pending;
    enc_.buffering = false;
    BufferChain held;
    held.move(enc_.buffered);
    for (size_t k = from; k > 0; --k) {
      FilterStatus st = filters_[k - 1]->encodeData(held, end);
      if (destroyed_) return;
      if (st == FilterStatus::kContinue) continue;
      if (st == FilterStatus::kStopAndBuffer) {
        enc_.buffered.move(held);
        enc_.buffering = end;
        enc_.stopped = true;
        enc_.stopped_at = k - 1;
      }
      return;
    }
    sink_.sinkData(held, end);
    if (destroyed_) return;
  }
  if (enc_.trailers_pending) {
    enc_.trailers_pending = false;
    for (size_t k = from; k > 0; --k) {
      FilterStatus st = filters_[k - 1]->encodeTrailers(*enc_.trailers);
      if (destroyed_) return;
      if (st != FilterStatus::kContinue) {
        enc_.stopped = true;
        enc_.stopped_at = k - 1;
        return;
      }
    }
    sink_.sinkTrailers(std::move(enc_.trailers));
  }
}

void FilterChain::destroy() {
  if (destroyed_) return;
  destroyed_ = true;
  for (FilterPtr& f : filters()) f->onDestroy();
}

}  // namespace skiff::http
