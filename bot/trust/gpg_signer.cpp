#include "bot/trust/gpg_signer.hpp"

#include <gpgme.h>

#include <cctype>
#include <cstdlib>

namespace dmz {

namespace {

using gpgme::Key;
using gpgme::upper;

bool is_fingerprint(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Called when gpg needs a passphrase: dmzbot's key has none, so asking is a failure, not a
// prompt that could hang.
gpgme_error_t refuse_passphrase(void*, const char*, const char*, int, int) {
  return gpg_error(GPG_ERR_NO_PASSPHRASE);
}

// Looks `fpr` up (public or secret); returns null when the home does not hold it.
Result<Key> lookup(gpgme_ctx_t ctx, const std::string& fpr, bool secret) {
  gpgme_key_t raw = nullptr;
  gpgme_error_t err = gpgme_get_key(ctx, fpr.c_str(), &raw, secret ? 1 : 0);
  if (gpg_err_code(err) == GPG_ERR_EOF) return Key();
  if (err) return error(gpgme::describe("looking up key " + fpr, err));
  return Key(raw);
}

// Whether `fpr` is the primary key or one of the subkeys of `key`.
bool belongs_to(gpgme_key_t key, const std::string& fpr) {
  for (gpgme_subkey_t sub = key->subkeys; sub; sub = sub->next) {
    if (sub->fpr && upper(sub->fpr) == fpr) return true;
  }
  return false;
}

}  // namespace

GpgSigner::GpgSigner(std::string home, std::string primary, gpgme::Context ctx)
    : home_(std::move(home)), primary_(std::move(primary)), ctx_(std::move(ctx)) {}

Result<std::unique_ptr<GpgSigner>> GpgSigner::create(std::string gnupg_home,
                                                     std::string fingerprint) {
  std::string fpr = upper(fingerprint);
  if (!is_fingerprint(fpr)) {
    return error("signing key must be a full 40-hex-digit fingerprint, not '" + fingerprint + "'");
  }
  auto ctx = gpgme::open_context(gnupg_home);
  if (!ctx) return ctx.error();
  gpgme_ctx_t c = ctx->get();
  gpgme_set_armor(c, 1);
  gpgme_set_passphrase_cb(c, refuse_passphrase, nullptr);

  // Without gnupg_home GPGME uses $GNUPGHOME, else ~/.gnupg: name the one that was searched.
  const char* env_home = std::getenv("GNUPGHOME");
  const std::string home = !gnupg_home.empty()     ? gnupg_home
                           : env_home && *env_home ? std::string(env_home) + " ($GNUPGHOME)"
                                                   : std::string("~/.gnupg (the default)");
  auto pub = lookup(c, fpr, false);
  if (!pub) return pub.error();
  if (!*pub) return error("signing key " + fpr + " not found in GnuPG home " + home);
  auto sec = lookup(c, fpr, true);
  if (!sec) return sec.error();
  if (!*sec) return error("signing key " + fpr + " has no secret key in GnuPG home " + home);
  gpgme_key_t key = sec->get();
  if (!key->subkeys || !key->subkeys->fpr || !belongs_to(key, fpr)) {
    return error("signing key " + fpr + " resolves to an unexpected key");
  }
  if (key->revoked) return error("signing key " + fpr + " is revoked");
  if (key->expired) return error("signing key " + fpr + " has expired");
  if (key->invalid || key->disabled) return error("signing key " + fpr + " is invalid or disabled");
  bool usable = false;
  for (gpgme_subkey_t sub = key->subkeys; sub; sub = sub->next) {
    usable = usable || (sub->can_sign && sub->secret && !sub->revoked && !sub->expired &&
                        !sub->invalid && !sub->disabled);
  }
  if (!usable) return error("signing key " + fpr + " has no usable secret signing key");
  std::string primary = upper(key->subkeys->fpr);
  return std::unique_ptr<GpgSigner>(
      new GpgSigner(std::move(gnupg_home), std::move(primary), std::move(*ctx)));
}

Result<std::string> GpgSigner::sign(std::string_view payload) {
  gpgme_ctx_t c = ctx_.get();
  // Look the key up again for each signature: the home may have changed (a revocation, a
  // rotated subkey) since the signer was created.
  auto key = lookup(c, primary_, true);
  if (!key) return key.error();
  if (!*key) return error("signing key " + primary_ + " is no longer in " + home_);
  gpgme_signers_clear(c);
  if (gpgme_error_t err = gpgme_signers_add(c, key->get())) {
    return error(gpgme::describe("using signing key " + primary_, err));
  }
  auto in = gpgme::data_from(payload);
  if (!in) return in.error();
  auto out = gpgme::new_data();
  if (!out) return out.error();
  gpgme_error_t err = gpgme_op_sign(c, in->get(), out->get(), GPGME_SIG_MODE_DETACH);
  gpgme_signers_clear(c);
  if (gpg_err_code(err) == GPG_ERR_NO_PASSPHRASE || gpg_err_code(err) == GPG_ERR_BAD_PASSPHRASE) {
    return error(
        gpgme::describe("signing key " + primary_ + " needs a passphrase; it must have none", err));
  }
  if (err) return error(gpgme::describe("signing with " + primary_, err));
  gpgme_sign_result_t result = gpgme_op_sign_result(c);
  if (!result) return error("signing with " + primary_ + ": no result from GnuPG");
  if (result->invalid_signers) {
    return error(gpgme::describe("signing key " + primary_ + " was refused",
                                 result->invalid_signers->reason));
  }
  if (!result->signatures || result->signatures->next) {
    return error("signing with " + primary_ + ": expected exactly one signature");
  }
  gpgme_new_signature_t sig = result->signatures;
  if (sig->type != GPGME_SIG_MODE_DETACH || !sig->fpr || !belongs_to(key->get(), upper(sig->fpr))) {
    return error("signing with " + primary_ + ": GnuPG made an unexpected signature");
  }
  std::string armored = gpgme::contents(out->get());
  if (armored.rfind("-----BEGIN PGP SIGNATURE-----", 0) != 0) {
    return error("signing with " + primary_ + ": GnuPG returned no armored signature");
  }
  if (armored.back() != '\n') armored += '\n';
  return armored;
}

}  // namespace dmz
