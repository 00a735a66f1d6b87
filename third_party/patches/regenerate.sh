#!/usr/bin/env bash
# Writes each patched crate's whole change as a diff against the release it was vendored from
# (the commit that added it to third_party/), into third_party/patches/NAME.diff.
set -euo pipefail
cd "$(dirname "$0")/../.."
for dir in third_party/*/; do
  name=$(basename "$dir")
  [ "$name" = patches ] && continue
  added=$(git log --diff-filter=A --format=%H -- "$dir/Cargo.toml" | tail -1)
  git diff "$added" HEAD -- "$dir" > "third_party/patches/$name.diff"
  echo "third_party/patches/$name.diff: $(grep -c '^[-+][^-+]' "third_party/patches/$name.diff") changed lines"
done
