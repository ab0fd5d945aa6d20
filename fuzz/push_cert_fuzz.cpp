// Fuzzes the push certificate parser (bot/trust/push_cert.hpp) that dmzbot's pre-receive hook
// and `verify --pushes` run on what a pusher sent, and the judgement of a push built from it.
// Input: a certificate, optionally followed by a line "--" and a hook's stdin ("<old> <new>
// <ref>" lines); without the separator the whole input is tried as each. Checks: a parsed
// certificate is version 0.1 with commands, its payload is the input's prefix and the signature
// the rest; each command round-trips through its text; a certificate's own commands never
// differ from themselves; a push without a certificate to a protected ref is always refused,
// and a good certificate whose commands differ from the updates is refused too.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "bot/trust/push_cert.hpp"
#include "fuzz/fuzz_check.hpp"

namespace {

using dmz::trust::RefCommand;

void check_commands(const std::vector<RefCommand>& commands) {
  for (const RefCommand& c : commands) {
    auto again = dmz::trust::parse_ref_commands(c.to_string());
    FUZZ_CHECK(again.ok() && again->size() == 1 && again->front() == c,
               "a command that does not round-trip through its text");
  }
  FUZZ_CHECK(dmz::trust::command_differences(commands, commands).empty(),
             "commands that differ from themselves");
}

dmz::trust::PushRules protect_everything() {
  dmz::trust::PushRules rules;
  rules.protected_refs = {"**"};
  rules.allowed = [](std::string_view) { return std::vector<std::string>{"releng"}; };
  return rules;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t sep = in.find("\n--\n");
  std::string_view cert_text = sep == std::string_view::npos ? in : in.substr(0, sep + 1);
  std::string_view stdin_text = sep == std::string_view::npos ? in : in.substr(sep + 4);

  auto updates = dmz::trust::parse_ref_commands(stdin_text);
  if (updates) check_commands(*updates);

  auto cert = dmz::trust::parse_push_certificate(cert_text);
  if (cert) {
    FUZZ_CHECK(cert->version == "0.1", "a certificate of another version");
    FUZZ_CHECK(!cert->commands.empty(), "a certificate without commands");
    FUZZ_CHECK(cert_text.substr(0, cert->payload.size()) == cert->payload,
               "a payload that is not the certificate's beginning");
    FUZZ_CHECK(cert->payload + cert->signature == cert_text,
               "payload and signature that are not the whole certificate");
    FUZZ_CHECK(cert->signature.empty() == (cert->signature_kind == dmz::SignatureKind::none),
               "a signature without a kind, or a kind without a signature");
    check_commands(cert->commands);
  }

  const dmz::trust::PushRules rules = protect_everything();
  if (updates && !updates->empty()) {
    dmz::trust::PushFacts unsigned_push;
    unsigned_push.updates = *updates;
    FUZZ_CHECK(!dmz::trust::judge_push(unsigned_push, rules).empty(),
               "an unsigned push to a protected ref accepted");
    if (cert) {
      // As if git and the policy had verified the signature: the commands alone decide.
      dmz::trust::PushFacts signed_push = unsigned_push;
      signed_push.cert = *cert;
      signed_push.git_status = "G";
      signed_push.nonce_status = "OK";
      signed_push.signer = "releng";
      const bool differ = !dmz::trust::command_differences(cert->commands, *updates).empty();
      if (differ)
        FUZZ_CHECK(!dmz::trust::judge_push(signed_push, rules).empty(),
                   "a certificate whose commands differ from the updates accepted");
    }
  }
  return 0;
}
