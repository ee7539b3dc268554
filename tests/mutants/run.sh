#!/usr/bin/env bash
# Mutation testing of skyhost's pure code with cargo-mutants (pinned): every mutant that
# builds must be caught by the tests, except the equivalent ones listed with their reasons
# in tests/mutants/equivalent.txt, and at least MIN_SCORE % of each group's mutants that
# build must be caught.
#
#   tests/mutants/run.sh                 every group: meta, origin, rules
#   tests/mutants/run.sh origin          one group (or several)
#   tests/mutants/run.sh rules -- -f crates/rules/src/auth.rs
#                                        a group narrowed by extra cargo-mutants arguments
#                                        (then equivalent entries not met are not reported)
#
# Builds go to MUTANTS_TARGET_DIR (default: CARGO_TARGET_DIR, else target/): the mutated
# copies live in a scratch folder, so their crates never mix with the tree's, while the
# dependencies are built once and shared. Reports land in .cache/mutants/<group>/.
set -euo pipefail
export LC_ALL=C # one collation for sort and comm

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

PIN=27.1.0
MIN_SCORE=${MIN_SCORE:-90}
equivalent="$root/tests/mutants/equivalent.txt"
out_root="$root/.cache/mutants"

# The pinned cargo-mutants: the one on PATH when it is that version, else installed into
# the repository's ignored cache folder.
tools="$root/.cache/cargo-mutants"
version_of() { "$1" mutants --version 2>/dev/null | awk '{print $2}'; }
if [ "$(version_of "$(command -v cargo-mutants || echo none)")" != "$PIN" ]; then
  if [ "$(version_of "$tools/bin/cargo-mutants")" != "$PIN" ]; then
    echo "==> installing cargo-mutants $PIN into $tools"
    cargo install --locked --quiet --version "$PIN" --root "$tools" cargo-mutants
  fi
  export PATH="$tools/bin:$PATH"
fi

export CARGO_TARGET_DIR="${MUTANTS_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}"

# Each group, named for its crate: what to mutate and which test targets judge it
# (MUTATE, cargo-mutants arguments), and the test name filters (TEST, after `--`). The origin's and meta's pure modules are judged by their unit
# tests (`--lib`, built and run alone): those crates' integration tests need moto and redis
# and would take minutes per mutant.
set_group() {
  case "$1" in
    meta)
      MUTATE=(-p skyhost-meta -C --lib -f crates/meta/src/keys.rs -f crates/meta/src/ids.rs)
      TEST=() ;;
    origin)
      # Judged by those modules' own tables only (`-- name::` filters): the crate's other
      # unit tests take half a minute and are not what vouches for these modules.
      local f files=() filters=()
      for f in range conditional path encoding cache_control file_response; do
        if [ -f "crates/origin/src/$f.rs" ]; then
          files+=(-f "crates/origin/src/$f.rs")
          filters+=("$f::")
        fi
      done
      MUTATE=(-p skyhost-origin -C --lib "${files[@]}")
      TEST=(-- "${filters[@]}") ;;
    rules)
      # Every test target; no doctests (the crate's doc examples are not Rust).
      MUTATE=(-p skyhost-rules -C --tests)
      TEST=() ;;
    *)
      echo "unknown group '$1' (meta, origin, rules)" >&2
      return 2 ;;
  esac
}

groups=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do groups+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
extra=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(meta origin rules)

# The equivalent list, checked: every entry needs a reason (the comment line above it).
# Entries are mutant names without line and column, so they survive edits above them.
expected=$(mktemp)
trap 'rm -f "$expected"' EXIT
awk -v file="$equivalent" '
  /^[[:space:]]*$/ { reason = 0; next }
  /^#/ { reason = 1; next }
  { if (!reason) { printf "%s:%d: an entry without a reason (a # line above it)\n", file, NR > "/dev/stderr"; bad = 1 }
    print }
  END { exit bad }
' "$equivalent" | sort > "$expected"

strip_line_col() { sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /'; }
count() { cat "$1" 2>/dev/null | awk 'NF { n++ } END { print n + 0 }'; }

failed=0
summary=$(printf '%-7s %8s %9s %7s %8s %7s %11s %7s %9s' \
  group mutants unviable caught timeout missed equivalent score minutes)
for g in "${groups[@]}"; do
  set_group "$g"
  out="$out_root/$g"
  mkdir -p "$out"
  echo "==> cargo mutants ${MUTATE[*]} ${extra[*]} -- ${TEST[*]}"
  start=$(date +%s)
  set +e
  cargo mutants --jobs 1 --minimum-test-timeout 60 --colors never --output "$out" \
    "${MUTATE[@]}" "${extra[@]}" -- "${TEST[@]}"
  rc=$?
  set -e
  minutes=$(( ($(date +%s) - start + 30) / 60 ))
  # 0: all caught, 2: some missed, 3: some timed out; anything else did not run.
  case " ${extra[*]} " in *" --list "*|*" --list-files "*) continue ;; esac
  case "$rc" in 0|2|3) ;; *) echo "error: cargo mutants failed for $g (exit $rc)" >&2; failed=1; continue ;; esac

  dir="$out/mutants.out"
  caught=$(count "$dir/caught.txt"); timeout=$(count "$dir/timeout.txt")
  missed=$(count "$dir/missed.txt"); unviable=$(count "$dir/unviable.txt")
  if [ ! -f "$dir/outcomes.json" ]; then
    echo "error: $g: cargo mutants wrote no outcomes in $dir" >&2; failed=1; continue
  fi
  missed_names=$(strip_line_col < "$dir/missed.txt" | sort)
  # A missed mutant not listed as equivalent fails the run (each entry excuses one).
  unexpected=$(comm -23 <(echo "$missed_names" | grep .) "$expected" || true)
  excused=$(( missed - $(echo "$unexpected" | grep -c . || true) ))
  if [ -n "$unexpected" ]; then
    echo "error: $g: missed mutants no test catches (add a test case, or list them as equivalent with the reason in tests/mutants/equivalent.txt):" >&2
    echo "$unexpected" | sed 's/^/  /' >&2
    failed=1
  fi
  if [ ${#extra[@]} -eq 0 ]; then
    # A full group run: entries of this group that no longer match a missed mutant are stale.
    stale=$(comm -13 <(echo "$missed_names" | grep .) <(grep "^crates/$g/" "$expected") || true)
    if [ -n "$stale" ]; then
      echo "error: $g: equivalent entries no longer missed (remove them from tests/mutants/equivalent.txt):" >&2
      echo "$stale" | sed 's/^/  /' >&2
      failed=1
    fi
  fi
  built=$(( caught + timeout + missed ))
  # A timed-out mutant did not pass the tests: it counts as caught.
  score=$(awk -v c=$(( caught + timeout )) -v b="$built" 'BEGIN { printf "%.1f", b ? 100 * c / b : 100 }')
  if awk -v s="$score" -v m="$MIN_SCORE" 'BEGIN { exit !(s < m) }'; then
    echo "error: $g: $score % of the mutants that build are caught, below $MIN_SCORE %" >&2
    failed=1
  fi
  summary+=$(printf '\n%-7s %8s %9s %7s %8s %7s %11s %6s%% %9s' \
    "$g" $(( built + unviable )) "$unviable" "$caught" "$timeout" "$missed" "$excused" "$score" "$minutes")
done

echo
echo "$summary"
if [ "$failed" != 0 ]; then
  echo "make mutants: FAILED" >&2
  exit 1
fi
echo "make mutants: ok"
