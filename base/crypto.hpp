// Small cryptographic helpers every layer may use, each a thin call into OpenSSL: digests,
// HMAC, base64, constant-time comparison, random tokens.
// Threading: pure functions; safe from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/status.hpp"

namespace dmz {

// Raw digests (32 and 64 bytes).
std::string sha256(std::string_view data);
std::string sha512(std::string_view data);
// Raw HMAC-SHA256 of `data` under `key` (32 bytes).
std::string hmac_sha256(std::string_view key, std::string_view data);

std::string base64_encode(std::string_view data);
// Strict: whitespace is skipped, anything else outside the alphabet, or bad padding, fails.
std::optional<std::string> base64_decode(std::string_view text);
// URL-safe base64 without padding (RFC 4648 section 5), as JWTs use it.
std::string base64url_encode(std::string_view data);

// Lowercase hex of raw bytes.
std::string to_hex(std::string_view bytes);

// True if `a` equals `b`, in time independent of where they differ (only the length leaks).
bool constant_time_equal(std::string_view a, std::string_view b);

// `bytes` bytes from OpenSSL's CSPRNG, as lowercase hex.
std::string random_hex(std::size_t bytes);

// An RSASSA-PKCS1-v1_5 signature with SHA-256 (JWT's RS256) of `data` by the RSA private key
// in `pem` (PKCS#1 "BEGIN RSA PRIVATE KEY" or PKCS#8). invalid: not an RSA private key (or an
// encrypted one: there is nobody to ask for a passphrase).
Result<std::string> rs256_sign(std::string_view pem, std::string_view data);

}  // namespace dmz
