// Status and Result<T>: dmzbot's one error type, a value or a one-line message (after leveldb's
// Status). Expected failures with structure (a conflict, a rejected push) are values, not errors.
// Threading: plain values; safe to move between threads.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace dmz {

struct Error {
  std::string message;
};

inline Error error(std::string message) { return Error{std::move(message)}; }

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error e) : message_(std::move(e.message)), ok_(false) {}
  static Status success() { return {}; }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const std::string& message() const { return message_; }

 private:
  std::string message_;
  bool ok_ = true;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error e) : v_(std::move(e)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const std::string& message() const {
    assert(!ok());
    return std::get<1>(v_).message;
  }
  Error error() const { return std::get<1>(v_); }
  Status status() const { return ok() ? Status() : Status(std::get<1>(v_)); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace dmz
