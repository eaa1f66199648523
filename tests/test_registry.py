"""The registries: decorators, entry points, plugin files, duplicates, did-you-mean, compatibility."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from albench.errors import AlbenchError, ConfigError
from albench.registry import Registry
from conftest import PLUGINS, TINY


def test_decorator_registers_and_describes():
    registry = Registry("widget", "albench.test-widgets")

    @registry.register("square", sides=4)
    class Square:
        """A shape with four equal sides.

        More text that is not the summary.
        """

    entry = registry.get("square")
    assert entry.obj is Square
    assert entry.description == "A shape with four equal sides."
    assert entry.meta == {"sides": 4}
    assert registry.names() == ["square"]


def test_duplicate_name_is_refused():
    registry = Registry("widget", "albench.test-widgets")
    registry.add("a", object)
    with pytest.raises(AlbenchError, match="duplicate widget name 'a'"):
        registry.add("a", dict)


def test_unknown_name_lists_known_and_closest():
    registry = Registry("widget", "albench.test-widgets")
    for name in ("random", "vaal", "mvaal"):
        registry.add(name, type(name, (), {}))
    with pytest.raises(ConfigError) as info:
        registry.get("rnadom")
    message = str(info.value)
    assert "did you mean 'random'" in message
    assert "known: mvaal, random, vaal" in message


def test_builtins_come_through_entry_points():
    from albench.registries import strategies

    entry = strategies.get("random")
    assert entry.origin == "built-in"


def test_cli_unknown_strategy_suggests(cli, tmp_path):
    proc = cli("run", "--plugin", TINY, "--strategy", "rnadom", "--task", "tiny-cls", "--seeds", "1",
               "--out", str(tmp_path), check=False)
    assert proc.returncode == 1
    assert "unknown strategy 'rnadom'; did you mean 'random'?" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_cli_unknown_task(cli, tmp_path):
    proc = cli("run", "--strategy", "random", "--task", "phantom-clss", "--seeds", "1", "--out", str(tmp_path), check=False)
    assert proc.returncode == 1
    assert "unknown task 'phantom-clss'" in proc.stderr


def test_plugin_duplicate_of_builtin_is_refused(cli, tmp_path):
    proc = cli("list", "--plugin", str(PLUGINS / "dup_random.py"), check=False)
    assert proc.returncode == 1
    assert "duplicate strategy name 'random'" in proc.stderr
    assert "dup_random.py" in proc.stderr


def test_plugin_that_fails_to_import(cli):
    proc = cli("list", "--plugin", str(PLUGINS / "broken_plugin.py"), check=False)
    assert proc.returncode == 1
    assert "broken_plugin.py: failed to import" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_missing_plugin_file(cli, tmp_path):
    proc = cli("list", "--plugin", str(tmp_path / "nope.py"), check=False)
    assert proc.returncode != 0
    assert "nope.py" in proc.stderr


def test_incompatible_pair_is_refused_before_training(cli, tmp_path):
    proc = cli("run", "--plugin", TINY, "--plugin", str(PLUGINS / "bad_strategies.py"), "--strategy", "random,seg-only",
               "--task", "tiny-cls", "--seeds", "1", "--out", str(tmp_path), check=False)
    assert proc.returncode == 1
    assert "strategy 'seg-only' does not support task 'tiny-cls'" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_list_shows_origins(cli):
    proc = cli("list", "strategies", "--plugin", str(PLUGINS / "bad_strategies.py"))
    assert "random" in proc.stdout and "built-in" in proc.stdout
    assert "lowest-ids" in proc.stdout and "bad_strategies.py" in proc.stdout


def _write_distribution(site: Path) -> None:
    """A real installed distribution: a module plus its dist-info with an entry point."""
    (site / "albench_lowest_plugin.py").write_text(textwrap.dedent('''
        """A strategy shipped as a package with an entry point."""
        from albench import strategies

        @strategies.register("ep-lowest", task_agnostic=True)
        class EntryPointLowest:
            """Lowest unlabelled ids, registered through an entry point."""

            def select(self, ctx, budget):
                return ctx.unlabelled[:budget]
    '''))
    info = site / "albench_lowest_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: albench-lowest-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[albench.strategies]\nep-lowest = albench_lowest_plugin\n")
    (info / "RECORD").write_text("")


def test_entry_point_plugin_is_found_and_runs(cli, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _write_distribution(site)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = cli("list", "strategies", env=env)
    assert "ep-lowest" in listed.stdout
    assert "entry point ep-lowest (albench-lowest-plugin)" in listed.stdout
    out = tmp_path / "out"
    cli("run", "--plugin", TINY, "--strategy", "ep-lowest", "--task", "tiny-cls", "--seeds", "1", "--out", str(out),
        "--no-leaderboard", env=env)
    lines = [json.loads(x) for x in (out / "runs/tiny-cls/ep-lowest/seed-0/selected.jsonl").read_text().splitlines()]
    assert len(lines) == 4
