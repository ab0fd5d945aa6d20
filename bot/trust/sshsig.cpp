// SSHSIG verification. Formats: OpenSSH PROTOCOL.sshsig (the blob and what is signed), RFC 4253
// section 6.6 / RFC 5656 / RFC 8709 / RFC 8332 (public keys and signatures of each key type).
#include "bot/trust/sshsig.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "base/crypto.hpp"
#include "base/iso_time.hpp"
#include "bot/trust/openssl_handles.hpp"

namespace dmz {
namespace {

constexpr std::string_view kMagic = "SSHSIG";
constexpr std::string_view kBegin = "-----BEGIN SSH SIGNATURE-----";
constexpr std::string_view kEnd = "-----END SSH SIGNATURE-----";

using namespace openssl;  // the handles of bot/openssl_handles.hpp

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// "YYYYMMDD[HHMM[SS]][Z]" -> unix seconds (UTC).
std::optional<int64_t> parse_ssh_time(std::string_view s) {
  if (!s.empty() && (s.back() == 'Z' || s.back() == 'z')) s.remove_suffix(1);
  if (s.size() != 8 && s.size() != 12 && s.size() != 14) return std::nullopt;
  if (!std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  auto num = [&](size_t pos, size_t len) {
    int v = 0;
    for (size_t i = pos; i < pos + len; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  int year = num(0, 4), month = num(4, 2), day = num(6, 2);
  int hour = s.size() >= 12 ? num(8, 2) : 0, minute = s.size() >= 12 ? num(10, 2) : 0;
  int second = s.size() == 14 ? num(12, 2) : 0;
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kDays[month - 1] || hour > 23 || minute > 59 ||
      second > 59)
    return std::nullopt;
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month == 2 && day == 29 && !leap) return std::nullopt;
  return days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
}

bool is_known_key_type(std::string_view t) {
  return t == "ssh-ed25519" || t == "ecdsa-sha2-nistp256" || t == "ssh-rsa";
}

// Key types OpenSSH knows that dmzbot does not verify: recognised so that the error says so.
bool is_other_key_type(std::string_view t) {
  return t == "ssh-dss" || t == "ecdsa-sha2-nistp384" || t == "ecdsa-sha2-nistp521" ||
         t.starts_with("sk-") || t.ends_with("-cert-v01@openssh.com");
}

// Wire-format public key -> OpenSSL key. Validates the encoding completely.
Result<Pkey> load_public_key(std::string_view blob) {
  ssh::Reader r(blob);
  std::string_view type;
  if (!r.string(type)) return invalid("bad-key: truncated public key");
  if (type == "ssh-ed25519") {
    std::string_view pk;
    if (!r.string(pk) || !r.empty() || pk.size() != 32)
      return invalid("bad-key: malformed ssh-ed25519 key");
    Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, u8(pk), pk.size()));
    if (!key) return invalid("bad-key: OpenSSL rejected the ssh-ed25519 key");
    return key;
  }
  if (type == "ecdsa-sha2-nistp256") {
    std::string_view curve, point;
    if (!r.string(curve) || !r.string(point) || !r.empty() || curve != "nistp256" ||
        point.size() != 65 || point[0] != 0x04)
      return invalid("bad-key: malformed ecdsa-sha2-nistp256 key");
    ParamBld bld(OSSL_PARAM_BLD_new());
    if (!bld ||
        !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                          point.size()))
      return error("bad-key: out of memory");
    Params params(OSSL_PARAM_BLD_to_param(bld.get()));
    PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    EVP_PKEY* raw = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0)
      return invalid("bad-key: the ecdsa point is not on P-256");
    Pkey key(raw);
    PkeyCtx check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
    if (!check || EVP_PKEY_public_check(check.get()) != 1)
      return invalid("bad-key: the ecdsa point is not a valid P-256 public key");
    return key;
  }
  if (type == "ssh-rsa") {
    std::string_view e_mp, n_mp, e, n;
    if (!r.string(e_mp) || !r.string(n_mp) || !r.empty() || !ssh::mpint_magnitude(e_mp, e) ||
        !ssh::mpint_magnitude(n_mp, n))
      return invalid("bad-key: malformed ssh-rsa key");
    // RSA below 2048 bits is refused outright (OpenSSH still accepts 1024).
    if (n.size() * 8 < 2048) return invalid("weak-key: RSA key shorter than 2048 bits");
    Bn bn_n = bn_from(n), bn_e = bn_from(e);
    ParamBld bld(OSSL_PARAM_BLD_new());
    if (!bn_n || !bn_e || !bld ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()))
      return error("bad-key: out of memory");
    Params params(OSSL_PARAM_BLD_to_param(bld.get()));
    PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
    EVP_PKEY* raw = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0)
      return invalid("bad-key: OpenSSL rejected the ssh-rsa key");
    Pkey key(raw);
    if (EVP_PKEY_get_bits(key.get()) < 2048)
      return invalid("weak-key: RSA key shorter than 2048 bits");
    return key;
  }
  return invalid("unsupported-key: key type " + std::string(type) + " is not supported");
}

