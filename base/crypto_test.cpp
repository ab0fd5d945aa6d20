#include "base/crypto.hpp"

#include <doctest/doctest.h>

#include "tests/support.hpp"

namespace dmz {
namespace {

TEST_CASE("sha256 and sha512 of known inputs") {
  CHECK(to_hex(sha256("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(to_hex(sha512("")).substr(0, 16) == "cf83e1357eefb8bd");
}

TEST_CASE("hmac_sha256: RFC 4231 test case 2") {
  CHECK(to_hex(hmac_sha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("base64 round trip, strict decoding, url-safe form") {
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_decode("Zm8=") == std::optional<std::string>("fo"));
  CHECK(base64_decode("Zm9v\nYmFy") == std::optional<std::string>("foobar"));
  CHECK_FALSE(base64_decode("Zm8"));   // length not a multiple of 4
  CHECK_FALSE(base64_decode("Z=m8"));  // padding in the middle
  CHECK_FALSE(base64_decode("Zm8*"));  // outside the alphabet
  CHECK(base64url_encode("\xfb\xff") == "-_8");
}

TEST_CASE("constant_time_equal") {
  CHECK(constant_time_equal("", ""));
  CHECK(constant_time_equal("secret", "secret"));
  CHECK_FALSE(constant_time_equal("secret", "secreT"));
  CHECK_FALSE(constant_time_equal("secret", "Secret"));
  CHECK_FALSE(constant_time_equal("secret", "secret1"));
  CHECK_FALSE(constant_time_equal("secret", ""));
  CHECK_FALSE(constant_time_equal("", "x"));
  CHECK(constant_time_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
  CHECK_FALSE(constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST_CASE("random_hex: the asked length, lowercase hex, different each time") {
  auto a = random_hex(16), b = random_hex(16);
  CHECK(a.size() == 32);
  CHECK(a.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(a != b);
}

}  // namespace
}  // namespace dmz

namespace dmz {
namespace {

TEST_CASE("rs256_sign: openssl verifies the signature; other keys and garbage are refused") {
  test::TempDir dir;
  test::must("openssl genrsa -out " + (dir / "rsa.pem").string() + " 2048 2>/dev/null");
  test::must("openssl pkey -in " + (dir / "rsa.pem").string() + " -pubout -out " +
             (dir / "rsa.pub").string());
  const std::string data = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjF9";
  auto sig = rs256_sign(test::read_file(dir / "rsa.pem"), data);
  REQUIRE(sig.ok());
  CHECK(sig->size() == 256);
  test::write_file(dir / "data", data);
  test::write_file(dir / "sig", *sig);
  test::must("openssl dgst -sha256 -verify " + (dir / "rsa.pub").string() + " -signature " +
             (dir / "sig").string() + " " + (dir / "data").string());
  // The same data changed by one byte does not verify.
  test::write_file(dir / "data", data + "x");
  CHECK(test::run("openssl dgst -sha256 -verify " + (dir / "rsa.pub").string() + " -signature " +
                  (dir / "sig").string() + " " + (dir / "data").string())
            .exit_code != 0);

  test::must("openssl genpkey -algorithm ed25519 -out " + (dir / "ed.pem").string());
  auto ed = rs256_sign(test::read_file(dir / "ed.pem"), data);
  CHECK(ed.code() == Code::kInvalid);
  CHECK(rs256_sign("not a key", data).code() == Code::kInvalid);
  test::must("openssl genrsa -aes128 -passout pass:pw -out " + (dir / "enc.pem").string() +
             " 2048 2>/dev/null");
  CHECK(rs256_sign(test::read_file(dir / "enc.pem"), data).code() == Code::kInvalid);
}

}  // namespace
}  // namespace dmz
