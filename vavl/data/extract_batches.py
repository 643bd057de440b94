"""How `vavl extract` groups clips for the device: faces of several clips found together, each
encoder fed the clips sorted by length, and a failing batch retried clip by clip.

    inputs = find_faces(items, processor, fail)        # main-process faces (the workers only decoded)
    for item, features in encode_sorted(items, audio_enc, visual_enc, encode, batch_size): ...

Sorting a window of clips by length before chunking it pads little; an encoder that is not
batch-invariant (`Encoder.batch_invariant`) only gets clips of one length together, so the
features of a clip never depend on the clips it was batched with.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ..core.jobs import describe


def batch_or_each(fn: Callable[[list], list], items: list) -> list:
    """fn(items) -> one result per item; when the batch fails it is retried item by item, so one
    item's failure costs no other item (its entry is then the exception)."""
    if not items:
        return []
    try:
        return list(fn(items))
    except Exception as e:
        if len(items) == 1:
            return [e]
    out = []
    for it in items:
        try:
            out.append(fn([it])[0])
        except Exception as e:
            out.append(e)
    return out


def find_faces(items: list[dict[str, Any]], processor, fail) -> list[dict[str, Any]]:
    """Faces in this process: the decoded clips among `items` get their processor outputs, all
    their faces found together (crops left on the face device). A clip that fails goes to
    fail(clip_id, line, trace) and is dropped; items with nothing to decode pass through."""
    todo = [it for it in items if "clip" in it]

    def process(group):
        return processor.batch([dataclasses.replace(it["clip"], frames=it["frames"]) for it in group], on_device=True)

    for it, got in zip(todo, batch_or_each(process, todo)):
        if isinstance(got, Exception):
            fail(it["record"]["id"], *describe(it["record"]["id"], got))
        else:
            it["inputs"] = got
    return [it for it in items if it.get("inputs") is not None]


def encode_sorted(items: list[dict[str, Any]], audio_encoder, visual_encoder, encode, batch_size: int) -> list[tuple[dict, Any]]:
    """(item, [audio, visual] features or the exception) per item. Each encoder takes the items
    sorted by their length in chunks of `batch_size`; encode(chunk, audio_encoder, visual_encoder)
    -> per item [audio, visual] (the one not asked for None)."""
    feats: list[Any] = [[None, None] for _ in items]
    for m, enc, length in ((0, audio_encoder, samples), (1, visual_encoder, face_frames)):
        if enc is None:
            continue
        live = sorted((i for i, f in enumerate(feats) if not isinstance(f, Exception)), key=lambda i: length(items[i]))
        pair = (enc, None) if m == 0 else (None, enc)
        for chunk in chunks(live, batch_size, None if enc.batch_invariant else lambda i: length(items[i])):
            results = batch_or_each(lambda group: encode(group, *pair), [items[i] for i in chunk])
            for i, got in zip(chunk, results):
                if isinstance(got, Exception):
                    feats[i] = got
                else:
                    feats[i][m] = got[m]
    return list(zip(items, feats))


def chunks(order: list[int], size: int, key=None) -> list[list[int]]:
    """Consecutive runs of at most `size`; with `key`, a new run also starts where the key changes."""
    runs: list[list[int]] = []
    for i in order:
        if not runs or len(runs[-1]) == size or (key is not None and key(runs[-1][-1]) != key(i)):
            runs.append([])
        runs[-1].append(i)
    return runs


def samples(item: dict[str, Any]) -> int:
    """Audio samples of a processed clip (0: none)."""
    x = item["inputs"].get("input_values")
    return 0 if x is None else int(x.shape[-1])


def face_frames(item: dict[str, Any]) -> int:
    """Face frames of a processed clip (0: none)."""
    m = item["inputs"].get("pixel_mask")
    return 0 if m is None else int(m.sum())