bool digest_verify(EVP_PKEY* key, const EVP_MD* md, std::string_view sig, std::string_view data) {
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key) != 1) return false;
  return EVP_DigestVerify(ctx.get(), u8(sig), sig.size(), u8(data), data.size()) == 1;
}

// Checks the wire-format `signature` (string type, string bytes) by the key of type `key_type`
// over `data`.
Status verify_raw(std::string_view key_type, EVP_PKEY* key, std::string_view signature,
                  std::string_view data) {
  ssh::Reader r(signature);
  std::string_view sig_type, sig;
  if (!r.string(sig_type) || !r.string(sig) || !r.empty())
    return invalid("bad-signature: malformed signature field");
  if (key_type == "ssh-ed25519") {
    if (sig_type != "ssh-ed25519" || sig.size() != 64)
      return invalid("bad-signature: " + std::string(sig_type) +
                     " signature for an ssh-ed25519 key");
    if (!digest_verify(key, nullptr, sig, data))
      return invalid("bad-signature: ed25519 signature does not verify");
    return {};
  }
  if (key_type == "ecdsa-sha2-nistp256") {
    if (sig_type != "ecdsa-sha2-nistp256")
      return invalid("bad-signature: " + std::string(sig_type) +
                     " signature for an ecdsa-sha2-nistp256 key");
    ssh::Reader rs(sig);
    std::string_view r_mp, s_mp, r_mag, s_mag;
    if (!rs.string(r_mp) || !rs.string(s_mp) || !rs.empty() || !ssh::mpint_magnitude(r_mp, r_mag) ||
        !ssh::mpint_magnitude(s_mp, s_mag) || r_mag.size() > 32 || s_mag.size() > 32)
      return invalid("bad-signature: malformed ecdsa signature");
    Bn bn_r = bn_from(r_mag), bn_s = bn_from(s_mag);
    EcdsaSig ecdsa(ECDSA_SIG_new());
    if (!bn_r || !bn_s || !ecdsa || !ECDSA_SIG_set0(ecdsa.get(), bn_r.get(), bn_s.get()))
      return error("bad-signature: out of memory");
    bn_r.release();  // owned by ecdsa now
    bn_s.release();
    unsigned char* der = nullptr;
    int der_len = i2d_ECDSA_SIG(ecdsa.get(), &der);
    if (der_len <= 0) return error("bad-signature: cannot encode ecdsa signature");
    std::string der_sig(reinterpret_cast<char*>(der), static_cast<size_t>(der_len));
    OPENSSL_free(der);
    if (!digest_verify(key, EVP_sha256(), der_sig, data))
      return invalid("bad-signature: ecdsa signature does not verify");
    return {};
  }
  if (key_type == "ssh-rsa") {
    const EVP_MD* md = nullptr;
    if (sig_type == "rsa-sha2-512")
      md = EVP_sha512();
    else if (sig_type == "rsa-sha2-256")
      md = EVP_sha256();
    else if (sig_type == "ssh-rsa")
      return invalid("weak-signature: ssh-rsa (RSA with SHA-1) signatures are not accepted");
    else
      return invalid("bad-signature: " + std::string(sig_type) + " signature for an ssh-rsa key");
    const size_t modulus_bytes = static_cast<size_t>(EVP_PKEY_get_size(key));
    if (sig.size() > modulus_bytes)
      return invalid("bad-signature: RSA signature longer than the modulus");
    // OpenSSH accepts a signature shorter than the modulus and left-pads it; so do we.
    std::string padded(modulus_bytes - sig.size(), '\0');
    padded += sig;
    if (!digest_verify(key, md, padded, data))
      return invalid("bad-signature: RSA signature does not verify");
    return {};
  }
  return invalid("unsupported-key: key type " + std::string(key_type) + " is not supported");
}

