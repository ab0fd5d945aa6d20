// Status and Result<T>: dmzbot's one error type, a value or a code with a one-line message
// (after leveldb's Status). The code says what kind of failure it is, so that callers decide
// by code, never by text; only the HTTP edge turns codes into status numbers. Expected
// failures with structure (a merge conflict, a rejected push) are values, not errors.
// Threading: plain values; safe to move between threads.
#pragma once

#include <cassert>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace dmz {

enum class Code : std::uint8_t {
  kOk = 0,
  kInvalid,           // the input is malformed or breaks a rule; retrying it cannot help
  kNotFound,          // no such repository, pull request, object, file
  kConflict,          // the state does not allow it now (stale SHA, already merged)
  kUnauthenticated,   // no or wrong credentials
  kPermissionDenied,  // known caller, not allowed to do this
  kUnavailable,       // our side or a dependency failed (store, disk, remote); worth a retry
  kInternal,          // a bug or an unclassified failure
};

std::string_view to_string(Code code);

struct Error {
  Code code = Code::kInternal;
  std::string message;
};

// Named constructors, one per code.
inline Error invalid(std::string message) { return {Code::kInvalid, std::move(message)}; }
inline Error not_found(std::string message) { return {Code::kNotFound, std::move(message)}; }
inline Error conflict(std::string message) { return {Code::kConflict, std::move(message)}; }
inline Error unauthenticated(std::string message) {
  return {Code::kUnauthenticated, std::move(message)};
}
inline Error permission_denied(std::string message) {
  return {Code::kPermissionDenied, std::move(message)};
}
inline Error unavailable(std::string message) { return {Code::kUnavailable, std::move(message)}; }
inline Error internal(std::string message) { return {Code::kInternal, std::move(message)}; }
// An unclassified failure (kInternal): for errors no caller needs to tell apart.
inline Error error(std::string message) { return internal(std::move(message)); }

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error e) : code_(e.code), message_(std::move(e.message)) { assert(code_ != Code::kOk); }
  static Status success() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return ok(); }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  Error error() const {
    assert(!ok());
    return {code_, message_};
  }
  // The same failure with `context` in front of its message ("store: " + message).
  Status prefixed(std::string_view context) const {
    if (ok()) return *this;
    return Error{code_, std::string(context) + message_};
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error e) : v_(std::move(e)) { assert(std::get<1>(v_).code != Code::kOk); }

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

  Code code() const { return ok() ? Code::kOk : std::get<1>(v_).code; }
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
