// The running service: one engine per repository, all on one engine thread; state persisted
// before any action it enables is executed; git work on one worker thread per repository;
// builds on the local runner; periodic fetches and ticks. It is the Backend the HTTP API uses.
// Threading: Backend calls from any thread; everything else is internal.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/status.hpp"
#include "bot/http/api.hpp"
#include "config/config.hpp"
#include "queue/model.hpp"

namespace dmz {

class Service final : public Backend {
 public:
  struct Options {
    std::chrono::milliseconds fetch_interval{5000};  // how often remotes are fetched
    std::chrono::milliseconds tick_interval{1000};   // how often time advances for the engine
    std::function<queue::Millis()> clock;            // defaults to the system clock
  };

  // Opens the store and the mirrors, loads each repository's state and resumes what was in
  // flight (after a crash: merges, builds, fast-forwards), then starts fetching and ticking.
  static Result<std::unique_ptr<Service>> start(config::Config config, Options options);
  static Result<std::unique_ptr<Service>> start(config::Config config) {
    return start(std::move(config), Options{});
  }
  ~Service() override;
  void stop();  // stops timers, builds, git workers and the engine, in that order

  // Backend
  const config::Config& config() const override;
  queue::Millis now() const override;
  bool ready() const override;
  void submit(const std::string& repo, queue::Event event,
              std::function<void(queue::Outcome)> done) override;
  void register_pull(const std::string& repo, int number, const std::string& branch,
                     const std::string& author, const std::string& title,
                     std::function<void(queue::Outcome)> done) override;
  void snapshot(const std::string& repo,
                std::function<void(std::optional<queue::RepoState>)> done) override;
  std::string metrics() const override;
  std::optional<std::string> build_log(const std::string& repo, const queue::Sha& sha,
                                       std::size_t max_bytes) const override;

  // Synchronous helpers for the demo, the CLI and tests.
  queue::Outcome submit_and_wait(const std::string& repo, queue::Event event);
  std::optional<queue::RepoState> state(const std::string& repo);
  void fetch_now(const std::string& repo);  // fetch + notice pushes, then wait for both

 private:
  struct Impl;
  explicit Service(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The merge commit message dmzbot writes: a subject naming the PR, then trailers naming the
// PR, its head SHA and its approver (invariant 4 of DESIGN.md).
std::string merge_message(const std::string& repo, const queue::MergeItem& item);

}  // namespace dmz
