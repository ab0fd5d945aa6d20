// Push certificates: parsing and the pure judgement of a push (see push_cert.hpp).
#include "bot/trust/push_cert.hpp"

#include <algorithm>
#include <charconv>

#include "base/text.hpp"
#include "queue/glob.hpp"

namespace dmz::trust {
namespace {

Result<RefCommand> parse_command(std::string_view line) {
  size_t a = line.find(' ');
  size_t b = a == std::string_view::npos ? a : line.find(' ', a + 1);
  if (b == std::string_view::npos)
    return invalid("not \"<old> <new> <ref>\": " + std::string(line));
  RefCommand c{std::string(line.substr(0, a)), std::string(line.substr(a + 1, b - a - 1)),
               std::string(line.substr(b + 1))};
  if (!is_sha1_hex(c.old_sha) || !is_sha1_hex(c.new_sha) || c.ref.empty() ||
      c.ref.find_first_of(" \t\r\n") != std::string::npos)
    return invalid("not \"<old> <new> <ref>\": " + std::string(line));
  return c;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
  }
  return out;
}

}  // namespace

Result<PushCertificate> parse_push_certificate(std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return invalid("the certificate holds a NUL byte");
  PushCertificate cert;
  // The signature starts at the first line that opens an armor block (git's
  // parse_signed_buffer takes the last; a certificate with two is refused).
  size_t sig_start = std::string_view::npos;
  for (size_t pos = 0; pos < text.size();) {
    if (signature_kind_of(text.substr(pos)) != SignatureKind::none) {
      if (sig_start != std::string_view::npos)
        return invalid("the certificate holds two signatures");
      sig_start = pos;
    }
    size_t nl = text.find('\n', pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
  }
  std::string_view payload = text.substr(0, sig_start);
  if (sig_start != std::string_view::npos) {
    cert.signature = std::string(text.substr(sig_start));
    // As strict as for tags and commits: nothing after the END line reaches the verifier.
    auto kind = check_armor(cert.signature);
    if (!kind) return invalid("the certificate's signature: " + kind.message());
    cert.signature_kind = *kind;
  }
  cert.payload = std::string(payload);
  if (!payload.ends_with('\n')) return invalid("the certificate does not end its lines");

  auto lines = lines_of(payload);
  size_t i = 0;
  for (; i < lines.size() && !lines[i].empty(); ++i) {
    std::string_view l = lines[i];
    size_t sp = l.find(' ');
    std::string_view name = l.substr(0, sp);
    std::string_view value = sp == std::string_view::npos ? "" : l.substr(sp + 1);
    if (i == 0) {
      if (l != "certificate version 0.1")
        return invalid("not a push certificate of version 0.1: " + std::string(l));
      cert.version = "0.1";
    } else if (name == "pusher") {
      cert.pusher = std::string(value);
      // "<ident> <time> <tz>": the time is the second field from the end.
      size_t tz = value.rfind(' ');
      size_t t = tz == std::string_view::npos ? tz : value.rfind(' ', tz - 1);
      std::string_view time =
          t == std::string_view::npos ? std::string_view{} : value.substr(t + 1, tz - t - 1);
      auto [p, ec] = std::from_chars(time.data(), time.data() + time.size(), cert.pushed_at);
      if (time.empty() || ec != std::errc{} || p != time.data() + time.size())
        return invalid("bad pusher line: " + std::string(l));
    } else if (name == "pushee") {
      cert.pushee = std::string(value);
    } else if (name == "nonce") {
      if (!cert.nonce.empty()) return invalid("the certificate has two nonces");
      cert.nonce = std::string(value);
    } else if (name == "push-option") {
      cert.push_options.emplace_back(value);
    } else {
      return invalid("unknown certificate header: " + std::string(l));
    }
  }
  if (cert.version.empty()) return invalid("not a push certificate");
  if (cert.pusher.empty()) return invalid("the certificate has no pusher line");
  if (i == lines.size()) return invalid("the certificate has no commands");
  for (++i; i < lines.size(); ++i) {
    auto c = parse_command(lines[i]);
    if (!c) return c.status().prefixed("certificate command: ").error();
    cert.commands.push_back(std::move(*c));
  }
  if (cert.commands.empty()) return invalid("the certificate has no commands");
  return cert;
}

std::optional<std::int64_t> nonce_stamp(std::string_view nonce) {
  if (nonce.empty() || nonce[0] < '0' || nonce[0] > '9') return std::nullopt;
  std::int64_t stamp = 0;
  const char* end = nonce.data() + nonce.size();
  auto [p, ec] = std::from_chars(nonce.data(), end, stamp);
  if (ec != std::errc{} || p == end || *p != '-') return std::nullopt;
  return stamp;
}

Result<std::vector<RefCommand>> parse_ref_commands(std::string_view text) {
  std::vector<RefCommand> out;
  for (std::string_view line : lines_of(text)) {
    if (line.empty()) continue;
    auto c = parse_command(line);
    if (!c) return c.error();
    out.push_back(std::move(*c));
  }
  return out;
}

std::vector<std::string> command_differences(const std::vector<RefCommand>& commands,
                                             const std::vector<RefCommand>& updates) {
  std::vector<std::string> out;
  auto same_ref = [](const std::vector<RefCommand>& v, const std::string& ref) {
    return std::find_if(v.begin(), v.end(), [&](const RefCommand& c) { return c.ref == ref; });
  };
  for (const RefCommand& u : updates) {
    if (std::find(commands.begin(), commands.end(), u) != commands.end()) continue;
    auto c = same_ref(commands, u.ref);
    if (c == commands.end())
      out.push_back(u.ref + ": the certificate does not certify this update");
    else if (c->old_sha != u.old_sha)
      out.push_back(u.ref + ": the certificate was made for old value " + c->old_sha.substr(0, 12) +
                    ", the ref is at " + u.old_sha.substr(0, 12) + " (a replayed certificate)");
    else
      out.push_back(u.ref + ": the certificate certifies new value " + c->new_sha.substr(0, 12) +
                    ", not " + u.new_sha.substr(0, 12));
  }
  for (const RefCommand& c : commands)
    if (same_ref(updates, c.ref) == updates.end())
      out.push_back(c.ref + ": certified by the certificate but not being updated");
  return out;
}

bool is_protected(const PushRules& rules, std::string_view ref) {
  return std::any_of(rules.protected_refs.begin(), rules.protected_refs.end(),
                     [&](const std::string& g) { return queue::glob_match(g, ref); });
}

std::vector<std::string> judge_push(const PushFacts& facts, const PushRules& rules) {
  std::vector<std::string> reasons;
  std::vector<std::string> protected_refs;
  for (const RefCommand& u : facts.updates)
    if (is_protected(rules, u.ref)) protected_refs.push_back(u.ref);
  if (protected_refs.empty() && (!rules.require_signed || facts.updates.empty())) return reasons;

  auto joined = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  if (!facts.cert_problem.empty()) {
    reasons.push_back("the push certificate cannot be read: " + facts.cert_problem);
    return reasons;
  }
  if (!facts.cert) {
    reasons.push_back((protected_refs.empty()
                           ? std::string("this server accepts only signed pushes")
                           : "protected " + joined(protected_refs) + ": the push is not signed") +
                      " (git push --signed)");
    return reasons;
  }
  // receive-pack's own check: G good, U good but the server's keyring does not vouch for the
  // key (which does not matter: the policy names the key, and we verify with it below).
  if (facts.git_status != "G" && facts.git_status != "U")
    reasons.push_back("git could not verify the push certificate (GIT_PUSH_CERT_STATUS=" +
                      (facts.git_status.empty() ? std::string("none") : facts.git_status) + ")");
  if (!facts.signer)
    reasons.push_back(
        "the push certificate is not signed by a key of the policy" +
        (facts.signature_problem.empty() ? std::string() : ": " + facts.signature_problem));
  const std::string& n = facts.nonce_status;
  if (n == "OK") {
    // receive.certNonceSlop makes git report a nonce up to that old as OK; install-hooks sets it
    // to nonce_slop, and this holds even when that setting was changed since.
    auto stamp = nonce_stamp(facts.cert->nonce);
    if (facts.now && stamp) {
      std::int64_t age = *facts.now - *stamp;
      if (age < 0) age = -age;
      if (age > rules.nonce_slop + kNonceUploadMargin)
        reasons.push_back("the certificate's nonce is " + std::to_string(age) + " s old, at most " +
                          std::to_string(rules.nonce_slop + kNonceUploadMargin) +
                          " s allowed (nonce_slop and the time to upload a push): push again");
    }
  } else if (n == "SLOP") {
    std::int64_t off = facts.nonce_slop.value_or(INT64_MAX);
    if (off < 0) off = -off;
    if (!facts.nonce_slop || off > rules.nonce_slop)
      reasons.push_back(
          "the certificate's nonce is stale: " +
          (facts.nonce_slop ? std::to_string(off) + " s old" : std::string("age unknown")) +
          ", at most " + std::to_string(rules.nonce_slop) + " s allowed");
  } else if (n == "MISSING") {
    reasons.push_back("the push certificate has no nonce");
  } else if (n == "BAD") {
    reasons.push_back(
        "the certificate's nonce is not the one this server gave for this push (replayed or "
        "forged)");
  } else if (n == "UNSOLICITED") {
    reasons.push_back(
        "this server gave no nonce: set receive.certNonceSeed (dmzbot install-hooks)");
  } else {
    reasons.push_back("unknown nonce status \"" + n + "\"");
  }
  for (std::string& d : command_differences(facts.cert->commands, facts.updates))
    reasons.push_back(std::move(d));
  if (facts.signer) {
    for (const std::string& ref : protected_refs) {
      std::vector<std::string> allowed =
          rules.allowed ? rules.allowed(ref) : std::vector<std::string>{};
      if (std::find(allowed.begin(), allowed.end(), *facts.signer) == allowed.end())
        reasons.push_back(ref + ": " + *facts.signer + " may not push it (the policy allows " +
                          (allowed.empty() ? std::string("nobody") : joined(allowed)) + ")");
    }
  }
  return reasons;
}

}  // namespace dmz::trust
