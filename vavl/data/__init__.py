"""Corpora, manifests, feature caches and batching. Knows nothing of training."""
from .collate import collate, encode_labels, model_inputs, pad_frames
from .manifest import read_manifest, split_records, write_manifest

__all__ = ["collate", "encode_labels", "model_inputs", "pad_frames", "read_manifest", "split_records", "write_manifest"]
