// The releases section of the repository page: read from the promoter's JSON, rendered with
// every name escaped, and placed on the repository page.
#include "bot/http/releases_view.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "bot/http/pages.hpp"

using namespace dmz;
using namespace dmz::page;

namespace {

constexpr queue::Millis kNow = 1'800'000'000'000;
const std::string kHostile = "<script>alert(1)</script>";

std::string releases_json() {
  using nlohmann::json;
  json staging = json::object();
  staging["branch"] = "staging";
  staging["commit"] = std::string(40, 'c');
  staging["tag"] = "v1.0.1-rc1";
  staging["signers"] = json::array({"lead"});
  staging["at"] = kNow - 120'000;
  json production = json::object();
  production["branch"] = "production";
  production["commit"] = std::string(40, 'd');
  json promoted = json::object();
  promoted["tag"] = "v1.0.1-rc1";
  promoted["kind"] = "candidate";
  promoted["target"] = "staging";
  promoted["commit"] = std::string(40, 'c');
  promoted["from"] = std::string(40, 'b');
  promoted["signers"] = json::array({"lead"});
  promoted["reasons"] = json::array();
  promoted["promoted"] = true;
  promoted["source"] = "fetch";
  promoted["hotfix_branch"] = "hotfix/crash";
  promoted["at"] = kNow - 120'000;
  json refused = json::object();
  refused["tag"] = "v9" + kHostile;
  refused["kind"] = "release";
  refused["target"] = "production";
  refused["commit"] = std::string(40, 'e');
  refused["from"] = "";
  refused["signers"] = json::array({"mallory" + kHostile});
  refused["reasons"] =
      json::array({"tag v9 is signed by mallory, who is not in the release signers " + kHostile});
  refused["promoted"] = false;
  refused["source"] = "api";
  refused["at"] = kNow - 3'600'000;
  json doc = json::object();
  doc["staging"] = staging;
  doc["production"] = production;
  doc["recent"] = json::array({promoted, refused});
  return doc.dump();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("releases: what staging and production hold, promotions and refusals, escaped") {
  auto view = parse_releases(releases_json());
  REQUIRE(view.ok());
  CHECK_FALSE(view->empty());
  REQUIRE(view->staging);
  CHECK(view->staging->tag == "v1.0.1-rc1");
  CHECK(view->staging->signers == std::vector<std::string>{"lead"});
  REQUIRE(view->production);
  CHECK(view->production->tag.empty());
  REQUIRE(view->recent.size() == 2);
  CHECK(view->recent[0].hotfix_branch == "hotfix/crash");
  CHECK_FALSE(view->recent[1].promoted);

  const std::string html = render_releases(*view, kNow);
  CHECK(contains(html, "<h2 id=\"h-releases\">Releases</h2>"));
  CHECK(contains(html, "tag <code>v1.0.1-rc1</code> signed by lead · 2 min ago"));
  CHECK(contains(html,
                 "<code>production</code> at <code>dddddddddd</code> · <span "
                 "class=\"muted\">no promotion by dmzbot is known for this commit</span>"));
  CHECK(contains(html, "hotfix <code>hotfix/crash</code>"));
  CHECK(contains(html, "<span class=\"badge b-passed\">promoted</span>"));
  CHECK(contains(html, "<span class=\"badge b-failed\">refused</span>"));
  CHECK(contains(html, "who is not in the release signers &lt;script&gt;"));
  CHECK_FALSE(contains(html, "<script>"));
}

TEST_CASE("releases: branches not created yet, nothing judged yet") {
  auto view = parse_releases(R"({"staging": null, "production": null, "recent": []})");
  REQUIRE(view.ok());
  CHECK(view->empty());  // the repository page leaves the section out
  const std::string html = render_releases(*view, kNow);
  CHECK(contains(html, "<dt>Staging</dt><dd><span class=\"muted\">not created yet</span>"));
  CHECK(contains(html, "No tag has been promoted or refused yet."));
}

TEST_CASE("releases: a document that is not the promoter's is refused, not guessed") {
  for (const char* bad :
       {"", "[]", "{", R"({"staging": {"branch": 3}})", R"({"recent": {}})",
        R"({"recent": [{"kind": "x"}]})", R"({"recent": [{"tag": "v1", "signers": "lead"}]})"}) {
    INFO(bad);
    auto v = parse_releases(bad);
    CHECK_FALSE(v.ok());
    if (!v.ok()) CHECK(v.code() == Code::kInvalid);
  }
}

TEST_CASE("the repository page shows the releases section when there is one") {
  RepoPage page;
  page.now = kNow;
  page.summary.name = "acme/widget";
  page.summary.strategy = "serial";
  CHECK_FALSE(contains(render_repo(page), "h-releases"));
  auto view = parse_releases(releases_json());
  REQUIRE(view.ok());
  page.releases = *view;
  const std::string html = render_repo(page);
  CHECK(contains(html, "<h2 id=\"h-releases\">Releases</h2>"));
  CHECK(html.find("h-releases") < html.find("h-outcomes"));
}
