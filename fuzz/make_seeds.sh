#!/bin/bash
# Writes fuzz seeds made at fuzz time into OUT/<target>/: real signatures, commits and tags made
# with fresh throwaway keys (never committed), and the example files of the repository. The
# committed seeds under fuzz/corpus/<target>/ are hand-written and need no keys.
# Usage: fuzz/make_seeds.sh OUT
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:?output directory}")
rm -rf "$out"
mkdir -p "$out"/{config,policy,signed_object,sshsig,openpgp,api,webhook}
tmp=$(mktemp -d)
export GNUPGHOME=$tmp/gnupg
cleanup() { gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -m 700 "$GNUPGHOME"

# config: the example configuration; policy: every toml block of docs/POLICY.md.
cp deploy/dmzbot.example.toml "$out/config/example.toml"
awk '/^```toml/{n++; f=1; next} /^```/{f=0} f{print > (out "/policy/doc-" n ".toml")}' \
  out="$out" docs/POLICY.md

# Keys: ssh of each supported type, one OpenPGP key (ed25519), all throwaway.
printf 'tree 4b825dc642cb6eb9a060e54bf8d69288fbd4904b\nauthor A <a@x> 1700000000 +0000\n\nhi\n' \
  > "$tmp/msg"
signers=""
for type in ed25519 ecdsa rsa; do
  ssh-keygen -q -t "$type" -N '' -C "seed-$type@dmzbot.fuzz" -f "$tmp/$type"
  signers+="seed-$type@dmzbot.fuzz namespaces=\"git\" $(cut -d' ' -f1,2 "$tmp/$type.pub")"$'\n'
done
for type in ed25519 ecdsa rsa; do
  for alg in sha512 sha256; do
    ssh-keygen -q -Y sign -n git -Ohashalg=$alg -f "$tmp/$type" "$tmp/msg"
    { printf '%s--\n' "$signers"; cat "$tmp/msg.sig"; printf -- '--\n'; cat "$tmp/msg"; } \
      > "$out/sshsig/$type-$alg"
    base64 -d < <(sed '1d;$d' "$tmp/msg.sig") > "$out/sshsig/$type-$alg.blob"
    rm "$tmp/msg.sig"
  done
done
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
  --quick-gen-key 'Seed <seed@dmzbot.fuzz>' ed25519 sign never 2>/dev/null
gpg --batch --quiet --armor --detach-sign -o "$out/openpgp/detached.asc" "$tmp/msg"
gpg --batch --quiet --detach-sign -o "$out/openpgp/detached.bin" "$tmp/msg"
gpg --batch --quiet --armor --clearsign -o "$out/openpgp/clearsigned.asc" "$tmp/msg"

# signed_object: commits and tags from git, unsigned, ssh-signed and OpenPGP-signed, and a
# merge of a signed tag (a mergetag header).
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=Seed GIT_AUTHOR_EMAIL=seed@dmzbot.fuzz
export GIT_COMMITTER_NAME=Seed GIT_COMMITTER_EMAIL=seed@dmzbot.fuzz
git init -q -b master "$tmp/repo"
g() { git -C "$tmp/repo" "$@"; }
ssh_sign=(-c gpg.format=ssh -c "user.signingkey=$tmp/ed25519")
echo a > "$tmp/repo/a" && g add a && g commit -q -m 'unsigned commit'
g cat-file commit HEAD > "$out/signed_object/commit-unsigned"
echo b > "$tmp/repo/b" && g add b && g "${ssh_sign[@]}" commit -q -S -m 'ssh-signed commit'
g cat-file commit HEAD > "$out/signed_object/commit-ssh"
echo c > "$tmp/repo/c" && g add c && g commit -q -S'seed@dmzbot.fuzz' -m 'OpenPGP-signed commit'
g cat-file commit HEAD > "$out/signed_object/commit-openpgp"
g "${ssh_sign[@]}" tag -s -m 'ssh-signed tag' v1
g cat-file tag v1 > "$out/signed_object/tag-ssh"
g tag -a -m 'unsigned tag' v0 HEAD~1
g cat-file tag v0 > "$out/signed_object/tag-unsigned"
g tag -u 'seed@dmzbot.fuzz' -m 'OpenPGP-signed tag' v2 HEAD~1
g cat-file tag v2 > "$out/signed_object/tag-openpgp"
g checkout -q -b side HEAD~2 && echo d > "$tmp/repo/d" && g add d && g commit -q -m side
g "${ssh_sign[@]}" tag -s -m 'for merging' for-merge
echo "seed@dmzbot.fuzz $(cut -d" " -f1,2 "$tmp/ed25519.pub")" > "$tmp/allowed"
g checkout -q master
g -c gpg.ssh.allowedSignersFile="$tmp/allowed" merge -q --no-ff --no-edit for-merge >/dev/null
g cat-file commit HEAD > "$out/signed_object/commit-mergetag"
cp "$out"/signed_object/*openpgp "$out/openpgp/" 2>/dev/null || true

# webhook: GitHub's own example deliveries (@octokit/webhooks-examples, installed from the lock
# file by setup.sh --test), one seed per example: the event name, a newline, the payload.
examples=tests/github/node_modules/@octokit/webhooks-examples/api.github.com/index.json
if [[ -f $examples ]] && command -v python3 >/dev/null; then
  python3 - "$examples" "$out/webhook" <<'PY'
import json, sys
for group in json.load(open(sys.argv[1])):
    for i, example in enumerate(group["examples"]):
        with open(f"{sys.argv[2]}/{group['name']}-{i}", "w") as f:
            f.write(group["name"] + "\n" + json.dumps(example))
PY
fi

for t in "$out"/*; do echo "seeds: $(basename "$t"): $(ls "$t" | wc -l) generated"; done
