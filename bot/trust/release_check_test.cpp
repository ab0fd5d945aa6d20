// Release promotion from a real repository: a policy committed on master with its keys, tags
// made with `git tag -s` by real OpenPGP keys made here.
#include "bot/trust/release_check.hpp"

#include <doctest/doctest.h>

#include <algorithm>

#include "bot/git/mirror.hpp"
#include "tests/gpg_keys.hpp"
#include "tests/support.hpp"

using namespace dmz;
using namespace dmz::trust;
using namespace dmz::test;

namespace {

struct ReleaseRepo {
  TempDir tmp;
  GpgHome home;
  std::string lead, releng, dev;
  std::filesystem::path dir = tmp / "repo";
  std::string base;  // master's commit with the policy

  ReleaseRepo() {
    lead = home.generate("Lead <lead@example.com>");
    releng = home.generate("Releng <releng@example.com>");
    dev = home.generate("Dev <dev@example.com>");
    std::string policy = "version = 1\n[accounts.lead]\nopenpgp = [\"" + lead +
                         "\"]\n[accounts.releng]\nopenpgp = [\"" + releng +
                         "\"]\n[accounts.dev]\nopenpgp = [\"" + dev +
                         "\"]\n[groups]\nleads = [\"lead\"]\nreleng = [\"releng\"]\n"
                         "devs = [\"dev\"]\n[[rule]]\nbranch = \"master\"\n[release]\n"
                         "candidate_tags = [\"v*-rc*\"]\ncandidate_signers = \"leads\"\n"
                         "release_tags = [\"v*\"]\nrelease_signers = \"releng\"\n";
    base = init_repo(dir, {{".dmz/policy.toml", policy},
                           {".dmz/keys/lead.asc", home.export_public(lead)},
                           {".dmz/keys/releng.asc", home.export_public(releng)},
                           {".dmz/keys/dev.asc", home.export_public(dev)},
                           {"app", "1\n"}});
  }
  std::string git(const std::string& args) {
    return must(git_env() + home.env() + "git -C " + shell_quote(dir.string()) + " " + args);
  }
  void tag(const std::string& name, const std::string& key, const std::string& at) {
    git("-c gpg.program=gpg tag -s -u " + key + " -m " + name + " " + name + " " + at);
  }
  Result<PromotionPlan> plan(const std::string& tag) {
    auto mirror = git::Mirror::open_existing(dir);
    REQUIRE(mirror.ok());
    git::Mirror* m = mirror->get();
    BranchTip tip = [m](const std::string& b) { return m->reference("refs/heads/" + b); };
    BranchHeads heads = [m] { return m->refs_under("refs/heads/"); };
    return plan_promotion(*m, tag, ReleaseBranches{}, tip, {}, heads);
  }
};

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

TEST_CASE("promotion from real signed tags: candidate to staging, release to production") {
  ReleaseRepo r;
  r.tag("v1.0-rc1", r.lead, r.base);
  auto c = r.plan("v1.0-rc1");
  REQUIRE(c.ok());
  CHECK_MESSAGE(c->verdict.ok(), all(c->verdict.reasons));
  CHECK(c->verdict.kind == TagKind::kCandidate);
  CHECK(c->target == "staging");
  CHECK(c->commit == r.base);
  CHECK(c->expected_old.empty());
  CHECK(c->verdict.signers == std::vector<std::string>{"lead"});
  r.git("branch staging " + r.base);

  r.tag("v1.0", r.releng, r.base);
  auto rel = r.plan("v1.0");
  REQUIRE(rel.ok());
  CHECK_MESSAGE(rel->verdict.ok(), all(rel->verdict.reasons));
  CHECK(rel->target == "production");
  CHECK(rel->verdict.signers == std::vector<std::string>{"releng"});

  // Audit: staging at the candidate, production at the release.
  r.git("branch production " + r.base);
  auto mirror = git::Mirror::open_existing(r.dir);
  REQUIRE(mirror.ok());
  git::Mirror* m = mirror->get();
  BranchTip tip = [m](const std::string& b) { return m->reference("refs/heads/" + b); };
  auto good = audit_release_branches(*m, {}, tip, {});
  REQUIRE(good.ok());
  CHECK_MESSAGE(good->empty(), all(*good));
  // Production moved to a commit no release tag marks: the audit says so.
  std::string next = commit_files(r.dir, {{"app", "2\n"}}, "two");
  r.git("branch -f production " + next);
  auto bad = audit_release_branches(*m, {}, tip, {});
  REQUIRE(bad.ok());
  REQUIRE(bad->size() == 1);
  CHECK(
      has(*bad, "production is at " + next.substr(0, 12) + ", which carries no valid release tag"));
}

TEST_CASE("promotion refusals from real tags, each with its reason") {
  ReleaseRepo r;
  SUBCASE("lightweight") {
    r.git("tag v1.0-rc1 " + r.base);
    auto p = r.plan("v1.0-rc1");
    REQUIRE(p.ok());
    CHECK(has(p->verdict.reasons, "tag v1.0-rc1 is a lightweight tag"));
  }
  SUBCASE("unsigned annotated") {
    r.git("tag -a -m x v1.0-rc1 " + r.base);
    auto p = r.plan("v1.0-rc1");
    REQUIRE(p.ok());
    CHECK(has(p->verdict.reasons, "tag v1.0-rc1 is not signed"));
  }
  SUBCASE("signed by someone not in the candidate group") {
    r.tag("v1.0-rc1", r.dev, r.base);
    auto p = r.plan("v1.0-rc1");
    REQUIRE(p.ok());
    CHECK(has(p->verdict.reasons, "signed by dev, who is not in the candidate signers"));
  }
  SUBCASE("a tag header that differs from its ref name") {
    r.tag("v1.0-rc9", r.lead, r.base);
    std::string obj = r.git("rev-parse refs/tags/v1.0-rc9");
    r.git("update-ref refs/tags/v1.0-rc2 " + obj);
    auto p = r.plan("v1.0-rc2");
    REQUIRE(p.ok());
    CHECK_MESSAGE(p->verdict.reasons.size() == 1, all(p->verdict.reasons));
    CHECK(has(p->verdict.reasons, "tag v1.0-rc2 claims to be v1.0-rc9"));
  }
  SUBCASE("a candidate not on master") {
    r.git("checkout -q -b side");
    std::string side = commit_files(r.dir, {{"app", "side\n"}}, "side");
    r.tag("v1.0-rc1", r.lead, side);
    auto p = r.plan("v1.0-rc1");
    REQUIRE(p.ok());
    CHECK(has(p->verdict.reasons,
              "commit " + side.substr(0, 12) + " of tag v1.0-rc1 is not on master"));
  }
  SUBCASE("a release tag on a commit no candidate marks, signed by the wrong person") {
    r.tag("v1.0", r.lead, r.base);
    auto p = r.plan("v1.0");
    REQUIRE(p.ok());
    CHECK_MESSAGE(p->verdict.reasons.size() == 2, all(p->verdict.reasons));
    CHECK(has(p->verdict.reasons, "signed by lead, who is not in the release signers"));
    CHECK(has(p->verdict.reasons, "carries no verified release candidate tag"));
  }
  SUBCASE("not a fast-forward of staging") {
    std::string two = commit_files(r.dir, {{"app", "2\n"}}, "two");
    r.git("branch staging " + two);
    r.tag("v1.0-rc1", r.lead, r.base);
    auto p = r.plan("v1.0-rc1");
    REQUIRE(p.ok());
    CHECK(has(p->verdict.reasons, "is not a fast-forward"));
  }
  SUBCASE("no such tag") {
    auto p = r.plan("v9");
    REQUIRE(p.ok());
    CHECK(has(p->verdict.reasons, "there is no tag v9"));
  }
}

TEST_CASE("verify --releases audits every commit production ever held, from its reflog") {
  ReleaseRepo r;
  r.tag("v1.0-rc1", r.lead, r.base);
  r.tag("v1.0", r.releng, r.base);
  std::string bad = commit_files(r.dir, {{"app", "bad\n"}}, "never released");
  std::string two = commit_files(r.dir, {{"app", "2\n"}}, "two");
  r.tag("v2.0-rc1", r.lead, two);
  r.tag("v2.0", r.releng, two);
  // production: the good v1.0, then a commit no release tag marks, then the good v2.0.
  r.git("update-ref refs/heads/production " + r.base);
  r.git("update-ref refs/heads/production " + bad);
  r.git("update-ref refs/heads/production " + two);
  r.git("update-ref refs/heads/staging " + two);

  auto mirror = git::Mirror::open_existing(r.dir);
  REQUIRE(mirror.ok());
  git::Mirror* m = mirror->get();
  auto held = m->reflog("refs/heads/production");
  REQUIRE(held.ok());
  CHECK(*held == std::vector<std::string>{r.base, bad, two});
  BranchTip tip = [m](const std::string& b) { return m->reference("refs/heads/" + b); };

  // The tips alone look fine...
  auto tips_only = audit_release_branches(*m, {}, tip, {});
  REQUIRE(tips_only.ok());
  CHECK_MESSAGE(tips_only->empty(), all(*tips_only));
  // ... the history does not.
  BranchHistory history = [m](const std::string& b) -> Result<std::vector<std::string>> {
    return m->reflog("refs/heads/" + b);
  };
  auto audited = audit_release_branches(*m, {}, tip, {}, history);
  REQUIRE(audited.ok());
  REQUIRE_MESSAGE(audited->size() == 1, all(*audited));
  CHECK(has(*audited,
            "production was at " + bad.substr(0, 12) + ", which carries no valid release tag"));
  // A history that cannot be read is an error, not a pass.
  BranchHistory broken = [](const std::string&) -> Result<std::vector<std::string>> {
    return unavailable("reflog unreadable");
  };
  auto failed = audit_release_branches(*m, {}, tip, {}, broken);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.message().find("reflog unreadable") != std::string::npos);
}

