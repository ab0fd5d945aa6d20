// A recording fake of dmz::Backend for the API and HTTP server tests: it records every submitted
// event and register_pull call and answers with a configurable Outcome, synchronously or (with
// `answer_from_thread`) from a separate thread.
// Threading: every member function may be called from any thread; the public fields are for the
// test thread and must only be read once the calls under test have been answered.
#pragma once

#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "bot/http/api.hpp"

namespace dmz::test {

class FakeBackend : public Backend {
 public:
  struct Registration {
    std::string repo;
    int number = 0;
    std::string branch, author, title;
  };

  FakeBackend() {
    config::Repo repo;
    repo.name = "o/n";
    repo.api_token = config::Secret("tok");
    repo.status_token = config::Secret("st");
    cfg.repos.push_back(repo);
    config::Repo bare;
    bare.name = "o/notoken";
    cfg.repos.push_back(bare);
  }
  ~FakeBackend() override { join(); }

  config::Config cfg;
  queue::Millis clock = 1000;
  bool is_ready = true;
  std::string metrics_text = "# TYPE dmz_up gauge\ndmz_up 1\n";
  queue::Outcome outcome;                          // returned by submit and register_pull
  std::map<std::string, queue::RepoState> states;  // snapshot
  bool answer_from_thread = false;

  std::vector<std::pair<std::string, queue::Event>> events;   // every submit, in order
  std::vector<std::pair<std::string, queue::Event>> applied;  // those the outcome accepted
  std::vector<Registration> registrations;

  std::size_t event_count() {
    std::lock_guard lock(mu_);
    return events.size();
  }
  void join() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

  const config::Config& config() const override { return cfg; }
  queue::Millis now() const override { return clock; }
  bool ready() const override { return is_ready; }
  std::string metrics() const override { return metrics_text; }
  std::map<std::string, std::string> logs;      // "repo sha" -> log text
  mutable std::vector<std::size_t> log_limits;  // max_bytes of each build_log call
  std::optional<std::string> build_log(const std::string& repo, const queue::Sha& sha,
                                       std::size_t max_bytes) const override {
    log_limits.push_back(max_bytes);
    auto it = logs.find(repo + " " + sha);
    if (it == logs.end()) return std::nullopt;
    return it->second;
  }

  void submit(const std::string& repo, queue::Event event,
              std::function<void(queue::Outcome)> done) override {
    {
      std::lock_guard lock(mu_);
      events.emplace_back(repo, event);
      if (!outcome.rejected) applied.emplace_back(repo, std::move(event));
    }
    answer([this, done] { done(outcome); });
  }
  void register_pull(const std::string& repo, int number, const std::string& branch,
                     const std::string& author, const std::string& title,
                     std::function<void(queue::Outcome)> done) override {
    {
      std::lock_guard lock(mu_);
      registrations.push_back({repo, number, branch, author, title});
    }
    answer([this, done] { done(outcome); });
  }
  void snapshot(const std::string& repo,
                std::function<void(std::optional<queue::RepoState>)> done) override {
    auto it = states.find(repo);
    std::optional<queue::RepoState> state;
    if (it != states.end()) state = it->second;
    answer([done, state] { done(state); });
  }

 private:
  void answer(std::function<void()> f) {
    if (!answer_from_thread) return f();
    std::lock_guard lock(mu_);
    threads_.emplace_back(std::move(f));
  }

  std::mutex mu_;
  std::vector<std::thread> threads_;
};

}  // namespace dmz::test