// Splits `s` at whitespace, keeping double-quoted runs (which may hold spaces) inside one token.
std::vector<std::string_view> tokenize(std::string_view s, bool& unbalanced) {
  std::vector<std::string_view> out;
  unbalanced = false;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    if (i >= s.size()) break;
    size_t start = i;
    bool quoted = false;
    while (i < s.size() && (quoted || (s[i] != ' ' && s[i] != '\t'))) {
      if (s[i] == '"') quoted = !quoted;
      ++i;
    }
    if (quoted) unbalanced = true;
    out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::string_view dequote(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') return v.substr(1, v.size() - 2);
  return v;
}

std::vector<std::string> split_list(std::string_view v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    if (comma == std::string_view::npos) comma = v.size();
    if (comma > start) out.emplace_back(v.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

bool looks_like_options(std::string_view token) {
  return token.starts_with("valid-after=") || token.starts_with("valid-before=") ||
         token.starts_with("namespaces=") || token.starts_with("cert-authority");
}

Status parse_options(std::string_view options, SshPublicKey& key) {
  if (options.empty()) return {};
  // Comma-separated; commas inside double quotes belong to the value.
  std::vector<std::string_view> items;
  size_t start = 0;
  bool quoted = false;
  for (size_t i = 0; i <= options.size(); ++i) {
    if (i < options.size() && options[i] == '"') quoted = !quoted;
    if (i == options.size() || (options[i] == ',' && !quoted)) {
      items.push_back(options.substr(start, i - start));
      start = i + 1;
    }
  }
  for (std::string_view item : items) {
    auto eq = item.find('=');
    std::string_view name = item.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? std::string_view{} : dequote(item.substr(eq + 1));
    if (name == "valid-after" || name == "valid-before") {
      auto t = parse_ssh_time(value);
      if (!t)
        return invalid("bad-option: " + std::string(name) +
                       " must be YYYYMMDD[HHMM[SS]][Z], got \"" + std::string(value) + "\"");
      (name == "valid-after" ? key.valid_after : key.valid_before) = *t;
    } else if (name == "namespaces") {
      key.namespaces = split_list(value);
      if (key.namespaces.empty()) return invalid("bad-option: empty namespaces list");
    } else if (name == "cert-authority") {
      return invalid("unsupported-option: cert-authority (SSH certificates) is not supported");
    } else {
      return invalid("bad-option: unknown option \"" + std::string(name) + "\"");
    }
  }
  return {};
}

}  // namespace

// ---- wire helpers ---------------------------------------------------------------------------

namespace ssh {

bool Reader::u32(uint32_t& out) {
  if (data_.size() < 4) return false;
  out = (uint32_t(uint8_t(data_[0])) << 24) | (uint32_t(uint8_t(data_[1])) << 16) |
        (uint32_t(uint8_t(data_[2])) << 8) | uint32_t(uint8_t(data_[3]));
  data_.remove_prefix(4);
  return true;
}

bool Reader::bytes(size_t n, std::string_view& out) {
  if (data_.size() < n) return false;
  out = data_.substr(0, n);
  data_.remove_prefix(n);
  return true;
}

bool Reader::string(std::string_view& out) {
  uint32_t n;
  std::string_view save = data_;
  if (!u32(n) || !bytes(n, out)) {
    data_ = save;
    return false;
  }
  return true;
}

void put_u32(std::string& out, uint32_t v) {
  out += static_cast<char>(v >> 24);
  out += static_cast<char>(v >> 16);
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v);
}

void put_string(std::string& out, std::string_view s) {
  put_u32(out, static_cast<uint32_t>(s.size()));
  out += s;
}

void put_mpint(std::string& out, std::string_view magnitude) {
  while (!magnitude.empty() && magnitude.front() == '\0') magnitude.remove_prefix(1);
  std::string v;
  if (!magnitude.empty() && (uint8_t(magnitude.front()) & 0x80)) v += '\0';
  v += magnitude;
  put_string(out, v);
}

bool mpint_magnitude(std::string_view mpint, std::string_view& magnitude) {
  if (mpint.empty()) {
    magnitude = {};
    return true;
  }
  if (uint8_t(mpint[0]) & 0x80) return false;  // negative
  if (mpint[0] == '\0') {
    // A leading zero is only allowed to clear the sign bit of the next byte.
    if (mpint.size() < 2 || !(uint8_t(mpint[1]) & 0x80)) return false;
    mpint.remove_prefix(1);
  }
  magnitude = mpint;
  return true;
}

}  // namespace ssh

// ---- keys -----------------------------------------------------------------------------------

std::string ssh_fingerprint(std::string_view blob) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(blob.data(), blob.size(), md, &len, EVP_sha256(), nullptr);
  std::string b64 = base64_encode(std::string_view(reinterpret_cast<char*>(md), len));
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  return "SHA256:" + b64;
}

