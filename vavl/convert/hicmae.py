"""HiCMAE's released fine-tuned checkpoints (sunlicai/HiCMAE, MIT) as vavl model folders.

    model = load_official_hicmae("checkpoint-best.pth", corpus="crema-d")
    vavl convert hicmae checkpoint-best.pth --corpus crema-d --fold 1 --out hicmae-crema-d-1

A released file is the dict utils.save_model writes: {"model", "optimizer", "epoch", "scaler",
"args"}, with `args` an argparse.Namespace. It is read with torch's weights-only unpickler, which
is allowed that one class and nothing else; only "model" and "args" are used. The architecture
comes from the weights' shapes (widths, depths, patch and tubelet sizes, classes) and from `args`
(frames, image side, fbank size: the position tables, which are not weights, depend on them); the
number of heads is in neither (8 in every released model: `num_heads`). The fixed sin-cos position
tables are rebuilt by the model from its config.

The VoxCeleb2 self-supervised checkpoint (checkpoint-99.pth, run_mae_pretraining_av.py) has the same
encoder and fusion weights under the same names, plus the MAE decoders (decoder*, encoder_to_decoder*,
mask_token*), and no classifier. It converts into the same model folder: encoders and fusion carry the
pre-trained weights, the decoders are dropped, and the layer weights, fc_norm and classifier start
as the official fine-tuning starts them (uniform layer weights, LayerNorm 1 / 0, a truncated-normal
head scaled by --init_scale 0.001): untrained until fine-tuned, which the card says.
"""
from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

from ..core.errors import ConfigError, DataError
from ..models.hicmae import CLASSES, CORPUS_NAMES, PUBLISHED, REPO, SCRIPTS, HiCMAEConfig, HiCMAEForEmotionRecognition

CORPORA = tuple(CLASSES)
# modeling_pretrain_av.py PretrainAudioVisionTransformer: what only the MAE pre-training uses
_PRETRAINING_ONLY = re.compile(r"^(decoder|decoder_audio|encoder_to_decoder|encoder_to_decoder_audio|mask_token|mask_token_audio)(\.|$)")
# what the fine-tuning adds on top of the pre-trained model (modeling_finetune_av.py), in vavl's names
_FINETUNING_ONLY = {"visual_encoder.layer_weights", "audio_encoder.layer_weights", "fc_norm.weight", "fc_norm.bias",
                    "classifier.weight", "classifier.bias"}
INIT_SCALE = 0.001   # run_class_finetuning_av.py --init_scale default: the new head's weights x 0.001
_RENAMES = [  # official state-dict prefix -> vavl's
    (r"^video_layer_weights$", "visual_encoder.layer_weights"),
    (r"^audio_layer_weights$", "audio_encoder.layer_weights"),
    (r"^encoder\.patch_embed\.proj\.", "visual_encoder.patch_embed."),
    (r"^encoder\.blocks\.", "visual_encoder.layers."),
    (r"^encoder\.norm\.", "visual_encoder.norm."),
    (r"^encoder_audio\.patch_embed\.proj\.", "audio_encoder.patch_embed."),
    (r"^encoder_audio\.blocks\.", "audio_encoder.layers."),
    (r"^encoder_audio\.norm\.", "audio_encoder.norm."),
    (r"^encoder_fusion\.blocks\.", "fusion.video_layers."),
    (r"^encoder_fusion\.blocks_audio\.", "fusion.audio_layers."),
    (r"^encoder_fusion\.norm\.", "fusion.video_norm."),
    (r"^encoder_fusion\.norm_audio\.", "fusion.audio_norm."),
    (r"^fc_norm\.", "fc_norm."),
    (r"^head\.", "classifier."),
]


class _RunArguments:
    """What an official checkpoint's `args` (an argparse.Namespace) unpickles into: its attributes
    and nothing else (the library does not import argparse: only vavl/cli parses arguments)."""


ALLOWED = [(_RunArguments, "argparse.Namespace")]   # the one global the weights-only unpickler may build


