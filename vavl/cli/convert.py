"""`vavl convert SOURCE CHECKPOINT --out DIR`: checkpoints trained elsewhere as vavl model folders (vavl.convert)."""
from __future__ import annotations

import argparse

from ..convert import converted_card, load_audeering, load_hsemotion, load_official_auxformer, load_official_vavl
from ..convert.official import CORPORA, TASKS


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
    p.add_argument("--image-size", type=int, help="face crop side (default HSEmotion's 260 for B2; official VAVL: 224)")
    p = sub.add_parser("wav2vec2-official", help="the authors' fine-tuned wav2vec2-large-robust (AuxFormer / VAVL "
                                                 "final_wav2vec.pt) as a speech encoder folder for vavl extract")
    p.add_argument("checkpoint", metavar="FINAL_WAV2VEC_PT")
    p.add_argument("--num-heads", type=int, default=16, help="attention heads (wav2vec2-large-robust: 16)")
    p.add_argument("--wave-mean", type=float, help="the official global training waveform mean (z-scoring before wav2vec2)")
    p.add_argument("--wave-std", type=float, help="the official global training waveform std")
    p = sub.add_parser("emoca-features", help="the AuxFormer authors' released EMOCA video features (one folder of "
                                              "per-frame .npy files per clip) as a feature cache")
    p.add_argument("checkpoint", metavar="EMOCA_DIR")
    p.add_argument("--manifest", required=True, help="the manifest whose clip ids name the EMOCA folders")
    p.add_argument("--audio-cache", help="a `vavl extract` cache whose audio features the new cache keeps")
    p = sub.add_parser("audeering", help="folder of audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim (CC-BY-NC-SA-4.0)")
    p.add_argument("checkpoint", metavar="DIR")
    p = sub.add_parser("hicmae", help="a released HiCMAE checkpoint (sunlicai/HiCMAE): a fine-tuned checkpoint-best.pth, or the "
                                     "VoxCeleb2 pre-trained checkpoint-99.pth (its encoders, with a new untrained head)")
    p.add_argument("checkpoint")
    p.add_argument("--corpus", choices=("crema-d", "mafw"), help="the corpus it was fine-tuned on: names the outputs in "
                                                                   "HiCMAE's class order")
    p.add_argument("--labels", type=lambda s: s.split(","), help="class names in the checkpoint's order, comma-separated "
                                                                   "(instead of --corpus)")
    p.add_argument("--fold", type=int, choices=range(1, 6), metavar="{1..5}",
                   help="which of HiCMAE's five folds it is (the card names the protocol and the published UAR / WAR)")
    p.add_argument("--num-heads", type=int, default=8, help="attention heads of every encoder (not in the checkpoint; "
                                                             "8 in the released models)")
    for p in sub.choices.values():
        p.add_argument("--out", required=True, help="folder to write (save_pretrained layout)")


def run(args: argparse.Namespace) -> int:
    if args.source == "emoca-features":
        from ..data.emoca import import_emoca

        summary = import_emoca(args.manifest, args.checkpoint, args.out, args.audio_cache)
        print(f"wrote {summary['written']} clips ({summary['visual_dim']}-d EMOCA frames) to {args.out}; "
              f"{len(summary['without_features'])} manifest clips have no EMOCA folder")
        return 0
    if args.source == "wav2vec2-official":
        from ..convert.official_wav2vec2 import load_official_wav2vec2

        load_official_wav2vec2(args.checkpoint, args.num_heads, args.wave_mean, args.wave_std).save_pretrained(args.out)
        print(f"wrote {args.out} (vavl extract --audio-encoder {args.out})")
        return 0
    if args.source in ("auxformer", "vavl"):
        labels = {"corpus": args.corpus, "task": args.task, "labels": args.labels}
        if args.source == "auxformer":
            model = load_official_auxformer(args.checkpoint, num_heads=args.num_heads, causal_mask=not args.no_causal_mask,
                                            **labels)
        else:
            model = load_official_vavl(args.checkpoint, num_heads=args.num_heads, framewise=not args.batch_first, **labels)
    elif args.source == "hicmae":
        from ..convert.hicmae import card, load_official_hicmae

        model = load_official_hicmae(args.checkpoint, corpus=args.corpus, labels=args.labels, num_heads=args.num_heads)
        model.save_pretrained(args.out)
        from ..models.cards import write_card

        write_card(args.out, model, modalities={"audio", "visual"}, **card(model, args.checkpoint, args.corpus, args.fold))
        print(f"wrote {args.out}" + (" (pre-trained encoders; the head is untrained: fine-tune it before use)"
                                     if getattr(model, "hicmae_pretrained", False) else ""))
        return 0
    elif args.source == "hsemotion":
        model = load_hsemotion(args.checkpoint, image_size=args.image_size)
    else:
        model = load_audeering(args.checkpoint)
    model.save_pretrained(args.out)
    card = converted_card(args.source, args.checkpoint, getattr(args, "corpus", None))
    if card is not None:
        from ..models.cards import write_card

        write_card(args.out, model, **card)
    print(f"wrote {args.out}")
    return 0