std::string SshPublicKey::line() const { return type + " " + base64_encode(blob); }

Result<SshPublicKey> parse_ssh_public_key(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  bool unbalanced = false;
  std::vector<std::string_view> tokens = tokenize(line, unbalanced);
  if (unbalanced) return invalid("bad-key-line: unbalanced double quote");
  size_t k = 0;
  while (k < tokens.size() && !is_known_key_type(tokens[k]) && !is_other_key_type(tokens[k])) ++k;
  if (k == tokens.size())
    return invalid("bad-key-line: no key type (ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa)");
  if (is_other_key_type(tokens[k]))
    return invalid("unsupported-key: key type " + std::string(tokens[k]) + " is not supported");
  if (k + 1 >= tokens.size()) return invalid("bad-key-line: key type without key data");
  SshPublicKey key;
  std::string_view options;
  if (k == 1) {
    if (looks_like_options(tokens[0]))
      options = tokens[0];
    else
      key.principals = split_list(dequote(tokens[0]));
  } else if (k == 2) {
    key.principals = split_list(dequote(tokens[0]));
    options = tokens[1];
  } else if (k > 2) {
    return invalid("bad-key-line: unexpected text before the key type");
  }
  if (Status s = parse_options(options, key); !s) return s.error();
  key.type = std::string(tokens[k]);
  auto blob = base64_decode(tokens[k + 1]);
  if (!blob) return invalid("bad-key-line: key data is not base64");
  key.blob = std::move(*blob);
  ssh::Reader r(key.blob);
  std::string_view inner_type;
  if (!r.string(inner_type) || inner_type != key.type)
    return invalid("bad-key-line: key data is not a " + key.type + " key");
  auto loaded = load_public_key(key.blob);
  if (!loaded) return loaded.error();
  key.fingerprint = ssh_fingerprint(key.blob);
  for (size_t i = k + 2; i < tokens.size(); ++i) {
    if (!key.comment.empty()) key.comment += ' ';
    key.comment += tokens[i];
  }
  return key;
}

Result<std::vector<SshPublicKey>> parse_allowed_signers(std::string_view text) {
  std::vector<SshPublicKey> keys;
  size_t number = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++number;
    size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos || line[first] == '#') continue;
    auto key = parse_ssh_public_key(line);
    if (!key) return key.status().prefixed("line " + std::to_string(number) + ": ").error();
    keys.push_back(std::move(*key));
  }
  return keys;
}

// ---- SSHSIG ---------------------------------------------------------------------------------

Result<std::string> dearmor_sshsig(std::string_view armored) {
  size_t begin = armored.find(kBegin);
  if (begin == std::string_view::npos)
    return invalid("bad-armor: no \"" + std::string(kBegin) + "\" line");
  if (armored.substr(0, begin).find_first_not_of(" \t\r\n") != std::string_view::npos)
    return invalid("bad-armor: text before the signature armor");
  if (begin != 0 && armored[begin - 1] != '\n')
    return invalid("bad-armor: BEGIN line does not start a line");
  std::string_view after_begin = armored.substr(begin + kBegin.size());
  if (after_begin.find(kBegin) != std::string_view::npos ||
      after_begin.find("-----BEGIN ") != std::string_view::npos)
    return invalid("bad-armor: more than one armor block");
  size_t end = after_begin.find(kEnd);
  if (end == std::string_view::npos)
    return invalid("bad-armor: no \"" + std::string(kEnd) + "\" line");
  if (after_begin.substr(end + kEnd.size()).find_first_not_of(" \t\r\n") != std::string_view::npos)
    return invalid("bad-armor: text after the signature armor");
  std::string_view body = after_begin.substr(0, end);
  if (body.empty() || body.front() != '\n' || body.back() != '\n')
    return invalid("bad-armor: armor lines must be on their own lines");
  auto blob = base64_decode(body);
  if (!blob || blob->empty()) return invalid("bad-armor: signature body is not base64");
  return std::move(*blob);
}

Result<SshSig> parse_sshsig_blob(std::string_view blob) {
  if (!blob.starts_with(kMagic)) return invalid("bad-sshsig: missing SSHSIG magic");
  ssh::Reader r(blob.substr(kMagic.size()));
  uint32_t version = 0;
  std::string_view pk, ns, reserved, hash, sig;
  if (!r.u32(version)) return invalid("bad-sshsig: truncated");
  if (version != 1) return invalid("bad-sshsig: unsupported version " + std::to_string(version));
  if (!r.string(pk) || !r.string(ns) || !r.string(reserved) || !r.string(hash) || !r.string(sig))
    return invalid("bad-sshsig: truncated");
  if (!r.empty()) return invalid("bad-sshsig: trailing data after the signature");
  return SshSig{std::string(pk), std::string(ns), std::string(reserved), std::string(hash),
                std::string(sig)};
}

