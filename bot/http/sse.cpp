#include "bot/http/sse.hpp"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "base/this_thread.hpp"
#include "bot/http/api.hpp"

namespace dmz {

namespace {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// An event with only an id (hello, reset).
std::string marker(const char* kind, std::int64_t seq) {
  return "id: " + std::to_string(seq) + "\nevent: " + kind + "\ndata: " + dump({{"seq", seq}}) +
         "\n\n";
}

}  // namespace

std::string sse_event(const EventLogEntry& e) {
  json event = json::parse(e.json, nullptr, /*allow_exceptions=*/false);
  json data = {{"seq", e.seq},   {"repo", e.repo},
               {"kind", e.kind}, {"number", e.number ? json(*e.number) : json(nullptr)},
               {"at", e.at},     {"event", event.is_discarded() ? json(nullptr) : event}};
  // No "event:" line: a plain message, which EventSource hands to onmessage; the kind is in the
  // data. dump() escapes control characters, so the data is one line.
  return "id: " + std::to_string(e.seq) + "\ndata: " + dump(data) + "\n\n";
}

namespace {

class Stream;

}  // namespace

struct SseHub::Core {
  Core(Backend& b, SseOptions o) : backend(b), options(o) {}

  Backend& backend;
  const SseOptions options;
  std::mutex mu;  // guards everything below
  std::condition_variable wake;
  std::map<std::uint64_t, std::weak_ptr<Stream>> streams;
  std::uint64_t next_id = 1;
  std::set<std::string> dirty;  // repositories with new events
  bool stopping = false;
  std::thread thread;
  std::shared_ptr<void> watch;  // the Backend's change callback, while the hub lives

  void changed(const std::string& repo) {
    {
      std::lock_guard lock(mu);
      dirty.insert(repo);
    }
    wake.notify_one();
  }
  void remove(std::uint64_t id) {
    std::lock_guard lock(mu);
    streams.erase(id);
  }
  void run();
  void feed(Stream& s, const std::string& repo);
  // The repositories a stream follows: its own, or every configured one.
  std::vector<std::string> repos_of(const std::string& repo) const;
};

namespace {

class Stream final : public BodyStream {
 public:
  Stream(std::weak_ptr<SseHub::Core> core, std::uint64_t id, std::string repo,
         std::size_t max_buffered)
      : core_(std::move(core)), id_(id), repo_(std::move(repo)), max_buffered_(max_buffered) {}
  ~Stream() override { unregister(); }

  const std::string& repo() const { return repo_; }  // empty: every repository
  bool follows(const std::string& repo) const { return repo_.empty() || repo_ == repo; }

  void next(std::function<void(std::optional<std::string>)> deliver) override {
    std::unique_lock lock(mu_);
    if (!pending_.empty()) {
      std::string text = std::move(pending_);
      pending_.clear();
      lock.unlock();
      return deliver(std::move(text));
    }
    if (ended_ || closed_) {
      lock.unlock();
      return deliver(std::nullopt);
    }
    parked_ = std::move(deliver);
  }

  void close() override {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      parked_ = nullptr;
    }
    unregister();
  }

  // Queues `text` (`repo`'s events up to `seq`) for the client.
  void push(std::string text, const std::string& repo, std::int64_t seq) {
    std::unique_lock lock(mu_);
    if (closed_ || ended_) return;
    lasts_[repo] = seq;
    if (auto deliver = std::exchange(parked_, nullptr)) {
      lock.unlock();
      return deliver(std::move(text));
    }
    // A client this far behind resumes from the store after a reconnect, not from memory.
    // Checked before appending, so the buffer never grows past the limit; one piece alone may
    // (an event larger than the limit), or a client could never get past that event.
    if (!pending_.empty() && pending_.size() + text.size() > max_buffered_) {
      pending_.clear();
      ended_ = true;
      return;
    }
    pending_ += text;
  }
  void set_start(std::string head, std::int64_t last) {
    std::lock_guard lock(mu_);
    pending_ = std::move(head);
    start_ = last;
  }
  // The newest of `repo`'s events this client has (been sent).
  std::int64_t last(const std::string& repo) {
    std::lock_guard lock(mu_);
    auto it = lasts_.find(repo);
    return it == lasts_.end() ? start_ : it->second;
  }
  bool done() {
    std::lock_guard lock(mu_);
    return ended_ || closed_;
  }
  // Ends the body once what is queued was sent.
  void end() {
    std::unique_lock lock(mu_);
    ended_ = true;
    if (!pending_.empty()) return;
    if (auto deliver = std::exchange(parked_, nullptr)) {
      lock.unlock();
      deliver(std::nullopt);
    }
  }

 private:
  void unregister() {
    if (auto core = core_.lock()) core->remove(id_);
  }

  std::weak_ptr<SseHub::Core> core_;
  const std::uint64_t id_;
  const std::string repo_;
  const std::size_t max_buffered_;
  std::mutex mu_;
  std::int64_t start_ = 0;                     // where every repository's events start
  std::map<std::string, std::int64_t> lasts_;  // what was sent since, by repository
  std::string pending_;
  std::function<void(std::optional<std::string>)> parked_;
  bool ended_ = false, closed_ = false;
};

}  // namespace

