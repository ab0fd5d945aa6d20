// dmz::git::Mirror: libgit2 for objects and refs, the git command for the network (see
// mirror.hpp for the contract).
// Every libgit2 object lives in a unique_ptr with its free function as deleter; every failing
// call is turned into an Error right away, with git_error_last() read on this thread and
// prefixed with what was being done ("fetch origin: ...").
#include "bot/git/mirror.hpp"

#include <fcntl.h>
#include <git2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <set>

#include "bot/git/signer.hpp"

namespace dmz::git {
namespace {

// ---- RAII ------------------------------------------------------------------------------------

template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const {
    if (p) Free(p);
  }
};
template <class T, void (*Free)(T*)>
using Ptr = std::unique_ptr<T, Deleter<T, Free>>;

using RepoPtr = Ptr<git_repository, git_repository_free>;
using RemotePtr = Ptr<git_remote, git_remote_free>;
using CommitPtr = Ptr<git_commit, git_commit_free>;
using TreePtr = Ptr<git_tree, git_tree_free>;
using IndexPtr = Ptr<git_index, git_index_free>;
using ConflictIterPtr = Ptr<git_index_conflict_iterator, git_index_conflict_iterator_free>;
using OdbPtr = Ptr<git_odb, git_odb_free>;
using OdbObjectPtr = Ptr<git_odb_object, git_odb_object_free>;
using ObjectPtr = Ptr<git_object, git_object_free>;
using RefPtr = Ptr<git_reference, git_reference_free>;
using RefIterPtr = Ptr<git_reference_iterator, git_reference_iterator_free>;
using RevwalkPtr = Ptr<git_revwalk, git_revwalk_free>;
using BlobPtr = Ptr<git_blob, git_blob_free>;

// The message of the last libgit2 error on this thread, prefixed with `what`.
Error git_fail(const std::string& what, int code = 0) {
  const git_error* e = git_error_last();
  std::string msg = e && e->message ? e->message : "unknown libgit2 error";
  if (code != 0 && (!e || !e->message)) msg += " (code " + std::to_string(code) + ")";
  return error(what + ": " + msg);
}

std::string oid_hex(const git_oid& oid) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof buf, &oid);
  return buf;
}

constexpr const char* kRemote = "origin";
constexpr const char* kFetchTags = "+refs/tags/*:refs/tags/*";

// "Name <email> 1700000000 +0100" as in commit headers.
std::string signature_line(const Identity& who) {
  std::int64_t t = who.time != 0 ? who.time : static_cast<std::int64_t>(std::time(nullptr));
  int off = who.offset_minutes;
  char sign = off < 0 ? '-' : '+';
  if (off < 0) off = -off;
  off %= 100 * 60;  // keep "+HHMM" four digits even for nonsense offsets
  char tz[16];
  std::snprintf(tz, sizeof tz, "%c%02d%02d", sign, off / 60, off % 60);
  return who.name + " <" + who.email + "> " + std::to_string(t) + " " + tz;
}

// One header "key value", a multi-line value continued on lines that start with one space
// (how git stores mergetag and gpgsig). A trailing newline of the value is not a line of its own.
std::string header(const std::string& key, std::string value) {
  if (!value.empty() && value.back() == '\n') value.pop_back();
  std::string out = key + " ";
  for (char c : value) {
    out += c;
    if (c == '\n') out += ' ';
  }
  return out + "\n";
}

// A tree entry name that is safe to create in the export directory: no path traversal, and
// no ".git" (any case), which git itself refuses to check out.
bool valid_entry_name(const char* name) {
  std::string_view n(name);
  if (n.empty() || n == "." || n == ".." || n.find('/') != std::string_view::npos) return false;
  return !(n.size() == 4 && n[0] == '.' && (n[1] | 0x20) == 'g' && (n[2] | 0x20) == 'i' &&
           (n[3] | 0x20) == 't');
}

// Removes every *.lock file of the repository at `dir` (objects/ aside): debris of a git
// process that died holding it. Only for a repository nothing else writes to.
Status remove_stale_locks(const std::filesystem::path& dir) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().parent_path() == dir / "objects") it.disable_recursion_pending();
    if (it->is_regular_file(ec) && it->path().extension() == ".lock") {
      if (!std::filesystem::remove(it->path(), ec) || ec)
        return error("cannot remove stale lock " + it->path().string());
    }
  }
  if (ec) return error("scanning for stale locks: " + ec.message());
  return {};
}

}  // namespace

void init() {
  static std::once_flag once;
  std::call_once(once, [] { git_libgit2_init(); });
}

struct Mirror::Impl {
  std::filesystem::path dir;
  RepoPtr repo;

  // Looks up a revision and peels it to a commit.
  Result<CommitPtr> commit(const std::string& rev, const std::string& what) {
    git_object* obj = nullptr;
    if (int rc = git_revparse_single(&obj, repo.get(), rev.c_str()); rc < 0)
      return git_fail(what + ": resolve " + rev, rc);
    ObjectPtr o(obj);
    git_object* peeled = nullptr;
    if (int rc = git_object_peel(&peeled, o.get(), GIT_OBJECT_COMMIT); rc < 0)
      return git_fail(what + ": " + rev + " is not a commit", rc);
    return CommitPtr(reinterpret_cast<git_commit*>(peeled));
  }

