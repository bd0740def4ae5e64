#!/usr/bin/env bash
# Checks that every C++ source the project tracks (and new, not ignored ones)
# is formatted with the repository's .clang-format (Google style). `make test`
# runs it first; `scripts/check-format.sh --fix` rewrites the files instead.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(git ls-files --cached --others --exclude-standard \
  -- '*.cc' '*.h' | grep -v -e '^build' -e '/fuzz/corpus/' | sort -u)
existing=()
for f in "${files[@]}"; do [[ -f "$f" ]] && existing+=("$f"); done

if [[ "${1:-}" == "--fix" ]]; then
  clang-format -i "${existing[@]}"
  echo "check-format: formatted ${#existing[@]} files"
  exit 0
fi

bad=()
for f in "${existing[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done
if ((${#bad[@]} > 0)); then
  echo "check-format: ${#bad[@]} of ${#existing[@]} files are not clang-formatted:"
  printf '  %s\n' "${bad[@]}"
  echo "check-format: run 'scripts/check-format.sh --fix' (or clang-format -i FILE)"
  exit 1
fi
echo "check-format: all ${#existing[@]} C++ files are clang-formatted"
