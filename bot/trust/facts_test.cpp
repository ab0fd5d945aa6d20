// Reading a policy and its keys: the limits on files outside the repository, and the problems
// of a policy whose ssh lines do not parse.
#include "bot/trust/facts.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <set>

#include "bot/trust/test_fixture.hpp"

using namespace dmz;
using namespace dmz::trust_test;
using dmz::test::TempDir;

TEST_CASE("trust_root_digest: changes with the policy file and each key, and when unreadable") {
  TempDir etc;
  CHECK(trust::trust_root_digest("") == "");  // none configured
  test::write_file(etc / "policy.toml", "version = 1\n");
  const auto first = trust::trust_root_digest(etc / "policy.toml");
  REQUIRE(first);
  CHECK(first->size() == 64);
  CHECK(trust::trust_root_digest(etc / "policy.toml") == first);  // read again: the same
  std::set<std::string> seen = {*first};
  auto changed = [&] {
    auto d = trust::trust_root_digest(etc / "policy.toml");
    REQUIRE(d);
    return seen.insert(*d).second;
  };
  test::write_file(etc / "policy.toml", "version = 1\n# edited\n");
  CHECK(changed());
  std::filesystem::create_directories(etc / "keys");
  test::write_file(etc / "keys" / "alice.asc", "KEY A");
  CHECK(changed());
  test::write_file(etc / "keys" / "alice.asc", "KEY A, revoked");
  CHECK(changed());
  std::filesystem::rename(etc / "keys" / "alice.asc", etc / "keys" / "bob.asc");
  CHECK(changed());
  test::write_file(etc / "keys" / "notes.txt", "not a key");  // only *.asc are read
  CHECK_FALSE(changed());
  std::filesystem::remove(etc / "policy.toml");  // every PR fails now: a policy too
  CHECK(changed());
}

TEST_CASE("policy_source_from_file: a regular file of at most 1 MiB, and so is each key file") {
  TempDir etc;
  const std::string d = etc.path().string();
  test::write_file(etc / "policy.toml", "version = 1\n");
  auto good = trust::policy_source_from_file(etc / "policy.toml");
  REQUIRE(good.ok());
  CHECK(good->text == "version = 1\n");

  auto missing = trust::policy_source_from_file(etc / "missing.toml");
  CHECK(missing.code() == Code::kNotFound);
  CHECK(missing.message() == "'" + d + "/missing.toml' does not exist");

  auto zero = trust::policy_source_from_file("/dev/zero");
  CHECK(zero.code() == Code::kInvalid);
  CHECK(zero.message() == "'/dev/zero' is not a regular file (a character device)");

  auto dir = trust::policy_source_from_file(etc.path());
  CHECK(dir.code() == Code::kInvalid);
  CHECK(dir.message() == "'" + d + "' is not a regular file (a directory)");

  test::write_file(etc / "big.toml", std::string((1 << 20) + 1, '#'));
  auto big = trust::policy_source_from_file(etc / "big.toml");
  CHECK(big.code() == Code::kInvalid);
  CHECK(big.message() == "'" + d + "/big.toml' is larger than 1048576 bytes");

  REQUIRE(::mkfifo((etc / "fifo.toml").c_str(), 0600) == 0);
  int writer = ::open((etc / "fifo.toml").c_str(), O_RDWR | O_CLOEXEC);  // see base/file_test
  REQUIRE(writer >= 0);
  auto pending = std::async(std::launch::async,
                            [&] { return trust::policy_source_from_file(etc / "fifo.toml"); });
  const bool prompt = pending.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  ::close(writer);
  auto fifo = pending.get();
  CHECK(prompt);
  CHECK(fifo.code() == Code::kInvalid);
  CHECK(fifo.message() == "'" + d + "/fifo.toml' is not a regular file (a FIFO)");

  std::filesystem::create_directories(etc / "keys");
  test::write_file(etc / "keys" / "big.asc", std::string((1 << 20) + 1, 'k'));
  auto big_key = trust::policy_source_from_file(etc / "policy.toml");
  CHECK(big_key.code() == Code::kInvalid);
  CHECK(big_key.message() == "'" + d + "/keys/big.asc' is larger than 1048576 bytes");
  std::filesystem::remove(etc / "keys" / "big.asc");
  std::filesystem::create_symlink("/dev/zero", etc / "keys" / "zero.asc");
  auto zero_key = trust::policy_source_from_file(etc / "policy.toml");
  CHECK(zero_key.code() == Code::kInvalid);
  CHECK(zero_key.message() ==
        "'" + d + "/keys/zero.asc' is not a regular file (a character device)");
}

