"""`factory contamination`: which benchmark test items a training set contains, by method."""

from __future__ import annotations

import sys

HELP = """\
methods (reported separately):
  ngram      word 13-grams after lowercasing and stripping punctuation (GPT-3, lm-eval); a text
             field of 8-12 words counts when it appears whole
  substring  the GPT-4 report's check: three 50-character letter-and-digit substrings per item
  embedding  paraphrases, with --embedding-model PATH (a local sentence-embedding model; never downloads).
             UNMEASURED: its separation of paraphrases from unrelated pairs has not been measured;
             treat its matches as leads to read, not findings

benchmarks: gsm8k, mmlu, arc_easy, arc_challenge, truthfulqa, winogrande, hellaswag (local files
under $FACTORY_BENCHMARKS_DIR, else their Hub datasets), or NAME=PATH to a .json/.jsonl/.jsonl.gz/.csv.

examples:
  factory contamination --data train.jsonl --benchmark gsm8k --benchmark mmlu
  factory contamination --data my-org/chats --format sharegpt --benchmark mine=test.csv --fields question --json out.json
"""


def cmd_contamination(args) -> int:

    from tqdm import tqdm

    from evals.contamination import check
    from factory.base import atomic
    from factory.data.decontaminate import data_files, load_benchmarks, mark_trainable, rows_of
    from factory.hub.choose import default_hub

    fields = [f.strip() for f in args.fields.split(",") if f.strip()] if args.fields else None
    benchmarks = load_benchmarks(args.benchmark, fields)
    files = data_files(args.data, default_hub())
    source = rows_of(files, args.format)
    with tqdm(desc="rows", unit=" rows", file=sys.stderr, disable=args.quiet) as bar:
        report, bad = check(source, benchmarks, args.embedding_model, progress=bar.update)
    mark_trainable(report, source)
    dropped = (f"{report['rows_training_would_drop']:,} that training would drop as malformed (scanned too)"
               if args.format else "trainability not judged (give --format to learn which rows training would drop)")
    print(f"\n{report['rows_read']:,} rows read, {report['rows_scanned']:,} scanned (rows with text), {dropped}; "
          f"{report['seconds']:.1f}s ({report['rows_read'] / max(report['seconds'], 1e-9):,.0f} rows/s); "
          f"{len(bad)} rows overlap" + (f", {len(bad & source.untrainable)} of them rows training would drop"
                                         if args.format else ""))
    print(f"{'benchmark':16} {'items':>6} {'overlap':>8} {'rate':>7} {'13-gram':>8} {'substring':>9} {'embedding':>9}")
    for name, b in report["benchmarks"].items():
        m = b["by_method"]
        print(f"{name:16} {b['items']:>6} {b['contaminated']:>8} {b['rate']:>7.2%} {m['ngram']:>8} {m['substring']:>9} "
              f"{m['embedding']:>9}")
    print(f"embedding: {report['embedding']}")
    examples = [(n, m) for n, b in report["benchmarks"].items() for m in b["matches"]][: args.examples]
    if examples:
        print("\nexamples:")
    for name, m in examples:
        note = " (a row training would drop)" if m["train_rows"][0] in m["untrainable_rows"] else ""
        print(f"  {name} item {m['item']} <- row {m['train_rows'][0]}{note} ({m['method']}): \"{m['evidence'][:90]}\"")
    if args.json:
        atomic.write_json(args.json, report)
        print(f"\nreport: {args.json}")
    return 0


def add_command(sub) -> None:
    import argparse
    from pathlib import Path

    c = sub.add_parser("contamination", help="check a training set against benchmark test items",
                       epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--data", required=True, help="a data file, a folder of them, or a Hub dataset id")
    c.add_argument("--format", choices=["alpaca", "sharegpt", "messages", "completion"],
                   help="read rows as this format: the text the factory trains on; rows training would drop as malformed "
                   "are scanned whole and marked. Default: every string in every row")
    c.add_argument("--benchmark", action="append", required=True, metavar="NAME[=PATH]", help="repeat for several")
    c.add_argument("--fields", help="benchmark fields to check, comma-separated (default: every text field)")
    c.add_argument("--embedding-model", type=Path, help="local sentence-embedding model folder for paraphrases")
    c.add_argument("--json", type=Path, metavar="OUT", help="write the full report as JSON")
    c.add_argument("--examples", type=int, default=5, help="how many matches to print (default 5)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(fn=cmd_contamination)
