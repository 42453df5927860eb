#!/usr/bin/env bash
# `fairshare eval` on every shared collection, one at a time (they compete for the same cores),
# writing bench/out/eval/<name>.json and .log. Produces the README's Evaluation table.
#
#   nohup bench/eval_all.sh [STAGES] [collection ...] > bench/out/eval/all.log 2>&1 &
#
# Each log records when the run started, the commit and a hash of uncommitted changes, since the
# ranking code may change between runs, and the run's wall time.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${FAIRSHARE_EVAL_DATA:-../shared/data/ir}
STAGES=${1:-bm25,dense,hybrid}
shift || true
NAMES=("$@")
if [ ${#NAMES[@]} -eq 0 ]; then
    NAMES=(cranfield cisi cacm npl xquad_r/en xquad_r/de xquad_r/es xquad_r/el xquad_r/ru
        xquad_r/tr xquad_r/ar xquad_r/hi scifact)
fi
OUT=bench/out/eval
mkdir -p "$OUT"
for name in "${NAMES[@]}"; do
    slug=${name//\//-}
    log="$OUT/$slug.log"
    {
        echo "started $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse HEAD)" \
            "uncommitted-diff-sha1 $(git diff HEAD | sha1sum | cut -c1-12)"
        start=$(date +%s)
        .venv/bin/fairshare eval --data "$DATA/$name" --split test --backend faiss \
            --stages "$STAGES" --out "$OUT/$slug.json" --no-progress
        status=$?
        echo "exit $status wall_seconds $(($(date +%s) - start))"
    } > "$log" 2>&1
    tail -n 1 "$log" | sed "s|^|$name: |"
done
