// Push certificates: parsing git's format, comparing commands with updates, and the judgement.
#include "bot/trust/push_cert.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using namespace dmz;
using namespace dmz::trust;

namespace {

const std::string A(40, 'a'), B(40, 'b'), C(40, 'c'), Z(kZeroSha);

const std::string kSig =
    "-----BEGIN PGP SIGNATURE-----\n\niHUEABYKAB0WIQ=\n=abcd\n-----END PGP SIGNATURE-----\n";

std::string cert_text(const std::string& commands, const std::string& nonce = "1700000000-0123") {
  return "certificate version 0.1\npusher ABCDEF0123456789 1700000001 +0100\n"
         "pushee git://127.0.0.1/x.git\nnonce " +
         nonce + "\npush-option ci.skip\n\n" + commands + kSig;
}

bool has(const std::vector<std::string>& v, const std::string& part) {
  return std::any_of(v.begin(), v.end(),
                     [&](const std::string& s) { return s.find(part) != std::string::npos; });
}

std::string all(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

}  // namespace

TEST_CASE("a push certificate as git writes it is parsed, with the exact signed payload") {
  std::string text =
      cert_text(A + " " + B + " refs/heads/master\n" + Z + " " + C + " refs/tags/v1\n");
  auto cert = parse_push_certificate(text);
  REQUIRE_MESSAGE(cert.ok(), cert.status().message());
  CHECK(cert->version == "0.1");
  CHECK(cert->pusher == "ABCDEF0123456789 1700000001 +0100");
  CHECK(cert->pushed_at == 1700000001);
  CHECK(cert->pushee == "git://127.0.0.1/x.git");
  CHECK(cert->nonce == "1700000000-0123");
  CHECK(cert->push_options == std::vector<std::string>{"ci.skip"});
  REQUIRE(cert->commands.size() == 2);
  CHECK(cert->commands[0] == RefCommand{A, B, "refs/heads/master"});
  CHECK(cert->commands[1] == RefCommand{Z, C, "refs/tags/v1"});
  CHECK(cert->signature == kSig);
  CHECK(cert->signature_kind == SignatureKind::openpgp);
  CHECK(cert->payload + cert->signature == text);
}

TEST_CASE("malformed certificates are refused") {
  const std::string cmd = A + " " + B + " refs/heads/master\n";
  CHECK_FALSE(parse_push_certificate("certificate version 0.2\npusher x 1 +0000\n\n" + cmd).ok());
  CHECK_FALSE(parse_push_certificate("certificate version 0.1\n\n" + cmd).ok());  // no pusher
  CHECK_FALSE(parse_push_certificate("certificate version 0.1\npusher x 1 +0000\n\n").ok());
  CHECK_FALSE(
      parse_push_certificate("certificate version 0.1\npusher x 1 +0000\nfoo bar\n\n" + cmd).ok());
  CHECK_FALSE(
      parse_push_certificate("certificate version 0.1\npusher x notime +0000\n\n" + cmd).ok());
  CHECK_FALSE(parse_push_certificate("certificate version 0.1\npusher x 1 +0000\n\nzz " + B +
                                     " refs/heads/master\n")
                  .ok());
  CHECK_FALSE(parse_push_certificate(cert_text(cmd) + kSig).ok());  // two signatures
  // Text after the END line, or no END line: one signature written another way.
  auto trailing = parse_push_certificate(cert_text(cmd) + "more\n");
  REQUIRE_FALSE(trailing.ok());
  CHECK(trailing.message() ==
        "the certificate's signature: bad-armor: text after \"-----END PGP SIGNATURE-----\"");
  std::string cut = cert_text(cmd);
  cut.resize(cut.find("-----END"));
  CHECK_FALSE(parse_push_certificate(cut).ok());
  std::string nul = cert_text(cmd);
  nul[5] = '\0';
  CHECK_FALSE(parse_push_certificate(nul).ok());
  // Unsigned is parsed (and then judged unsigned).
  auto unsigned_cert =
      parse_push_certificate("certificate version 0.1\npusher x 1 +0000\n\n" + cmd);
  REQUIRE(unsigned_cert.ok());
  CHECK(unsigned_cert->signature.empty());
}

TEST_CASE("command differences: replays, other values, uncertified and unmade updates") {
  std::vector<RefCommand> cert = {{A, B, "refs/heads/master"}, {Z, C, "refs/heads/dmz"}};
  CHECK(command_differences(cert, {{Z, C, "refs/heads/dmz"}, {A, B, "refs/heads/master"}}).empty());
  auto replay = command_differences(cert, {{C, B, "refs/heads/master"}, {Z, C, "refs/heads/dmz"}});
  REQUIRE(replay.size() == 1);
  CHECK(has(replay, "replayed"));
  auto other = command_differences(cert, {{A, C, "refs/heads/master"}, {Z, C, "refs/heads/dmz"}});
  CHECK(has(other, "certifies new value"));
  auto extra = command_differences(
      cert, {{A, B, "refs/heads/master"}, {Z, C, "refs/heads/dmz"}, {Z, A, "refs/heads/staging"}});
  CHECK(has(extra, "refs/heads/staging: the certificate does not certify"));
  auto missing = command_differences(cert, {{A, B, "refs/heads/master"}});
  CHECK(has(missing, "refs/heads/dmz: certified by the certificate but not being updated"));
}

TEST_CASE("judge_push: every reason, one line each") {
  PushRules rules;
  rules.protected_refs = {"refs/heads/master", "refs/tags/v*"};
  rules.nonce_slop = 30;
  rules.allowed = [](std::string_view ref) {
    return ref == "refs/heads/master" ? std::vector<std::string>{"bot"}
                                      : std::vector<std::string>{"releng"};
  };
  PushFacts good;
  good.updates = {{A, B, "refs/heads/master"}};
  good.cert = *parse_push_certificate(cert_text(A + " " + B + " refs/heads/master\n"));
  good.git_status = "G";
  good.nonce_status = "OK";
  good.signer = "bot";
  CHECK(judge_push(good, rules).empty());

  SUBCASE("feature branches pass unsigned unless signing is required") {
    PushFacts f;
    f.updates = {{A, B, "refs/heads/feature/x"}};
    CHECK(judge_push(f, rules).empty());
    rules.require_signed = true;
    CHECK(has(judge_push(f, rules), "accepts only signed pushes"));
  }
  SUBCASE("unsigned push to master") {
    PushFacts f;
    f.updates = good.updates;
    auto r = judge_push(f, rules);
    REQUIRE(r.size() == 1);
    CHECK(has(r, "protected refs/heads/master: the push is not signed"));
  }
  SUBCASE("a key the policy does not allow for the ref") {
    PushFacts f = good;
    f.signer = "releng";
    auto r = judge_push(f, rules);
    REQUIRE(r.size() == 1);
    CHECK(has(r, "refs/heads/master: releng may not push it (the policy allows bot)"));
  }
  SUBCASE("a signature no key of the policy made, and git's own failure") {
    PushFacts f = good;
    f.signer.reset();
    f.signature_problem = "no-key: 0123";
    f.git_status = "E";
    auto r = judge_push(f, rules);
    CHECK_MESSAGE(r.size() == 2, all(r));
    CHECK(has(r, "not signed by a key of the policy: no-key: 0123"));
    CHECK(has(r, "GIT_PUSH_CERT_STATUS=E"));
  }
  SUBCASE("U from git is fine: the policy names the key") {
    PushFacts f = good;
    f.git_status = "U";
    CHECK(judge_push(f, rules).empty());
  }
  SUBCASE("nonces: missing, bad, unsolicited, slop within and beyond the limit") {
    PushFacts f = good;
    f.nonce_status = "MISSING";
    CHECK(has(judge_push(f, rules), "has no nonce"));
    f.nonce_status = "BAD";
    CHECK(has(judge_push(f, rules), "replayed or forged"));
    f.nonce_status = "UNSOLICITED";
    CHECK(has(judge_push(f, rules), "receive.certNonceSeed"));
    f.nonce_status = "SLOP";
    f.nonce_slop = -20;
    CHECK(judge_push(f, rules).empty());
    f.nonce_slop = 31;
    CHECK(has(judge_push(f, rules), "nonce is stale: 31 s old, at most 30 s allowed"));
    f.nonce_slop.reset();
    CHECK(has(judge_push(f, rules), "stale"));
  }
  SUBCASE("an OK nonce older than nonce_slop and the upload margin is stale") {
    // git reports a nonce up to receive.certNonceSlop old as OK; the cert's nonce is from
    // 1700000000.
    PushFacts f = good;
    f.now = 1700000000 + 30 + kNonceUploadMargin;
    CHECK(judge_push(f, rules).empty());
    f.now = *f.now + 1;
    auto r = judge_push(f, rules);
    REQUIRE_MESSAGE(r.size() == 1, all(r));
    CHECK(has(r, "nonce is " + std::to_string(31 + kNonceUploadMargin) + " s old"));
    // A nonce without a readable time is git's to judge (it gave it).
    f.cert->nonce = "x-0123";
    CHECK(judge_push(f, rules).empty());
  }
  SUBCASE("a replayed certificate: old id differs, nonce bad, each a line") {
    PushFacts f = good;
    f.updates = {{C, B, "refs/heads/master"}};
    f.nonce_status = "BAD";
    auto r = judge_push(f, rules);
    CHECK_MESSAGE(r.size() == 2, all(r));
    CHECK(has(r, "replayed certificate"));
    CHECK(has(r, "nonce is not the one"));
  }
  SUBCASE("an unreadable certificate") {
    PushFacts f = good;
    f.cert.reset();
    f.cert_problem = "not a push certificate";
    CHECK(has(judge_push(f, rules), "cannot be read: not a push certificate"));
  }
  SUBCASE("no allowed function: nobody may push") {
    rules.allowed = nullptr;
    CHECK(has(judge_push(good, rules), "the policy allows nobody"));
  }
}

TEST_CASE("nonce_stamp reads the time git puts first in its nonces") {
  CHECK(nonce_stamp("1700000000-0123abcd") == 1700000000);
  CHECK_FALSE(nonce_stamp(""));
  CHECK_FALSE(nonce_stamp("1700000000"));
  CHECK_FALSE(nonce_stamp("-1700000000-ab"));
  CHECK_FALSE(nonce_stamp("abc-0123"));
  CHECK_FALSE(nonce_stamp("99999999999999999999999-ab"));
}
