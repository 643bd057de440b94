"""`vavl app --export-space DIR`: a folder that runs the app as a Hugging Face Space.

    DIR/app.py            builds the app on DIR/model and launches it (VAVL_APP_BUILD_ONLY=1: build only)
    DIR/requirements.txt  vavl and its dependencies pinned to the versions installed here, gradio included
    DIR/README.md         the Space card: its YAML header (sdk: gradio, app_file, the gradio version), then text
    DIR/model/            the model folder, copied (a local folder; a zoo name is written into app.py as it is)

The model is loaded once first, as the Space will load it. No Gradio is needed to write the folder.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from importlib import metadata
from pathlib import Path

from ..core.errors import ConfigError
from ..core.files import atomic_write_text

APP = '''"""A vavl emotion-recognition demo (written by `vavl app --export-space`)."""
import os

from vavl.app.ui import build_app

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = {model!r}
demo = build_app(os.path.join(HERE, MODEL) if os.path.isdir(os.path.join(HERE, MODEL)) else MODEL,
                 precision={precision!r}, title={title!r})

if __name__ == "__main__" and not os.environ.get("VAVL_APP_BUILD_ONLY"):
    demo.launch()
'''


def pinned_requirements() -> list[str]:
    """vavl's own requirements and the app extra's, each pinned to the version installed here
    (a package not installed keeps vavl's range)."""
    import vavl

    lines = [f"vavl[app]=={vavl.__version__}"]
    try:
        requires = metadata.requires("vavl") or []
    except metadata.PackageNotFoundError:   # run from a checkout that is not installed: the app extra only
        requires = ['gradio>=6.0,<7; extra == "app"']
    for req in requires:
        name_part, _, marker = req.partition(";")
        if marker and "extra" in marker and '"app"' not in marker:
            continue
        name = re.split(r"[<>=!~\[ ]", name_part.strip(), maxsplit=1)[0]
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(name_part.strip())
    return lines


def card(title: str, model: str, labels: list[str], gradio_version: str, info: dict) -> str:
    header = {"title": title[:30], "emoji": "🎭", "colorFrom": "indigo", "colorTo": "pink", "sdk": "gradio",
              "sdk_version": gradio_version, "app_file": "app.py", "pinned": False,
              "tags": ["vavl", "emotion-recognition", "audio-visual"]}
    yaml = "\n".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in header.items())
    kind = info.get("model_type", "a vavl model")
    return (f"---\n{yaml}\n---\n\n# {title}\n\n"
            f"Audio-visual emotion recognition with vavl ({kind}, model folder `{model}`).\n"
            f"Classes: {', '.join(labels)}.\n\n"
            "Upload or record a clip (webcam and microphone) and see the label, the clip's scores, the "
            "probabilities of the fused, audio and visual heads, the modalities used, the timeline and the face "
            "crops the model saw; tick a box to see the model's answer without the audio or without the video. "
            "The Live tab plays a clip as a stream, one row per window (2 s by default).\n\n"
            "Written by `vavl app --export-space`; `requirements.txt` pins the versions it was written with. "
            "If `vavl` is not on the package index this Space installs from, replace its line with the place you "
            "install it from.\n")


def export_space(directory: str | os.PathLike, model: str, precision: str = "fp32") -> Path:
    """Write the Space folder (see the module docstring) for `model`; returns the folder."""
    out = Path(directory)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty; give a new folder for the Space")
    from .scoring import load

    load(model, "cpu", precision)   # the Space loads it the same way: a typo or a features-only model stops here
    src = Path(model)
    config = src / "config.json"
    info = json.loads(config.read_text()) if config.is_file() else {}
    out.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, out / "model")
        target = "model"
    else:
        target = model   # a zoo name: loaded where the Space runs
    labels = [info["id2label"][k] for k in sorted(info.get("id2label", {}), key=int)] if info.get("id2label") else []
    title = src.name if src.is_dir() else model
    try:
        gradio_version = metadata.version("gradio")
    except metadata.PackageNotFoundError:
        gradio_version = "6.0.0"
    atomic_write_text(out / "app.py", APP.format(model=target, precision=precision, title=title))
    atomic_write_text(out / "requirements.txt", "\n".join(pinned_requirements()) + "\n")
    atomic_write_text(out / "README.md", card(title, target, labels, gradio_version, info))
    return out
