"""QA data: the Search-R1 / ZeroSearch record schema, plain `{question, golden_answers}` JSONL, the policy prompt.

Accepted inputs (`load_records`):

- a local `.parquet`, `.jsonl` or `.json` file, or a directory holding `{split}.parquet` / `{split}.jsonl`;
- a hub dataset id (e.g. `sunhaonlp/ZeroSearch_dataset`), loaded with `datasets.load_dataset` on hosts that can
  reach the hub.

Every record is normalised to `QARecord(question, golden_answers, data_source, uid)`. The question comes from the
`question` column, else from the text after `Question:` in the Search-R1 `prompt`; the answers from
`golden_answers`, else from `reward_model.ground_truth.target`. `uid` is globally unique (data source, split and
index, de-duplicated), so GRPO groups from different sources never collide.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerosearch_core.errors import ZeroSearchError

__all__ = [
    "PAPER_TEMPLATE",
    "DataError",
    "QARecord",
    "build_prompt",
    "load_records",
    "paper_prompt",
    "records_to_dataset",
]

logger = logging.getLogger(__name__)

# Search-R1's "base" template, the one ZeroSearch's released policies use (REFERENCE.md section 1).
PAPER_TEMPLATE = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get "
    "new information. After reasoning, if you find you lack some knowledge, you can call a search engine by "
    "<search> query </search> and it will return the top searched results between <information> and "
    "</information>. You can search as many times as your want. If you find no further external knowledge needed, "
    "you can directly provide the answer inside <answer> and </answer>, without detailed illustrations. "
    "For example, <answer> Beijing </answer>. Question: {question}"
)
_QUESTION_MARKER = "Question:"
_LOCAL_SUFFIXES = (".parquet", ".jsonl", ".json")


class DataError(ZeroSearchError):
    """A dataset that cannot be used: missing file, unreadable format or a malformed record."""


@dataclass(frozen=True)
class QARecord:
    question: str
    golden_answers: tuple[str, ...]
    data_source: str
    uid: str


def paper_prompt(question: str) -> str:
    """The policy prompt: the question stripped, with `?` appended when missing."""
    question = question.strip()
    if question and not question.endswith("?"):
        question += "?"
    return PAPER_TEMPLATE.format(question=question)


def build_prompt(question: str, *, chat: bool = True) -> list[dict[str, str]] | str:
    """The policy prompt as one user message (instruct models, chat-templated in the rollout) or plain text."""
    text = paper_prompt(question)
    return [{"role": "user", "content": text}] if chat else text


# ---- loading -------------------------------------------------------------------------


def load_records(source: str, *, split: str = "train", max_samples: int | None = None) -> list[QARecord]:
    """Load and normalise QA records from a local file/directory or a hub dataset id."""
    rows, origin = _read_rows(source, split)
    records: list[QARecord] = []
    seen: dict[str, int] = {}
    for position, row in enumerate(rows):
        if max_samples is not None and len(records) >= max_samples:
            break
        record = _normalise(row, position=position, origin=origin, split=split)
        uid = record.uid
        if uid in seen:  # the same (source, split, index) twice: keep both, make the id unique
            seen[uid] += 1
            record = QARecord(record.question, record.golden_answers, record.data_source, f"{uid}#{seen[uid]}")
        else:
            seen[uid] = 0
        records.append(record)
    if not records:
        raise DataError(f"{origin}: no records (split {split!r}).")
    return records


def _read_rows(source: str, split: str) -> tuple[Iterable[Mapping[str, Any]], str]:
    path = Path(source).expanduser()
    if path.is_dir():
        for suffix in _LOCAL_SUFFIXES:
            candidate = path / f"{split}{suffix}"
            if candidate.is_file():
                return _read_file(candidate), str(candidate)
        raise DataError(f"{path}: no {split}.parquet, {split}.jsonl or {split}.json in this directory.")
    if path.suffix in _LOCAL_SUFFIXES:
        if not path.is_file():
            raise DataError(f"{path}: no such dataset file.")
        return _read_file(path), str(path)
    if source.startswith(("/", "./", "../", "~")) or path.suffix:
        raise DataError(f"{source}: no such dataset file or directory (expected .parquet, .jsonl or .json).")
    return _read_hub(source, split), f"{source}[{split}]"


def _read_file(path: Path) -> list[Mapping[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DataError(f"{path}: not a readable parquet file ({exc}).") from None
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON ({exc}).") from None
        if not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{path}: expected a JSON list of objects.")
        return rows
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{line_no}: invalid JSON ({exc.msg}).") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line_no}: each line must be a JSON object.")
        rows.append(row)
    return rows


def _read_hub(dataset_id: str, split: str) -> Iterable[Mapping[str, Any]]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - the trainer extra installs it
        raise DataError("loading a hub dataset needs the `datasets` package (pip install 'zerosearch[trainer]').") \
            from None
    try:
        return datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # hub errors come in many types; the message is what matters
        raise DataError(f"{dataset_id}: cannot load split {split!r} from the hub ({type(exc).__name__}: {exc}). "
                        "Pass a local .parquet/.jsonl file with --dataset_name.") from None


def _normalise(row: Mapping[str, Any], *, position: int, origin: str, split: str) -> QARecord:
    where = f"{origin}: record {position}"
    question = row.get("question")
    if question is None:
        question = _question_from_prompt(row.get("prompt"))
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: no question (expected a 'question' string or a Search-R1 'prompt').")
    answers = row.get("golden_answers")
    if answers is None:
        answers = _nested(row, "reward_model", "ground_truth", "target")
    answers = _as_answers(answers)
    if not answers:
        raise DataError(f"{where}: no golden answers (expected 'golden_answers' or "
                        "'reward_model.ground_truth.target' as a non-empty list of strings).")
    data_source = str(row.get("data_source") or Path(origin).stem or "data")
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), Mapping) else {}
    index = extra.get("index", row.get("id", position))
    record_split = extra.get("split", split)
    return QARecord(question.strip(), answers, data_source, f"{data_source}/{record_split}/{index}")


def _question_from_prompt(prompt: Any) -> str | None:
    if isinstance(prompt, str):
        content = prompt
    elif isinstance(prompt, Sequence) and prompt and isinstance(prompt[-1], Mapping):
        content = prompt[-1].get("content")
    else:
        return None
    if not isinstance(content, str):
        return None
    _, marker, after = content.rpartition(_QUESTION_MARKER)
    return after.strip() if marker else content.strip()


def _nested(row: Mapping[str, Any], *keys: str) -> Any:
    value: Any = row
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _as_answers(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if value is None or not hasattr(value, "__iter__"):  # parquet gives lists, the hub numpy arrays
        return ()
    return tuple(str(a).strip() for a in value if a is not None and str(a).strip())


# ---- to a datasets.Dataset for TRL ----------------------------------------------------------


def records_to_dataset(records: Sequence[QARecord], *, chat: bool = True):
    """A `datasets.Dataset` with `prompt` (messages or text), `question`, `golden_answers`, `data_source`, `uid`."""
    import datasets

    return datasets.Dataset.from_dict({
        "prompt": [build_prompt(r.question, chat=chat) for r in records],
        "question": [r.question for r in records],
        "golden_answers": [list(r.golden_answers) for r in records],
        "data_source": [r.data_source for r in records],
        "uid": [r.uid for r in records],
    })
