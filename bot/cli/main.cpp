// dmzbot's command line: serve, demo, check-config, verify.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>

#include "bot/cli/demo.hpp"
#include "bot/cli/serve.hpp"
#include "bot/cli/version.hpp"
#include "bot/trust/verify_command.hpp"
#include "config/config.hpp"

namespace {

// Prints every problem as file:line: message; returns the config if there were none.
std::optional<dmz::config::Config> load_config(const std::string& file) {
  auto loaded = dmz::config::load(file);
  for (const auto& p : loaded.problems) std::fprintf(stderr, "%s\n", p.to_string().c_str());
  if (!loaded.problems.empty()) return std::nullopt;
  return loaded.config;
}

}  // namespace

int main(int argc, char** argv) {
  // GPGME and the HTTP client write to pipes and sockets whose peer may go away: that must be
  // an error value, never a fatal signal.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"dmzbot: a merge-queue bot for the Git DMZ flow with a cryptographic trust policy"};
  app.set_version_flag("--version", dmz::kVersion);
  app.require_subcommand(1);

  std::string config_file;
  auto* serve = app.add_subcommand("serve", "run the service");
  serve->add_option("--config", config_file, "configuration file (TOML)")->required();

  dmz::DemoOptions demo_options;
  auto* demo = app.add_subcommand("demo", "self-contained demo on a local sandbox");
  demo->add_flag("--until-idle", demo_options.until_idle,
                 "exit when the queue drains; non-zero unless the outcome is the expected one");
  demo->add_option("--port", demo_options.port, "HTTP port (0 = any free port)");
  demo->add_option("--dir", demo_options.dir, "sandbox directory (default: a new temp dir)");
  demo->add_flag("--keep", demo_options.keep, "keep the sandbox after --until-idle");

  std::string check_file;
  auto* check = app.add_subcommand("check-config", "validate a configuration file");
  check->add_option("FILE", check_file, "configuration file")->required();

  dmz::VerifyOptions verify_options;
  auto* verify = app.add_subcommand("verify", "audit commits against the signature policy");
  verify->add_option("--repo", verify_options.repo, "repository (default: .)");
  verify->add_option("--policy", verify_options.policy,
                     "policy file (default: the trust root in the repository)");
  verify->add_flag("--json", verify_options.json, "print JSON");
  verify->add_option("REVRANGE", verify_options.range, "revision range, e.g. master or v1..master")
      ->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    // Usage errors of verify are exit 2 by its contract; CLI11 uses 105+ for parse errors.
    return code == 0 ? 0 : 2;
  }

  if (*serve) {
    dmz::block_shutdown_signals();
    auto cfg = load_config(config_file);
    return cfg ? dmz::serve(*cfg) : 1;
  }
  if (*demo) return dmz::run_demo(demo_options);
  if (*check) {
    auto cfg = load_config(check_file);
    if (!cfg) return 1;
    std::printf("%s: ok (%zu repositories)\n", check_file.c_str(), cfg->repos.size());
    return 0;
  }
  if (*verify) return dmz::run_verify(verify_options);
  return 2;
}
