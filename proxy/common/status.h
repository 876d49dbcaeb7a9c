// Errors as values. An error says where it came from and what a user can do.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace skiff {

enum class ErrorSource { kNone, kDownstream, kUpstream, kConfig, kInternal };

class Status {
 public:
  Status() = default;
  Status(ErrorSource source, std::string message) : source_(source), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool isOk() const { return source_ == ErrorSource::kNone; }
  explicit operator bool() const { return isOk(); }
  ErrorSource source() const { return source_; }
  const std::string& message() const { return message_; }

 private:
  ErrorSource source_ = ErrorSource::kNone;
  std::string message_;
};

inline Status configError(std::string message) { return {ErrorSource::kConfig, std::move(message)}; }

// A value or the Status that explains why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Status error) : v_(std::move(error)) {}

  bool isOk() const { return v_.index() == 0; }
  explicit operator bool() const { return isOk(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  const Status& status() const { return std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace skiff