TEST_CASE("TrustKeys::load: an ssh line that does not parse is a problem at its line") {
  auto& k = keys();
  TempDir dir;
  // A 1024-bit RSA key: refused, like a 1024-bit OpenPGP RSA key (openpgp_test.cpp).
  test::must("ssh-keygen -q -t rsa -b 1024 -N '' -C weak -f " + q(dir / "weak"));
  std::string weak_line = test::read_file(dir / "weak.pub");
  weak_line = weak_line.substr(0, weak_line.find(" weak"));
  trust::PolicySource source;
  source.label = "policy.toml";
  source.text =
      "version = 1\n"       // 1
      "[accounts.alice]\n"  // 2
      "ssh = [\n"           // 3
      "  '" +
      TrustKeysFixture::key_part(k.alice_ssh) +
      "',\n"                            // 4
      "  'ssh-ed25519 AAAAnotakey',\n"  // 5
      "]\n"                             // 6
      "[accounts.bob]\n"                // 7
      "ssh = ['" +
      weak_line +
      "']\n"  // 8
      "[[rule]]\nbranch = \"master\"\n";
  auto loaded = trust::TrustKeys::load(source);
  CHECK_FALSE(loaded.keys);
  REQUIRE(loaded.problems.size() == 2);
  CHECK(loaded.problems[0].rfind("policy.toml:5: accounts.alice.ssh: bad-key-line: ", 0) == 0);
  CHECK(loaded.problems[1] ==
        "policy.toml:8: accounts.bob.ssh: weak-key: RSA key shorter than 2048 bits");

  source.text = "version = 1\n[accounts.alice]\nssh = ['" +
                TrustKeysFixture::key_part(k.alice_ssh) + "']\n[[rule]]\nbranch = \"master\"\n";
  auto good = trust::TrustKeys::load(source);
  CHECK(good.problems.empty());
  CHECK(good.keys);
}

TEST_CASE("TrustKeys::load: a refused source never loads") {
  trust::PolicySource source;
  source.label = ".dmz/policy.toml@abc1234";
  source.refusal = ".dmz/policy.toml at abc1234 is not a regular file (a symlink)";
  auto loaded = trust::TrustKeys::load(source);
  CHECK_FALSE(loaded.keys);
  CHECK(loaded.problems == std::vector<std::string>{source.refusal});
}

TEST_CASE("TrustKeys: a GnuPG home that cannot be made fails one check, not every later one") {
  auto& k = keys();
  trust::PolicySource source;
  source.label = "policy.toml";
  source.text = k.policy();
  source.armored_keys = k.key_files();
  auto loaded = trust::TrustKeys::load(source);
  REQUIRE(loaded.keys);
  const std::string payload = "tree 0\n\nsigned\n";
  const std::string signature = k.openpgp(k.gpg.alice)(payload);
  auto verify = [&] { return loaded.keys->verify(SignatureKind::openpgp, payload, signature, 0); };
  {
    // No temporary directory can be made under /proc, whoever runs the test.
    const char* old = std::getenv("TMPDIR");
    const std::string saved = old ? old : "";
    setenv("TMPDIR", "/proc", 1);
    auto failed = verify();
    if (old)
      setenv("TMPDIR", saved.c_str(), 1);
    else
      unsetenv("TMPDIR");
    CHECK_FALSE(failed.signer);
    CHECK(failed.problem == "error: cannot create a GnuPG home under /proc");
  }
  auto good = verify();
  CHECK(good.problem == "");
  CHECK(good.signer == std::optional<std::string>("alice"));
}