  Result<TreePtr> tree_of(const std::string& rev, const std::string& what) {
    auto c = commit(rev, what);
    if (!c) return c.error();
    git_tree* t = nullptr;
    if (int rc = git_commit_tree(&t, c->get()); rc < 0)
      return git_fail(what + ": tree of " + rev, rc);
    return TreePtr(t);
  }

  // fetch and push go through the git command; null if the repository has no origin.
  std::unique_ptr<Transport> transport;
  Status no_transport;  // why there is none
  // open(): dmzbot's own mirror, which nothing else writes to (not a repository of
  // open_existing's), so a lock in it is debris of ours.
  bool sole_writer = false;

  // Points refs/remotes/origin/<branch> at `sha` ("" = deletes it), as a fetch would.
  Status set_tracking(const std::string& branch, const Sha& sha, const std::string& what) {
    std::string name = "refs/remotes/origin/" + branch;
    if (sha.empty()) {
      git_reference* ref = nullptr;
      int rc = git_reference_lookup(&ref, repo.get(), name.c_str());
      if (rc == GIT_ENOTFOUND) {
        git_error_clear();
        return {};
      }
      if (rc < 0) return git_fail(what + ": look up " + name, rc);
      RefPtr owned(ref);
      if (int rc2 = git_reference_delete(ref); rc2 < 0)
        return git_fail(what + ": delete " + name, rc2);
      return {};
    }
    git_oid oid;
    if (git_oid_fromstr(&oid, sha.c_str()) < 0) return git_fail(what + ": bad sha " + sha);
    git_reference* ref = nullptr;
    if (int rc = git_reference_create(&ref, repo.get(), name.c_str(), &oid, 1, "dmzbot push");
        rc < 0)
      return git_fail(what + ": update " + name, rc);
    git_reference_free(ref);
    return {};
  }

  // Before each git run: a transport, and no lock left by a git run stopped at its deadline
  // (killed, git cannot remove its locks; one would fail every later update of its ref).
  Status ready_for_git(const std::string& what) {
    if (!transport) return no_transport.prefixed(what + ": ");
    if (!sole_writer || !transport->may_have_left_locks()) return {};
    if (Status s = remove_stale_locks(dir); !s.ok()) return s.prefixed(what + ": ");
    transport->locks_cleared();
    return {};
  }

  // The remote's value of `ref` ("" if it has none).
  Result<Sha> remote_value(const std::string& ref, const std::string& what) {
    if (Status s = ready_for_git(what); !s.ok()) return s.error();
    auto values = transport->ls_remote({ref});
    if (!values) return values.status().prefixed(what + ": ").error();
    auto it = values->find(ref);
    return it == values->end() ? Sha() : it->second;
  }
};

