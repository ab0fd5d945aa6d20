// Raw git commit and tag objects parsed from their bytes (as `git cat-file commit|tag` prints
// them), with the exact payload git verifies a signature over. Threading: pure functions, any
// thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.hpp"

namespace dmz {

// Which signature an armored block is, from its BEGIN line (as git's gpg-interface tells them
// apart).
enum class SignatureKind { none, openpgp, ssh, x509 };
std::string_view to_string(SignatureKind kind);
// The kind named by the BEGIN line that starts `armored`; none if it starts with no known marker.
SignatureKind signature_kind_of(std::string_view armored);
// Checks that `sig` is exactly one armor block of a known kind: its BEGIN line, its END line,
// nothing after it but the final newline (so that one signature cannot be written two ways).
Result<SignatureKind> check_armor(std::string_view sig);

// An author/committer/tagger line: "Name <email> 1700000000 +0100".
struct Ident {
  std::string raw;     // the header value as written, after "author "
  std::string name;    // "Name"
  std::string email;   // "email", without the angle brackets
  int64_t time = 0;    // unix seconds
  std::string tz;      // "+0100"
  int tz_minutes = 0;  // 60
};

// One header with its continuation lines unfolded: the leading space of each continuation line is
// dropped and lines are joined with "\n" (no final newline).
struct Header {
  std::string name;
  std::string value;
};

struct ParsedCommit {
  std::string tree;
  std::vector<std::string> parents;
  Ident author;
  Ident committer;
  std::vector<Header> headers;           // every header in order, gpgsig and mergetag included
  std::string message;                   // everything after the blank line that ends the headers
  std::optional<std::string> signature;  // the gpgsig value, armored, ending in "\n"
  SignatureKind signature_kind = SignatureKind::none;
  // What the signature signs: the object without the gpgsig header and its continuation lines,
  // byte for byte as git builds it (commit.c parse_buffer_signed_by_header). For an unsigned
  // commit, the object itself.
  std::string payload;
  std::vector<std::string>
      mergetags;  // each mergetag header unfolded: a raw tag object, ending in "\n"
};

// Parses a commit object. Refusals start with a reason code:
//   nul                   the object contains a NUL byte (git's parsers stop there; libgit2's do
//   not) duplicate-gpgsig      more than one gpgsig header gpgsig-sha256         a gpgsig-sha256
//   header (dmzbot verifies SHA-1 repositories only) two-signatures        more than one armor
//   block in the signature bad-armor             a signature that is not one known, terminated
//   armor block missing-header        no tree, author or committer bad-header            a
//   malformed, misplaced or duplicated header bad-continuation      a continuation line with no
//   header to continue, or of a one-line header header-after-message  a gpgsig header line inside
//   the message (after the blank line) unterminated-header   the header section does not end with a
//   newline bad-ident             an author/committer line that is not "Name <email> time tz"
Result<ParsedCommit> parse_commit(std::string_view raw);

struct ParsedTag {
  std::string object;                    // the tagged object's sha
  std::string type;                      // "commit", "tree", "blob" or "tag"
  std::string tag;                       // the tag's name
  std::optional<Ident> tagger;           // absent in some very old tags
  std::vector<Header> headers;           // every header in order
  std::string message;                   // the message without the signature block
  std::optional<std::string> signature;  // the trailing armored block of the message
  SignatureKind signature_kind = SignatureKind::none;
  std::string payload;  // everything before the signature (git's parse_signed_buffer)
};

// Parses a tag object. Refusals use the same codes as parse_commit; in a tag a second armor block
// anywhere is two-signatures, and gpgsig/gpgsig-sha256 headers are refused.
Result<ParsedTag> parse_tag(std::string_view raw);

}  // namespace dmz
