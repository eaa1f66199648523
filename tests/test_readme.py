"""The README's plugin example runs exactly as written: as --plugin FILE and as an entry point."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path


from conftest import REPO

README = (REPO / "README.md").read_text()


def _block_after(marker: str, language: str) -> str:
    start = README.index(marker)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(README, start)
    assert match, f"no ```{language} block after {marker!r} in README.md"
    return match.group(1)


ENTROPY = _block_after("This file is `entropy.py`", "python")
COMMAND = _block_after("Compare it with the built-ins", "bash").strip()
ENTRY_POINT = _block_after("declare an entry point", "toml")
# The README compares 3 seeds on the quick preset; the test keeps the command and shrinks the work.
FAST = ["--seeds", "1", "--preset", "smoke", "--no-leaderboard"]


def _argv(command: str) -> list[str]:
    words = command.split()
    assert words[:2] == ["albench", "run"], command
    argv = words[1:]
    i = argv.index("--seeds")
    del argv[i : i + 2]
    return argv


def _check_run(out: Path) -> None:
    for strategy in ("entropy", "random"):
        run = out / "runs/phantom-cls" / strategy / "seed-0"
        lines = [json.loads(x) for x in (run / "selected.jsonl").read_text().splitlines()]
        spec = json.loads((run / "spec.json").read_text())
        assert len(lines) == spec["protocol"]["rounds"] + 1
    entropy = [json.loads(x) for x in (out / "runs/phantom-cls/entropy/seed-0/selected.jsonl").read_text().splitlines()]
    random = [json.loads(x) for x in (out / "runs/phantom-cls/random/seed-0/selected.jsonl").read_text().splitlines()]
    assert entropy[0] == random[0] and entropy[1] != random[1]


def test_readme_plugin_as_file(cli, tmp_path):
    (tmp_path / "entropy.py").write_text(ENTROPY)
    cli(*_argv(COMMAND), *FAST, "--out", str(tmp_path / "out"), cwd=tmp_path)
    _check_run(tmp_path / "out")


def test_readme_plugin_as_entry_point(cli, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "entropy.py").write_text(ENTROPY)
    group = re.search(r'\[project\.entry-points\."([^"]+)"\]', ENTRY_POINT).group(1)
    name, value = (part.strip().strip('"') for part in ENTRY_POINT.strip().splitlines()[1].split("="))
    info = site / "entropy_strategy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: entropy-strategy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {value}\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    argv = [a for a in _argv(COMMAND) if a not in ("--plugin", "entropy.py")]
    cli(*argv, *FAST, "--out", str(tmp_path / "out"), env=env, cwd=tmp_path)
    _check_run(tmp_path / "out")
