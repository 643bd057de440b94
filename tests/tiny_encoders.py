"""Tiny random models for the tests, saved in their hub layouts so that they load through the
same from_pretrained path a hub id takes: wav2vec2 / HuBERT / WavLM, Whisper, AST, VideoMAE,
audeering's model, and a tiny full model (encoders + AuxFormer) that takes media files."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import (ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, HubertConfig, HubertModel, VideoMAEConfig,
                          VideoMAEForVideoClassification, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model, WavLMConfig,
                          WavLMModel, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration)

import vavl


def tiny_wav2vec2(hidden: int = 32, layers: int = 1, conv: int = 32, seed: int = 0) -> Wav2Vec2Model:
    """A random wav2vec2 small enough for tests (two conv layers: 80 samples per frame)."""
    torch.manual_seed(seed)
    return Wav2Vec2Model(Wav2Vec2Config(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=2 * hidden,
        conv_dim=(conv, conv), conv_stride=(10, 8), conv_kernel=(10, 8), num_feat_extract_layers=2,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4))


def tiny_wav2vec2_dir(path, **kw) -> str:
    """`tiny_wav2vec2` written by transformers' save_pretrained (the layout a hub id downloads)."""
    tiny_wav2vec2(**kw).save_pretrained(path)
    return str(path)


TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
            conv_kernel=(10, 8), conv_stride=(5, 64), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def tiny_speech_dir(path, family="wav2vec2", stable=True):
    """A small speech SSL model written by transformers' save_pretrained (320 samples per frame, like the real ones)."""
    config_cls, model_cls = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2Model), "hubert": (HubertConfig, HubertModel),
                             "wavlm": (WavLMConfig, WavLMModel)}[family]
    norm = dict(feat_extract_norm="layer", do_stable_layer_norm=True) if stable else {}
    torch.manual_seed(0)
    model_cls(config_cls(**TINY, **norm)).save_pretrained(path)
    return str(path)


LABELS = {0: "angry", 1: "happy", 2: "neutral"}


def tiny_full_model(tmp_path, **overrides):
    """A full model (tiny wav2vec2 + timm's test_efficientnet, untrained, + a small AuxFormer) that
    takes media files; its speech encoder is saved under tmp_path."""
    speech = tiny_speech_dir(tmp_path / "speech")
    torch.manual_seed(0)
    model = vavl.create_model("auxformer", audio_encoder=speech, visual_encoder="test_efficientnet",
                              pretrained_encoders=False, **{"id2label": LABELS, "hidden_size": 16, "num_heads": 2, "num_layers": 1, **overrides})
    model.processor.face_size = 64  # small crops keep the tests fast
    return model


AST_MELS = 32
AST_MAX_FRAMES = 100  # 1.0 s windows (98 fbank frames) fit; 400 + 99 * 160 samples fill the table
AUDEERING_LABELS = ["arousal", "dominance", "valence"]


def tiny_whisper_dir(path) -> str:
    """WhisperForConditionalGeneration (as openai/whisper-* on the hub) + its WhisperFeatureExtractor."""
    config = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                           vocab_size=64, pad_token_id=1, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2,
                           max_target_positions=16)
    torch.manual_seed(0)
    WhisperForConditionalGeneration(config).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return str(path)


def tiny_ast_dir(path) -> str:
    """ASTForAudioClassification (as MIT/ast-finetuned-audioset-*) + its ASTFeatureExtractor."""
    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       num_mel_bins=AST_MELS, max_length=AST_MAX_FRAMES, num_labels=5)
    torch.manual_seed(0)
    model = ASTForAudioClassification(config)
    with torch.no_grad():   # learned tables start at zero: give them values so slicing them is tested
        model.audio_spectrogram_transformer.embeddings.position_embeddings.normal_()
        model.audio_spectrogram_transformer.embeddings.cls_token.normal_()
    model.save_pretrained(path)
    ASTFeatureExtractor(num_mel_bins=AST_MELS, max_length=AST_MAX_FRAMES).save_pretrained(path)
    return str(path)


def tiny_videomae_dir(path, image_size: int = 32) -> str:
    """VideoMAEForVideoClassification (as MCG-NJU/videomae-base-finetuned-kinetics): 4-frame windows."""
    config = VideoMAEConfig(image_size=image_size, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32,
                            num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3)
    torch.manual_seed(0)
    VideoMAEForVideoClassification(config).save_pretrained(path)
    return str(path)


class AudeeringHead(nn.Module):
    """The authors' regression head, as in their model card: dropout, dense, tanh, dropout, out_proj."""

    def __init__(self, hidden: int, labels: int):
        super().__init__()
        self.dense, self.dropout, self.out_proj = nn.Linear(hidden, hidden), nn.Dropout(0.1), nn.Linear(hidden, labels)

    def forward(self, pooled):
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(pooled)))))


class AudeeringModel(nn.Module):
    """The authors' EmotionModel: wav2vec2 -> mean over time -> head."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.wav2vec2, self.classifier = Wav2Vec2Model(config), AudeeringHead(config.hidden_size, config.num_labels)

    def forward(self, input_values):
        return self.classifier(self.wav2vec2(input_values).last_hidden_state.mean(1))


def tiny_audeering_dir(path, weights: str = "pytorch_model.bin") -> tuple[str, AudeeringModel]:
    """A random model in the layout of audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim:
    config.json (Wav2Vec2ForSpeechClassification, id2label), preprocessor_config.json and a
    pytorch_model.bin state dict with `wav2vec2.*` (weight-norm as weight_g / weight_v, as the
    transformers 4.17 that wrote it) and `classifier.*`. Returns the folder and the model."""
    path = Path(path)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16), conv_kernel=(10, 8), conv_stride=(5, 64), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True,
                            id2label=dict(enumerate(AUDEERING_LABELS)), final_dropout=0.1,
                            architectures=["Wav2Vec2ForSpeechClassification"], problem_type="regression")
    torch.manual_seed(0)
    model = AudeeringModel(config).eval()
    state = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v"): v
             for k, v in model.state_dict().items()}
    path.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(path)
    if weights == "model.safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path / weights))
    else:
        torch.save(state, path / weights)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(path)
    assert json.loads((path / "config.json").read_text())["id2label"]["0"] == "arousal"
    return str(path), model


def speech_videomae_model(root: Path):
    """A tiny wav2vec2 + VideoMAE (a visual encoder that mixes frames) + AuxFormer, in eval mode."""
    from vavl.encoders import build_encoder
    from vavl.models.with_encoders import AudioVisualModel

    torch.manual_seed(0)
    audio = build_encoder(tiny_speech_dir(root / "speech"), pretrained=True).eval()
    visual = build_encoder("videomae-base-kinetics", pretrained=True, source=tiny_videomae_dir(root / "vm"), hop=2)
    fusion = vavl.create_model("auxformer", id2label=LABELS, hidden_size=16, num_heads=2, num_layers=1,
                               audio_dim=audio.output_dim, visual_dim=visual.output_dim)
    return AudioVisualModel.from_parts(fusion, audio, visual.eval()).eval()
