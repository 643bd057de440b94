"""audeering's dimensional speech emotion model -> a vavl model that takes raw audio.

    model = vavl.convert.load_audeering("wav2vec2-large-robust-12-ft-emotion-msp-dim/")
    vavl convert audeering DIR --out runs/audeering_dim      # then: vavl predict clip.wav --model runs/audeering_dim

DIR is the hub folder of audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim: config.json
(a 12-layer wav2vec2-large-robust, id2label arousal / dominance / valence), preprocessor_config.json
(do_normalize) and its weights (model.safetensors or pytorch_model.bin) holding `wav2vec2.*` and the
head `classifier.dense.*` / `classifier.out_proj.*`, which the authors' code applies to the time
mean of the last layer: dense -> tanh -> out_proj (dropout between them in training). The result is
the zoo entry `audeering_dim.msp_podcast` with these weights: the `audeering-dim` speech encoder
and a PooledHeadForEmotionRecognition regressing the three attributes in the checkpoint's order.
The weights are licensed CC-BY-NC-SA-4.0; the folder written by the CLI says so in its README.md.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import Wav2Vec2Model

from ..encoders.hf import load_weights
from ..encoders.speech import SpeechEncoder
from ..core.errors import ConfigError, DataError
from ..models.baselines import PooledHeadConfig, PooledHeadForEmotionRecognition
from ..models.with_encoders import AudioVisualModel

HUB_ID = "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"
ENTRY = "audeering_dim.msp_podcast"
LICENSE = "cc-by-nc-sa-4.0"
HEAD = ("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot be read as JSON ({e}); give the folder of {HUB_ID}") from None


def read_head(directory: Path) -> dict[str, torch.Tensor]:
    """The four classifier tensors, from model.safetensors or pytorch_model.bin (tensors only)."""
    st, pt = directory / "model.safetensors", directory / "pytorch_model.bin"
    try:
        if st.is_file():
            from safetensors import safe_open

            with safe_open(str(st), "pt") as f:
                state = {k: f.get_tensor(k) for k in HEAD if k in f.keys()}
        elif pt.is_file():
            state = torch.load(pt, map_location="cpu", weights_only=True)
        else:
            raise DataError(f"{directory}: no model.safetensors or pytorch_model.bin; download the weights of {HUB_ID}")
    except DataError:
        raise
    except Exception as e:  # truncated file, a pickle with code, not a weights file
        raise DataError(f"{st if st.is_file() else pt}: cannot read the weights ({type(e).__name__}: {e})") from None
    missing = [k for k in HEAD if k not in state]
    if missing:
        raise DataError(f"{directory}: the weights have no {', '.join(missing)}; is this {HUB_ID} (its regression head)?")
    return {k.removeprefix("classifier."): state[k].float() for k in HEAD}


def load_audeering(directory):
    """The hub folder of audeering's model -> AudioVisualModel (audio encoder + pooled head), eval mode."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise DataError(f"{directory}: no config.json; give the downloaded folder of {HUB_ID}")
    config = _read_json(directory / "config.json")
    id2label = config.get("id2label") or {}
    labels = [id2label.get(str(i)) for i in range(len(id2label))]
    if config.get("model_type") != "wav2vec2" or not labels or None in labels:
        raise DataError(f"{directory / 'config.json'}: expected a wav2vec2 model with id2label "
                        "(arousal, dominance, valence); is this the audeering dimensional model?")
    head = read_head(directory)
    if head["out_proj.weight"].shape[0] != len(labels) or head["dense.weight"].shape[1] != config.get("hidden_size"):
        raise DataError(f"{directory}: classifier shapes {tuple(head['dense.weight'].shape)} / "
                        f"{tuple(head['out_proj.weight'].shape)} do not match hidden_size={config.get('hidden_size')} "
                        f"and {len(labels)} labels")
    prep = directory / "preprocessor_config.json"
    normalize = bool(_read_json(prep).get("do_normalize", True)) if prep.is_file() else True
    try:
        backbone = load_weights(Wav2Vec2Model, directory, allow_pickle=True)   # the official checkpoint: tensors only
    except ConfigError as e:
        raise DataError(str(e)) from None
    encoder = SpeechEncoder(backbone, normalize=normalize, name="audeering-dim", source=str(directory))
    fusion = PooledHeadForEmotionRecognition(PooledHeadConfig(
        audio_dim=head["dense.weight"].shape[1], hidden_size=head["dense.weight"].shape[0], task="regression",
        attributes=labels, dropout=float(config.get("final_dropout", 0.1))))
    fusion.load_state_dict(head, strict=True)
    return AudioVisualModel.from_parts(fusion, audio_encoder=encoder).eval()


def card(source) -> dict:
    """The model card of a converted folder (vavl.models.cards.write_card): what it is, where it came
    from, and its license, which is the weights' own (audeering's CC BY-NC-SA 4.0)."""
    body = f"""# audeering dimensional speech emotion model, converted for vavl

Converted from `{source}` ({HUB_ID}) with `vavl convert audeering` (zoo entry `{ENTRY}`):
wav2vec2-large-robust pruned to 12 layers, fine-tuned on MSP-Podcast v1.7; outputs arousal,
dominance and valence (in that order, about 0..1) from the time mean of the last layer.

License: the weights are audeering's, under CC BY-NC-SA 4.0 (https://creativecommons.org/licenses/by-nc-sa/4.0/):
non-commercial use, attribution, and derivatives under the same license.

Paper: J. Wagner et al., "Dawn of the transformer era in speech emotion recognition: closing the valence gap",
IEEE TPAMI 2023 (arXiv:2203.07378).
"""
    return {"body": body, "license": LICENSE, "datasets": ["MSP-Podcast"], "base_model": [HUB_ID],
            "tags": ["speech-emotion-recognition", "arousal", "dominance", "valence"]}
