"""The results store: one folder per (task, strategy, seed), written so that nothing is ever half.

The source of truth is ``records/round-<r>.json``, one per finished round, each written atomically
after the round's arrays (diagnostics, artifacts). ``rounds.csv`` and ``selected.jsonl`` are derived
from the records and rewritten atomically after each commit, so a kill at any moment leaves either
the old or the new version of every file, and a resumed run rebuilds the derived files from the
records it finds.

``selected.jsonl`` has one line per round ``r``: ``added`` are the ids that entered the labelled set
for round ``r`` (round 0: the initial set; round ``r > 0``: the strategy's selection after round
``r - 1``) and ``labelled_sha256`` is the sha256 of round ``r``'s sorted labelled ids.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from albench.errors import AlbenchError
from albench.prepared import atomic_file, atomic_write_json, atomic_write_text

TIMING_COLUMNS = ("fit_seconds", "select_seconds", "peak_memory_mb")


def labelled_sha256(ids: Iterable[int]) -> str:
    """sha256 of the sorted ids as comma-separated decimal text (easy to reproduce by hand)."""
    import hashlib

    text = ",".join(str(int(i)) for i in sorted(int(i) for i in ids))
    return hashlib.sha256(text.encode()).hexdigest()


def atomic_save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_file(path) as handle:
        np.savez_compressed(handle, **{k: np.asarray(v) for k, v in arrays.items()})


class RunStore:
    """Reads and writes one run folder ``<out>/runs/<task>/<strategy>/seed-<k>/``."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)

    # -- spec ---------------------------------------------------------------------------------
    @property
    def spec_path(self) -> Path:
        return self.dir / "spec.json"

    def load_spec(self) -> dict[str, Any] | None:
        if not self.spec_path.is_file():
            return None
        try:
            return json.loads(self.spec_path.read_text())
        except json.JSONDecodeError as exc:
            raise AlbenchError(f"{self.spec_path}: corrupt spec ({exc}); use --force to restart this run") from exc

    def write_spec(self, spec: Mapping[str, Any]) -> None:
        atomic_write_json(self.spec_path, dict(spec))

    def sweep_temporaries(self) -> None:
        """Delete temporary files left by a killed writer (they are never read, only untidy).

        Called by the cell's single writer when it starts, so no live write is disturbed.
        """
        if self.dir.exists():
            for tmp in self.dir.rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget every recorded round (``--force``)."""
        if self.dir.exists():
            trash = self.dir.with_name(f".trash-{self.dir.name}-{uuid.uuid4().hex[:8]}")
            os.replace(self.dir, trash)
            shutil.rmtree(trash, ignore_errors=True)

    # -- rounds -------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """The committed round records 0..k-1 (a gap ends the list: later ones are not trusted)."""
        folder = self.dir / "records"
        found: list[dict[str, Any]] = []
        r = 0
        while (path := folder / f"round-{r:03d}.json").is_file():
            found.append(json.loads(path.read_text()))
            r += 1
        return found

    def commit(self, record: Mapping[str, Any], *, diagnostics: Mapping[str, np.ndarray] | None = None,
               artifacts: Mapping[str, np.ndarray] | None = None, metrics: list[str] | None = None) -> None:
        """Write one finished round: arrays first, then the record (the commit point), then views."""
        r = int(record["round"])
        if diagnostics:
            atomic_save_npz(self.dir / "diagnostics" / f"round-{r}.npz", diagnostics)
        if artifacts:
            atomic_save_npz(self.dir / "artifacts" / f"round-{r}.npz", artifacts)
        atomic_write_json(self.dir / "records" / f"round-{r:03d}.json", dict(record))
        self.rebuild(metrics)

    def rebuild(self, metrics: list[str] | None = None) -> None:
        """Regenerate rounds.csv and selected.jsonl from the records."""
        records = self.records()
        if metrics is None:
            spec = self.load_spec() or {}
            metrics = list(spec.get("metrics", []))
        atomic_write_text(self.dir / "rounds.csv", rounds_csv(records, metrics))
        lines = [json.dumps({"round": rec["round"], "added": rec["added"], "labelled_sha256": rec["labelled_sha256"]})
                 for rec in records]
        atomic_write_text(self.dir / "selected.jsonl", "".join(line + "\n" for line in lines))


def rounds_csv(records: list[Mapping[str, Any]], metrics: list[str]) -> str:
    """One row per round; metric columns in the task's order, then timings, then strategy scalars."""
    metric_columns = [f"test_{m}" for m in metrics] + [f"val_{m}" for m in metrics]
    extra = sorted({k for rec in records for k in rec.get("scalars", {})})
    header = ["round", "n_labelled", *metric_columns, *TIMING_COLUMNS, *extra]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for rec in records:
        values = {**rec["metrics"], **{k: rec[k] for k in TIMING_COLUMNS}, **rec.get("scalars", {})}
        row = [rec["round"], rec["n_labelled"]]
        row += [_fmt(values.get(col)) for col in header[2:]]
        writer.writerow(row)
    return buffer.getvalue()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
