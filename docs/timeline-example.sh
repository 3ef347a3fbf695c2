#!/usr/bin/env bash
# Makes docs/timeline.svg, the picture in README.md: the git -> claude example with a dotfiles
# step, a lint step that fails, and a report that needs lint completed (so it is skipped), run
# against a fresh coordinator. Needs `unitsync` on PATH (the project's venv). About 4 s.
set -euo pipefail
cd "$(dirname "$0")"
dir=$(mktemp -d /tmp/us-example-XXXX)
export UNITSYNC_SOCKET=$dir/unitsync.sock
unitsync serve --no-state 2>"$dir/serve.log" &
serve=$!
trap 'kill $serve; rm -rf "$dir"' EXIT
until unitsync ping >/dev/null 2>&1; do sleep 0.05; done

pids=()
unitsync run ssh-key -- sleep 0.4 & pids+=($!)
unitsync run git --after ssh-key -- sleep 1.2 & pids+=($!)
unitsync run dotfiles -- sleep 0.7 & pids+=($!)
unitsync run claude --after git --after dotfiles -- sleep 1.0 & pids+=($!)
unitsync run lint --after git -- sh -c 'sleep 0.5; exit 1' & pids+=($!)
unitsync run report --after lint -- true & pids+=($!)
for pid in "${pids[@]}"; do wait "$pid" || true; done   # lint fails, report is skipped
unitsync timeline -o svg > timeline.svg
unitsync timeline
unitsync blame
unitsync critical-chain
