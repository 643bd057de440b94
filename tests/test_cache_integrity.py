"""Nothing wrong is read from a feature cache silently: checksums, finite values, one file per id,
older caches still read, files with the user's umask, one `vavl extract` per cache, and a full
disk at the end of extraction as one line that keeps what was computed."""
import errno
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vavl.core.errors import DataError
from vavl.data import read_manifest
from vavl.data.cache import CacheLock, FeatureCache, FeatureDataset, checksum
from vavl.data.extract import extract
from vavl.data.prepare import prepare
from vavl.data.synthetic import make_corpus

QUIET = open(os.devnull, "w")


def flip_a_bit(path: Path, from_end: int = 5) -> None:
    data = bytearray(path.read_bytes())
    data[-from_end] ^= 0x10          # in the last tensor's bytes (the header comes first)
    path.write_bytes(bytes(data))


def test_a_flipped_bit_is_a_checksum_error_naming_the_file(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.write("a", torch.randn(4, 3), torch.randn(2, 5))
    path = cache.locate("a")
    flip_a_bit(path)
    with pytest.raises(DataError, match=f"{path.name}.*checksum.*vavl extract"):
        cache.read("a")
    ds = FeatureDataset(cache, [{"id": "a"}])
    with pytest.raises(DataError, match="checksum"):
        ds[0]
    assert cache.rebuild_index()["a"]["sha256"] is not None          # the index carries the checksum too


def test_non_finite_features_are_refused_when_written_and_when_read(tmp_path):
    cache = FeatureCache(tmp_path)
    bad = torch.randn(4, 3)
    bad[1, 2] = float("nan")
    with pytest.raises(DataError, match="^x: audio features are not finite"):
        cache.write("x", bad, None)
    with pytest.raises(DataError, match="visual features are not finite"):
        cache.write("x", None, torch.full((2, 2), float("inf")))
    assert not cache.has("x")
    # a NaN that reached the disk anyway (a file written by other code, with a checksum that matches)
    tensors = {"audio": bad}
    cache.clips.mkdir(parents=True)
    save_file(tensors, str(cache.path("x")), metadata={"id": "x", "meta": "{}", "sha256": checksum(tensors)})
    with pytest.raises(DataError, match="audio features are not finite"):
        cache.read("x")


def test_distinct_ids_never_share_a_file(tmp_path):
    cache = FeatureCache(tmp_path)
    ids = ["spk1/clip", "spk1_clip-3b84e346c3", "spk1_clip", "..", "a" * 400]   # the second was the first's old name
    for n, clip_id in enumerate(ids):
        cache.write(clip_id, torch.full((2, 3), float(n)), None)
    assert len({cache.path(i) for i in ids}) == len(ids)
    for n, clip_id in enumerate(ids):
        assert cache.read(clip_id)["audio_features"][0, 0].item() == n
    assert set(cache.rebuild_index()) == set(ids)


def test_a_file_that_holds_another_clip_is_refused(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.write("a", torch.zeros(2, 3), None)
    cache.write("b", torch.ones(2, 3), None)
    cache.path("b").write_bytes(cache.path("a").read_bytes())   # a mix-up by hand
    with pytest.raises(DataError, match="holds the features of clip 'a', not 'b'"):
        cache.read("b")


def test_caches_written_before_checksums_are_still_read(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.clips.mkdir(parents=True)
    old = {"plain": torch.randn(3, 4), "spk/1": torch.randn(2, 4)}
    for clip_id, x in old.items():   # the old names: the id itself, or made safe + a 10-digit hash; no sha256
        save_file({"audio": x}, str(cache._legacy_path(clip_id)), metadata={"id": clip_id, "meta": "{}"})
    assert cache._legacy_path("plain").name == "plain.safetensors"
    for clip_id, x in old.items():
        assert cache.has(clip_id) and torch.equal(cache.read(clip_id)["audio_features"], x)
    assert not cache.has("plai")
    ds = FeatureDataset(cache, [{"id": i} for i in old])
    assert torch.equal(ds[1]["audio_features"], old["spk/1"])
    assert set(cache.rebuild_index()) == set(old)
    cache.write("plain", torch.zeros(1, 4), None)                # written again: one file, the new one
    assert not cache._legacy_path("plain").exists() and cache.read("plain")["audio_features"].shape == (1, 4)


def test_files_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        cache = FeatureCache(tmp_path / "c")
        cache.init({"audio_encoder": "a"})
        cache.write("a", torch.zeros(2, 3), None)
        cache.rebuild_index()
        from vavl.data import write_manifest

        write_manifest([{"id": "a"}], tmp_path / "m.jsonl")
        for path in (tmp_path / "c" / "cache.json", cache.path("a"), tmp_path / "c" / "index.jsonl", tmp_path / "m.jsonl"):
            assert oct(path.stat().st_mode & 0o777) == oct(0o644), path
    finally:
        os.umask(old)


def test_temp_file_cleanup_can_spare_other_processes_files(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.clips.mkdir(parents=True)
    mine = cache.clips / f".a-0.{os.getpid()}.x1.tmp"
    other = cache.clips / f".b-0.{os.getpid() + 1}.x2.tmp"
    mine.touch(), other.touch()
    assert cache.remove_temp_files(own=True) == 1 and other.exists() and not mine.exists()


# ---- vavl extract ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tiny_encoders import tiny_wav2vec2_dir

    root = tmp_path_factory.mktemp("integrity")
    make_corpus("custom", root / "corpus", n_speakers=1, clips_per_class=1, duration=1.0)
    prepare("custom", root / "corpus", root / "m.jsonl", log=QUIET)
    return root / "m.jsonl", tiny_wav2vec2_dir(root / "audio")


def test_extract_finds_damaged_and_non_finite_files_and_recomputes_them(tmp_path, corpus, capsys):
    manifest, encoder = corpus
    extract(manifest, tmp_path / "cache", encoder, progress=False, log=QUIET)
    cache = FeatureCache(tmp_path / "cache")
    ids = [r["id"] for r in read_manifest(manifest)]
    before = {i: cache.read(i)["audio_features"].clone() for i in ids}   # not a view of the file changed below
    flip_a_bit(cache.path(ids[0]))
    nan = before[ids[1]].clone()
    nan[0, 0] = float("nan")
    save_file({"audio": nan}, str(cache.path(ids[1])), metadata={"id": ids[1], "meta": "{}", "sha256": checksum({"audio": nan})})
    summary = extract(manifest, tmp_path / "cache", encoder, progress=False, log=sys.stderr)
    err = capsys.readouterr().err
    assert summary["written"] == 2 and summary["cached"] == len(ids)
    assert "2 clip files" in err and cache.path(ids[0]).name in err and cache.path(ids[1]).name in err
    after = FeatureCache(tmp_path / "cache")
    for i in ids:
        x = after.read(i)["audio_features"]
        assert x.shape == before[i].shape and torch.allclose(x, before[i], atol=1e-4), (i, (x - before[i]).abs().max())


def test_a_second_extract_on_one_cache_refuses_in_one_line(tmp_path, corpus):
    manifest, encoder = corpus
    (tmp_path / "cache").mkdir()
    with CacheLock(tmp_path / "cache"):
        # refused before any encoder is built: a name that could not be built would say otherwise
        with pytest.raises(DataError, match=f"another `vavl extract` \\(pid {os.getpid()}\\) is writing to this cache"):
            extract(manifest, tmp_path / "cache", "no-such-encoder", progress=False, log=QUIET)
    extract(manifest, tmp_path / "cache", encoder, progress=False, log=QUIET)   # the lock is gone with its holder
    assert not list((tmp_path / "cache" / "clips").glob(".*.tmp"))


@pytest.mark.parametrize("target", ["a file", "under a file"])
def test_an_output_folder_that_cannot_be_written_stops_before_the_encoders(tmp_path, corpus, target, capsys):
    from vavl.cli import main

    manifest, _ = corpus
    (tmp_path / "taken").write_text("x")
    out = tmp_path / "taken" if target == "a file" else tmp_path / "taken" / "cache"
    with pytest.raises(DataError, match=f"{out}: the --out cache folder"):   # a name that cannot be built: not reached
        extract(manifest, out, "no-such-encoder", progress=False, log=QUIET)
    assert main(["extract", "--manifest", str(manifest), "--out", str(out), "--audio-encoder", "no-such-encoder"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_full_disk_at_the_end_keeps_the_index_and_the_reasons(tmp_path, corpus, monkeypatch):
    import builtins

    import vavl.core.files as files
    import vavl.data.extract as ex

    manifest, encoder = corpus
    ids = [r["id"] for r in read_manifest(manifest)]
    real_decode = ex.ClipLoader.decode

    def decode(self, rec):
        if rec["id"] == ids[0]:
            raise ZeroDivisionError("a bug in decoding")   # an unexpected error: a traceback for errors.log
        return real_decode(self, rec)

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_open(path, *args, **kw):   # errors.log's temporary file: no space left
        f = builtins.open(path, *args, **kw)
        return Full(f) if ".errors.log." in str(path) else f

    monkeypatch.setattr(ex.ClipLoader, "decode", decode)
    monkeypatch.setattr(files, "open", full_open, raising=False)
    with pytest.raises(DataError) as e:
        extract(manifest, tmp_path / "cache", encoder, progress=False, log=QUIET)
    line = str(e.value)
    assert "\n" not in line and "errors.log: could not write (No space left on device); the disk is full" in line
    cache = tmp_path / "cache"
    assert set(FeatureCache(cache).index()) == set(ids[1:])
    index_ids = {json.loads(x)["id"] for x in (cache / "index.jsonl").read_text().splitlines()}
    assert index_ids == set(ids[1:])
    errors = [json.loads(x) for x in (cache / "errors.jsonl").read_text().splitlines()]
    assert [r["id"] for r in errors] == [ids[0]]
    assert not (cache / "errors.log").exists() and not list(cache.glob(".errors*"))


def test_saved_models_and_encoders_get_the_users_umask(tmp_path):
    from tiny_encoders import tiny_full_model
    from vavl.encoders import build_encoder

    old = os.umask(0o022)
    try:
        model = tiny_full_model(tmp_path / "build")
        model.save_pretrained(tmp_path / "full")
        model.fusion_model.save_pretrained(tmp_path / "fusion")
        build_encoder("test_convnext", image_size=32, pretrained=False).save_pretrained(tmp_path / "face")
        files = [p for d in ("full", "fusion", "face") for p in (tmp_path / d).iterdir()]
        assert any(p.suffix == ".safetensors" for p in files) and len({p.parent for p in files}) == 3
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(0o644) for p in files}
    finally:
        os.umask(old)
