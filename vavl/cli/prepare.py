"""`vavl prepare`: index a corpus folder in its own layout into a manifest (vavl.data.prepare).
"""
from __future__ import annotations

from ..data.corpora import CORPORA
from ..data.prepare import prepare


def add_arguments(parser) -> None:
    parser.add_argument("corpus", choices=sorted(CORPORA), help="corpus layout")
    parser.add_argument("--root", required=True, help="corpus folder (custom: the CSV or its folder)")
    parser.add_argument("--out", required=True, help="manifest to write (.jsonl)")
    parser.add_argument("--drop-ambiguous", action="store_true", help="leave out clips whose raters tied")
    parser.add_argument("--missing", choices=("keep", "drop"), default="keep",
                        help="a listed clip without one of its media files: keep it with that modality missing, or drop it")
    parser.add_argument("--label", help="crema-d: intended | perceived-av | perceived-audio | perceived-video | soft")
    parser.add_argument("--metadata-dir", help="crema-d: folder of summaryTable.csv etc. (default: processedResults/ or root)")
    parser.add_argument("--labels", help="msp-improv: label file (Evalution.txt, VAVL CSV or plain CSV); "
                        "mafw: the 'Train & Test Set' folder (default: found under --root)")
    parser.add_argument("--flip-arousal", choices=("yes", "no"),
                        help="msp-improv: yes/no: store 6 - arousal (default: yes for Evalution.txt, no for CSVs)")
    parser.add_argument("--csv", help="custom: the CSV when --root is a folder")
    parser.add_argument("--attributes", help="custom: comma-separated attribute columns (default: all numeric columns)")


def run(args) -> int:
    options = {k: getattr(args, k) for k in ("label", "metadata_dir", "labels", "csv", "attributes")}
    options["flip_arousal"] = None if args.flip_arousal is None else args.flip_arousal == "yes"
    prepare(args.corpus, args.root, args.out, drop_ambiguous=args.drop_ambiguous, missing=args.missing, **options)
    return 0

