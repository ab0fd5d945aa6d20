#include "tests/test_ca.hpp"

#include "tests/support.hpp"

namespace dmz::test {

TestCa make_test_ca(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  TestCa ca{dir / "ca.pem", dir / "server.pem", dir / "server.key", dir / "other-ca.pem"};
  const std::string d = shell_quote(dir.string());
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  must("cd " + d + " && openssl req -x509 " + ec +
       " -keyout ca.key -out ca.pem -days 2 -subj /CN=dmzbot-test-ca 2>&1");
  must("cd " + d + " && openssl req -x509 " + ec +
       " -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=dmzbot-other-ca 2>&1");
  write_file(dir / "server.ext",
             "basicConstraints=CA:FALSE\n"
             "keyUsage=digitalSignature,keyEncipherment\n"
             "extendedKeyUsage=serverAuth\n"
             "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  must("cd " + d + " && openssl req " + ec +
       " -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>&1");
  must("cd " + d +
       " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
       " -out server.pem -days 2 -extfile server.ext 2>&1");
  return ca;
}

}  // namespace dmz::test
