#include "bot/cli/serve.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <ctime>

#include "base/log.hpp"
#include "bot/ci/runner.hpp"
#include "bot/http/http_server.hpp"
#include "bot/service/service.hpp"

namespace dmz {

namespace {
sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  // A closed terminal or session (and `kill -HUP`) stops serve as SIGTERM does, through
  // stop(): by default it would end the process at once, leaving builds and the stop undone.
  sigaddset(&set, SIGHUP);
  return set;
}
}  // namespace

void block_shutdown_signals() {
  sigset_t set = shutdown_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

bool wait_for_shutdown_signal(int timeout_ms) {
  sigset_t set = shutdown_signals();
  if (timeout_ms < 0) {
    int sig = 0;
    return sigwait(&set, &sig) == 0;
  }
  timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
  return sigtimedwait(&set, nullptr, &ts) > 0;
}

int serve(const config::Config& config) {
  log::use_format(log::parse_format(config.log_format).value_or(log::Format::Text));
  // Every build of a repository whose runner sandboxes builds would fail where the sandbox
  // cannot work: refuse to start, and say what to do, rather than fail each pull request.
  for (const auto& repo : config.repos) {
    if (!repo.runner || repo.runner->sandbox != "bwrap") continue;
    if (Status s = check_sandbox(*repo.runner); !s.ok()) {
      std::fprintf(stderr,
                   "dmzbot: cannot start: repository %s runs builds in a sandbox, but %s.\n"
                   "Fix one of: enable unprivileged user namespaces (sysctl "
                   "kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0; inside "
                   "a container, allow them in its seccomp profile), run dmzbot as root, or, "
                   "knowing that pull-request code then runs unconfined as dmzbot's user, set "
                   "sandbox = \"none\" in [repo.runner].\n",
                   repo.name.c_str(), s.message().c_str());
      return 1;
    }
  }
  auto service = Service::start(config);
  if (!service) {
    spdlog::error("cannot start: {}", service.message());
    return 1;
  }
  HttpServer server(config.server, make_api(**service));
  auto port = server.start();
  if (!port) {
    spdlog::error("cannot listen on {}:{}: {}", config.server.host, config.server.port,
                  port.message());
    (*service)->stop();  // its work in flight ends before the process does, as at a signal
    return 1;
  }
  spdlog::info("dmzbot listening on http://{}:{}", config.server.host, *port);
  wait_for_shutdown_signal();
  spdlog::info("shutting down");
  server.stop();
  (*service)->stop();
  return 0;
}

}  // namespace dmz
