"""The README stays true: its model table comes from the registry, its test command is what
CI runs, and its quick-start recipe exists."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_model_table_matches_registry():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "update_readme.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def quick_start_commands():
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)?\n(.*?)```", section, flags=re.S)


def test_ci_runs_the_readme_test_command():
    commands = [c.strip() for c in quick_start_commands()]
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci, f"{commands[1]!r} is not what .ci/run runs"


def test_quick_start_recipe_exists():
    main_job = quick_start_commands()[0]
    module = re.search(r"python3? -m (recipes\.\w+)", main_job).group(1)
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()
