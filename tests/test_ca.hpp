// A certificate authority made at test time (openssl CLI, EC P-256 keys): its certificate and a
// server certificate for 127.0.0.1 and localhost signed by it, for TLS servers in tests.
// Threading: call from one thread.
#pragma once

#include <filesystem>
#include <string>

namespace dmz::test {

struct TestCa {
  std::filesystem::path ca_cert;      // PEM: trust this
  std::filesystem::path server_cert;  // PEM: CN and subjectAltName 127.0.0.1, localhost
  std::filesystem::path server_key;   // PEM, unencrypted
  // A second CA that signed nothing the server uses: a client trusting only it must fail.
  std::filesystem::path other_ca_cert;
};

// Writes the files into `dir` (created). Fails the current test if openssl fails.
TestCa make_test_ca(const std::filesystem::path& dir);

}  // namespace dmz::test
