// dmzbot's command line: serve, demo, check-config, verify, simulate, and the git server
// hooks (install-hooks, pre-receive, post-receive).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <set>

#include "base/text.hpp"
#include "bot/cli/demo.hpp"
#include "bot/cli/serve.hpp"
#include "bot/cli/version.hpp"
#include "bot/git/mirror.hpp"
#include "bot/sim/simulate.hpp"
#include "bot/trust/facts.hpp"
#include "bot/trust/push_hooks.hpp"
#include "bot/trust/release_check.hpp"
#include "bot/trust/signing.hpp"
#include "bot/trust/verify_command.hpp"
#include "config/config.hpp"

namespace {

// Prints every problem as file:line: message; returns the config if there were none.
// Also parses each repository's policy_root (one that does not parse would refuse every PR: the
// gate fails closed), with its own file:line, and loads the signing key as serve will (a key
// with a passphrase, of a type the signer does not know, or missing from the GnuPG home).
std::optional<dmz::config::Config> load_config(const std::string& file) {
  auto loaded = dmz::config::load(file);
  for (const auto& p : loaded.problems) std::fprintf(stderr, "%s\n", p.to_string().c_str());
  if (!loaded.problems.empty()) return std::nullopt;
  bool ok = true;
  // As the loader's own problems: at a line of the file, control characters escaped (a
  // message may quote a key's or a file's content).
  auto report = [&](int line, const std::string& message) {
    std::fprintf(stderr, "%s\n", dmz::config::Problem{file, line, message}.to_string().c_str());
    ok = false;
  };
  const auto& signing = loaded.config->signing;
  if (!signing.format.empty())
    if (auto signer = dmz::make_signer(signing); !signer)
      report(signing.line, "signing: " + signer.message());
  for (const auto& repo : loaded.config->repos) {
    if (repo.policy_root.empty()) continue;
    auto source = dmz::trust::policy_source_from_file(repo.policy_root);
    if (!source) {
      report(repo.line, "repo.policy_root: " + source.message());  // the [[repo]] it is in
      continue;
    }
    auto loaded_keys = dmz::trust::TrustKeys::load(*source);
    for (const auto& problem : loaded_keys.problems) {
      std::fprintf(stderr, "%s\n", problem.c_str());
      ok = false;
    }
    if (loaded_keys.keys)
      if (std::string problem = loaded_keys.keys->import_problem(); !problem.empty())
        report(repo.line, "repo.policy_root: " +
                              (problem.starts_with("error: ") ? problem.substr(7) : problem));
  }
  if (!ok) return std::nullopt;
  return loaded.config;
}

// `dmzbot verify --releases`: every commit staging ever held must carry a valid candidate tag,
// every commit production ever held a valid release tag. The branches are the repository's own
// (refs/heads/<name>) or, in dmzbot's mirror, the tracking refs (refs/remotes/origin/<name>);
// their history is the ref's reflog and the updates the push log (`log_ref`) records.
int run_verify_releases(const dmz::VerifyOptions& options,
                        const dmz::trust::ReleaseBranches& branches, const std::string& log_ref) {
  auto mirror = dmz::git::Mirror::open_existing(options.repo);
  if (!mirror) {
    std::fprintf(stderr, "%s\n", mirror.status().message().c_str());
    return 2;
  }
  dmz::git::Mirror* m = mirror->get();
  auto ref_of = [m](const std::string& b) {
    const std::string local = "refs/heads/" + b;
    if (m->reference(local)) return local;
    const std::string tracking = "refs/remotes/origin/" + b;
    return m->reference(tracking) ? tracking : local;
  };
  auto tip = [m, ref_of](const std::string& b) { return m->reference(ref_of(b)); };
  // A misspelt branch would audit nothing and pass: one named on the command line must exist,
  // and one of the two at least (a repository may have production and no staging yet).
  const dmz::trust::ReleaseBranches defaults;
  const bool named[] = {branches.staging != defaults.staging,
                        branches.production != defaults.production};
  const std::string names[] = {branches.staging, branches.production};
  const bool exists[] = {tip(names[0]).has_value(), tip(names[1]).has_value()};
  for (int i = 0; i < 2; ++i)
    if ((named[i] || !(exists[0] || exists[1])) && !exists[i]) {
      std::fprintf(stderr, "no branch %s (refs/heads/%s or refs/remotes/origin/%s)\n",
                   names[i].c_str(), names[i].c_str(), names[i].c_str());
      return 2;
    }
  auto pushed = dmz::trust::push_log_updates(*m, log_ref);
  if (!pushed) {
    std::fprintf(stderr, "%s\n", pushed.message().c_str());
    return 2;
  }
  dmz::trust::BranchHistory history =
      [&](const std::string& b) -> dmz::Result<std::vector<std::string>> {
    auto held = m->reflog(ref_of(b));
    if (!held) return held.error();
    std::set<std::string> seen(held->begin(), held->end());
    for (const auto& u : *pushed)
      if (u.ref == "refs/heads/" + b && u.new_sha != std::string(40, '0') &&
          seen.insert(u.new_sha).second)
        held->push_back(u.new_sha);
    return held;
  };
  auto problems = dmz::trust::audit_release_branches(*m, branches, tip, options.policy, history);
  if (!problems) {
    std::fprintf(stderr, "%s\n", problems.status().message().c_str());
    return 2;
  }
  for (const auto& p : *problems) std::printf("problem: %s\n", p.c_str());
  std::printf("%s and %s: %zu problems\n", branches.staging.c_str(), branches.production.c_str(),
              problems->size());
  return problems->empty() ? 0 : 1;
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
  std::string log_format;
  serve
      ->add_option("--log-format", log_format,
                   "text or json (one object per line); overrides [log] format")
      ->check(CLI::IsMember({"text", "json"}));

  dmz::DemoOptions demo_options;
  auto* demo = app.add_subcommand("demo", "self-contained demo on a local sandbox");
  demo->add_flag("--until-idle", demo_options.until_idle,
                 "exit when the queue drains; non-zero unless the outcome is the expected one");
  demo->add_option("--port", demo_options.port, "HTTP port (0 = any free port)");
  demo->add_option("--dir", demo_options.dir, "sandbox directory (default: a new temp dir)");
  demo->add_flag(
      "--keep", demo_options.keep,
      "keep the sandbox when the demo ends (by default it is removed unless the demo failed)");

  std::string check_file;
  auto* check = app.add_subcommand("check-config", "validate a configuration file");
  check->add_option("FILE", check_file, "configuration file")->required();

  dmz::VerifyOptions verify_options;
  auto* verify = app.add_subcommand("verify", "audit commits against the signature policy");
  verify->add_option("--repo", verify_options.repo, "repository (default: .)");
  verify->add_option("--policy", verify_options.policy,
                     "policy file (default: the trust root in the repository)");
  auto* verify_json = verify->add_flag("--json", verify_options.json, "print JSON");
  bool verify_pushes = false;
  std::string hooks_config;
  auto* pushes =
      verify->add_flag("--pushes", verify_pushes,
                       "audit the push certificate log (refs/dmz/push-log) against the refs");
  verify->add_option("--config", hooks_config, "with --pushes: the hooks' configuration")
      ->needs(pushes);
  bool verify_releases = false;
  dmz::trust::ReleaseBranches release_branches;
  auto* releases =
      verify->add_flag("--releases", verify_releases,
                       "audit every commit staging and production held (reflog, push log)");
  std::string push_log_ref = "refs/dmz/push-log";
  verify
      ->add_option("--push-log", push_log_ref,
                   "with --releases: the push certificate log ref (default refs/dmz/push-log)")
      ->needs(releases);
  verify->add_option("--staging", release_branches.staging, "with --releases: staging's name")
      ->needs(releases);
  verify
      ->add_option("--production", release_branches.production,
                   "with --releases: production's name")
      ->needs(releases);
  verify->add_option("REVRANGE", verify_options.range, "revision range, e.g. master or v1..master")
      ->excludes(pushes)
      ->excludes(releases);
  // One audit per run: an option of another would be ignored, and the audit not the one asked.
  pushes->excludes(releases);
  verify_json->excludes(releases);  // its report is text only

  dmz::trust::InstallHooksOptions install_options;
  auto* install = app.add_subcommand(
      "install-hooks", "install dmzbot as a git server's pre-receive and post-receive hooks");
  install->add_option("--repo", install_options.repo, "the bare repository")->required();
  install->add_option("--config", install_options.config, "the hooks' configuration (TOML)")
      ->required();
  auto* pre_receive = app.add_subcommand("pre-receive", "git hook: refuse unsigned pushes");
  pre_receive->add_option("--config", hooks_config, "the hooks' configuration")->required();
  auto* post_receive = app.add_subcommand("post-receive", "git hook: log push certificates");
  post_receive->add_option("--config", hooks_config, "the hooks' configuration")->required();

  // CLI11's Range lets NaN through (every comparison with it is false): numbers of the
  // simulator must also be finite.
  const CLI::Validator finite(
      [](std::string& text) {
        const double v = std::strtod(text.c_str(), nullptr);
        return std::isfinite(v) ? std::string() : "not a finite number: " + text;
      },
      "FINITE");
  dmz::sim::SimulateOptions sim;
  auto* simulate = app.add_subcommand(
      "simulate", "run the strategies and an oracle on simulated workloads (virtual time)");
  auto& w = sim.workload;
  simulate->add_option("--rate", w.rate, "PRs approved per hour")
      ->check(CLI::Range(0.0, 10000.0) & finite);
  simulate->add_option("--hours", w.hours, "hours of arrivals")
      ->check(CLI::Range(0.0, 24.0 * 365) & finite);
  simulate->add_option("--burst", w.burst, "probability that an arrival brings a burst of 2-6")
      ->check(CLI::Range(0.0, 1.0) & finite);
  simulate->add_flag("--day", w.day_profile, "arrivals follow a working day (peak at 14:00)");
  simulate->add_option("--ci-median", w.ci_median_minutes, "median build minutes")
      ->check(CLI::Range(0.1, 24.0 * 60) & finite);
  simulate->add_option("--ci-sigma", w.ci_sigma, "lognormal spread of build durations")
      ->check(CLI::Range(0.0, 3.0) & finite);
  simulate->add_option("--fail", w.fail, "probability that a PR is bad")
      ->check(CLI::Range(0.0, 1.0) & finite);
  simulate->add_option("--flake", w.flake, "probability that a build fails anyway")
      ->check(CLI::Range(0.0, 1.0) & finite);
  simulate->add_option("--runners", w.runners, "CI runners")->check(CLI::Range(1, 10000));
  simulate
      ->add_option("--precheck", w.precheck,
                   "probability that a bad PR's own CI before the queue is red")
      ->check(CLI::Range(0.0, 1.0) & finite);
  simulate
      ->add_option("--conflict", w.pair_conflict,
                   "probability that two random PRs conflict semantically")
      ->check(CLI::Range(0.0, 1.0) & finite);
  simulate->add_option("--strategy", sim.strategy, "serial, batch, train, adaptive or all");
  simulate->add_option("--seeds", sim.seeds, "workloads (seeds) per strategy")
      ->check(CLI::Range(1, 1000));
  simulate->add_option("--seed", sim.first_seed, "the first seed")
      ->check(CLI::NonNegativeNumber);  // CLI11 would wrap -1 into an unsigned seed
  simulate->add_option("--drain", sim.run.drain_hours, "hours the queue may drain after arrivals")
      ->check(CLI::Range(0.0, 24.0 * 365) & finite);
  simulate->add_option("--threads", sim.threads, "worker threads (default: one per core)")
      ->check(CLI::Range(0, 256));
  simulate->add_option("--window-max", sim.window_max, "train/adaptive: the window's ceiling")
      ->check(CLI::Range(1, 10000));
  simulate->add_option("--max-batch", sim.max_batch, "batch/adaptive: PRs per candidate")
      ->check(CLI::Range(1, 64));
  simulate->add_option("--flaky-retries", sim.flaky_retries, "builds again before ejecting")
      ->check(CLI::Range(0, 3));
  simulate->add_option("--lanes", sim.lanes, "adaptive: none or paths");
  simulate->add_flag("--json", sim.json, "print JSON (one object per strategy)");
  simulate->add_option("--svg", sim.svg, "draw the time-to-merge distributions into FILE");
  simulate->add_option("--replay", sim.replay_dir,
                       "replay the recorded history in DATA_DIR (with --repo)");
  simulate->add_option("--repo", sim.replay_repo, "the repository to replay (owner/name)");

  // CLI11 answers a mistyped command with "A subcommand is required": name it, and the commands.
  if (argc > 1 && argv[1][0] != '-') {
    const std::string word = argv[1];
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known |= sub->get_name() == word;
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "dmzbot: unknown command '%s'; the commands are %s\n",
                   dmz::escape_control(word).c_str(), names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    if (code == 0) return 0;  // --help, --version
    // CLI11 uses 105+ for parse errors; each verb's contract says what a usage error is:
    // check-config exits 0 or 1 (its scripts test for 1), the others 2.
    return *check ? 1 : 2;
  }

  if (*serve) {
    dmz::block_shutdown_signals();
    auto cfg = load_config(config_file);
    if (cfg && !log_format.empty()) cfg->log_format = log_format;
    return cfg ? dmz::serve(*cfg) : 1;
  }
  if (*demo) return dmz::run_demo(demo_options);
  if (*check) {
    auto cfg = load_config(check_file);
    if (!cfg) return 1;
    std::printf("%s: ok (%zu repositories)\n", check_file.c_str(), cfg->repos.size());
    return 0;
  }
  if (*verify && verify_pushes) {
    dmz::trust::VerifyPushesOptions o;
    o.repo = verify_options.repo;
    o.config = hooks_config;
    o.policy = verify_options.policy;
    o.json = verify_options.json;
    return dmz::trust::run_verify_pushes(o);
  }
  if (*verify && verify_releases)
    return run_verify_releases(verify_options, release_branches, push_log_ref);
  if (*verify) {
    if (verify_options.range.empty()) {
      std::fprintf(stderr, "verify: REVRANGE is required (or --pushes)\n");
      return 2;
    }
    return dmz::run_verify(verify_options);
  }
  if (*install) return dmz::trust::run_install_hooks(install_options);
  if (*pre_receive) return dmz::trust::run_pre_receive(hooks_config, stdin);
  if (*post_receive) return dmz::trust::run_post_receive(hooks_config, stdin);
  if (*simulate) return dmz::sim::run_simulate(sim);
  return 2;
}
