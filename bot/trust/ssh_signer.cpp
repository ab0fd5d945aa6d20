// OpenSSH private keys are read by hand: OpenSSL has no reader for them. The format is OpenSSH's
// PROTOCOL.key ("openssh-key-v1"):
//
//   "openssh-key-v1\0" string ciphername  string kdfname  string kdfoptions
//   uint32 N  string publickey[N]  string private-section
//   private-section = uint32 checkint, uint32 checkint (equal), then per key:
//                     string keytype, <key fields>, string comment; then padding 1, 2, 3, ...
//                     up to the cipher's block size (8 for "none")
//
// with <key fields> for ssh-ed25519: string pk(32), string sk(64 = seed || pk); for
// ecdsa-sha2-nistp256: string "nistp256", string Q, mpint d; for ssh-rsa: mpint n, mpint e,
// mpint d, mpint iqmp, mpint p, mpint q. The signature itself is PROTOCOL.sshsig, built by
// sshsig.hpp.
#include "bot/trust/ssh_signer.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

#include "base/crypto.hpp"
#include "base/file.hpp"
#include "bot/trust/openssl_handles.hpp"
#include "bot/trust/sshsig.hpp"

namespace dmz {
namespace {

constexpr std::string_view kBegin = "-----BEGIN OPENSSH PRIVATE KEY-----";
constexpr std::string_view kEnd = "-----END OPENSSH PRIVATE KEY-----";
constexpr std::string_view kAuthMagic{"openssh-key-v1\0", 15};

using namespace openssl;  // the handles of bot/openssl_handles.hpp

std::string bn_bytes(const BIGNUM* bn) {
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

// Zeroes a string holding key material when it goes out of scope.
struct Wipe {
  std::string& s;
  ~Wipe() { OPENSSL_cleanse(s.data(), s.size()); }
};

Result<Pkey> from_params(const char* algorithm, OSSL_PARAM_BLD* bld) {
  Params params(OSSL_PARAM_BLD_to_param(bld));
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, algorithm, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_KEYPAIR, params.get()) <= 0)
    return error(std::string("bad-key: OpenSSL rejected the ") + algorithm + " private key");
  Pkey key(raw);
  PkeyCtx check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!check || EVP_PKEY_pairwise_check(check.get()) != 1)
    return error(std::string("bad-key: the ") + algorithm +
                 " private and public keys do not match");
  return key;
}

}  // namespace

struct SshSigner::Key {
  Pkey pkey;
  std::string type;  // ssh key type
  std::string blob;  // wire-format public key
  std::string comment;
  std::string fingerprint;
};

SshSigner::SshSigner(std::unique_ptr<Key> key) : key_(std::move(key)) {}
SshSigner::~SshSigner() = default;

const std::string& SshSigner::key_type() const { return key_->type; }
const std::string& SshSigner::public_key_blob() const { return key_->blob; }
const std::string& SshSigner::fingerprint() const { return key_->fingerprint; }
std::string SshSigner::public_key_line() const {
  std::string line = key_->type + " " + base64_encode(key_->blob);
  if (!key_->comment.empty()) line += " " + key_->comment;
  return line;
}

Result<std::unique_ptr<SshSigner>> SshSigner::from_file(const std::filesystem::path& private_key) {
  // Bounded, regular files only: a FIFO or /dev/zero named as the key must not hang or exhaust
  // the service at start.
  auto content = read_regular_file(private_key, kMaxSecretFileBytes);
  if (!content) return content.status().prefixed("no-file: ").error();
  std::string text = std::move(*content);
  Wipe wipe{text};
  auto signer = from_private_key(text);
  if (!signer) return error(signer.message() + " (" + private_key.string() + ")");
  return signer;
}

