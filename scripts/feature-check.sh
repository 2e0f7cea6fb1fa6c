#!/usr/bin/env bash
# feature-check.sh: are the features of every third-party crate the same whichever way
# the workspace is built? Prints a diff of the resolved feature sets of
#   (a) cargo test --release                      (default members, dev-dependencies)
#   (b) cargo build --release                     (default members, no dev-dependencies)
#   (c) cargo build --release -p orchestrator
#   (e) cargo check --release -p orchestrator --no-default-features   (the agent image's)
# for every crate that two of them both compile (a crate only one of them needs, like
# the tests' fantoccini, is no rebuild). Build-script and proc-macro dependencies
# ("host") are compared apart from normal ones ("target"), as cargo resolves them.
# (d), CI's clippy over the default members with --all-targets, selects exactly what
# (a) does. Empty output and exit status 0: one set of artifacts for all of them.
#
# Only `cargo tree` runs (no compilation). Usage: feature-check.sh [WORKSPACE_DIR]
# Extra cargo flags (e.g. --locked --offline) in FEATURE_CHECK_CARGO_FLAGS.
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
[ -f Cargo.toml ] || { echo "feature-check: no Cargo.toml in $(pwd)" >&2; exit 2; }

HOST=$(rustc -vV | sed -n 's/^host: //p')
read -r -a FLAGS <<<"${FEATURE_CHECK_CARGO_FLAGS:-}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# One line per compiled unit: `target|host <crate> <version>|<features>`. An explicit
# --target keeps host and target nodes apart in cargo tree's graph (without it, a host
# node and a target node with equal features are merged and show one set of children).
cat >"$WORK/classify.py" <<'EOF'
import sys
out, stack, section = set(), [], {}
for raw in sys.stdin:
    line = raw.rstrip("\n")
    if not line.strip():
        stack.clear(); section.clear(); continue
    content = line.lstrip("│├└─ ")
    depth = (len(line) - len(content)) // 4
    if content.startswith("["):                       # [build-dependencies], [dev-dependencies]
        for d in [d for d in section if d > depth]: del section[d]
        section[depth] = content.strip("[]")          # for the children of the node at `depth`
        continue
    for d in [d for d in section if d >= depth]: del section[d]
    while stack and stack[-1][0] >= depth: stack.pop()
    pkg, _, feats = content.replace(" (*)", "").partition("|")
    host = (stack[-1][1] if stack else False) or section.get(depth - 1) == "build-dependencies" \
        or "(proc-macro)" in pkg
    stack.append((depth, host))
    if "(/" not in pkg:                                # skip workspace members
        out.add(f"{'host' if host else 'target'} {pkg.replace(' (proc-macro)', '').strip()}|{feats.strip()}")
print("\n".join(sorted(out)))
EOF

features() {
  local name=$1
  shift
  cargo tree "${FLAGS[@]}" --target "$HOST" -f '{p}|{f}' "$@" | python3 "$WORK/classify.py" >"$WORK/$name"
}
features a -e normal,build,dev
features b -e normal,build
features c -e normal,build -p orchestrator
features e -e normal,build -p orchestrator --no-default-features

label() {
  case $1 in
    a) echo "(a) cargo test --release" ;;
    b) echo "(b) cargo build --release" ;;
    c) echo "(c) cargo build --release -p orchestrator" ;;
    e) echo "(e) cargo check --release -p orchestrator --no-default-features" ;;
  esac
}

# The units both X and Y compile, with their features; then the diff of the two.
status=0
for pair in a:b a:c b:c c:e; do
  x=${pair%:*} y=${pair#*:}
  # (awk: the keys of $y, then the lines of $x whose key is among them, and vice versa)
  awk -F'|' 'NR == FNR { k[$1]; next } $1 in k' "$WORK/$y" "$WORK/$x" >"$WORK/x.common"
  awk -F'|' 'NR == FNR { k[$1]; next } $1 in k' "$WORK/$x" "$WORK/$y" >"$WORK/y.common"
  if ! diff -u --label "$(label "$x")" --label "$(label "$y")" "$WORK/x.common" "$WORK/y.common"; then
    status=1
  fi
done
exit $status