def read_checkpoint(path) -> dict[str, Any]:
    """The checkpoint dict, unpickled weights-only with argparse.Namespace allowed (as `_RunArguments`);
    `args` as a dict."""
    path = str(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file; give a HiCMAE checkpoint (checkpoint-best.pth of a fine-tuning run, or the pre-trained checkpoint-99.pth)")
    try:
        with torch.serialization.safe_globals(ALLOWED):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = found.group(1) if found else "a Python object"
        raise DataError(f"{path}: refused: it holds {what}, which is neither a tensor nor argparse.Namespace; only "
                        "checkpoints saved by the official HiCMAE code are read (weights-only)") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise DataError(f"{path}: not a readable torch checkpoint ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise DataError(f"{path}: not a HiCMAE checkpoint (expected a dict with 'model', 'args', ...; got "
                        f"{sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__})")
    args = ckpt.get("args")
    ckpt["args"] = dict(vars(args)) if isinstance(args, _RunArguments) else dict(args or {})
    return ckpt


def rename(key: str) -> str | None:
    for pattern, new in _RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, new, key)
    return None


def is_pretrained(state: dict) -> bool:
    """The VoxCeleb2 pre-training layout: encoders + fusion + MAE decoders, no classifier."""
    return "encoder_to_decoder.weight" in state and "head.weight" not in state


def _depth(state: dict, prefix: str) -> int:
    ids = {int(m.group(1)) for k in state for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
    return max(ids) + 1 if ids else 0


def config_from(state: dict, args: dict, num_heads: int, source: str, **fields: Any) -> HiCMAEConfig:
    """HiCMAEConfig from the weights' shapes and the run's arguments."""
    pretrained = is_pretrained(state)
    need = ["encoder.patch_embed.proj.weight", "encoder_audio.patch_embed.proj.weight"]
    need += [] if pretrained else ["head.weight", "video_layer_weights", "audio_layer_weights"]
    missing = [k for k in need if k not in state]
    if missing:
        raise DataError(f"{source}: not a HiCMAE audio-visual classifier (no {', '.join(missing)}), nor HiCMAE's "
                        "pre-trained model (no encoder_to_decoder.weight); give a checkpoint of the official code")
    video, audio = state["encoder.patch_embed.proj.weight"], state["encoder_audio.patch_embed.proj.weight"]
    image_size = int(args.get("input_size", 160))
    num_frames = int(args.get("num_frames", 16)) * int(args.get("num_segments", 1))
    return HiCMAEConfig(
        image_size=image_size, patch_size=int(video.shape[-1]), num_frames=num_frames, tubelet_size=int(video.shape[2]),
        hidden_size=int(video.shape[0]), num_hidden_layers=_depth(state, "encoder.blocks."), num_attention_heads=num_heads,
        audio_target_length=int(args.get("input_size_audio", 256)), num_mel_bins=int(args.get("num_mel_bins", 128)),
        audio_patch_size=int(audio.shape[-1]), audio_hidden_size=int(audio.shape[0]),
        audio_num_hidden_layers=_depth(state, "encoder_audio.blocks."), audio_num_attention_heads=num_heads,
        fusion_num_hidden_layers=_depth(state, "encoder_fusion.blocks."), fusion_num_attention_heads=num_heads,
        mlp_ratio=state["encoder.blocks.0.mlp.fc1.weight"].shape[0] / video.shape[0],
        qkv_bias="encoder.blocks.0.attn.q_bias" in state,
        # a pre-training run's drop_path is its own (0.0 by default); fine-tuning uses run_class_finetuning_av.py's 0.1
        drop_path_rate=0.1 if pretrained else float(args.get("drop_path", 0.1)),
        **fields)


def load_official_hicmae(path, corpus: str | None = None, labels: list[str] | None = None, num_heads: int = 8):
    """A released HiCMAE checkpoint -> HiCMAEForEmotionRecognition (eval mode) with its processor
    set from the run's arguments. Classes: HiCMAE's order for `corpus`, or `labels` in the
    checkpoint's order."""
    ckpt = read_checkpoint(path)
    state, args = ckpt["model"], ckpt["args"]
    pretrained = is_pretrained(state)
    if pretrained:
        state = {k: v for k, v in state.items() if not _PRETRAINING_ONLY.match(k)}
    outputs = int(state["head.weight"].shape[0]) if "head.weight" in state else 0
    if labels is None:
        if pretrained and corpus not in CLASSES:
            raise DataError(f"{path}: HiCMAE's pre-trained model has no classifier: name the classes of the new, "
                            f"untrained head: --corpus {{{','.join(CORPORA)}}} (HiCMAE's class order) or --labels NAME,NAME,...")
        if corpus not in CLASSES:
            raise DataError(f"{path}: say what the {outputs} outputs are: --corpus {{{','.join(CORPORA)}}} (HiCMAE's "
                            "class order) or --labels NAME,NAME,... (the checkpoint's order)")
        labels = list(CLASSES[corpus])
    if outputs and len(labels) != outputs:
        raise DataError(f"{path}: {outputs} outputs but {len(labels)} class names ({', '.join(labels)}); check --corpus / --labels")
    config = config_from(ckpt["model"], args, num_heads, str(path), id2label=dict(enumerate(labels)))
    renamed, unknown = {}, []
    for key, value in state.items():
        new = rename(key)
        (unknown.append(key) if new is None else renamed.__setitem__(new, value))
    model = HiCMAEForEmotionRecognition(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(renamed) - (_FINETUNING_ONLY if pretrained else set()))
    shapes = [k for k in renamed if k in own and tuple(own[k].shape) != tuple(renamed[k].shape)]
    if unknown or missing or shapes:
        raise DataError(f"{path}: the weights do not fit HiCMAE as built from them ({len(unknown)} unknown, e.g. "
                        f"{unknown[:3]}; {len(missing)} missing, e.g. {missing[:3]}; {len(shapes)} of another shape, "
                        f"e.g. {shapes[:3]}); check --num-heads and that this is a HiCMAE checkpoint")
    model.load_state_dict(renamed, strict=not pretrained)
    if pretrained:   # the new head, as modeling_finetune_av.py starts it: trunc_normal(0.02) x init_scale
        with torch.no_grad():
            model.classifier.weight.mul_(INIT_SCALE)
            model.classifier.bias.mul_(INIT_SCALE)
    model.hicmae_pretrained = pretrained
    from ..media.hicmae import HiCMAEProcessor

    model.processor = HiCMAEProcessor.for_config(
        config, frame_step=int(args.get("sampling_rate", 4)), num_segments=int(args.get("test_num_segment", 2)),
        image_size=int(args.get("short_side_size", config.image_size)))
    return model.eval()


def card(model, checkpoint: str, corpus: str | None, fold: int | None) -> dict[str, Any]:
    """What the converted folder's card says: fold, protocol, published UAR / WAR, license."""
    p = model.processor
    if getattr(model, "hicmae_pretrained", False):
        return _pretrained_card(model, checkpoint, corpus)
    name = CORPUS_NAMES.get(corpus)
    published = PUBLISHED.get(corpus, {})
    lines = ["# HiCMAE, converted for vavl", "",
             f"Converted from `{os.path.basename(str(checkpoint))}` ({REPO}, MIT license) with `vavl convert hicmae`"
             + (f" as fine-tuned on {name}" if name else "") + ". Outputs in HiCMAE's class order (see config.json). "
             f"It takes {p.num_frames} face frames (every {p.frame_step}th, {p.image_size} x {p.image_size}) and a "
             f"{p.target_length} x {p.num_mel_bins} log-mel fbank per view; the processor (preprocessor_config.json) "
             f"makes both from any clip, and a clip's score is the mean over {p.num_segments} temporal views, "
             "as the official test computes it (without its random waveform gain, roll_mag_aug, whose mean 1.0 vavl uses).",
             ""]
    if name:
        lines += [f"- Corpus: {name}; label: " + ("the actor's intended emotion (the file name's code), 6 classes"
                                                   if corpus == "crema-d" else "the single-label emotion, 11 classes")]
        if fold is not None:
            uar, war = published.get(fold, (None, None))
            lines += [f"- Fold: {fold} of 5; protocol `hicmae-{fold}` (HiCMAE's own split{fold:02d} train / test lists"
                      + (", speaker-disjoint" if corpus == "crema-d" else "") + ")"]
            if uar is not None:
                lines += [f"- Published on this fold's test set (HiCMAE README): UAR {uar:.2f}, WAR {war:.2f}"]
        else:
            lines += ["- Fold: not given (`--fold K` names it)"]
        total = published.get("total")
        if total:
            lines += [f"- Published over the five folds: UAR {total[0]:.2f}, WAR {total[1]:.2f}"]
        lines += [f"- Recipe: `{SCRIPTS[corpus]}` in {REPO}"]
    lines += ["- License: the code and released weights are MIT (sunlicai/HiCMAE); the corpus keeps its own "
              "license (" + ("CREMA-D: ODbL" if corpus == "crema-d" else "MAFW: academic use by agreement"
                             if corpus == "mafw" else "see the corpus") + ").", ""]
    return {"corpus": name, "label": "intended emotion" if corpus == "crema-d" else ("single-label emotion" if name else None),
            "protocol": f"hicmae-{fold}" if (fold and name) else None, "license": "mit", "body": "\n".join(lines)}


def _pretrained_card(model, checkpoint: str, corpus: str | None) -> dict[str, Any]:
    """The card of a folder converted from the pre-trained checkpoint: an untrained head, to fine-tune."""
    names = ", ".join(model.label_names)
    body = "\n".join([
        "# HiCMAE pre-trained encoders, converted for vavl", "",
        f"Converted from `{os.path.basename(str(checkpoint))}` ({REPO}, MIT license), HiCMAE's self-supervised "
        "pre-training on VoxCeleb2, with `vavl convert hicmae`. The video and audio encoders and the cross-modal "
        "fusion layers carry the pre-trained weights; the MAE decoders are dropped.", "",
        f"**The classifier is untrained.** The head ({names}), its LayerNorm and the layer weights start as the "
        f"official fine-tuning starts them (a truncated-normal head scaled by {INIT_SCALE}): the outputs mean "
        "nothing until the model is fine-tuned (HiCMAE's settings: recipes/configs/crema_d/hicmae.yaml).", "",
        "- License: the code and released weights are MIT (sunlicai/HiCMAE); VoxCeleb2 keeps its own license.", ""])
    return {"corpus": CORPUS_NAMES.get(corpus), "label": None, "protocol": None, "license": "mit", "body": body}
