#!/usr/bin/env bash
# Cross-lingual XQuAD-R: English questions against each language's sentences, and each
# language's questions against the English sentences, with `fairshare eval --queries`.
# XQuAD-R's query ids are the SQuAD ids in every language, so a language's questions are
# scored against another corpus with that corpus's own judgements.
#
#   nohup bench/eval_crosslingual.sh [STAGES] > bench/out/eval/crosslingual.log 2>&1 &
#
# Writes bench/out/eval/xling-<query language>-<corpus language>.json and .log, then prints
# the nDCG@10 table. The English corpus is ingested once (--keep-data) for its seven runs.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${FAIRSHARE_EVAL_DATA:-../shared/data/ir}/xquad_r
STAGES=${1:-bm25,dense,hybrid}
LANGUAGES=(ar de el es hi ru tr)
OUT=bench/out/eval
KEEP=$(mktemp -d -t fairshare-xling-XXXXXX)
trap 'rm -rf "$KEEP"' EXIT
mkdir -p "$OUT"

run() {  # run QUERY_LANGUAGE CORPUS_LANGUAGE [extra eval options]
    local queries=$1 corpus=$2
    shift 2
    local name="xling-$queries-$corpus"
    {
        echo "started $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse HEAD)" \
            "uncommitted-diff-sha1 $(git diff HEAD | sha1sum | cut -c1-12)"
        start=$(date +%s)
        .venv/bin/fairshare eval --data "$DATA/$corpus" --queries "$DATA/$queries/queries.jsonl" \
            --split test --backend faiss --stages "$STAGES" --out "$OUT/$name.json" \
            --no-progress "$@"
        status=$?
        echo "exit $status wall_seconds $(($(date +%s) - start))"
    } > "$OUT/$name.log" 2>&1
    tail -n 1 "$OUT/$name.log" | sed "s|^|$name: |"
}

for language in "${LANGUAGES[@]}"; do
    run "$language" en --keep-data "$KEEP/en"
    run en "$language"
done

.venv/bin/python - "$OUT" "${LANGUAGES[@]}" <<'PY'
import json, sys
from pathlib import Path
out, languages = Path(sys.argv[1]), sys.argv[2:]
def row(name):
    stages = json.loads((out / f"{name}.json").read_text())["stages"]
    return " | ".join(f"{stages[s]['ndcg@10']:.3f}" for s in ("bm25", "dense", "hybrid"))
print("| language | en questions → its corpus: BM25 | dense | hybrid "
      "| its questions → en corpus: BM25 | dense | hybrid |")
print("|---|---|---|---|---|---|---|")
for language in languages:
    print(f"| {language} | {row(f'xling-en-{language}')} | {row(f'xling-{language}-en')} |")
PY
