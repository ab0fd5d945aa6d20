#include "bot/trust/openpgp.hpp"

#include <fcntl.h>
#include <gpgme.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

extern char** environ;

namespace dmz {
namespace gpgme {

namespace {

// gpgme_check_version must run once before any other GPGME call; its result is kept.
const char* init_error() {
  static std::once_flag once;
  static const char* error = nullptr;
  std::call_once(once, [] {
    if (!gpgme_check_version(nullptr)) {
      error = "GPGME failed to initialize";
    } else if (gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP) != 0) {
      error = "the OpenPGP engine (gpg) is missing or too old";
    }
  });
  return error;
}

}  // namespace

void ContextDeleter::operator()(gpgme_context* ctx) const { gpgme_release(ctx); }
void DataDeleter::operator()(gpgme_data* data) const { gpgme_data_release(data); }

std::string describe(const std::string& what, unsigned int err) {
  char buf[256] = {0};
  gpgme_strerror_r(err, buf, sizeof buf - 1);
  return what + ": " + gpgme_strsource(err) + ": " + buf;
}

Result<Context> open_context(const std::string& home) {
  if (const char* e = init_error()) return error(std::string("error: ") + e);
  gpgme_ctx_t raw = nullptr;
  if (gpgme_error_t err = gpgme_new(&raw)) return error(describe("error: gpgme_new", err));
  Context ctx(raw);
  if (gpgme_error_t err = gpgme_set_protocol(raw, GPGME_PROTOCOL_OpenPGP)) {
    return error(describe("error: gpgme_set_protocol", err));
  }
  if (gpgme_error_t err =
          gpgme_ctx_set_engine_info(raw, GPGME_PROTOCOL_OpenPGP, nullptr, home.c_str())) {
    return error(describe("error: cannot use GnuPG home " + home, err));
  }
  gpgme_set_offline(raw, 1);
  gpgme_set_armor(raw, 0);
  if (gpgme_error_t err = gpgme_set_pinentry_mode(raw, GPGME_PINENTRY_MODE_LOOPBACK)) {
    return error(describe("error: gpgme_set_pinentry_mode", err));
  }
  if (gpgme_error_t err = gpgme_set_keylist_mode(raw, GPGME_KEYLIST_MODE_LOCAL)) {
    return error(describe("error: gpgme_set_keylist_mode", err));
  }
  return ctx;
}

Result<Data> data_from(std::string_view bytes) {
  if (const char* e = init_error()) return error(std::string("error: ") + e);
  gpgme_data_t raw = nullptr;
  if (gpgme_error_t err = gpgme_data_new_from_mem(&raw, bytes.data(), bytes.size(), 1)) {
    return error(describe("error: gpgme_data_new_from_mem", err));
  }
  return Data(raw);
}

Result<Data> new_data() {
  if (const char* e = init_error()) return error(std::string("error: ") + e);
  gpgme_data_t raw = nullptr;
  if (gpgme_error_t err = gpgme_data_new(&raw))
    return error(describe("error: gpgme_data_new", err));
  return Data(raw);
}

std::string contents(gpgme_data* data) {
  std::string out;
  if (gpgme_data_seek(data, 0, SEEK_SET) != 0) return out;
  char buf[4096];
  ssize_t n;
  while ((n = gpgme_data_read(data, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

void kill_daemons(const std::string& home) {
  std::string gpgconf = "gpgconf";
  gpgme_engine_info_t info = nullptr;
  if (!init_error() && gpgme_get_engine_info(&info) == 0) {
    for (; info; info = info->next) {
      if (info->protocol == GPGME_PROTOCOL_GPGCONF && info->file_name) gpgconf = info->file_name;
    }
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::string a_homedir = "--homedir", a_kill = "--kill", a_all = "all";
  std::string h = home;
  char* argv[] = {gpgconf.data(), a_homedir.data(), h.data(), a_kill.data(), a_all.data(), nullptr};
  pid_t pid = 0;
  if (posix_spawnp(&pid, gpgconf.c_str(), &actions, nullptr, argv, environ) == 0) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  posix_spawn_file_actions_destroy(&actions);
}

void KeyDeleter::operator()(_gpgme_key* key) const { gpgme_key_unref(key); }

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace gpgme

namespace {

using gpgme::Key;
using gpgme::upper;

size_t count(std::string_view haystack, std::string_view needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string_view::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// Digests that still resist collisions; anything else (SHA-1, MD5, RIPEMD-160...) is weak.
bool strong_digest(gpgme_hash_algo_t algo) {
  switch (algo) {
    case GPGME_MD_SHA224:
    case GPGME_MD_SHA256:
    case GPGME_MD_SHA384:
    case GPGME_MD_SHA512:
      return true;
    default:
      return false;
  }
}

// The subkey of `key` (the primary included) whose fingerprint or key id is `fpr`.
gpgme_subkey_t find_subkey(gpgme_key_t key, const std::string& fpr) {
  for (gpgme_subkey_t sub = key->subkeys; sub; sub = sub->next) {
    if (sub->fpr && upper(sub->fpr) == fpr) return sub;
    if (fpr.size() == 16 && sub->keyid && upper(sub->keyid) == fpr) return sub;
  }
  return nullptr;
}

// The binary content of the one armor block of `armored` (header lines and the CRC skipped);
// empty if it is not well-formed base64.
std::string dearmor(std::string_view armored) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t pos = armored.find("-----BEGIN PGP SIGNATURE-----");
  if (pos == std::string_view::npos) return {};
  pos = armored.find('\n', pos);
  std::string out;
  unsigned bits = 0, nbits = 0;
  bool body = false, padded = false;
  while (pos != std::string_view::npos && pos < armored.size()) {
    size_t end = armored.find('\n', pos + 1);
    std::string_view line = armored.substr(
        pos + 1, end == std::string_view::npos ? std::string_view::npos : end - pos - 1);
    pos = end;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.remove_suffix(1);
    }
    if (line.rfind("-----END PGP SIGNATURE-----", 0) == 0) return out;
    if (line.empty()) {
      body = true;
      continue;
    }
    if (!body && line.find(": ") != std::string_view::npos) continue;  // an armor header
    body = true;
    if (line[0] == '=') continue;  // the CRC-24 line
    for (char c : line) {
      if (c == '=') {
        padded = true;
        continue;
      }
      size_t v = kAlphabet.find(c);
      if (v == std::string_view::npos || padded) return {};
      bits = (bits << 6) | static_cast<unsigned>(v);
      nbits += 6;
      if (nbits >= 8) {
        nbits -= 8;
        out += static_cast<char>((bits >> nbits) & 0xff);
      }
    }
  }
  return {};  // no END line
}

// Checks the OpenPGP packets of a detached signature ourselves, before GnuPG: only signature
// packets, exactly one, over a binary document (git signs bytes; a text-mode signature would
// also vouch for the payload with other line endings).
Status check_packets(std::string_view bin) {
  if (bin.empty()) return invalid("bad-signature: malformed armor");
  size_t pos = 0, signatures = 0;
  int sig_type = -1;
  while (pos < bin.size()) {
    auto byte = [&](size_t i) { return static_cast<unsigned char>(bin[i]); };
    unsigned char head = byte(pos++);
    if (!(head & 0x80)) return invalid("bad-signature: malformed OpenPGP packet");
    unsigned tag = 0;
    size_t len = 0;
    auto need = [&](size_t n) { return pos + n <= bin.size(); };
    if (head & 0x40) {  // new format
      tag = head & 0x3f;
      if (!need(1)) return invalid("bad-signature: truncated OpenPGP packet");
      unsigned char l0 = byte(pos++);
      if (l0 < 192) {
        len = l0;
      } else if (l0 < 224) {
        if (!need(1)) return invalid("bad-signature: truncated OpenPGP packet");
        len = ((l0 - 192u) << 8) + byte(pos++) + 192;
      } else if (l0 == 255) {
        if (!need(4)) return invalid("bad-signature: truncated OpenPGP packet");
        len = (size_t{byte(pos)} << 24) | (size_t{byte(pos + 1)} << 16) |
              (size_t{byte(pos + 2)} << 8) | byte(pos + 3);
        pos += 4;
      } else {
        return invalid("bad-signature: not a detached signature (partial-length packet)");
      }
    } else {  // old format
      tag = (head >> 2) & 0x0f;
      static constexpr size_t kLengthBytes[] = {1, 2, 4, 0};
      size_t n = kLengthBytes[head & 3];
      if (n == 0) return invalid("bad-signature: not a detached signature (indeterminate length)");
      if (!need(n)) return invalid("bad-signature: truncated OpenPGP packet");
      for (size_t i = 0; i < n; ++i) len = (len << 8) | byte(pos++);
    }
    if (!need(len)) return invalid("bad-signature: truncated OpenPGP packet");
    if (tag != 2) {
      return invalid("bad-signature: not a detached signature (OpenPGP packet type " +
                     std::to_string(tag) + ")");
    }
    ++signatures;
    // v4/v5: version, type, ...; v3: version, 5, type, ...
    if (len >= 3) sig_type = byte(pos) == 3 ? byte(pos + 2) : byte(pos + 1);
    pos += len;
  }
  if (signatures == 0) return invalid("bad-signature: no signature found");
  if (signatures > 1) {
    return invalid("multiple-signatures: " + std::to_string(signatures) + " signature packets");
  }
  if (sig_type != 0x00) {
    char hex[16];  // "0x" + up to 8 hex digits for any int
    std::snprintf(hex, sizeof hex, "0x%02x", sig_type < 0 ? 0xff : sig_type);
    return invalid(std::string("bad-signature: signature type ") + hex +
                   " is not a binary-document signature");
  }
  return Status::success();
}

const char kGpgConf[] =
    "# Written by dmzbot: an isolated, offline home holding only the policy's public keys.\n"
    "no-auto-key-retrieve\n"
    "auto-key-locate local\n"
    "trust-model always\n"
    "no-auto-check-trustdb\n"
    "no-autostart\n"
    "no-greeting\n";

}  // namespace

namespace {

// What verify() needs to know about one signing (sub)key, read from a gpgme key listing.
// Revocation cannot change without an import (which clears the cache); expiry is kept as a
// time and compared with the clock at each use, so a cached key cannot outlive its expiry.
struct SubkeyFacts {
  std::string fpr;
  bool revoked = false, invalid = false, disabled = false, can_sign = false;
  unsigned long expires = 0;  // 0: never
  unsigned long created = 0;
  gpgme_pubkey_algo_t algo = GPGME_PK_RSA;
  unsigned int bits = 0;
};
struct KeyFacts {
  bool revoked = false, invalid = false, disabled = false;
  SubkeyFacts primary, signer;
};

SubkeyFacts facts_of(gpgme_subkey_t k) {
  return SubkeyFacts{k->fpr ? k->fpr : "",
                     k->revoked != 0,
                     k->invalid != 0,
                     k->disabled != 0,
                     k->can_sign != 0,
                     k->expires > 0 ? static_cast<unsigned long>(k->expires) : 0,
                     k->timestamp > 0 ? static_cast<unsigned long>(k->timestamp) : 0,
                     k->pubkey_algo,
                     k->length};
}

// The rule SSH keys follow too (sshsig.cpp): RSA (and DSA, of the same strength) below 2048
// bits is refused. GnuPG 2.2 still verifies with 1024-bit RSA keys.
constexpr unsigned int kMinFiniteFieldBits = 2048;
bool weak(const SubkeyFacts& k) {
  switch (k.algo) {
    case GPGME_PK_RSA:
    case GPGME_PK_RSA_E:
    case GPGME_PK_RSA_S:
    case GPGME_PK_DSA:
      return k.bits < kMinFiniteFieldBits;
    default:
      return false;
  }
}

}  // namespace

struct OpenPgpVerifier::State {
  std::string home;
  gpgme::Context ctx;
  // Key listings by signing fingerprint: without this every verification would run gpg a
  // second time (gpgme_get_key), doubling the cost of a cold check.
  std::map<std::string, KeyFacts> keys;

  ~State() {
    ctx.reset();
    if (home.empty()) return;
    gpgme::kill_daemons(home);
    std::error_code ec;
    std::filesystem::remove_all(home, ec);
  }
};

OpenPgpVerifier::OpenPgpVerifier(std::unique_ptr<State> state) : state_(std::move(state)) {}
OpenPgpVerifier::OpenPgpVerifier(OpenPgpVerifier&&) noexcept = default;
OpenPgpVerifier& OpenPgpVerifier::operator=(OpenPgpVerifier&&) noexcept = default;
OpenPgpVerifier::~OpenPgpVerifier() = default;

const std::string& OpenPgpVerifier::home() const { return state_->home; }

Result<OpenPgpVerifier> OpenPgpVerifier::create() {
  std::error_code ec;
  std::filesystem::path tmp = std::filesystem::temp_directory_path(ec);
  if (ec) tmp = "/tmp";
  std::string pattern = (tmp / "dmzbot-gpg-XXXXXX").string();
  if (!mkdtemp(pattern.data())) {  // mkdtemp creates the directory with mode 0700
    return error("error: cannot create a GnuPG home under " + tmp.string());
  }
  auto state = std::make_unique<State>();
  state->home = pattern;
  {
    std::ofstream conf(std::filesystem::path(pattern) / "gpg.conf");
    conf << kGpgConf;
    if (!conf) return error("error: cannot write gpg.conf in " + pattern);
  }
  auto ctx = gpgme::open_context(state->home);
  if (!ctx) return ctx.error();
  state->ctx = std::move(*ctx);
  return OpenPgpVerifier(std::move(state));
}

Result<std::vector<std::string>> OpenPgpVerifier::import_keys(std::string_view armored) {
  state_->keys.clear();  // an import may add a revocation or a new expiry
  if (armored.find("PRIVATE KEY BLOCK") != std::string_view::npos) {
    return error("error: refusing to import a secret key");
  }
  if (armored.find("-----BEGIN PGP PUBLIC KEY BLOCK-----") == std::string_view::npos) {
    return error("error: no armored OpenPGP public key block");
  }
  gpgme_ctx_t ctx = state_->ctx.get();
  auto data = gpgme::data_from(armored);
  if (!data) return data.error();
  if (gpgme_error_t err = gpgme_op_import(ctx, data->get())) {
    return error(gpgme::describe("error: importing keys", err));
  }
  gpgme_import_result_t result = gpgme_op_import_result(ctx);
  if (!result || result->considered == 0) return error("error: no public key found to import");
  if (result->not_imported > 0) {
    return error("error: " + std::to_string(result->not_imported) + " of " +
                 std::to_string(result->considered) + " keys could not be imported");
  }
  std::vector<std::string> fprs;
  for (gpgme_import_status_t s = result->imports; s; s = s->next) {
    if (s->result != 0) {
      return error(
          gpgme::describe("error: importing " + std::string(s->fpr ? s->fpr : "?"), s->result));
    }
    if (!s->fpr) continue;
    std::string fpr = upper(s->fpr);
    if (std::find(fprs.begin(), fprs.end(), fpr) == fprs.end()) fprs.push_back(fpr);
  }
  if (fprs.empty()) return error("error: no public key imported");
  return fprs;
}

Result<std::vector<std::string>> OpenPgpVerifier::fingerprints() {
  gpgme_ctx_t ctx = state_->ctx.get();
  if (gpgme_error_t err = gpgme_op_keylist_start(ctx, nullptr, 0)) {
    return error(gpgme::describe("error: listing keys", err));
  }
  std::vector<std::string> fprs;
  for (;;) {
    gpgme_key_t raw = nullptr;
    gpgme_error_t err = gpgme_op_keylist_next(ctx, &raw);
    if (gpg_err_code(err) == GPG_ERR_EOF) break;
    if (err) {
      gpgme_op_keylist_end(ctx);
      return error(gpgme::describe("error: listing keys", err));
    }
    Key key(raw);
    if (key->subkeys && key->subkeys->fpr) fprs.push_back(upper(key->subkeys->fpr));
  }
  gpgme_keylist_result_t result = gpgme_op_keylist_result(ctx);
  if (result && result->truncated) return error("error: key listing truncated");
  std::sort(fprs.begin(), fprs.end());
  return fprs;
}

Result<OpenPgpVerified> OpenPgpVerifier::verify(std::string_view payload,
                                                std::string_view armored_signature) {
  // Only a single detached signature is acceptable; count armor blocks before GnuPG sees them
  // (gpg would silently ignore a second block).
  size_t blocks = count(armored_signature, "-----BEGIN PGP ");
  if (blocks == 0) return invalid("bad-signature: not an armored OpenPGP signature");
  if (blocks > 1)
    return invalid("multiple-signatures: " + std::to_string(blocks) + " armor blocks");
  if (armored_signature.find("-----BEGIN PGP SIGNATURE-----") == std::string_view::npos) {
    return invalid("bad-signature: not a detached signature");
  }
  if (Status packets = check_packets(dearmor(armored_signature)); !packets.ok()) {
    return packets.error();
  }

  gpgme_ctx_t ctx = state_->ctx.get();
  auto sig = gpgme::data_from(armored_signature);
  if (!sig) return sig.error();
  auto text = gpgme::data_from(payload);
  if (!text) return text.error();
  gpgme_error_t err = gpgme_op_verify(ctx, sig->get(), text->get(), nullptr);
  if (err) {
    switch (gpg_err_code(err)) {
      case GPG_ERR_NO_DATA:
      case GPG_ERR_BAD_DATA:
      case GPG_ERR_INV_PACKET:
      case GPG_ERR_BAD_SIGNATURE:
      case GPG_ERR_UNEXPECTED:
        return invalid(gpgme::describe("bad-signature", err));
      default:
        return error(gpgme::describe("error: verifying", err));
    }
  }
  gpgme_verify_result_t result = gpgme_op_verify_result(ctx);
  if (!result || !result->signatures) return invalid("bad-signature: no signature found");
  if (result->signatures->next) {
    size_t n = 0;
    for (gpgme_signature_t s = result->signatures; s; s = s->next) ++n;
    return invalid("multiple-signatures: " + std::to_string(n) + " signatures");
  }
  gpgme_signature_t s = result->signatures;
  std::string sig_fpr = upper(s->fpr ? s->fpr : "");
  gpgme_sigsum_t sum = static_cast<gpgme_sigsum_t>(s->summary);
  gpgme_err_code_t status = gpg_err_code(s->status);

  if (status == GPG_ERR_NO_PUBKEY || (s->summary & GPGME_SIGSUM_KEY_MISSING)) {
    return invalid("no-key: signed by key " + (sig_fpr.empty() ? "?" : sig_fpr) +
                   " not in the policy");
  }
  if (status == GPG_ERR_BAD_SIGNATURE) return invalid("bad-signature: the payload does not match");
  if (status == GPG_ERR_CERT_REVOKED || (sum & GPGME_SIGSUM_KEY_REVOKED)) {
    return invalid("revoked-key: " + sig_fpr + " is revoked");
  }
  if (status == GPG_ERR_KEY_EXPIRED || (sum & GPGME_SIGSUM_KEY_EXPIRED)) {
    return invalid("expired-key: " + sig_fpr + " has expired");
  }
  if (status == GPG_ERR_SIG_EXPIRED || (sum & GPGME_SIGSUM_SIG_EXPIRED)) {
    return invalid("expired-signature: the signature expired at " +
                   std::to_string(s->exp_timestamp));
  }
  if (s->wrong_key_usage || (sum & GPGME_SIGSUM_BAD_POLICY)) {
    return invalid("wrong-key-usage: " + sig_fpr + " may not sign");
  }
  if (status != GPG_ERR_NO_ERROR) return invalid(gpgme::describe("bad-signature", s->status));
  if (sum & GPGME_SIGSUM_RED) return invalid("bad-signature: GnuPG judged it bad");
  if (sum & GPGME_SIGSUM_SYS_ERROR) return error("error: GnuPG reported a system error");
  if (!strong_digest(s->hash_algo)) {
    const char* name = gpgme_hash_algo_name(s->hash_algo);
    return invalid(std::string("weak-digest: ") + (name ? name : "unknown"));
  }
  if (s->exp_timestamp != 0 && static_cast<std::time_t>(s->exp_timestamp) <= std::time(nullptr)) {
    return invalid("expired-signature: the signature expired at " +
                   std::to_string(s->exp_timestamp));
  }
  if (s->timestamp == 0) return invalid("bad-signature: no creation time");

  // Resolve the signing key ourselves: the primary key is what the policy names.
  if (sig_fpr.size() < 40) return error("error: GnuPG did not report the signer's fingerprint");
  auto cached = state_->keys.find(sig_fpr);
  if (cached == state_->keys.end()) {
    gpgme_key_t raw = nullptr;
    err = gpgme_get_key(ctx, sig_fpr.c_str(), &raw, 0);
    if (gpg_err_code(err) == GPG_ERR_EOF) {
      return invalid("no-key: signed by key " + sig_fpr + " not in the policy");
    }
    if (err) return error(gpgme::describe("error: looking up " + sig_fpr, err));
    Key key(raw);
    gpgme_subkey_t primary = key->subkeys;
    gpgme_subkey_t signer = find_subkey(key.get(), sig_fpr);
    if (!primary || !primary->fpr || !signer || !signer->fpr) {
      return error("error: key " + sig_fpr + " not found in its own key listing");
    }
    KeyFacts facts{key->revoked != 0, key->invalid != 0, key->disabled != 0, facts_of(primary),
                   facts_of(signer)};
    cached = state_->keys.emplace(sig_fpr, std::move(facts)).first;
  }
  const KeyFacts& key = cached->second;
  if (key.revoked || key.primary.revoked || key.signer.revoked) {
    return invalid("revoked-key: " + sig_fpr + " is revoked");
  }
  const auto now = static_cast<unsigned long>(std::time(nullptr));
  auto expired_by = [](const SubkeyFacts& k, unsigned long t) {
    return k.expires > 0 && k.expires <= t;
  };
  if (expired_by(key.primary, now) || expired_by(key.signer, now)) {
    return invalid("expired-key: " + sig_fpr + " has expired");
  }
  if (expired_by(key.primary, s->timestamp) || expired_by(key.signer, s->timestamp)) {
    return invalid("expired-key: " + sig_fpr + " had expired when it signed");
  }
  for (const SubkeyFacts* k : {&key.primary, &key.signer}) {
    if (weak(*k)) {
      const char* algo = gpgme_pubkey_algo_name(k->algo);
      return invalid("weak-key: " + upper(k->fpr) + " is a " + std::to_string(k->bits) + "-bit " +
                     (algo ? algo : "RSA") + " key (at least " +
                     std::to_string(kMinFiniteFieldBits) + " bits are required)");
    }
  }
  if (key.invalid || key.disabled || key.signer.invalid || key.signer.disabled) {
    return invalid("bad-signature: key " + sig_fpr + " is invalid or disabled");
  }
  if (!key.signer.can_sign) return invalid("wrong-key-usage: " + sig_fpr + " may not sign");
  if (key.signer.created > 0 && key.signer.created > s->timestamp) {
    return invalid("bad-signature: the signature predates key " + sig_fpr);
  }
  return OpenPgpVerified{upper(key.primary.fpr), upper(key.signer.fpr),
                         static_cast<std::int64_t>(s->timestamp)};
}

}  // namespace dmz