std::string encode_sshsig_blob(const SshSig& sig) {
  std::string out(kMagic);
  ssh::put_u32(out, 1);
  ssh::put_string(out, sig.public_key);
  ssh::put_string(out, sig.ns);
  ssh::put_string(out, sig.reserved);
  ssh::put_string(out, sig.hash_algorithm);
  ssh::put_string(out, sig.signature);
  return out;
}

std::string armor_sshsig(std::string_view blob) {
  std::string b64 = base64_encode(blob);
  std::string out(kBegin);
  out += '\n';
  for (size_t i = 0; i < b64.size(); i += 70) {
    out += b64.substr(i, 70);
    out += '\n';
  }
  out += kEnd;
  out += '\n';
  return out;
}

std::string sshsig_signed_data(std::string_view ns, std::string_view hash_algorithm,
                               std::string_view message_hash) {
  std::string out(kMagic);
  ssh::put_string(out, ns);
  ssh::put_string(out, "");  // reserved
  ssh::put_string(out, hash_algorithm);
  ssh::put_string(out, message_hash);
  return out;
}

Result<std::string> sshsig_hash(std::string_view hash_algorithm, std::string_view message) {
  if (hash_algorithm == "sha256") return sha256(message);
  if (hash_algorithm == "sha512") return sha512(message);
  return invalid("bad-hash: hash algorithm \"" + std::string(hash_algorithm) +
                 "\" is not supported");
}

Result<SshVerified> verify_sshsig(std::string_view armored, std::string_view message,
                                  std::span<const SshPublicKey> allowed, int64_t signed_at,
                                  std::string_view ns) {
  auto blob = dearmor_sshsig(armored);
  if (!blob) return blob.error();
  auto sig = parse_sshsig_blob(*blob);
  if (!sig) return sig.error();
  if (sig->ns != ns)
    return invalid("wrong-namespace: signature is for namespace \"" + sig->ns + "\", expected \"" +
                   std::string(ns) + "\"");
  // The hash is checked before anything is verified: a SHA-1 signature is refused as such.
  if (sig->hash_algorithm == "sha1")
    return invalid("weak-hash: SSHSIG hash algorithm sha1 is not accepted (sha256 or sha512)");
  if (sig->hash_algorithm != "sha256" && sig->hash_algorithm != "sha512")
    return invalid("bad-hash: SSHSIG hash algorithm \"" + sig->hash_algorithm +
                   "\" is not supported");

  const std::string fingerprint = ssh_fingerprint(sig->public_key);
  const SshPublicKey* match = nullptr;
  std::string refusal;
  bool any_blob_match = false;
  for (const SshPublicKey& key : allowed) {
    if (key.blob != sig->public_key) continue;
    any_blob_match = true;
    if (!key.namespaces.empty() &&
        std::find(key.namespaces.begin(), key.namespaces.end(), ns) == key.namespaces.end()) {
      if (refusal.empty())
        refusal = "no-key: key " + fingerprint + " is not allowed to sign namespace \"" +
                  std::string(ns) + "\"";
      continue;
    }
    if (key.valid_after && signed_at < *key.valid_after) {
      if (refusal.empty())
        refusal = "not-yet-valid-key: key " + fingerprint + " valid after " +
                  iso8601_utc(*key.valid_after) + " but commit time " + iso8601_utc(signed_at);
      continue;
    }
    if (key.valid_before && signed_at > *key.valid_before) {
      if (refusal.empty())
        refusal = "expired-key: key " + fingerprint + " valid before " +
                  iso8601_utc(*key.valid_before) + " but commit time " + iso8601_utc(signed_at);
      continue;
    }
    match = &key;
    break;
  }
  if (!any_blob_match) return invalid("no-key: signed by " + fingerprint + " which is not allowed");
  if (!match) return invalid(refusal);

  auto key = load_public_key(sig->public_key);
  if (!key) return key.error();
  auto hash = sshsig_hash(sig->hash_algorithm, message);
  if (!hash) return hash.error();
  const std::string data = sshsig_signed_data(sig->ns, sig->hash_algorithm, *hash);
  if (Status s = verify_raw(match->type, key->get(), sig->signature, data); !s) return s.error();
  return SshVerified{fingerprint, match->type, sig->hash_algorithm};
}

}  // namespace dmz
