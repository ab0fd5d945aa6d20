#include "bot/trust/sshsig.hpp"

#include <doctest/doctest.h>

#include <ctime>
#include <vector>

#include "base/crypto.hpp"
#include "tests/ssh_keys.hpp"
#include "tests/support.hpp"

using namespace dmz;
using namespace dmz::test;

namespace {

constexpr int64_t kJan2021 = 1609459200;  // 2021-01-01T00:00:00Z

// Signs `message` with ssh-keygen -Y sign; returns the armored signature.
std::string keygen_sign(const SshKey& key, const std::string& message,
                        const std::string& ns = "git", const std::string& extra = "") {
  TempDir dir;
  write_file(dir / "msg", message);
  must("ssh-keygen -q -Y sign -n " + shell_quote(ns) + " " + extra + " -f " +
       shell_quote(key.private_path.string()) + " " + shell_quote((dir / "msg").string()));
  return read_file(dir / "msg.sig");
}

SshPublicKey parsed(const SshKey& key, const std::string& options = "") {
  auto k = parse_ssh_public_key((options.empty() ? "" : options + " ") + key.public_line);
  INFO(key.public_line, " ", (k ? "" : k.message()));
  REQUIRE(k.ok());
  return *k;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// Decodes an armored signature, lets `edit` change its fields, and armors it again.
template <class F>
std::string reencode(const std::string& armored, F edit) {
  auto blob = dearmor_sshsig(armored);
  REQUIRE(blob.ok());
  auto sig = parse_sshsig_blob(*blob);
  REQUIRE(sig.ok());
  edit(*sig);
  return armor_sshsig(encode_sshsig_blob(*sig));
}

}  // namespace

TEST_CASE("sshsig: signatures made by ssh-keygen verify in process for every supported key type") {
  const std::string message = "tree 0123\nauthor A <a@x> 1 +0000\n\nhello\n";
  for (std::string type : {"ed25519", "ecdsa", "rsa"}) {
    CAPTURE(type);
    const SshKey& key = cached_ssh_key(type);
    SshPublicKey pub = parsed(key);
    CHECK(pub.fingerprint == key.fingerprint);  // same as `ssh-keygen -lf`
    CHECK(pub.comment == "cached-" + type + "-0@dmzbot.test");
    std::vector<SshPublicKey> allowed{pub};

    auto ok = verify_sshsig(keygen_sign(key, message), message, allowed, kJan2021);
    INFO((ok ? "" : ok.message()));
    REQUIRE(ok.ok());
    CHECK(ok->fingerprint == key.fingerprint);
    CHECK(ok->key_type == pub.type);
    CHECK(ok->hash_algorithm == "sha512");

    auto ok256 = verify_sshsig(keygen_sign(key, message, "git", "-Ohashalg=sha256"), message,
                               allowed, kJan2021);
    REQUIRE(ok256.ok());
    CHECK(ok256->hash_algorithm == "sha256");

    auto tampered = verify_sshsig(keygen_sign(key, message), message + "x", allowed, kJan2021);
    REQUIRE_FALSE(tampered.ok());
    CHECK(starts_with(tampered.message(), "bad-signature: "));
  }
  CHECK(cached_ssh_key("ed25519").public_line.starts_with("ssh-ed25519 "));
  CHECK(parsed(cached_ssh_key("ecdsa")).type == "ecdsa-sha2-nistp256");
  CHECK(parsed(cached_ssh_key("rsa")).type == "ssh-rsa");
}

TEST_CASE("sshsig: armor written by armor_sshsig is byte-identical to ssh-keygen's") {
  for (std::string type : {"ed25519", "rsa"}) {
    std::string armored = keygen_sign(cached_ssh_key(type), "payload\n");
    auto blob = dearmor_sshsig(armored);
    REQUIRE(blob.ok());
    CHECK(armor_sshsig(*blob) == armored);
  }
}

TEST_CASE("sshsig: refusals name their reason") {
  const SshKey& key = cached_ssh_key("ed25519");
  const SshKey& other = cached_ssh_key("ed25519", 1);
  const std::string message = "signed payload\n";
  const std::string good = keygen_sign(key, message);
  std::vector<SshPublicKey> allowed{parsed(key)};

  auto reason = [&](const std::string& armored, const std::vector<SshPublicKey>& keys,
                    int64_t at = kJan2021, const std::string& msg = "signed payload\n") {
    auto r = verify_sshsig(armored, msg, keys, at);
    REQUIRE_FALSE(r.ok());
    return r.message();
  };

  SUBCASE("wrong namespace") {
    std::string m = reason(keygen_sign(key, message, "file"), allowed);
    CHECK(m == "wrong-namespace: signature is for namespace \"file\", expected \"git\"");
  }
  SUBCASE("signing key not in the allowed list") {
    std::string m = reason(good, {parsed(other)});
    CHECK(m == "no-key: signed by " + key.fingerprint + " which is not allowed");
    CHECK(starts_with(reason(good, {}), "no-key: signed by " + key.fingerprint));
  }
  SUBCASE("allowed key with a namespaces option that excludes git") {
    CHECK(starts_with(reason(good, {parsed(key, "namespaces=\"file,email\"")}), "no-key: key "));
    CHECK(
        verify_sshsig(good, message, std::vector{parsed(key, "namespaces=\"file,git\"")}, kJan2021)
            .ok());
  }
  SUBCASE("validity window relative to the given time") {
    std::string m = reason(good, {parsed(key, "valid-before=\"20200101\"")});
    CHECK(m == "expired-key: key " + key.fingerprint +
                   " valid before 2020-01-01T00:00:00Z but commit time 2021-01-01T00:00:00Z");
    m = reason(good, {parsed(key, "valid-after=\"20300101Z\"")});
    CHECK(starts_with(
        m, "not-yet-valid-key: key " + key.fingerprint + " valid after 2030-01-01T00:00:00Z"));
    auto windowed =
        std::vector{parsed(key, "valid-after=\"20200101\",valid-before=\"202201011200\"")};
    CHECK(verify_sshsig(good, message, windowed, kJan2021).ok());
    // The same key listed twice: one expired entry does not hide a valid one.
    auto twice = std::vector{parsed(key, "valid-before=\"20200101\""), parsed(key)};
    CHECK(verify_sshsig(good, message, twice, kJan2021).ok());
  }
  SUBCASE("sha1 hash is refused before any verification") {
    std::string sha1 = reencode(good, [](SshSig& s) { s.hash_algorithm = "sha1"; });
    CHECK(starts_with(reason(sha1, allowed), "weak-hash: "));
    // Even with a key nobody allows: the hash check comes first.
    CHECK(starts_with(reason(sha1, {}), "weak-hash: "));
    std::string md5 = reencode(good, [](SshSig& s) { s.hash_algorithm = "md5"; });
    CHECK(starts_with(reason(md5, allowed), "bad-hash: "));
  }
  SUBCASE("ssh-rsa (SHA-1) RSA signatures are refused") {
    const SshKey& rsa = cached_ssh_key("rsa");
    std::string sig = keygen_sign(rsa, message);
    std::string sha1 = reencode(sig, [](SshSig& s) {
      ssh::Reader r(s.signature);
      std::string_view type, bytes;
      REQUIRE(r.string(type));
      REQUIRE(r.string(bytes));
      CHECK(type == "rsa-sha2-512");
      std::string rewritten;  // `bytes` points into s.signature: build the new value aside
      ssh::put_string(rewritten, "ssh-rsa");
      ssh::put_string(rewritten, bytes);
      s.signature = rewritten;
    });
    CHECK(starts_with(reason(sha1, {parsed(rsa)}), "weak-signature: "));
  }
  SUBCASE("signature by one allowed key presented as another allowed key") {
    std::string swapped = reencode(good, [&](SshSig& s) { s.public_key = parsed(other).blob; });
    CHECK(starts_with(reason(swapped, {parsed(key), parsed(other)}), "bad-signature: "));
  }
  SUBCASE("garbage and malformed armor") {
    CHECK(starts_with(reason("hello", allowed), "bad-armor: "));
    CHECK(starts_with(reason("", allowed), "bad-armor: "));
    CHECK(starts_with(
        reason("-----BEGIN SSH SIGNATURE-----\n!!!!\n-----END SSH SIGNATURE-----\n", allowed),
        "bad-armor: "));
    CHECK(starts_with(reason("-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n", allowed), "bad-armor: "));
    CHECK(reason(good + good, allowed) == "bad-armor: more than one armor block");
    CHECK(reason(good + "trailing\n", allowed) == "bad-armor: text after the signature armor");
    CHECK(reason("junk\n" + good, allowed) == "bad-armor: text before the signature armor");
  }
  SUBCASE("malformed blobs") {
    CHECK(starts_with(reason(armor_sshsig(std::string_view("NOTSIG\0\0\0\1", 10)), allowed),
                      "bad-sshsig: missing SSHSIG magic"));
    auto blob = dearmor_sshsig(good);
    REQUIRE(blob.ok());
    std::string v2 = *blob;
    v2[9] = 2;  // version is the u32 after the 6-byte magic
    CHECK(reason(armor_sshsig(v2), allowed) == "bad-sshsig: unsupported version 2");
    CHECK(reason(armor_sshsig(*blob + "x"), allowed) ==
          "bad-sshsig: trailing data after the signature");
    CHECK(reason(armor_sshsig(blob->substr(0, blob->size() - 5)), allowed) ==
          "bad-sshsig: truncated");
  }
}

TEST_CASE("sshsig: in-process windows agree with ssh-keygen -Overify-time") {
  const SshKey& key = cached_ssh_key("ed25519");
  TempDir dir;
  const std::string message = "window\n";
  write_file(dir / "msg", message);
  std::string sig = keygen_sign(key, message);
  write_file(dir / "msg.sig", sig);
  const std::string options = "valid-after=\"20200101\",valid-before=\"20220101\"";
  write_allowed_signers(dir / "allowed", {{"dev@example.com", &key, options}});
  auto keys = parse_allowed_signers(read_file(dir / "allowed"));
  REQUIRE(keys.ok());
  REQUIRE(keys->size() == 1);
  CHECK(keys->front().principals == std::vector<std::string>{"dev@example.com"});
  // Each time: (YYYYMMDDHHMMSS for ssh-keygen, unix seconds for us).
  struct Case {
    std::string stamp;
    int64_t t;
  };
  for (const Case& c : {Case{"20191231235959", 1577836799}, Case{"20200101000000", 1577836800},
                        Case{"20210601000000", 1622505600}, Case{"20220101000000", 1640995200},
                        Case{"20220101000001", 1640995201}}) {
    CAPTURE(c.stamp);
    RunResult keygen =
        run("TZ=UTC ssh-keygen -Y verify -f allowed -I dev@example.com -n git -s msg.sig "
            "-Overify-time=" +
                c.stamp + " < msg",
            dir.path());
    auto ours = verify_sshsig(sig, message, *keys, c.t);
    CHECK((keygen.exit_code == 0) == ours.ok());
  }
}

TEST_CASE("sshsig: public key lines") {
  const SshKey& key = cached_ssh_key("ed25519");
  const std::string base = key.public_line.substr(0, key.public_line.rfind(' '));  // "type base64"

  auto k = parse_ssh_public_key("\"a@x,b@y\" namespaces=\"git\",valid-after=\"20240229120000Z\" " +
                                base + " my key\n");
  REQUIRE(k.ok());
  CHECK(k->principals == std::vector<std::string>{"a@x", "b@y"});
  CHECK(k->namespaces == std::vector<std::string>{"git"});
  CHECK(k->valid_after == 1709208000);  // 2024-02-29T12:00:00Z
  CHECK_FALSE(k->valid_before.has_value());
  CHECK(k->comment == "my key");
  CHECK(k->line() == base);

  auto err = [](const std::string& line) {
    auto r = parse_ssh_public_key(line);
    REQUIRE_FALSE(r.ok());
    return r.message();
  };
  CHECK(starts_with(err("valid-before=\"2024\" " + base), "bad-option: "));
  CHECK(starts_with(err("valid-before=\"20230229\" " + base), "bad-option: "));  // not a leap year
  CHECK(err("dev@x no-touch-required " + base) ==
        "bad-option: unknown option \"no-touch-required\"");
  CHECK(starts_with(err("cert-authority " + base), "unsupported-option: "));
  CHECK(starts_with(err("ssh-ed25519 !!!!"), "bad-key-line: "));
  CHECK(starts_with(err("no key here"), "bad-key-line: "));
  CHECK(starts_with(err("\"unbalanced " + base), "bad-key-line: "));
  CHECK(starts_with(err("ecdsa-sha2-nistp384 AAAA"), "unsupported-key: "));
  // Type field and blob disagree.
  CHECK(starts_with(err("ssh-rsa " + base.substr(base.find(' ') + 1)), "bad-key-line: "));
  // An ed25519 blob with a short key.
  std::string shortkey;
  ssh::put_string(shortkey, "ssh-ed25519");
  ssh::put_string(shortkey, "0123456789");
  CHECK(starts_with(err("ssh-ed25519 " + base64_encode(shortkey)), "bad-key: "));
  // An ecdsa point that is not on the curve.
  std::string offcurve;
  ssh::put_string(offcurve, "ecdsa-sha2-nistp256");
  ssh::put_string(offcurve, "nistp256");
  ssh::put_string(offcurve, "\x04" + std::string(64, '\x01'));
  CHECK(starts_with(err("ecdsa-sha2-nistp256 " + base64_encode(offcurve)), "bad-key: "));

  auto file = parse_allowed_signers("# team\n\n" + base + "\nbogus line\n");
  REQUIRE_FALSE(file.ok());
  CHECK(starts_with(file.message(), "line 4: bad-key-line: "));
}

TEST_CASE("sshsig: wire helpers") {
  std::string out;
  ssh::put_mpint(out, std::string("\x00\x80\x01", 3));
  CHECK(out == std::string("\0\0\0\3\0\x80\x01", 7));
  std::string_view mag;
  CHECK(ssh::mpint_magnitude(std::string_view("\0\x80\x01", 3), mag));
  CHECK(mag == std::string_view("\x80\x01", 2));
  CHECK_FALSE(ssh::mpint_magnitude(std::string_view("\0\x01", 2), mag));  // non-minimal
  CHECK_FALSE(ssh::mpint_magnitude("\x80", mag));                         // negative
  CHECK(base64_decode("aGVsbG8=") == std::optional<std::string>("hello"));
  CHECK(base64_decode("aGVs\nbG8=") == std::optional<std::string>("hello"));
  CHECK_FALSE(base64_decode("aGVsbG8").has_value());
  CHECK_FALSE(base64_decode("aG=sbG8=").has_value());
  CHECK(base64_encode("hello") == "aGVsbG8=");
}

TEST_CASE("sshsig: no truncation or single-byte change of a signature blob verifies") {
  for (std::string type : {"ed25519", "ecdsa", "rsa"}) {
    CAPTURE(type);
    const SshKey& key = cached_ssh_key(type);
    const std::string message = "flip me\n";
    const std::string armored = keygen_sign(key, message);
    std::vector<SshPublicKey> allowed{parsed(key)};
    REQUIRE(verify_sshsig(armored, message, allowed, kJan2021).ok());
    auto blob = dearmor_sshsig(armored);
    REQUIRE(blob.ok());
    for (size_t i = 0; i < blob->size(); ++i) {
      CAPTURE(i);
      std::string flipped = *blob;
      flipped[i] = static_cast<char>(flipped[i] ^ 0x01);
      CHECK_FALSE(verify_sshsig(armor_sshsig(flipped), message, allowed, kJan2021).ok());
      CHECK_FALSE(verify_sshsig(armor_sshsig(blob->substr(0, i)), message, allowed, kJan2021).ok());
    }
  }
}
