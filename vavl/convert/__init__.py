"""Import checkpoints trained elsewhere into vavl models.

    vavl.convert.load_official_auxformer("final_head.pt", corpus="crema-d")   # ilucasgoncalves/AuxFormer
    vavl.convert.load_official_vavl("dir_with_the_nine_head_files", corpus="crema-d")  # ilucasgoncalves/VAVL
    vavl.convert.load_hsemotion("enet_b2_8.pt")                  # HSEmotion face-emotion EfficientNet-B2
    vavl.convert.load_audeering("wav2vec2-large-robust-12-ft-emotion-msp-dim/")   # audeering's A/D/V model
    vavl.convert.load_official_hicmae("checkpoint-best.pth", corpus="crema-d")   # sunlicai/HiCMAE fine-tuned folds

Command: `vavl convert {auxformer,vavl,hsemotion,audeering,hicmae} SRC --out DIR` writes a `save_pretrained` folder;
official AuxFormer / VAVL checkpoints also take `--corpus {crema-d,msp-improv}` (or `--labels`) and `--task`.
"""
from __future__ import annotations



def load_official_auxformer(path, num_heads: int = 10, causal_mask: bool = True, **labels):
    from .auxformer import load_official_auxformer as _load

    return _load(path, num_heads=num_heads, causal_mask=causal_mask, **labels)


def load_official_vavl(directory, num_heads: int = 8, framewise: bool = True, **labels):
    from .vavl import load_official_vavl as _load

    return _load(directory, num_heads=num_heads, framewise=framewise, **labels)


def load_hsemotion(path, image_size: int | None = None):
    from .hsemotion import load_hsemotion as _load

    return _load(path, image_size=image_size)


def load_audeering(directory):
    from .audeering import load_audeering as _load

    return _load(directory)


def load_official_hicmae(path, corpus: str | None = None, labels: list[str] | None = None, num_heads: int = 8):
    from .hicmae import load_official_hicmae as _load

    return _load(path, corpus=corpus, labels=labels, num_heads=num_heads)


def initialize_from(model, source, labels: list[str] | None = None) -> None:
    """Copy weights into an emotion model (as configured) from a save_pretrained folder, an official
    AuxFormer `final_head.pt` or an official VAVL run folder (its nine *_head.pt files). Every
    parameter must match by name and shape; buffers the source lacks (feature statistics) stay.
    labels: the model's class names (what the official files' outputs are taken to be)."""
    from .initialize import initialize_from as _init

    _init(model, source, labels)


OFFICIAL_FEATURES = ["facebook/wav2vec2-large-robust"]   # both official codes' audio features (first 12 layers)


def converted_card(source: str, checkpoint: str, corpus: str | None = None) -> dict | None:
    """What a converted folder's model card says beyond the model itself (vavl.models.cards.write_card)."""
    if source in ("auxformer", "vavl"):
        from .official import CORPUS_NAMES

        repo = {"auxformer": "ilucasgoncalves/AuxFormer", "vavl": "ilucasgoncalves/VAVL"}[source]
        corpus = CORPUS_NAMES.get(corpus)
        return {"corpus": corpus, "label": "official consensus labels" if corpus else None, "base_model": OFFICIAL_FEATURES,
                "body": f"# Official {source} checkpoint, converted for vavl\n\nConverted from `{checkpoint}` "
                        f"({repo}) with `vavl convert {source}`"
                        + (f" as trained on {corpus}" if corpus else "") + "; outputs in the official order "
                        "(see config.json). It takes encoder features, as the official code does.\n"}
    if source == "audeering":
        from .audeering import card

        return card(checkpoint)
    return None
