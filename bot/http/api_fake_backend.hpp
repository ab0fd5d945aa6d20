// A recording fake of dmz::Backend for the API and HTTP server tests: it records every submitted
// event, registration, webhook and read, and answers with configurable results, synchronously
// or (with `answer_from_thread`) from a separate thread.
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
  struct Webhook {
    std::string forge;
    forges::InboundRequest request;
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
  queue::Outcome outcome;                           // returned by submit and register_pull
  std::map<std::string, queue::RepoState> states;   // view
  std::map<std::string, driver::Health> healths;    // view and health
  std::vector<HistoryEntry> outcomes;               // history (newest first) and view.recent
  std::map<std::string, queue::Settings> settings;  // view
  std::map<int, PullView> pulls;                    // pull
  std::optional<Error> read_error;                  // when set, every read fails with it
  Result<WebhookAccepted> webhook_answer = WebhookAccepted{"o/n", false, 1};
  bool answer_from_thread = false;
  std::function<void(const std::string& repo)> after_view;  // runs once view() read the state

  std::vector<std::pair<std::string, queue::Event>> events;   // every submit, in order
  std::vector<std::pair<std::string, queue::Event>> applied;  // those the outcome accepted
  std::vector<Registration> registrations;
  std::vector<Webhook> webhooks;
  std::vector<std::pair<std::int64_t, std::size_t>> history_calls;  // (before, limit)

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
  bool logs_fail = false;                       // build_log fails as a disk would
  Result<std::optional<std::string>> build_log(const std::string& repo, const queue::Sha& sha,
                                               std::size_t max_bytes) const override {
    log_limits.push_back(max_bytes);
    if (logs_fail) return unavailable("cannot read the log: Input/output error");
    auto it = logs.find(repo + " " + sha);
    if (it == logs.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
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
  void register_pull(const std::string& repo, forges::Registration r,
                     std::function<void(queue::Outcome)> done) override {
    {
      std::lock_guard lock(mu_);
      registrations.push_back({repo, r.number, r.branch, r.author, r.title});
    }
    answer([this, done] { done(outcome); });
  }
  void health(
      std::function<void(std::vector<std::pair<std::string, driver::Health>>)> done) override {
    std::vector<std::pair<std::string, driver::Health>> out(healths.begin(), healths.end());
    answer([done, out] { done(out); });
  }
  void view(const std::string& repo, std::function<void(Result<RepoView>)> done) override {
    auto it = states.find(repo);
    Result<RepoView> v = not_found("unknown repository " + repo);
    if (read_error)
      v = *read_error;
    else if (it != states.end())
      v = RepoView{it->second, healths[repo], outcomes, settings[repo]};
    if (after_view) after_view(repo);  // a change saved just after the state was read
    answer([done, v] { done(v); });
  }
  void history(const std::string&, std::int64_t before, std::size_t limit,
               std::function<void(Result<std::vector<HistoryEntry>>)> done) override {
    history_calls.emplace_back(before, limit);
    Result<std::vector<HistoryEntry>> h = outcomes;
    if (read_error) h = *read_error;
    answer([done, h] { done(h); });
  }
  void pull(const std::string&, int number, std::function<void(Result<PullView>)> done) override {
    auto it = pulls.find(number);
    Result<PullView> v = not_found("unknown pull request #" + std::to_string(number));
    if (read_error)
      v = *read_error;
    else if (it != pulls.end())
      v = it->second;
    answer([done, v] { done(v); });
  }
  // The event log: appends `e` with the next seq (for `repo`), then tells the watchers, as the
  // service does after a save.
  std::int64_t publish(EventLogEntry e) {
    std::vector<std::shared_ptr<std::function<void(const std::string&)>>> live;
    {
      std::lock_guard lock(mu_);
      e.seq = ++last_seq_;
      log_.push_back(e);
      for (const auto& w : watchers_)
        if (auto f = w.lock()) live.push_back(f);
    }
    for (const auto& f : live) (*f)(e.repo);
    return e.seq;
  }
  std::size_t watcher_count() {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& w : watchers_) n += !w.expired();
    return n;
  }
  Result<std::vector<EventLogEntry>> recent_events(const std::string& repo,
                                                   std::size_t limit) override {
    std::lock_guard lock(mu_);
    if (read_error) return *read_error;
    std::vector<EventLogEntry> out;
    for (auto it = log_.rbegin(); it != log_.rend() && out.size() < limit; ++it)
      if (it->repo == repo) out.insert(out.begin(), *it);
    return out;
  }
  Result<std::vector<EventLogEntry>> events_after(const std::string& repo, std::int64_t after,
                                                  std::size_t limit) override {
    std::lock_guard lock(mu_);
    if (read_error) return *read_error;
    std::vector<EventLogEntry> out;
    for (const auto& e : log_)
      if (e.repo == repo && e.seq > after && out.size() < limit) out.push_back(e);
    return out;
  }
  std::shared_ptr<void> watch(std::function<void(const std::string&)> on_change) override {
    auto f = std::make_shared<std::function<void(const std::string&)>>(std::move(on_change));
    std::lock_guard lock(mu_);
    watchers_.push_back(f);
    return f;
  }

  void webhook(const std::string& forge, forges::InboundRequest request,
               std::function<void(Result<WebhookAccepted>)> done) override {
    {
      std::lock_guard lock(mu_);
      webhooks.push_back({forge, std::move(request)});
    }
    answer([this, done] { done(webhook_answer); });
  }

 private:
  void answer(std::function<void()> f) {
    if (!answer_from_thread) return f();
    std::lock_guard lock(mu_);
    threads_.emplace_back(std::move(f));
  }

  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<EventLogEntry> log_;
  std::int64_t last_seq_ = 0;
  std::vector<std::weak_ptr<std::function<void(const std::string&)>>> watchers_;
};

}  // namespace dmz::test
