"""Import checkpoints trained elsewhere into vavl models.

    vavl.convert.load_official_auxformer("final_head.pt", corpus="crema-d")   # ilucasgoncalves/AuxFormer
    vavl.convert.load_official_vavl("dir_with_the_nine_head_files", corpus="crema-d")  # ilucasgoncalves/VAVL
    vavl.convert.load_hsemotion("enet_b2_8.pt")                  # HSEmotion face-emotion EfficientNet-B2
    vavl.convert.load_audeering("wav2vec2-large-robust-12-ft-emotion-msp-dim/")   # audeering's A/D/V model

CLI: `vavl convert {auxformer,vavl,hsemotion,audeering} SRC --out DIR` writes a `save_pretrained` folder;
official AuxFormer / VAVL checkpoints also take `--corpus {crema-d,msp-improv}` (or `--labels`) and `--task`.
"""
from __future__ import annotations

import argparse

from .official import CORPORA, TASKS


def load_official_auxformer(path, num_heads: int = 10, causal_mask: bool = True, **labels):
    from .auxformer import load_official_auxformer as _load

    return _load(path, num_heads=num_heads, causal_mask=causal_mask, **labels)


def load_official_vavl(directory, num_heads: int = 8, framewise: bool = True, **labels):
    from .vavl import load_official_vavl as _load

    return _load(directory, num_heads=num_heads, framewise=framewise, **labels)


def load_hsemotion(path):
    from .hsemotion import load_hsemotion as _load

    return _load(path)


def load_audeering(directory):
    from .audeering import load_audeering as _load

    return _load(directory)


def initialize_from(model, source, labels: list[str] | None = None) -> None:
    """Copy weights into an emotion model (as configured) from a save_pretrained folder, an official
    AuxFormer `final_head.pt` or an official VAVL run folder (its nine *_head.pt files). Every
    parameter must match by name and shape; buffers the source lacks (feature statistics) stay.
    labels: the model's class names (what the official files' outputs are taken to be)."""
    from .initialize import initialize_from as _init

    _init(model, source, labels)


OFFICIAL_FEATURES = ["facebook/wav2vec2-large-robust"]   # both official codes' audio features (first 12 layers)


def _card(args) -> dict | None:
    """What the converted folder's model card says beyond the model itself (vavl.models.card)."""
    if args.source in ("auxformer", "vavl"):
        from .official import CORPUS_NAMES

        repo = {"auxformer": "ilucasgoncalves/AuxFormer", "vavl": "ilucasgoncalves/VAVL"}[args.source]
        corpus = CORPUS_NAMES.get(args.corpus)
        return {"corpus": corpus, "label": "official consensus labels" if corpus else None, "base_model": OFFICIAL_FEATURES,
                "body": f"# Official {args.source} checkpoint, converted for vavl\n\nConverted from `{args.checkpoint}` "
                        f"({repo}) with `vavl convert {args.source}`"
                        + (f" as trained on {corpus}" if corpus else "") + "; outputs in the official order "
                        "(see config.json). It takes encoder features, as the official code does.\n"}
    if args.source == "audeering":
        from .audeering import card

        return card(args.checkpoint)
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    p = sub.add_parser("auxformer", help="official AuxFormer final_head.pt")
    p.add_argument("checkpoint")
    p.add_argument("--num-heads", type=int, default=10)
    p.add_argument("--no-causal-mask", action="store_true", help="the checkpoint was trained with attn_mask=False")
    p = sub.add_parser("vavl", help="folder with the official VAVL *_head.pt files")
    p.add_argument("checkpoint")
    p.add_argument("--num-heads", type=int, default=8)
    p.add_argument("--batch-first", action="store_true",
                   help="use our batch-first temporal model instead of the official frame-wise behaviour")
    for name in ("auxformer", "vavl"):
        p = sub.choices[name]
        p.add_argument("--corpus", choices=CORPORA, help="the corpus it was trained on: names the outputs in the official "
                                                          "class order (crema-d: angry, sad, disgust, fear, neutral, happy)")
        p.add_argument("--labels", type=lambda s: s.split(","), help="class names in the checkpoint's order, comma-separated "
                                                                       "(instead of --corpus)")
        p.add_argument("--task", choices=TASKS, default="classification",
                       help="regression: a dimensional checkpoint (arousal, dominance, valence; outputs mapped from "
                            "(x - 1) / 4 back to 1-5)")
    p = sub.add_parser("hsemotion", help="HSEmotion EfficientNet-B2 face-emotion checkpoint (.pt)")
    p.add_argument("checkpoint")
    p = sub.add_parser("audeering", help="folder of audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim (CC-BY-NC-SA-4.0)")
    p.add_argument("checkpoint", metavar="DIR")
    for p in sub.choices.values():
        p.add_argument("--out", required=True, help="folder to write (save_pretrained layout)")


def run(args: argparse.Namespace) -> int:
    if args.source in ("auxformer", "vavl"):
        labels = {"corpus": args.corpus, "task": args.task, "labels": args.labels}
        if args.source == "auxformer":
            model = load_official_auxformer(args.checkpoint, num_heads=args.num_heads, causal_mask=not args.no_causal_mask,
                                            **labels)
        else:
            model = load_official_vavl(args.checkpoint, num_heads=args.num_heads, framewise=not args.batch_first, **labels)
    elif args.source == "hsemotion":
        model = load_hsemotion(args.checkpoint)
    else:
        model = load_audeering(args.checkpoint)
    model.save_pretrained(args.out)
    card = _card(args)
    if card is not None:
        from ..models.card import write_card

        write_card(args.out, model, **card)
    print(f"wrote {args.out}")
    return 0
