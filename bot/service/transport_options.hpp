// How a configured repository reaches its remote: the [[repo]] URL, [repo.auth] credentials and
// network timeout, and the bot's [signing] key for push certificates, as git transport options.
// Threading: pure; any thread.
#pragma once

#include <filesystem>

#include "bot/git/transport.hpp"
#include "config/config.hpp"

namespace dmz {

// dmzbot signs its pushes (git push --signed=if-asked: only a server that asks, i.e. has
// receive.certNonceSeed, gets a certificate) with the key that signs its merge commits.
git::TransportOptions transport_options(const config::Repo& repo, const config::Signing& signing);

}  // namespace dmz
