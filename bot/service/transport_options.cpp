#include "bot/service/transport_options.hpp"

namespace dmz {

git::TransportOptions transport_options(const config::Repo& repo, const config::Signing& signing) {
  git::TransportOptions o;
  o.url = repo.remote;
  o.token = repo.auth.token.reveal();
  o.username = repo.auth.username;
  o.ssh_key = repo.auth.ssh_key;
  o.known_hosts = repo.auth.known_hosts;
  o.network_timeout = repo.network_timeout;
  if (repo.github) o.ca_file = repo.github->ca_file;  // the API's host is the remote's
  if (signing.format == "openpgp")
    o.sign_pushes = git::PushSigning{
        git::PushSigning::Format::kOpenPgp, signing.fingerprint, signing.gnupg_home, {}};
  else if (signing.format == "ssh")
    o.sign_pushes = git::PushSigning{git::PushSigning::Format::kSsh, signing.key.string(), {}, {}};
  return o;
}

}  // namespace dmz