Mirror::Mirror(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Mirror::~Mirror() = default;

const std::filesystem::path& Mirror::path() const { return impl_->dir; }

Result<std::unique_ptr<Mirror>> Mirror::open(const std::filesystem::path& dir,
                                             const std::string& remote_url) {
  TransportOptions options;
  options.url = remote_url;
  return open(dir, std::move(options));
}

Result<std::unique_ptr<Mirror>> Mirror::open(const std::filesystem::path& dir,
                                             TransportOptions transport) {
  init();
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  std::string what = "open mirror " + dir.string();
  const std::string remote_url = transport.url;
  // First, as it has no side effects: bad options change nothing on disk.
  auto t = Transport::create(dir, std::move(transport));
  if (!t) return t.status().prefixed(what + ": ").error();
  impl->transport = std::move(*t);
  impl->sole_writer = true;

  git_repository* repo = nullptr;
  std::error_code ec;
  bool exists =
      std::filesystem::exists(dir / "HEAD", ec) || std::filesystem::exists(dir / "objects", ec);
  if (exists) {
    // A mirror has one writer: the service, which holds its data directory's lock. A *.lock
    // file found at open is debris of a crash (kill -9 mid-push or mid-fetch) and would make
    // every later ref update fail, so it goes.
    if (Status s = remove_stale_locks(dir); !s.ok()) return s.prefixed(what + ": ").error();
    if (int rc = git_repository_open_bare(&repo, dir.c_str()); rc < 0) return git_fail(what, rc);
  } else {
    if (int rc = git_repository_init(&repo, dir.c_str(), /*is_bare=*/1); rc < 0)
      return git_fail(what + ": init", rc);
  }
  impl->repo.reset(repo);

  // The transport passes the URL and refspecs to git itself; remote "origin" in the mirror's
  // config is for people who run git in it (and names the tracking refs).
  git_remote* r = nullptr;
  int rc = git_remote_lookup(&r, repo, kRemote);
  RemotePtr remote(r);
  if (rc == GIT_ENOTFOUND) {
    git_error_clear();
    if (rc = git_remote_create(&r, repo, kRemote, remote_url.c_str()); rc < 0)
      return git_fail(what + ": create remote origin " + redact(remote_url), rc);
    remote.reset(r);
  } else if (rc < 0) {
    return git_fail(what + ": remote origin", rc);
  } else {
    const char* url = git_remote_url(remote.get());
    if (!url || remote_url != url) {
      if (rc = git_remote_set_url(repo, kRemote, remote_url.c_str()); rc < 0)
        return git_fail(what + ": set origin url " + redact(remote_url), rc);
    }
  }
  git_strarray fetch = {nullptr, 0};
  if (rc = git_remote_get_fetch_refspecs(&fetch, remote.get()); rc < 0)
    return git_fail(what + ": refspecs of origin", rc);
  bool has_tags = false;
  for (size_t i = 0; i < fetch.count; ++i)
    if (std::strcmp(fetch.strings[i], kFetchTags) == 0) has_tags = true;
  git_strarray_dispose(&fetch);
  if (!has_tags) {
    if (rc = git_remote_add_fetch(repo, kRemote, kFetchTags); rc < 0)
      return git_fail(what + ": add tag refspec", rc);
  }
  // A reflog for every ref (a bare repository keeps none by default): `dmzbot verify
  // --releases` audits every commit staging and production ever held from it.
  git_config* config = nullptr;
  if (rc = git_repository_config(&config, repo); rc < 0) return git_fail(what + ": config", rc);
  rc = git_config_set_string(config, "core.logAllRefUpdates", "true");
  git_config_free(config);
  if (rc < 0) return git_fail(what + ": set core.logAllRefUpdates", rc);
  return std::unique_ptr<Mirror>(new Mirror(std::move(impl)));
}

Result<std::unique_ptr<Mirror>> Mirror::open_existing(const std::filesystem::path& dir) {
  init();
  auto impl = std::make_unique<Impl>();
  std::string what = "open repository " + dir.string();
  git_repository* repo = nullptr;
  // Like git: `dir` may be a work tree, a subdirectory of one, or a bare repository.
  if (int rc = git_repository_open_ext(&repo, dir.c_str(), 0, nullptr); rc < 0)
    return git_fail(what, rc);
  impl->repo.reset(repo);
  const char* gitdir = git_repository_path(repo);
  impl->dir = gitdir ? std::filesystem::path(gitdir) : dir;
  git_remote* r = nullptr;
  impl->no_transport = error("the repository has no origin remote");
  if (git_remote_lookup(&r, repo, kRemote) == 0) {
    RemotePtr remote(r);
    TransportOptions options;
    options.url = git_remote_url(r) ? git_remote_url(r) : "";
    auto t = Transport::create(impl->dir, std::move(options));
    if (t)
      impl->transport = std::move(*t);
    else
      impl->no_transport = t.status();
  } else {
    git_error_clear();
  }
  return std::unique_ptr<Mirror>(new Mirror(std::move(impl)));
}

Status Mirror::fetch() {
  const std::string what = "fetch origin";
  if (Status s = impl_->ready_for_git(what); !s.ok()) return s;
  return impl_->transport->fetch().prefixed(what + ": ");
}

Status Mirror::collect_garbage() {
  const std::string what = "gc";
  if (Status s = impl_->ready_for_git(what); !s.ok()) return s;
  return impl_->transport->gc().prefixed(what + ": ");
}

std::optional<Sha> Mirror::remote_branch(const std::string& name) const {
  git_oid oid;
  std::string ref = "refs/remotes/origin/" + name;
  if (git_reference_name_to_id(&oid, impl_->repo.get(), ref.c_str()) < 0) {
    git_error_clear();
    return std::nullopt;
  }
  return oid_hex(oid);
}

std::optional<Sha> Mirror::reference(const std::string& name) const {
  git_oid oid;
  if (git_reference_name_to_id(&oid, impl_->repo.get(), name.c_str()) < 0) {
    git_error_clear();
    return std::nullopt;
  }
  return oid_hex(oid);
}

Result<std::vector<Sha>> Mirror::reflog(const std::string& name) const {
  git_reflog* log = nullptr;
  if (int rc = git_reflog_read(&log, impl_->repo.get(), name.c_str()); rc < 0)
    return git_fail("read the reflog of " + name, rc);
  std::vector<Sha> out;
  // Index 0 is the newest entry. A deletion is logged with a zero new id: not a value.
  for (size_t i = git_reflog_entrycount(log); i-- > 0;) {
    const git_oid* id = git_reflog_entry_id_new(git_reflog_entry_byindex(log, i));
    if (id && !git_oid_is_zero(id)) out.push_back(oid_hex(*id));
  }
  git_reflog_free(log);
  return out;
}

std::map<std::string, Sha> Mirror::remote_branches() const {
  return refs_under("refs/remotes/origin/");
}

std::map<std::string, Sha> Mirror::refs_under(const std::string& prefix) const {
  std::map<std::string, Sha> out;
  git_reference_iterator* it = nullptr;
  if (git_reference_iterator_glob_new(&it, impl_->repo.get(), (prefix + "*").c_str()) < 0) {
    git_error_clear();
    return out;
  }
  RefIterPtr iter(it);
  git_reference* ref = nullptr;
  while (git_reference_next(&ref, iter.get()) == 0) {
    RefPtr owned(ref);
    if (git_reference_type(ref) != GIT_REFERENCE_DIRECT) continue;  // origin/HEAD
    std::string name = git_reference_name(ref);
    out[name.substr(prefix.size())] = oid_hex(*git_reference_target(ref));
  }
  git_error_clear();
  return out;
}

Result<MergeOutcome> Mirror::merge(
    const Sha& base, const Sha& head, const std::string& message, const Identity& who,
    Signer* signer, const std::vector<std::pair<std::string, std::string>>& extra_headers) {
  const std::string what = "merge " + head + " into " + base;
  // What fails on dmzbot's side (the base missing from the mirror, the object database, the
  // signer) is kUnavailable: the caller must not blame the PR for it. The rest is the head's.
  auto ours_failed = [](const Error& e) { return unavailable(e.message); };
  git_repository* repo = impl_->repo.get();
  auto ours = impl_->commit(base, what);
  if (!ours) return ours_failed(ours.error());
  auto theirs = impl_->commit(head, what);
  if (!theirs) return theirs.error();

  MergeOutcome out;
  // git says "Already up to date" and writes nothing; a merge commit would be empty.
  const git_oid* base_id = git_commit_id(ours->get());
  const git_oid* head_id = git_commit_id(theirs->get());
  int contained =
      git_oid_equal(base_id, head_id) ? 1 : git_graph_descendant_of(repo, base_id, head_id);
  if (contained < 0) return ours_failed(git_fail(what + ": history", contained));
  if (contained == 1) {
    out.up_to_date = true;
    return out;
  }

  git_merge_options opts = GIT_MERGE_OPTIONS_INIT;
  git_index* idx = nullptr;
  if (int rc = git_merge_commits(&idx, repo, ours->get(), theirs->get(), &opts); rc < 0) {
    // libgit2 writes the blobs of files both sides changed here: a full disk or an object
    // database it cannot write fails in this call, and is ours. A missing object is not (the
    // head's history is incomplete), nor is what libgit2 refuses to merge.
    const git_error* e = git_error_last();
    const int klass = e ? e->klass : GIT_ERROR_NONE;
    const bool io = klass == GIT_ERROR_OS || klass == GIT_ERROR_NOMEMORY ||
                    klass == GIT_ERROR_FILESYSTEM || klass == GIT_ERROR_ZLIB ||
                    (klass == GIT_ERROR_ODB && rc != GIT_ENOTFOUND);
    return io ? ours_failed(git_fail(what, rc)) : git_fail(what, rc);
  }
  IndexPtr index(idx);

  if (git_index_has_conflicts(index.get())) {
    git_index_conflict_iterator* it = nullptr;
    if (int rc = git_index_conflict_iterator_new(&it, index.get()); rc < 0)
      return git_fail(what + ": conflicts", rc);
    ConflictIterPtr iter(it);
    std::set<std::string> paths;
    const git_index_entry *anc = nullptr, *our = nullptr, *their = nullptr;
    int rc;
    while ((rc = git_index_conflict_next(&anc, &our, &their, iter.get())) == 0) {
      for (const git_index_entry* e : {anc, our, their})
        if (e && e->path) paths.insert(e->path);
    }
    if (rc != GIT_ITEROVER) return git_fail(what + ": conflicts", rc);
    git_error_clear();
    out.conflicts.assign(paths.begin(), paths.end());
    return out;
  }

  git_oid tree;
  if (int rc = git_index_write_tree_to(&tree, index.get(), repo); rc < 0)
    return ours_failed(git_fail(what + ": write tree", rc));

  // The commit object is written by hand rather than with git_commit_create_buffer /
  // git_commit_create_with_signature: those cannot add arbitrary extra headers (mergetag), and
  // git puts the gpgsig header after all other headers, i.e. after mergetag, which we can only
  // do by building the text ourselves. The signed payload is the commit exactly as written
  // minus the gpgsig header, which is what `git verify-commit` reconstructs.
  std::string text = "tree " + oid_hex(tree) + "\n";
  text += "parent " + oid_hex(*git_commit_id(ours->get())) + "\n";
  text += "parent " + oid_hex(*git_commit_id(theirs->get())) + "\n";
  std::string sig = signature_line(who);
  text += "author " + sig + "\n";
  text += "committer " + sig + "\n";
  for (const auto& [key, value] : extra_headers) {
    if (key.empty() || key.find_first_of(" \n") != std::string::npos)
      return error(what + ": bad header name '" + key + "'");
    text += header(key, value);
  }
  std::string body = message;
  if (body.empty() || body.back() != '\n') body += '\n';  // git ends messages with a newline

  std::string object;
  if (signer) {
    std::string payload = text + "\n" + body;
    auto signature = signer->sign(payload);
    if (!signature) return unavailable(what + ": sign: " + signature.message());
    object = text + header("gpgsig", *signature) + "\n" + body;
  } else {
    object = text + "\n" + body;
  }

  git_odb* db = nullptr;
  if (int rc = git_repository_odb(&db, repo); rc < 0)
    return ours_failed(git_fail(what + ": odb", rc));
  OdbPtr odb(db);
  git_oid id;
  if (int rc = git_odb_write(&id, odb.get(), object.data(), object.size(), GIT_OBJECT_COMMIT);
      rc < 0)
    return ours_failed(git_fail(what + ": write commit", rc));
  out.clean = true;
  out.commit = oid_hex(id);
  return out;
}

Result<PushOutcome> Mirror::push_refs(const std::vector<RefUpdate>& updates) {
  const std::string what = "push to origin";
  if (Status s = impl_->ready_for_git(what); !s.ok()) return s.error();
  // git would say "src refspec does not match any": say which object is missing instead.
  git_odb* db = nullptr;
  if (int rc = git_repository_odb(&db, impl_->repo.get()); rc < 0) return git_fail(what, rc);
  OdbPtr odb(db);
  for (const auto& u : updates) {
    git_oid oid;
    if (u.new_sha.empty()) continue;
    if (u.new_sha.size() != GIT_OID_HEXSZ || git_oid_fromstr(&oid, u.new_sha.c_str()) < 0) {
      git_error_clear();
      return invalid(what + ": bad sha '" + u.new_sha + "' for " + u.ref);
    }
    if (!git_odb_exists(odb.get(), &oid))
      return invalid(what + ": " + u.new_sha + " (for " + u.ref + ") is not in the mirror");
  }
  auto outcome = impl_->transport->push(updates);
  if (!outcome) return outcome.status().prefixed(what + ": ").error();
  const std::string heads = "refs/heads/";
  for (size_t i = 0; i < updates.size(); ++i) {
    const auto& u = updates[i];
    if (!outcome->refs[i].ok() || u.ref.rfind(heads, 0) != 0) continue;
    if (Status s = impl_->set_tracking(u.ref.substr(heads.size()), u.new_sha, what); !s.ok())
      return s.error();
  }
  return outcome;
}

Result<std::map<std::string, Sha>> Mirror::ls_remote(const std::vector<std::string>& refs) {
  const std::string what = "ls-remote origin";
  if (Status s = impl_->ready_for_git(what); !s.ok()) return s.error();
  auto values = impl_->transport->ls_remote(refs);
  if (!values) return values.status().prefixed(what + ": ").error();
  return values;
}

namespace {
// "[remote rejected] (pre-receive hook declined); remote: protected by policy"
std::string refusal(const RefResult& ref, const PushOutcome& outcome) {
  std::string text = ref.summary;
  if (!outcome.remote_messages.empty()) {
    std::string said = outcome.remote_messages;
    std::replace(said.begin(), said.end(), '\n', ' ');
    text += "; remote: " + said;
  }
  return text;
}
}  // namespace

Status Mirror::push_force(const Sha& sha, const std::string& branch) {
  const std::string what = "push " + sha + " to origin " + branch;
  auto pushed = push_refs({{"refs/heads/" + branch, sha, std::nullopt}});
  if (!pushed) return pushed.status().prefixed(what + ": ");
  const RefResult& ref = pushed->refs.front();
  if (!ref.ok()) return conflict(what + ": rejected: " + refusal(ref, *pushed));
  return {};
}

Result<FastForwardOutcome> Mirror::push_fast_forward(const std::string& branch,
                                                     const Sha& expected_old, const Sha& new_sha) {
  const std::string what = "fast-forward origin " + branch + " to " + new_sha;
  if (Status s = impl_->ready_for_git(what); !s.ok()) return s.error();
  const std::string ref = "refs/heads/" + branch;
  FastForwardOutcome out;
  // What the remote is at, once a push did not go through: it decides between "already
  // there" (ok: a retry after a crash), "someone moved it" and a plain refusal.
  auto settle = [&](const std::string& refused) -> Result<FastForwardOutcome> {
    auto now = impl_->remote_value(ref, what);
    if (!now) return now.error();
    out.remote_sha = *now;
    if (*now == new_sha) {
      out.ok = true;
      out.message = "origin " + branch + " already at " + new_sha;
      if (Status s = impl_->set_tracking(branch, new_sha, what); !s) return s.error();
    } else if (*now != expected_old) {
      out.remote_moved = true;
      out.message = "origin " + branch + " is at " + (now->empty() ? "(none)" : *now) +
                    ", expected " + (expected_old.empty() ? "(none)" : expected_old) +
                    (refused.empty() ? "" : ": " + refused);
    } else {
      out.message = refused;
    }
    return out;
  };
  if (!expected_old.empty()) {
    auto descends = is_ancestor(expected_old, new_sha);
    if (!descends || !*descends) {
      auto settled = settle(what + ": not a fast-forward of " + expected_old);
      if (settled && !settled->ok && !settled->remote_moved && !descends)
        return descends.status().prefixed(what + ": ").error();
      return settled;
    }
  }
  // The lease makes the server update the branch only if it is still at expected_old.
  auto pushed = push_refs({{ref, new_sha, expected_old}});
  if (!pushed) {
    // The server may have moved the branch and its answer been lost (a reset connection, a
    // slow hook past the deadline): taken for a failure, the landing would be made twice.
    // Where the remote is now decides; if it cannot be read either, the push failed.
    auto settled = settle(pushed.message());
    if (settled && (settled->ok || settled->remote_moved)) return settled;
    return pushed.status().prefixed(what + ": ").error();
  }
  const RefResult& result = pushed->refs.front();
  if (!result.ok()) return settle(what + ": rejected: " + refusal(result, *pushed));
  out.ok = true;
  if (result.status == RefStatus::kUpToDate) {
    out.remote_sha = new_sha;
    out.message = "origin " + branch + " already at " + new_sha;
  } else {
    out.remote_sha = expected_old;
    out.message = "origin " + branch + " fast-forwarded to " + new_sha;
  }
  return out;
}

namespace {

// Writing a tree under a directory file descriptor: every entry is created relative to its
// parent's descriptor, exclusively and without following a symlink, so that no entry of the
// tree (a symlink "a" and a tree "a/", say) can make a write land outside the export.
class TreeExport {
 public:
  explicit TreeExport(git_repository* repo) : repo_(repo) {}

  // Writes the entries of `tree` into the directory open as `dir_fd`, at `path` ("" or "a/b/").
  Status write_tree(const git_tree* tree, int dir_fd, const std::string& path) {
    for (size_t i = 0; i < git_tree_entrycount(tree); ++i)
      if (Status s = write_entry(git_tree_entry_byindex(tree, i), dir_fd, path); !s.ok()) return s;
    return {};
  }

 private:
  // A failure of the system call `op` on `path`: the tree's when the error can only come from
  // what the tree holds (a name twice, a name too long, a symlink without a usable target).
  static Error failed(const std::string& op, const std::string& path, int err) {
    std::string msg = op + " " + path + ": " + std::strerror(err);
    if (err == EEXIST || err == ENAMETOOLONG ||
        (op == "symlink" && (err == ENOENT || err == EINVAL)))
      return invalid("the tree cannot be written: " + msg);
    return error(msg);
  }

  Status write_entry(const git_tree_entry* entry, int dir_fd, const std::string& parent) {
    const char* name = git_tree_entry_name(entry);
    // Names are checked one by one, and each is created under its parent's descriptor.
    if (!valid_entry_name(name)) return invalid("unsafe path in tree: " + parent + name);
    const std::string path = parent + name;
    switch (git_tree_entry_filemode(entry)) {
      case GIT_FILEMODE_TREE:
        return write_subtree(entry, dir_fd, name, path);
      case GIT_FILEMODE_COMMIT:  // a submodule: an empty directory, as git checkout leaves it
        if (::mkdirat(dir_fd, name, 0755) < 0) return failed("mkdir", path, errno);
        return {};
      case GIT_FILEMODE_LINK:
        return write_symlink(entry, dir_fd, name, path);
      case GIT_FILEMODE_BLOB:
      case GIT_FILEMODE_BLOB_EXECUTABLE:
        return write_file(entry, dir_fd, name, path);
      default:
        return invalid("unknown file mode in tree at " + path);
    }
  }

  Status write_subtree(const git_tree_entry* entry, int dir_fd, const char* name,
                       const std::string& path) {
    if (::mkdirat(dir_fd, name, 0755) < 0) return failed("mkdir", path, errno);
    int sub_fd = ::openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub_fd < 0) return failed("open", path, errno);
    git_tree* t = nullptr;
    Status s;
    if (int rc = git_tree_lookup(&t, repo_, git_tree_entry_id(entry)); rc < 0)
      s = git_fail("read tree " + path, rc);
    else
      s = write_tree(TreePtr(t).get(), sub_fd, path + "/");
    ::close(sub_fd);
    return s;
  }

  Result<BlobPtr> blob(const git_tree_entry* entry, const std::string& path) {
    git_blob* b = nullptr;
    if (int rc = git_blob_lookup(&b, repo_, git_tree_entry_id(entry)); rc < 0)
      return git_fail("read blob " + path, rc);
    return BlobPtr(b);
  }

  Status write_symlink(const git_tree_entry* entry, int dir_fd, const char* name,
                       const std::string& path) {
    auto b = blob(entry, path);
    if (!b) return b.status();
    std::string target(static_cast<const char*>(git_blob_rawcontent(b->get())),
                       static_cast<size_t>(git_blob_rawsize(b->get())));
    if (target.empty() || target.find('\0') != std::string::npos)
      return invalid("the tree cannot be written: symlink " + path + " has no usable target");
    if (::symlinkat(target.c_str(), dir_fd, name) < 0) return failed("symlink", path, errno);
    return {};
  }

  Status write_file(const git_tree_entry* entry, int dir_fd, const char* name,
                    const std::string& path) {
    auto b = blob(entry, path);
    if (!b) return b.status();
    // The tree's mode, whatever the umask.
    const mode_t mode =
        git_tree_entry_filemode(entry) == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644;
    int fd = ::openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return failed("create", path, errno);
    Status s = write_all(fd, git_blob_rawcontent(b->get()),
                         static_cast<size_t>(git_blob_rawsize(b->get())), path);
    if (s.ok() && ::fchmod(fd, mode) < 0) s = failed("chmod", path, errno);
    if (::close(fd) < 0 && s.ok()) s = failed("close", path, errno);
    return s;
  }

  static Status write_all(int fd, const void* data, size_t size, const std::string& path) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      ssize_t n = ::write(fd, p, size);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return failed("write", path, errno);
      p += n;
      size -= static_cast<size_t>(n);
    }
    return {};
  }

  git_repository* repo_;
};

}  // namespace

