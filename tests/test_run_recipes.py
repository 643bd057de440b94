"""`vavl run`: recipes are executed by path, as `python RECIPE ARGS` would run them (their folder first on
sys.path, sys.argv set, run as __main__), and their exit code is the command's; the library imports none."""
import json
import sys
from pathlib import Path

from vavl.cli import main
from vavl.cli.run import recipes_dir

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_recipes_and_configs_are_listed(capsys):
    assert main(["run", "--list"]) == 0
    out = capsys.readouterr().out
    assert f"recipes ({ROOT / 'recipes'})" in out and recipes_dir() == ROOT / "recipes"
    listed = out.split("configs:")[0]
    assert "finetune" in listed and "correspondence" in listed and "finetune_config" not in listed   # helpers are not recipes
    assert "crema_d/auxformer.yaml" in out


def test_a_recipe_file_runs_as_its_own_main_with_its_arguments(tmp_path, capsys):
    (tmp_path / "helper_of_mine.py").write_text("VALUE = 41\n")
    recipe = tmp_path / "my_recipe.py"
    recipe.write_text("import json, sys\nfrom helper_of_mine import VALUE\n"
                      "if __name__ == '__main__':\n"
                      "    print(json.dumps({'argv': sys.argv, 'value': VALUE + 1}))\n"
                      "    sys.exit(3)\n")
    config = tmp_path / "c.yaml"
    config.write_text("a: 1\n")
    before = list(sys.path)
    assert main(["run", str(recipe), "--config", str(config), "train.epochs=2"]) == 3   # the recipe's exit code
    seen = json.loads(capsys.readouterr().out)
    assert seen == {"argv": [str(recipe), "--config", str(config), "train.epochs=2"], "value": 42}
    assert sys.path == before   # the recipe's folder is taken off sys.path again


def test_a_shipped_config_is_found_by_name(tmp_path, capsys):
    recipe = tmp_path / "show.py"
    recipe.write_text("import sys\nif __name__ == '__main__':\n    print(sys.argv[2])\n")
    assert main(["run", str(recipe), "--config", "crema_d/auxformer"]) == 0
    assert capsys.readouterr().out.strip() == str(ROOT / "recipes" / "configs" / "crema_d" / "auxformer.yaml")


def test_unknown_recipes_and_configs_are_one_line(tmp_path, capsys):
    assert main(["run", "no_such_recipe"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown recipe 'no_such_recipe'" in err and "finetune" in err
    assert main(["run", "finetune", "--config", "nowhere/none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--config nowhere/none" in err
    assert main(["run", str(tmp_path / "gone.py")]) == 2
    assert "no such recipe file" in capsys.readouterr().err
