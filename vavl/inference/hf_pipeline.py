"""vavl models inside `transformers.pipeline`:

    import vavl
    from transformers import pipeline
    classify = pipeline("audio-visual-emotion-recognition", model="runs/av", device="cpu")
    classify("clip.mp4")                                          # a file
    classify(["a.mp4", "b.wav"], batch_size=2)                    # several
    classify({"audio": wave, "sampling_rate": 16000})             # a waveform
    classify({"frames": video, "fps": 25.0})                      # (t, h, w, 3) uint8 frames
    classify({"audio": wave, "sampling_rate": 44100, "frames": video, "fps": 30}, return_timeline=True)
    for line in classify("long.mp4", window=2.0, hop=0.5):        # sliding windows, as `vavl stream` scores them
        print(line["start"], line["end"], line["label"], line["heads"])
    classify("rtsp://camera/stream", hop=0.5, options={"rtsp_transport": "tcp"})   # a live source (a generator)

Each input gives the record `vavl predict --json` prints (label, scores, modalities, head, frames,
face_frames, duration, decoded, notes, timings; the per-second timeline with return_timeline=True),
computed by the same function (`vavl.inference.predict.predict_clip`). Inputs are grouped `batch_size` at a
time, as in other pipelines; each clip then runs through the encoders on its own length (speech
encoders such as Whisper take no padding mask), so a record does not depend on its companions.
With `hop=` the input is one source (a file, URL, pipe or device, opened as `vavl stream` opens it:
`format=`, `options=`, `realtime=`, `stall=`) and the call returns a generator of the window lines
`vavl stream` prints, computed by the same function (`vavl.inference.stream.stream_windows`):
windows of `window` seconds (default 2 here) every `hop` seconds. The source's end ends the
generator; a stall or a break raises MediaError after the windows that were scored.
The task is registered when `import vavl` registers the models (vavl._autoload).
"""
from __future__ import annotations

import os
from typing import Any

from torch.utils.data import DataLoader
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from ..core.errors import ConfigError, MediaError
from ..media.arrays import ArrayClip
from ..models.with_encoders import AudioVisualModel
from .predict import predict_clip

TASK = "audio-visual-emotion-recognition"


def as_clip(item: Any):
    """A path, or a dict with audio (+ sampling_rate) and / or frames (+ fps) -> what predict_clip reads."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, dict):
        unknown = set(item) - {"audio", "sampling_rate", "frames", "fps", "name"}
        if unknown:
            raise ConfigError(f"pipeline input: unknown keys {sorted(unknown)}; give audio + sampling_rate and / or frames + fps")
        return ArrayClip(audio=item.get("audio"), sample_rate=item.get("sampling_rate"), frames=item.get("frames"),
                         fps=item.get("fps"), name=str(item.get("name", "<arrays>")))
    raise ConfigError(f"pipeline input of type {type(item).__name__}: give a file path, a list of them, or a dict with "
                      "'audio' + 'sampling_rate' and / or 'frames' + 'fps'")


class AudioVisualEmotionPipeline(Pipeline):
    """Emotion scores for media files or arrays (see the module docstring)."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model, *args, **kwargs):
        if not (isinstance(model, AudioVisualModel) or getattr(model, "takes_views", False)):   # HiCMAE scores views
            raise ConfigError(f"{type(model).__name__} takes encoder features, not media: the pipeline needs a model with "
                              "encoders (vavl.create_model(name, audio_encoder=..., visual_encoder=...))")
        super().__init__(model, *args, **kwargs)
        self.model.eval()

    def __call__(self, inputs, *args, **kwargs):
        if kwargs.get("hop") is not None:
            return self.windows(inputs, **kwargs)
        return super().__call__(inputs, *args, **kwargs)

    def windows(self, source, window: float = 2.0, hop: float = 0.5, realtime: bool = False, format: str | None = None,
                options: dict[str, str] | None = None, stall: float = 10.0):
        """The window lines of `vavl stream SOURCE --window W --hop H` (without its last, event line), as a
        generator; MediaError when the source cannot be opened, stalls or breaks off."""
        from ..media.live import av_events
        from .stream import stream_windows

        if not isinstance(source, (str, os.PathLike)):
            raise ConfigError(f"pipeline input of type {type(source).__name__} with hop=: give one source (a file path, "
                              "URL, pipe or device name) to score in sliding windows")
        source = str(source)
        p = self.model.processor
        events = av_events(source, format=format, options=options, fps=p.fps, sample_rate=p.sample_rate,
                           max_side=p.max_side, realtime=realtime, open_timeout=max(stall, 10.0))
        live = realtime or not os.path.isfile(source)   # as `vavl stream`: a local file waits for the model
        return self._lines(stream_windows(events, self.model, window=window, hop=hop, device=str(self.device),
                                          live=live, stall=stall), source)

    @staticmethod
    def _lines(lines, source: str):
        for line in lines:
            if "event" not in line:
                yield line
            elif line["event"] != "end":
                raise MediaError(f"{source}: {line['message']} after {line.get('after', 0):g} s of media "
                                 f"({line['windows']} windows)")

    def _sanitize_parameters(self, return_timeline=None, window=None, step=None, bf16=None, **kwargs):
        forward = {k: v for k, v in (("window", window), ("step", step), ("bf16", bf16)) if v is not None}
        for key in ("window", "step"):
            if key in forward and not forward[key] > 0:
                raise ConfigError(f"{key}={forward[key]}: must be > 0 seconds")
        return {}, forward, {} if return_timeline is None else {"return_timeline": bool(return_timeline)}

    def preprocess(self, inputs):
        return {"clip": as_clip(inputs)}

    def _forward(self, model_inputs, window: float = 30.0, step: float = 1.0, bf16: bool = False):
        return predict_clip(model_inputs["clip"], self.model, str(self.device), window, step, bf16)

    def postprocess(self, record, return_timeline: bool = False):
        return record if return_timeline else {k: v for k, v in record.items() if k != "timeline"}

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """Inputs grouped `batch_size` at a time by a DataLoader (its `num_workers` read them), then
        one record each, in order."""
        dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers or 0, collate_fn=list)
        records = ((item for batch in loader for item in batch))
        return PipelineIterator(PipelineIterator(records, self.forward, forward_params), self.postprocess,
                                postprocess_params)


def register() -> None:
    if TASK not in PIPELINE_REGISTRY.supported_tasks:
        PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=AudioVisualEmotionPipeline, pt_model=AutoModel,
                                            type="multimodal")
