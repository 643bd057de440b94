"""The zoo's model cards stay in step with the registry: one generated card per entry, no strays."""
import importlib.util
import json
from pathlib import Path

import pytest

import vavl
from vavl import cli
from vavl.models import cards

ZOO = Path(__file__).resolve().parents[1] / "zoo"
spec = importlib.util.spec_from_file_location("zoo_update", ZOO / "update.py")
update = importlib.util.module_from_spec(spec)
spec.loader.exec_module(update)


def test_every_entry_has_its_generated_card_and_no_card_is_stray():
    expected = cards.zoo_files(update.recorded_results())
    assert set(expected) == {"README.md"} | {f"{n}.md" for n in vavl.list_models()}
    on_disk = {p.name for p in ZOO.glob("*.md")}
    stale = sorted(f for f in expected if not (ZOO / f).is_file() or (ZOO / f).read_text(encoding="utf-8") != expected[f])
    assert not stale, f"zoo cards out of date: {stale}; run `python zoo/update.py` and commit zoo/"
    assert on_disk == set(expected), f"cards without a registry entry: {sorted(on_disk - set(expected))}"


def test_cards_say_no_results_and_status_without_a_results_file():
    recorded = update.recorded_results()
    for name in vavl.list_models():
        text = cards.card_text(name, recorded.get(name))
        entry = vavl.get_entry(name)
        assert f"# {name}\n" in text and entry.status in text
        if name not in recorded:
            assert "No results yet" in text


def test_results_come_only_from_a_recorded_run(tmp_path):
    name = vavl.list_models()[0]
    metrics = {"task": "single_label_classification", "conditions": {
        "av": {"fused": {"UA": 0.61}, "audio": {"UA": 0.55}, "visual": {"UA": 0.4}},
        "video": {"fused": {"UA": 0.4}, "audio": {"UA": None}, "visual": {"UA": 0.4}}}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(vavl.ConfigError, match="what data"):
        update.record_results(name, tmp_path / "metrics.json", data=" ", command="x", directory=tmp_path)
    update.record_results(name, tmp_path / "metrics.json", data="synthetic test corpus, 80 clips", command="vavl evaluate ...",
                          directory=tmp_path)
    text = cards.card_text(name, update.recorded_results(tmp_path)[name])
    assert "No results yet" not in text and "synthetic test corpus, 80 clips" in text
    assert "| av | 61.0 | 55.0 | 40.0 |" in text and "| video | 40.0 | — | 40.0 |" in text


def test_write_removes_stale_generated_cards_only(tmp_path):
    (tmp_path / "gone.model.md").write_text(cards.MARKER + "\n# gone.model\n")
    (tmp_path / "notes.md").write_text("hand-written")
    written, removed = update.write_cards(tmp_path)
    assert removed == ["gone.model.md"] and (tmp_path / "notes.md").exists()
    assert len(written) == len(vavl.list_models()) + 1


def test_zoo_list_and_show(capsys):
    assert cli.main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in vavl.list_models():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert cards.task_of(vavl.get_entry(name)) in line
    assert cli.main(["zoo", "show", "no_such_model"]) == 2
    assert "unknown model" in capsys.readouterr().err