Result<std::unique_ptr<SshSigner>> SshSigner::from_private_key(std::string_view armored) {
  size_t begin = armored.find(kBegin);
  size_t end = armored.find(kEnd);
  if (begin == std::string_view::npos || end == std::string_view::npos || end < begin)
    return error("bad-key: not an OpenSSH private key (no \"" + std::string(kBegin) + "\" block)");
  auto decoded = base64_decode(armored.substr(begin + kBegin.size(), end - begin - kBegin.size()));
  if (!decoded) return error("bad-key: the private key is not base64");
  std::string blob = std::move(*decoded);
  Wipe wipe_blob{blob};

  std::string_view data(blob);
  if (!data.starts_with(kAuthMagic)) return error("bad-key: missing openssh-key-v1 magic");
  ssh::Reader r(data.substr(kAuthMagic.size()));
  std::string_view cipher, kdf, kdf_options, outer_public, priv;
  uint32_t count = 0;
  if (!r.string(cipher) || !r.string(kdf) || !r.string(kdf_options) || !r.u32(count))
    return error("bad-key: truncated private key header");
  if (cipher != "none" || kdf != "none")
    return error("encrypted-key: passphrase-protected keys are not supported (cipher " +
                 std::string(cipher) + ")");
  if (count != 1)
    return error("bad-key: the file holds " + std::to_string(count) + " keys, expected 1");
  if (!r.string(outer_public) || !r.string(priv) || !r.empty())
    return error("bad-key: truncated private key");
  if (priv.size() % 8 != 0) return error("bad-key: private section is not padded to 8 bytes");

  ssh::Reader p(priv);
  uint32_t check1 = 0, check2 = 0;
  std::string_view type;
  if (!p.u32(check1) || !p.u32(check2) || !p.string(type))
    return error("bad-key: truncated private section");
  if (check1 != check2) return error("bad-key: check integers differ (corrupt or encrypted key)");

  auto key = std::make_unique<Key>();
  key->type = std::string(type);
  if (type == "ssh-ed25519") {
    std::string_view pk, sk;
    if (!p.string(pk) || !p.string(sk) || pk.size() != 32 || sk.size() != 64 || sk.substr(32) != pk)
      return error("bad-key: malformed ssh-ed25519 private key");
    key->pkey.reset(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, u8(sk), 32));
    if (!key->pkey) return error("bad-key: OpenSSL rejected the ssh-ed25519 private key");
    unsigned char derived[32];
    size_t len = sizeof derived;
    if (EVP_PKEY_get_raw_public_key(key->pkey.get(), derived, &len) != 1 || len != 32 ||
        std::string_view(reinterpret_cast<char*>(derived), 32) != pk)
      return error("bad-key: the ssh-ed25519 private and public keys do not match");
    ssh::put_string(key->blob, type);
    ssh::put_string(key->blob, pk);
  } else if (type == "ecdsa-sha2-nistp256") {
    std::string_view curve, point, d_mp, d;
    if (!p.string(curve) || !p.string(point) || !p.string(d_mp) || curve != "nistp256" ||
        point.size() != 65 || !ssh::mpint_magnitude(d_mp, d) || d.empty())
      return error("bad-key: malformed ecdsa-sha2-nistp256 private key");
    Bn bn_d = bn_from(d);
    ParamBld bld(OSSL_PARAM_BLD_new());
    if (!bn_d || !bld ||
        !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                          point.size()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, bn_d.get()))
      return error("bad-key: out of memory");
    auto pkey = from_params("EC", bld.get());
    if (!pkey) return pkey.error();
    key->pkey = std::move(*pkey);
    ssh::put_string(key->blob, type);
    ssh::put_string(key->blob, curve);
    ssh::put_string(key->blob, point);
  } else if (type == "ssh-rsa") {
    std::string_view mp[6], mag[6];  // n, e, d, iqmp, p, q
    for (int i = 0; i < 6; ++i)
      if (!p.string(mp[i]) || !ssh::mpint_magnitude(mp[i], mag[i]) || mag[i].empty())
        return error("bad-key: malformed ssh-rsa private key");
    Bn n = bn_from(mag[0]), e = bn_from(mag[1]), dd = bn_from(mag[2]), iqmp = bn_from(mag[3]),
       pp = bn_from(mag[4]), qq = bn_from(mag[5]);
    // OpenSSH does not store d mod (p-1) and d mod (q-1); OpenSSL wants them for CRT.
    Bn dmp1(BN_new()), dmq1(BN_new()), pm1(BN_dup(pp.get())), qm1(BN_dup(qq.get()));
    BnCtx bctx(BN_CTX_new());
    if (!n || !e || !dd || !iqmp || !pp || !qq || !dmp1 || !dmq1 || !pm1 || !qm1 || !bctx ||
        !BN_sub_word(pm1.get(), 1) || !BN_sub_word(qm1.get(), 1) ||
        !BN_mod(dmp1.get(), dd.get(), pm1.get(), bctx.get()) ||
        !BN_mod(dmq1.get(), dd.get(), qm1.get(), bctx.get()))
      return error("bad-key: cannot compute the RSA CRT parameters");
    if (BN_num_bits(n.get()) < 2048) return error("weak-key: RSA key shorter than 2048 bits");
    ParamBld bld(OSSL_PARAM_BLD_new());
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_D, dd.get()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_FACTOR1, pp.get()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_FACTOR2, qq.get()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_EXPONENT1, dmp1.get()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_EXPONENT2, dmq1.get()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_COEFFICIENT1, iqmp.get()))
      return error("bad-key: out of memory");
    auto pkey = from_params("RSA", bld.get());
    if (!pkey) return pkey.error();
    key->pkey = std::move(*pkey);
    ssh::put_string(key->blob, type);
    ssh::put_string(key->blob, mp[1]);  // e
    ssh::put_string(key->blob, mp[0]);  // n
  } else {
    return error("unsupported-key: key type " + std::string(type) +
                 " is not supported for signing");
  }

  std::string_view comment;
  if (!p.string(comment)) return error("bad-key: truncated private section");
  std::string_view padding = p.rest();
  for (size_t i = 0; i < padding.size(); ++i)
    if (static_cast<uint8_t>(padding[i]) != static_cast<uint8_t>(i + 1))
      return error("bad-key: bad padding after the private key");
  if (key->blob != outer_public)
    return error("bad-key: the public key does not match the private key");
  key->comment = std::string(comment);
  key->fingerprint = ssh_fingerprint(key->blob);
  return std::unique_ptr<SshSigner>(new SshSigner(std::move(key)));
}

