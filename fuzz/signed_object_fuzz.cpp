// Fuzzes the raw git object parsers (parse_commit, parse_tag) with object bytes as
// `git cat-file commit|tag` prints them; a commit's mergetags are parsed as tags, as the trust
// checks do. Checks: what a signature signs is the object less its signature, so never longer.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bot/trust/signed_object.hpp"
#include "fuzz/fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view raw(reinterpret_cast<const char*>(data), size);
  if (auto commit = dmz::parse_commit(raw)) {
    FUZZ_CHECK(commit->payload.size() <= raw.size(), "a commit payload longer than the object");
    FUZZ_CHECK(commit->signature.has_value() || commit->payload == raw,
               "an unsigned commit whose payload is not the object");
    FUZZ_CHECK(
        commit->signature.has_value() == (commit->signature_kind != dmz::SignatureKind::none),
        "a signature of no kind, or a kind without a signature");
    for (const auto& tag : commit->mergetags) (void)dmz::parse_tag(tag);
  }
  if (auto tag = dmz::parse_tag(raw)) {
    FUZZ_CHECK(tag->payload.size() <= raw.size(), "a tag payload longer than the object");
    FUZZ_CHECK(tag->signature.has_value() || tag->payload == raw,
               "an unsigned tag whose payload is not the object");
  }
  (void)dmz::signature_kind_of(raw);
  return 0;
}
