// The mapping of a repository's configuration onto the git transport.
#include "bot/service/transport_options.hpp"

#include <doctest/doctest.h>

using namespace dmz;

TEST_CASE("transport options: remote, credentials, timeout, and push signing by the bot's key") {
  config::Repo repo;
  repo.remote = "https://git.example.com/o/r.git";
  repo.auth.token = config::Secret("tok");
  repo.auth.username = "bot";
  repo.auth.ssh_key = "/k/id";
  repo.auth.known_hosts = "/k/known";
  repo.network_timeout = std::chrono::seconds(7);
  config::Signing signing;
  auto unsigned_opts = transport_options(repo, signing);
  CHECK(unsigned_opts.url == repo.remote);
  CHECK(unsigned_opts.token == "tok");
  CHECK(unsigned_opts.username == "bot");
  CHECK(unsigned_opts.ssh_key == "/k/id");
  CHECK(unsigned_opts.known_hosts == "/k/known");
  CHECK(unsigned_opts.network_timeout == std::chrono::seconds(7));
  CHECK_FALSE(unsigned_opts.sign_pushes);

  signing.format = "openpgp";
  signing.fingerprint = "ABCDEF";
  signing.gnupg_home = "/g";
  auto pgp = transport_options(repo, signing);
  REQUIRE(pgp.sign_pushes);
  CHECK(pgp.sign_pushes->format == git::PushSigning::Format::kOpenPgp);
  CHECK(pgp.sign_pushes->key == "ABCDEF");
  CHECK(pgp.sign_pushes->gnupg_home == "/g");

  signing = {};
  signing.format = "ssh";
  signing.key = "/keys/bot";
  auto ssh = transport_options(repo, signing);
  REQUIRE(ssh.sign_pushes);
  CHECK(ssh.sign_pushes->format == git::PushSigning::Format::kSsh);
  CHECK(ssh.sign_pushes->key == "/keys/bot");
}