void SseHub::Core::run() {
  for (;;) {
    std::vector<std::weak_ptr<Stream>> all;
    std::set<std::string> changed;
    {
      std::unique_lock lock(mu);
      wake.wait(lock, [&] { return stopping || !dirty.empty(); });
      if (stopping) return;
      for (const auto& [id, weak] : streams) all.push_back(weak);
      changed.swap(dirty);
    }
    // Outside the lock: dropping the last reference to a stream unregisters it (takes `mu`).
    for (auto& weak : all)
      if (auto s = weak.lock())
        for (const auto& repo : changed)
          if (s->follows(repo)) feed(*s, repo);
  }
}

void SseHub::Core::feed(Stream& s, const std::string& repo) {
  for (;;) {
    if (s.done()) return;
    auto events = backend.events_after(repo, s.last(repo), options.batch);
    if (!events || events->empty()) return;  // a store error: the next change tries again
    // Pushed in pieces of about batch_bytes: a batch of large events (verdicts with thousands
    // of reasons) would otherwise be one huge write, built whole before the buffer's limit
    // could end a slow client's stream.
    std::string text;
    for (std::size_t i = 0; i < events->size(); ++i) {
      text += sse_event((*events)[i]);
      if (text.size() < options.batch_bytes && i + 1 < events->size()) continue;
      s.push(std::move(text), repo, (*events)[i].seq);
      text.clear();
      if (s.done()) return;
    }
    if (events->size() < options.batch) return;
  }
}

std::vector<std::string> SseHub::Core::repos_of(const std::string& repo) const {
  if (!repo.empty()) return {repo};
  std::vector<std::string> out;
  for (const auto& r : backend.config().repos) out.push_back(r.name);
  return out;
}

SseHub::SseHub(Backend& backend, SseOptions options)
    : core_(std::make_shared<Core>(backend, options)) {
  std::weak_ptr<Core> weak = core_;
  core_->watch = backend.watch([weak](const std::string& repo) {
    if (auto core = weak.lock()) core->changed(repo);
  });
  core_->thread = std::thread([core = core_.get()] {
    name_this_thread("sse");
    core->run();
  });
}

SseHub::~SseHub() { stop(); }

void SseHub::stop() {
  std::vector<std::shared_ptr<Stream>> open;
  {
    std::lock_guard lock(core_->mu);
    if (core_->stopping && !core_->thread.joinable()) return;
    core_->stopping = true;
    for (const auto& [id, weak] : core_->streams)
      if (auto s = weak.lock()) open.push_back(std::move(s));
  }
  core_->wake.notify_all();
  if (core_->thread.joinable()) core_->thread.join();
  core_->watch.reset();
  for (auto& s : open) s->end();
}

std::size_t SseHub::open_streams() const {
  std::lock_guard lock(core_->mu);
  return core_->streams.size();
}

Result<std::shared_ptr<BodyStream>> SseHub::open(const std::string& repo,
                                                 std::optional<std::int64_t> after) {
  Core& core = *core_;
  std::uint64_t id = 0;
  {
    std::lock_guard lock(core.mu);
    if (core.stopping) return unavailable("the live feed is stopping");
    if (core.streams.size() >= core.options.max_streams)
      return unavailable("too many live streams (" + std::to_string(core.options.max_streams) +
                         "); retry later");
    id = core.next_id++;
  }
  auto stream = std::make_shared<Stream>(core_, id, repo, core.options.max_buffered);
  stream->keepalive = core.options.keepalive;
  stream->max_duration = core.options.max_duration;

  const auto repos = core.repos_of(repo);
  auto newest = [&]() -> Result<std::int64_t> {
    std::int64_t seq = 0;
    for (const auto& r : repos) {
      auto latest = core.backend.recent_events(r, 1);
      if (!latest) return latest.error();
      if (!latest->empty()) seq = std::max(seq, latest->back().seq);
    }
    return seq;
  };
  std::string head = "retry: 3000\n\n";
  std::int64_t last = 0;
  if (!after) {
    auto seq = newest();
    if (!seq) return seq.error();
    last = *seq;
    head += marker("hello", last);
  } else {
    std::size_t missed = 0;
    for (const auto& r : repos) {
      auto events = core.backend.events_after(r, *after, core.options.max_replay + 1);
      if (!events) return events.error();
      missed += events->size();
    }
    last = *after;
    auto seq = newest();
    if (!seq) return seq.error();
    // Too much missed, or an id from after the newest event (a store restored from a backup,
    // another instance's): the client renders anew from the newest. Followed from an id the
    // store has not reached, the stream would stay silent.
    if (missed > core.options.max_replay || *after > *seq) {
      last = *seq;
      head += marker("reset", last);
    }
  }
  stream->set_start(std::move(head), last);
  {
    std::lock_guard lock(core.mu);
    if (core.stopping) return unavailable("the live feed is stopping");
    if (core.streams.size() >= core.options.max_streams)
      return unavailable("too many live streams (" + std::to_string(core.options.max_streams) +
                         "); retry later");
    core.streams.emplace(id, stream);
    // Whatever was saved since `last` (while this stream was being opened, or missed by a
    // resuming client) is sent by the feeding thread.
    for (const auto& r : repos) core.dirty.insert(r);
  }
  core.wake.notify_one();
  return std::shared_ptr<BodyStream>(stream);
}

}  // namespace dmz
