"""How often lingua tells a query's language right, wrong, or not at all ("und").

    .venv/bin/python bench/query_language.py [--data ../shared/data/ir]

Queries of SciFact (train and test qrels; all English) and of XQuAD-R (1,190 per language).
For each, the share labelled right and wrong by lingua's top guess, and by
`detect_query_language` (top guess only at confidence >= QUERY_MIN_CONFIDENCE, else "und").
QUERY_MIN_CONFIDENCE was set from the SciFact train row alone; the other rows are reported.
No model other than lingua's (offline) is loaded; it runs in well under a minute.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ranking.evaluation import load_beir
from ranking.language import QUERY_MIN_CONFIDENCE, detect_query_language

XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "tr")


def shares(language: str, queries: list[str], min_confidence: float) -> tuple[float, float]:
    labels = [detect_query_language(q, min_confidence=min_confidence) for q in queries]
    right = sum(label == language for label in labels)
    wrong = sum(label not in (language, "und") for label in labels)
    return right / len(labels), wrong / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ir"))
    args = parser.parse_args()
    sets = {
        f"scifact {split}": ("en", load_beir(args.data / "scifact", split))
        for split in ("train", "test")
    }
    for language in XQUAD_LANGUAGES:
        sets[f"xquad-r {language}"] = (language, load_beir(args.data / "xquad_r" / language))
    print(f"{'queries':<14} {'n':>5}  top guess right/wrong  >= {QUERY_MIN_CONFIDENCE} right/wrong")
    for name, (language, collection) in sets.items():
        queries = list(collection.queries.values())
        top = shares(language, queries, 0.0)
        kept = shares(language, queries, QUERY_MIN_CONFIDENCE)
        print(
            f"{name:<14} {len(queries):>5}  {top[0]:>10.3f} / {top[1]:.3f}"
            f"  {kept[0]:>15.3f} / {kept[1]:.3f}"
        )


if __name__ == "__main__":
    main()
