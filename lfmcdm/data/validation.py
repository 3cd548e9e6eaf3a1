"""Great Expectations checks on the tables that enter and leave the pipeline.

Two severities: a *schema* expectation failing means the table as a whole is wrong (wrong
columns, or most values out of range: e.g. EF given as a fraction, a shifted column) and the
stage must stop; a *row* expectation failing is expected on real data, reported here, and the
offending rows are quarantined by the stage with a reason.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lfmcdm.atomic import write_json

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SCHEMA, ROW = "schema", "row"
MOSTLY = 0.9  # a column with more than 10% bad values is a broken file, not a few bad rows
MOSTLY_UNIQUE = 0.5  # GX counts every copy of a duplicate, so one duplicated name in a tiny file is already 2 rows


class ValidationFailed(RuntimeError):
    """A table failed a schema-level expectation; the message lists which."""


@dataclass(frozen=True)
class Check:
    """One expectation: GX class name, its kwargs and its severity."""

    kind: str
    kwargs: dict[str, Any]
    level: str = SCHEMA


@dataclass
class ValidationReport:
    name: str
    success: bool
    failed_schema: list[str]
    failed_row: list[str]
    result: dict[str, Any]

    def raise_for_schema(self, where: str) -> None:
        if self.failed_schema:
            raise ValidationFailed(f"{where}: Great Expectations suite {self.name!r} failed: " + "; ".join(self.failed_schema))


def _context():
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    try:  # the per-metric progress bars drown our own
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError):
        pass
    return context


def run_checks(name: str, frame: pd.DataFrame, checks: list[Check]) -> ValidationReport:
    """Validate ``frame`` against ``checks`` with an ephemeral GX context (no files, no server)."""
    import great_expectations as gx

    context = _context()
    asset = context.data_sources.add_pandas(f"{name}_source").add_dataframe_asset(name=name)
    batch = asset.add_batch_definition_whole_dataframe(f"{name}_batch").get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name=name)
    for check in checks:
        cls = getattr(gx.expectations, check.kind)
        suite.add_expectation(cls(**check.kwargs, meta={"level": check.level}))
    result = batch.validate(suite).to_json_dict()
    failed = {SCHEMA: [], ROW: []}
    for item in result["results"]:
        if not item["success"]:
            config = item["expectation_config"]
            label = f"{config['type']}({config['kwargs'].get('column', '')})"
            failed[config.get("meta", {}).get("level", SCHEMA)].append(label)
    return ValidationReport(name, not failed[SCHEMA], failed[SCHEMA], failed[ROW], result)


def save_report(report: ValidationReport, out_dir: str | Path) -> Path:
    """``<out_dir>/<suite>.json``, the same bytes for the same table: GX's batch load time is left out, so
    re-running a finished stage does not change its outputs."""
    path = Path(out_dir) / f"{report.name}.json"
    result = copy.deepcopy(report.result)
    result.get("meta", {}).get("batch_markers", {}).pop("ge_load_time", None)
    write_json(path, {"suite": report.name, "success": report.success, "failed_schema": report.failed_schema,
                      "failed_row": report.failed_row, "result": result})
    return path


def filelist_checks(columns: list[str]) -> list[Check]:
    """FileList.csv: exact EchoNet columns; values mostly valid (row problems are quarantined)."""
    between = "ExpectColumnValuesToBeBetween"
    checks = [
        Check("ExpectTableColumnsToMatchSet", {"column_set": columns, "exact_match": False}),
        Check("ExpectTableRowCountToBeBetween", {"min_value": 1}),
        Check("ExpectColumnValuesToNotBeNull", {"column": "FileName", "mostly": MOSTLY}),
        Check("ExpectColumnValuesToNotBeNull", {"column": "EF", "mostly": MOSTLY}),
        Check(between, {"column": "EF", "min_value": 0, "max_value": 100, "mostly": MOSTLY}),
        Check(between, {"column": "FPS", "min_value": 0, "strict_min": True, "mostly": MOSTLY}),
        Check(between, {"column": "NumberOfFrames", "min_value": 1, "mostly": MOSTLY}),
        Check("ExpectColumnValuesToBeInSet", {"column": "Split", "value_set": ["TRAIN", "VAL", "TEST"], "mostly": MOSTLY}),
        Check("ExpectColumnValuesToBeUnique", {"column": "FileName", "mostly": MOSTLY_UNIQUE}),
    ]
    strict = [
        Check("ExpectColumnValuesToNotBeNull", {"column": "EF"}, ROW),
        Check(between, {"column": "EF", "min_value": 0, "max_value": 100}, ROW),
        Check("ExpectColumnValuesToBeUnique", {"column": "FileName"}, ROW),
        Check("ExpectColumnValuesToBeInSet", {"column": "Split", "value_set": ["TRAIN", "VAL", "TEST"]}, ROW),
    ]
    return checks + strict


def typed_filelist(raw: pd.DataFrame, numeric: list[str]) -> pd.DataFrame:
    """The FileList with numeric columns parsed (unparseable values become NaN, which GX then counts)."""
    frame = raw.drop(columns=["_line"], errors="ignore").copy()
    for col in numeric:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    if "Split" in frame:  # rows accept any case (echonet.parse_row); the file-level check must agree
        frame["Split"] = frame["Split"].astype(str).str.strip().str.upper()
    return frame


def manifest_checks(frame_size: int, target_fps: float, min_frames: int) -> list[Check]:
    """videos.parquet: every kept row must satisfy the contract exactly; a failure here is a bug."""
    between = "ExpectColumnValuesToBeBetween"
    return [
        Check("ExpectColumnValuesToBeUnique", {"column": "file_name"}),
        Check("ExpectColumnValuesToNotBeNull", {"column": "sha256"}),
        Check("ExpectColumnValuesToBeInSet", {"column": "split", "value_set": ["TRAIN", "VAL", "TEST"]}),
        Check(between, {"column": "n_frames", "min_value": min_frames}),
        Check(between, {"column": "height", "min_value": frame_size, "max_value": frame_size}),
        Check(between, {"column": "width", "min_value": frame_size, "max_value": frame_size}),
        Check(between, {"column": "fps", "min_value": target_fps - 1e-6, "max_value": target_fps + 1e-6}),
        Check(between, {"column": "ef", "min_value": 0, "max_value": 100}),
    ]


def phase_checks() -> list[Check]:
    """phase.parquet: one row per clip, a status on each, usable rows with their ED before their ES frame."""
    between = "ExpectColumnValuesToBeBetween"
    return [
        Check("ExpectColumnValuesToBeUnique", {"column": "file_name"}),
        Check("ExpectColumnValuesToNotBeNull", {"column": "status"}),
        Check(between, {"column": "ed_frame", "min_value": 0}),
        Check(between, {"column": "es_frame", "min_value": 0}),
        Check(between, {"column": "phase_confidence", "min_value": 0, "max_value": 1}),
        Check("ExpectColumnPairValuesAToBeGreaterThanB",
              {"column_A": "es_frame", "column_B": "ed_frame", "ignore_row_if": "either_value_is_missing"}),
    ]
