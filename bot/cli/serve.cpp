#include "bot/cli/serve.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <ctime>

#include "bot/http/http_server.hpp"
#include "bot/service/service.hpp"

namespace dmz {

namespace {
sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
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
