// Parsing follows what git itself does with these bytes, so that the payload dmzbot verifies is the
// payload git verifies: commit.c (parse_buffer_signed_by_header: the gpgsig header and its
// continuation lines are cut out, every other byte stays), gpg-interface.c (parse_signed_buffer:
// a tag's signature starts at the last line that opens a known armor), fsck.c (header order and
// ident syntax). Where git is lenient in ways that make two readers disagree (NUL bytes, repeated
// signature headers, several armor blocks), we refuse instead.
#include "bot/trust/signed_object.hpp"

#include <algorithm>
#include <array>

#include "base/text.hpp"

namespace dmz {
namespace {

struct Marker {
  std::string_view begin;
  std::string_view end;
  SignatureKind kind;
};

// The armors git recognises (gpg-interface.c, sigs[] of each format).
constexpr std::array<Marker, 4> kMarkers{{
    {"-----BEGIN PGP SIGNATURE-----", "-----END PGP SIGNATURE-----", SignatureKind::openpgp},
    {"-----BEGIN PGP MESSAGE-----", "-----END PGP MESSAGE-----", SignatureKind::openpgp},
    {"-----BEGIN SIGNED MESSAGE-----", "-----END SIGNED MESSAGE-----", SignatureKind::x509},
    {"-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----", SignatureKind::ssh},
}};

const Marker* marker_at(std::string_view text) {
  for (const Marker& m : kMarkers)
    if (text.starts_with(m.begin)) return &m;
  return nullptr;
}

struct RawHeader {
  std::string name;
  std::string value;
  size_t begin = 0;        // offset of the header's first byte
  size_t end = 0;          // offset just past the newline of its last continuation line
  bool bare = false;       // "name\n" with no space and no value
  bool continued = false;  // has continuation lines
};

struct Split {
  std::vector<RawHeader> headers;
  size_t body = 0;  // offset of the message (just past the blank line), or raw.size()
};

Status check_nul(std::string_view raw) {
  size_t nul = raw.find('\0');
  if (nul != std::string_view::npos)
    return invalid("nul: object contains a NUL byte at offset " + std::to_string(nul));
  return {};
}

bool valid_header_name(std::string_view name) {
  if (name.empty() || name[0] < 'a' || name[0] > 'z') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

Result<Split> split_headers(std::string_view raw) {
  Split split;
  split.body = raw.size();
  size_t pos = 0;
  size_t line_no = 0;
  while (pos < raw.size()) {
    ++line_no;
    size_t nl = raw.find('\n', pos);
    if (nl == std::string_view::npos)
      return invalid("unterminated-header: header line " + std::to_string(line_no) +
                     " has no newline");
    std::string_view line = raw.substr(pos, nl - pos);
    if (line.empty()) {
      split.body = nl + 1;
      break;
    }
    if (line[0] == ' ') {
      if (split.headers.empty())
        return invalid("bad-continuation: line " + std::to_string(line_no) +
                       " continues no header");
      RawHeader& last = split.headers.back();
      last.value += '\n';
      last.value += line.substr(1);
      last.end = nl + 1;
      last.continued = true;
    } else {
      size_t space = line.find(' ');
      RawHeader h;
      h.name = std::string(line.substr(0, space));
      if (!valid_header_name(h.name))
        return invalid("bad-header: line " + std::to_string(line_no) + " is not a header: \"" +
                       std::string(line.substr(0, 40)) + "\"");
      h.bare = space == std::string_view::npos;
      if (!h.bare) h.value = std::string(line.substr(space + 1));
      h.begin = pos;
      h.end = nl + 1;
      split.headers.push_back(std::move(h));
    }
    pos = nl + 1;
  }
  return split;
}

Result<Ident> parse_ident(const RawHeader& h) {
  const std::string& v = h.value;
  auto bad = [&](const std::string& why) {
    return invalid("bad-ident: " + h.name + " " + why + ": \"" + v + "\"");
  };
  size_t lt = v.find('<');
  if (lt == std::string::npos) return bad("has no <email>");
  size_t gt = v.find('>', lt);
  if (gt == std::string::npos) return bad("has no closing >");
  if (v.find_first_of("<>", gt + 1) != std::string::npos) return bad("has more than one <email>");
  Ident id;
  id.raw = v;
  std::string_view name(v.data(), lt);
  if (!name.empty() && name.back() != ' ') return bad("has no space before <email>");
  while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
  if (name.find('>') != std::string_view::npos) return bad("has a > in the name");
  id.name = std::string(name);
  id.email = v.substr(lt + 1, gt - lt - 1);
  // " <seconds> <+|-hhmm>"
  std::string_view rest = std::string_view(v).substr(gt + 1);
  if (rest.size() < 2 || rest[0] != ' ') return bad("has no time");
  rest.remove_prefix(1);
  size_t sp = rest.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp > 18) return bad("has a malformed time");
  std::string_view secs = rest.substr(0, sp), tz = rest.substr(sp + 1);
  if (!std::all_of(secs.begin(), secs.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      (secs.size() > 1 && secs[0] == '0'))
    return bad("has a malformed time");
  if (tz.size() != 5 || (tz[0] != '+' && tz[0] != '-') ||
      !std::all_of(tz.begin() + 1, tz.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return bad("has a malformed time zone");
  for (char c : secs) id.time = id.time * 10 + (c - '0');
  id.tz = std::string(tz);
  int minutes = ((tz[1] - '0') * 10 + (tz[2] - '0')) * 60 + (tz[3] - '0') * 10 + (tz[4] - '0');
  id.tz_minutes = tz[0] == '-' ? -minutes : minutes;
  return id;
}

}  // namespace

Result<SignatureKind> check_armor(std::string_view sig) {
  size_t begins = 0;
  for (size_t pos = 0; pos < sig.size();) {
    if (sig.substr(pos).starts_with("-----BEGIN ")) ++begins;
    size_t nl = sig.find('\n', pos);
    pos = nl == std::string_view::npos ? sig.size() : nl + 1;
  }
  if (begins > 1)
    return invalid("two-signatures: the signature holds " + std::to_string(begins) +
                   " armor blocks");
  const Marker* m = marker_at(sig);
  if (!m) return invalid("bad-armor: the signature does not start with a known BEGIN line");
  std::string_view body = sig;
  if (body.ends_with('\n')) body.remove_suffix(1);
  size_t last_line = body.rfind('\n');
  if (last_line == std::string_view::npos || body.substr(last_line + 1) != m->end) {
    if (sig.find(m->end) != std::string_view::npos)
      return invalid("bad-armor: text after \"" + std::string(m->end) + "\"");
    return invalid("bad-armor: no \"" + std::string(m->end) + "\" line");
  }
  return m->kind;
}

namespace {

bool one_line_header(std::string_view name) {
  return name == "tree" || name == "parent" || name == "author" || name == "committer" ||
         name == "encoding" || name == "object" || name == "type" || name == "tag" ||
         name == "tagger";
}

Status check_shapes(const std::vector<RawHeader>& headers) {
  for (const RawHeader& h : headers) {
    if (one_line_header(h.name) && h.continued)
      return invalid("bad-continuation: the " + h.name + " header cannot have continuation lines");
    if (one_line_header(h.name) && h.bare)
      return invalid("bad-header: " + h.name + " header without a value");
  }
  return {};
}

// Signature headers that dmzbot does not verify in a SHA-1 repository.
Status check_signature_header_name(const std::string& name) {
  if (name == "gpgsig-sha256") return invalid("gpgsig-sha256: unverifiable signature header");
  // git drops every header that starts with "gpgsig" from a SHA-1 payload; we only know gpgsig.
  if (name.starts_with("gpgsig") && name != "gpgsig")
    return invalid("bad-header: unknown signature header \"" + name + "\"");
  return {};
}

std::vector<Header> public_headers(const std::vector<RawHeader>& raw) {
  std::vector<Header> out;
  out.reserve(raw.size());
  for (const RawHeader& h : raw) out.push_back({h.name, h.value});
  return out;
}

}  // namespace

std::string_view to_string(SignatureKind kind) {
  switch (kind) {
    case SignatureKind::none:
      return "none";
    case SignatureKind::openpgp:
      return "openpgp";
    case SignatureKind::ssh:
      return "ssh";
    case SignatureKind::x509:
      return "x509";
  }
  return "none";
}

SignatureKind signature_kind_of(std::string_view armored) {
  const Marker* m = marker_at(armored);
  return m ? m->kind : SignatureKind::none;
}

Result<ParsedCommit> parse_commit(std::string_view raw) {
  if (Status s = check_nul(raw); !s) return s.error();
  auto split = split_headers(raw);
  if (!split) return split.error();
  const std::vector<RawHeader>& hs = split->headers;
  if (Status s = check_shapes(hs); !s) return s.error();

  ParsedCommit c;
  size_t i = 0;
  auto has = [&](std::string_view name) {
    return std::any_of(hs.begin(), hs.end(), [&](const RawHeader& h) { return h.name == name; });
  };
  if (hs.empty() || hs[0].name != "tree") {
    if (!has("tree")) return invalid("missing-header: commit has no tree header");
    return invalid("bad-header: tree must be the first header");
  }
  if (!is_sha1_hex(hs[0].value))
    return invalid("bad-header: tree is not a sha1: \"" + hs[0].value + "\"");
  c.tree = hs[i++].value;
  for (; i < hs.size() && hs[i].name == "parent"; ++i) {
    if (!is_sha1_hex(hs[i].value))
      return invalid("bad-header: parent is not a sha1: \"" + hs[i].value + "\"");
    c.parents.push_back(hs[i].value);
  }
  for (std::string_view who : {"author", "committer"}) {
    if (i >= hs.size() || hs[i].name != who) {
      if (!has(who))
        return invalid("missing-header: commit has no " + std::string(who) + " header");
      // Name what stands in its place (git fsck: badHeaderOrder, e.g. a gpgsig header moved up).
      if (i < hs.size())
        return invalid("bad-header: " + hs[i].name + " header before the " + std::string(who) +
                       " header");
      return invalid("bad-header: " + std::string(who) + " header out of order");
    }
    auto id = parse_ident(hs[i]);
    if (!id) return id.error();
    (who == "author" ? c.author : c.committer) = std::move(*id);
    ++i;
  }
  const RawHeader* gpgsig = nullptr;
  for (; i < hs.size(); ++i) {
    const RawHeader& h = hs[i];
    if (h.name == "tree" || h.name == "parent" || h.name == "author" || h.name == "committer")
      return invalid("bad-header: " + h.name + " header out of order or repeated");
    if (Status s = check_signature_header_name(h.name); !s) return s.error();
    if (h.name == "gpgsig") {
      if (gpgsig) return invalid("duplicate-gpgsig: more than one gpgsig header");
      gpgsig = &h;
    } else if (h.name == "mergetag") {
      c.mergetags.push_back(h.value + "\n");
    }
  }

  // Everything after the blank line is message to git; a gpgsig line there is a header that a
  // careless reader (or a forged object) might take for one.
  std::string_view message = raw.substr(split->body);
  for (size_t pos = 0; pos < message.size();) {
    std::string_view line = message.substr(pos);
    if (line.starts_with("gpgsig ") || line.starts_with("gpgsig-sha256 "))
      return invalid(
          "header-after-message: a gpgsig line after the blank line that ends the headers");
    size_t nl = message.find('\n', pos);
    pos = nl == std::string_view::npos ? message.size() : nl + 1;
  }
  c.message = std::string(message);
  c.headers = public_headers(hs);

  if (gpgsig) {
    std::string sig = gpgsig->value + "\n";
    auto kind = check_armor(sig);
    if (!kind) return kind.error();
    c.signature = std::move(sig);
    c.signature_kind = *kind;
    c.payload = std::string(raw.substr(0, gpgsig->begin));
    c.payload += raw.substr(gpgsig->end);
  } else {
    c.payload = std::string(raw);
  }
  return c;
}

Result<ParsedTag> parse_tag(std::string_view raw) {
  if (Status s = check_nul(raw); !s) return s.error();
  auto split = split_headers(raw);
  if (!split) return split.error();
  const std::vector<RawHeader>& hs = split->headers;
  if (Status s = check_shapes(hs); !s) return s.error();

  ParsedTag t;
  size_t i = 0;
  for (std::string_view name : {"object", "type", "tag"}) {
    if (i >= hs.size() || hs[i].name != name) {
      bool present =
          std::any_of(hs.begin(), hs.end(), [&](const RawHeader& h) { return h.name == name; });
      if (!present) return invalid("missing-header: tag has no " + std::string(name) + " header");
      return invalid("bad-header: " + std::string(name) + " header out of order");
    }
    ++i;
  }
  t.object = hs[0].value;
  t.type = hs[1].value;
  t.tag = hs[2].value;
  if (!is_sha1_hex(t.object))
    return invalid("bad-header: object is not a sha1: \"" + t.object + "\"");
  if (t.type != "commit" && t.type != "tree" && t.type != "blob" && t.type != "tag")
    return invalid("bad-header: unknown object type \"" + t.type + "\"");
  if (t.tag.empty()) return invalid("bad-header: empty tag name");
  if (i < hs.size() && hs[i].name == "tagger") {
    auto id = parse_ident(hs[i]);
    if (!id) return id.error();
    t.tagger = std::move(*id);
    ++i;
  }
  for (; i < hs.size(); ++i) {
    const RawHeader& h = hs[i];
    if (h.name == "object" || h.name == "type" || h.name == "tag" || h.name == "tagger")
      return invalid("bad-header: " + h.name + " header out of order or repeated");
    if (Status s = check_signature_header_name(h.name); !s) return s.error();
    if (h.name == "gpgsig")
      return invalid("bad-header: gpgsig header in a tag (a tag's signature ends its message)");
  }
  t.headers = public_headers(hs);

  // git takes the last line that opens a known armor as the start of the signature; we also
  // insist that there is only one such line.
  std::vector<size_t> starts;
  for (size_t pos = split->body; pos < raw.size();) {
    if (marker_at(raw.substr(pos))) starts.push_back(pos);
    size_t nl = raw.find('\n', pos);
    pos = nl == std::string_view::npos ? raw.size() : nl + 1;
  }
  if (starts.size() > 1)
    return invalid("two-signatures: the tag holds " + std::to_string(starts.size()) +
                   " armor blocks");
  if (starts.empty()) {
    t.message = std::string(raw.substr(split->body));
    t.payload = std::string(raw);
    return t;
  }
  std::string_view sig = raw.substr(starts[0]);
  auto kind = check_armor(sig);
  if (!kind) return kind.error();
  t.signature = std::string(sig);
  t.signature_kind = *kind;
  t.message = std::string(raw.substr(split->body, starts[0] - split->body));
  t.payload = std::string(raw.substr(0, starts[0]));
  return t;
}

}  // namespace dmz
