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
                        "mafw: the 'Train & Test Set' folder (default: found under --root); "
                        "msp-podcast: labels_consensus.csv (default: Labels/labels_consensus.csv)")
    parser.add_argument("--flip-arousal", choices=("yes", "no"),
                        help="msp-improv: yes/no: store 6 - arousal (default: decided from the file, so that 5 = most aroused: flipped when its angry/happy scenarios score lower arousal than its neutral/sad ones)")
    parser.add_argument("--csv", help="custom: the CSV when --root is a folder")
    parser.add_argument("--attributes", help="custom: comma-separated attribute columns (default: all numeric columns)")
    parser.add_argument("--label-set", help="iemocap: 4class (ang, hap+exc, neu, sad; default) | 6class | raw; "
                        "msp-podcast: 8class (default) | 4class; meld: emotion (default) | sentiment")
    parser.add_argument("--face-side", choices=("marker-left", "marker-right"),
                        help="iemocap: the half of the dialog video where the actor wearing markers sits (default marker-left)")
    parser.add_argument("--clips-dir", help="iemocap: where the turns' video clips are cut to (default: <out>_clips/ beside the manifest)")
    parser.add_argument("--no-cut-video", action="store_true",
                        help="iemocap: do not cut video clips (the manifest holds audio and text only)")
    parser.add_argument("--drop-unlabelled", action="store_true",
                        help="leave out clips whose class is outside the label set (e.g. IEMOCAP fru/xxx under 4class)")
    parser.add_argument("--drop-known-bad", action="store_true",
                        help="leave out the clips known to be broken in the released corpus (prepare lists them either way)")
    parser.add_argument("--allow-speaker-overlap", action="store_true",
                        help="keep a protocol that puts a speaker in two of train/dev/test, renamed <name>-speaker-overlap")


def run(args) -> int:
    options = {k: getattr(args, k) for k in ("label", "metadata_dir", "labels", "csv", "attributes")}
    options.update({k: getattr(args, k) for k in ("label_set", "face_side", "clips_dir", "drop_unlabelled",
                                                  "allow_speaker_overlap", "drop_known_bad")})
    options["cut_video"] = not args.no_cut_video
    options["flip_arousal"] = None if args.flip_arousal is None else args.flip_arousal == "yes"
    prepare(args.corpus, args.root, args.out, drop_ambiguous=args.drop_ambiguous, missing=args.missing, **options)
    return 0