TEST_CASE("a hotfix candidate off master, on a hotfix branch made from production") {
  ReleaseRepo r;
  r.tag("v1.0-rc1", r.lead, r.base);
  r.tag("v1.0", r.releng, r.base);
  r.git("branch production " + r.base);
  // master moves on and staging holds a newer candidate.
  std::string two = commit_files(r.dir, {{"app", "2\n"}}, "two");
  r.tag("v2.0-rc1", r.lead, two);
  r.git("branch staging " + two);
  // The hotfix, made from the production tag.
  r.git("checkout -q -b hotfix/crash v1.0");
  std::string fix = commit_files(r.dir, {{"fix", "1\n"}}, "fix the crash");
  r.git("checkout -q master");
  r.tag("v1.0.1-rc1", r.lead, fix);

  auto c = r.plan("v1.0.1-rc1");
  REQUIRE(c.ok());
  CHECK_MESSAGE(c->verdict.ok(), all(c->verdict.reasons));
  CHECK(c->verdict.hotfix);
  CHECK(c->hotfix_branch == "hotfix/crash");
  CHECK(c->target == "staging");
  CHECK(c->expected_old == two);

  r.git("update-ref refs/heads/staging " + fix);
  r.tag("v1.0.1", r.releng, fix);
  auto rel = r.plan("v1.0.1");
  REQUIRE(rel.ok());
  CHECK_MESSAGE(rel->verdict.ok(), all(rel->verdict.reasons));
  CHECK(rel->target == "production");
  CHECK(rel->hotfix_branch == "hotfix/crash");

  SUBCASE("a candidate on a branch not named hotfix/* is refused") {
    r.git("branch -m hotfix/crash side");
    auto p = r.plan("v1.0.1-rc1");
    REQUIRE(p.ok());
    CHECK_FALSE(p->verdict.hotfix);
    CHECK(has(p->verdict.reasons, "nor on a hotfix branch made from production's tip"));
  }
  SUBCASE("a hotfix branch that does not start from production is refused") {
    r.git("update-ref refs/heads/production " + two);  // production moved past the fix's base
    auto p = r.plan("v1.0.1-rc1");
    REQUIRE(p.ok());
    CHECK_FALSE(p->verdict.hotfix);
    CHECK(has(p->verdict.reasons, "is not on master"));
  }
}