Result<std::string> SshSigner::sign(std::string_view payload) {
  constexpr std::string_view ns = "git";
  constexpr std::string_view hash_algorithm = "sha512";  // ssh-keygen's default
  auto hash = sshsig_hash(hash_algorithm, payload);
  if (!hash) return hash.error();
  const std::string data = sshsig_signed_data(ns, hash_algorithm, *hash);

  const EVP_MD* md = nullptr;
  std::string sig_type = key_->type;
  if (key_->type == "ecdsa-sha2-nistp256") md = EVP_sha256();
  if (key_->type == "ssh-rsa") {
    md = EVP_sha512();
    sig_type = "rsa-sha2-512";
  }
  MdCtx ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key_->pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, u8(data), data.size()) != 1)
    return error("sign-failed: cannot start a " + key_->type + " signature");
  std::string raw(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(raw.data()), &len, u8(data),
                     data.size()) != 1)
    return error("sign-failed: " + key_->type + " signing failed");
  raw.resize(len);

  std::string sig_bytes;
  if (key_->type == "ecdsa-sha2-nistp256") {
    // OpenSSL gives DER ECDSA-Sig-Value; SSH wants mpint r || mpint s (RFC 5656 section 3.1.2).
    const unsigned char* p = u8(raw);
    EcdsaSig ecdsa(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(raw.size())));
    if (!ecdsa) return error("sign-failed: cannot decode the ecdsa signature");
    const BIGNUM* r = nullptr;
    const BIGNUM* s = nullptr;
    ECDSA_SIG_get0(ecdsa.get(), &r, &s);
    ssh::put_mpint(sig_bytes, bn_bytes(r));
    ssh::put_mpint(sig_bytes, bn_bytes(s));
  } else {
    sig_bytes = std::move(raw);
  }
  SshSig sig;
  sig.public_key = key_->blob;
  sig.ns = std::string(ns);
  sig.hash_algorithm = std::string(hash_algorithm);
  ssh::put_string(sig.signature, sig_type);
  ssh::put_string(sig.signature, sig_bytes);
  return armor_sshsig(encode_sshsig_blob(sig));
}

}  // namespace dmz
