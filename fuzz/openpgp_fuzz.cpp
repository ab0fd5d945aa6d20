// Fuzzes the in-process part of OpenPGP verification: the armor decoder and the packet check
// that run before GnuPG sees a signature (bot/trust/openpgp.cpp; GPGME is never called here).
// Both are file-local, so this target compiles that file into itself rather than widen its
// header for a test; the library's openpgp.cpp is then not linked in.
#include <cstddef>
#include <cstdint>

#include "bot/trust/openpgp.cpp"  // NOLINT(bugprone-suspicious-include)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)dmz::check_packets(dmz::dearmor(in));  // an armored signature
  (void)dmz::check_packets(in);                // and the same bytes as packets
  return 0;
}