Status Mirror::export_tree(const Sha& commit, const std::filesystem::path& dir) {
  const std::string what = "export " + commit + " to " + dir.string();
  auto tree = impl_->tree_of(commit, what);
  if (!tree) return tree.error();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return error(what + ": " + ec.message());
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return error(what + ": open: " + std::strerror(errno));
  Status s = TreeExport(impl_->repo.get()).write_tree(tree->get(), dir_fd, "");
  ::close(dir_fd);
  return s.prefixed(what + ": ");
}

Result<bool> Mirror::is_ancestor(const Sha& ancestor, const Sha& descendant) {
  const std::string what = "is " + ancestor + " an ancestor of " + descendant;
  auto a = impl_->commit(ancestor, what);
  if (!a) return a.error();
  auto d = impl_->commit(descendant, what);
  if (!d) return d.error();
  const git_oid* aid = git_commit_id(a->get());
  const git_oid* did = git_commit_id(d->get());
  if (git_oid_equal(aid, did)) return true;
  int rc = git_graph_descendant_of(impl_->repo.get(), did, aid);
  if (rc < 0) return git_fail(what, rc);
  return rc == 1;
}

Result<std::pair<std::string, std::string>> Mirror::read_object(const Sha& sha,
                                                                std::size_t max_bytes) {
  const std::string what = "read object " + sha;
  git_oid oid;
  if (int rc = git_oid_fromstrn(&oid, sha.c_str(), sha.size());
      rc < 0 || sha.size() != GIT_OID_HEXSZ) {
    // Not a full sha: resolve it like any revision.
    git_object* obj = nullptr;
    if (int rc2 = git_revparse_single(&obj, impl_->repo.get(), sha.c_str()); rc2 < 0)
      return git_fail(what, rc2);
    oid = *git_object_id(obj);
    git_object_free(obj);
  }
  git_odb* db = nullptr;
  if (int rc = git_repository_odb(&db, impl_->repo.get()); rc < 0) return git_fail(what, rc);
  OdbPtr odb(db);
  size_t size = 0;
  git_object_t type = GIT_OBJECT_INVALID;
  if (int rc = git_odb_read_header(&size, &type, odb.get(), &oid); rc < 0)
    return git_fail(what, rc);
  if (size > max_bytes) {
    char hex[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, 8, &oid);
    return invalid(std::string(hex) + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  git_odb_object* o = nullptr;
  if (int rc = git_odb_read(&o, odb.get(), &oid); rc < 0) return git_fail(what, rc);
  OdbObjectPtr obj(o);
  std::string data(static_cast<const char*>(git_odb_object_data(o)), git_odb_object_size(o));
  return std::make_pair(std::move(data),
                        std::string(git_object_type2string(git_odb_object_type(o))));
}

Result<std::vector<Sha>> Mirror::rev_list(const Sha& exclude, const Sha& to) {
  const std::string what = "rev-list " + (exclude.empty() ? "" : exclude + "..") + to;
  git_revwalk* w = nullptr;
  if (int rc = git_revwalk_new(&w, impl_->repo.get()); rc < 0) return git_fail(what, rc);
  RevwalkPtr walk(w);
  if (int rc = git_revwalk_sorting(w, GIT_SORT_TOPOLOGICAL | GIT_SORT_REVERSE); rc < 0)
    return git_fail(what, rc);
  auto tip = impl_->commit(to, what);
  if (!tip) return tip.error();
  if (int rc = git_revwalk_push(w, git_commit_id(tip->get())); rc < 0) return git_fail(what, rc);
  if (!exclude.empty()) {
    auto hide = impl_->commit(exclude, what);
    if (!hide) return hide.error();
    if (int rc = git_revwalk_hide(w, git_commit_id(hide->get())); rc < 0) return git_fail(what, rc);
  }
  std::vector<Sha> out;
  git_oid oid;
  int rc;
  while ((rc = git_revwalk_next(&oid, w)) == 0) out.push_back(oid_hex(oid));
  if (rc != GIT_ITEROVER) return git_fail(what, rc);
  git_error_clear();
  return out;
}

Result<std::vector<std::pair<Sha, Sha>>> Mirror::newest_commits(const Sha& tip, std::size_t limit) {
  const std::string what = "walk " + tip;
  // Breadth-first from the tip over all parents, each commit once: a child always comes before
  // its parents on a chain, and the walk stops after `limit` commits. (libgit2's time order
  // does not keep children first when commit times tie; its topological order walks all.)
  auto start = impl_->commit(tip, what);
  if (!start) return start.error();
  std::vector<std::pair<Sha, Sha>> out;
  std::deque<git_oid> todo{*git_commit_id(start->get())};
  std::set<Sha> seen{oid_hex(todo.front())};
  while (out.size() < limit && !todo.empty()) {
    git_oid oid = todo.front();
    todo.pop_front();
    git_commit* c = nullptr;
    if (int rc = git_commit_lookup(&c, impl_->repo.get(), &oid); rc < 0)
      return git_fail(what + ": " + oid_hex(oid), rc);
    CommitPtr commit(c);
    const unsigned parents = git_commit_parentcount(c);
    for (unsigned i = 0; i < parents; ++i) {
      const git_oid* p = git_commit_parent_id(c, i);
      if (seen.insert(oid_hex(*p)).second) todo.push_back(*p);
    }
    out.emplace_back(oid_hex(oid), parents > 0 ? oid_hex(*git_commit_parent_id(c, 0)) : Sha());
  }
  return out;
}

Result<Sha> Mirror::resolve(const std::string& revision) {
  auto c = impl_->commit(revision, "resolve");
  if (!c) return c.error();
  return oid_hex(*git_commit_id(c->get()));
}

Result<std::optional<Sha>> Mirror::merge_tree(const Sha& ours, const Sha& theirs) {
  const std::string what = "merge-tree " + ours + " " + theirs;
  auto a = impl_->commit(ours, what);
  if (!a) return a.error();
  auto b = impl_->commit(theirs, what);
  if (!b) return b.error();
  git_merge_options opts = GIT_MERGE_OPTIONS_INIT;
  git_index* idx = nullptr;
  if (int rc = git_merge_commits(&idx, impl_->repo.get(), a->get(), b->get(), &opts); rc < 0)
    return git_fail(what, rc);
  IndexPtr index(idx);
  if (git_index_has_conflicts(index.get())) return std::optional<Sha>();
  git_oid tree;
  if (int rc = git_index_write_tree_to(&tree, index.get(), impl_->repo.get()); rc < 0)
    return git_fail(what + ": write tree", rc);
  return std::optional<Sha>(oid_hex(tree));
}

Result<std::optional<std::string>> Mirror::read_file(const Sha& commit, const std::string& path) {
  const std::string what = "read " + path + " at " + commit;
  auto tree = impl_->tree_of(commit, what);
  if (!tree) return tree.error();
  git_tree_entry* e = nullptr;
  int rc = git_tree_entry_bypath(&e, tree->get(), path.c_str());
  if (rc == GIT_ENOTFOUND) {
    git_error_clear();
    return std::optional<std::string>();
  }
  if (rc < 0) return git_fail(what, rc);
  Ptr<git_tree_entry, git_tree_entry_free> entry(e);
  if (git_tree_entry_type(e) != GIT_OBJECT_BLOB) return std::optional<std::string>();
  git_blob* b = nullptr;
  if (int rc2 = git_blob_lookup(&b, impl_->repo.get(), git_tree_entry_id(e)); rc2 < 0)
    return git_fail(what, rc2);
  BlobPtr blob(b);
  return std::optional<std::string>(std::string(static_cast<const char*>(git_blob_rawcontent(b)),
                                                static_cast<size_t>(git_blob_rawsize(b))));
}

Result<Sha> Mirror::tree_of(const Sha& commit) {
  auto c = impl_->commit(commit, "tree of " + commit);
  if (!c) return c.error();
  return oid_hex(*git_commit_tree_id(c->get()));
}

std::map<std::string, Sha> Mirror::tags() const {
  std::map<std::string, Sha> out;
  git_reference_iterator* it = nullptr;
  if (git_reference_iterator_glob_new(&it, impl_->repo.get(), "refs/tags/*") < 0) {
    git_error_clear();
    return out;
  }
  RefIterPtr iter(it);
  const std::string prefix = "refs/tags/";
  git_reference* ref = nullptr;
  while (git_reference_next(&ref, iter.get()) == 0) {
    RefPtr owned(ref);
    if (git_reference_type(ref) != GIT_REFERENCE_DIRECT) continue;
    git_object* obj = nullptr;
    if (git_object_lookup(&obj, impl_->repo.get(), git_reference_target(ref), GIT_OBJECT_ANY) < 0) {
      git_error_clear();
      continue;
    }
    ObjectPtr o(obj);
    if (git_object_type(obj) != GIT_OBJECT_TAG) continue;  // a lightweight tag
    out[std::string(git_reference_name(ref)).substr(prefix.size())] =
        oid_hex(*git_reference_target(ref));
  }
  git_error_clear();
  return out;
}

}  // namespace dmz::git
