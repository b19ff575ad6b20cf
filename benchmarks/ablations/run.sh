#!/usr/bin/env bash
# Where a non-streaming request's time goes in mmo-serve: each part switched off in turn,
# in the same rounds as mmo-serve itself (gateway.py's added-ms rows), then the same for
# orc.acomplete in this process. An experiment, not a product: gateway.patch adds the
# switches (ABLATE_*, read from the environment) to a throwaway worktree of HEAD.
#
#   bash benchmarks/ablations/run.sh [gateway.py options, e.g. --serial 300]
#
# The switches: STREAM asks the upstream for one JSON body instead of streaming it (no
# ttft, no stall deadline); RECORD writes no run record (the durability contract
# dropped); FASTAPI serves /v1/chat/completions as a plain Starlette route; UPSTREAM
# answers from a canned response (no orchestrator, no upstream call: the HTTP side
# alone). Key accounting is gateway.py's own "server key" row.
set -euo pipefail
root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
tree="$(mktemp -d)/ablations"
git -C "$root" worktree add --force --detach "$tree" HEAD >/dev/null
# gateway.py saves its results in benchmarks/results/: these runs are experiments, so the
# files are put back as they were.
results="$root/benchmarks/results"
saved="$(dirname "$tree")/results"
cp -r "$results" "$saved"
trap 'cp "$saved"/*.json "$results"/; git -C "$root" worktree remove --force "$tree"' EXIT
git -C "$tree" apply "$root/benchmarks/ablations/gateway.patch"

also=()
for variant in stream record stream+record fastapi upstream; do
  also+=(--also "no $variant=$tree")
  for part in ${variant//+/ }; do
    also+=(--also-env "no $variant:ABLATE_${part^^}=1")
  done
done
echo "== mmo-serve, each part switched off (--also rows)"
python "$root/benchmarks/gateway.py" --only-added --skip-litellm "${also[@]}" "$@" \
  | grep -E "^(test|added at c=1, non-stream)"

echo
echo "== orc.acomplete in this process, the same switches"
for switches in "" ABLATE_STREAM=1 ABLATE_RECORD=1 "ABLATE_STREAM=1 ABLATE_RECORD=1"; do
  echo "-- ${switches:-nothing switched off}"
  env $switches PYTHONPATH="$tree" python "$root/benchmarks/gateway.py" --only-added \
    --skip-litellm "$@" | grep -E "^added at c=1, non-stream .*orc.acomplete"
done
