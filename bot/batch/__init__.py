"""CSV batches: the chat desk (``desk``), the rows of a file (``rows``), a complete spec per
row (``plan``), the batch's thread and manifest (``report``, ``manifest``), its Redis keys
(``state``), and ``proofroom batch`` (``cli``, imported on use)."""

from bot.batch.desk import BatchDesk
from bot.batch.manifest import ManifestEntry, manifest_csv, zip_parts
from bot.batch.plan import BATCH_USAGE, PlannedRow, enqueue_all, parse_batch_command, plan_batch
from bot.batch.report import BatchReport
from bot.batch.rows import BatchFileError, BatchRow, read_batch_csv
from bot.batch.state import BatchState

__all__ = [
    "BATCH_USAGE",
    "BatchDesk",
    "BatchFileError",
    "BatchReport",
    "BatchRow",
    "BatchState",
    "ManifestEntry",
    "PlannedRow",
    "enqueue_all",
    "manifest_csv",
    "parse_batch_command",
    "plan_batch",
    "read_batch_csv",
    "zip_parts",
]
