"""Score (prompt, response) rows with an exported reward model: the `vrm score` command."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from vrm.data.readers import read_jsonl, require_str
from vrm.io import atomic_write

log = logging.getLogger(__name__)


def score_file(model_dir: str | Path, input_path: str | Path, output_path: str | Path, batch_size: int = 32,
               device: str = "cpu") -> int:
    """Read JSONL rows with `prompt` and `response`, write them back with a `reward` field.

    Every other field of a row is kept, and rows keep their order. The output is written
    to a temporary file and renamed, so a failed run leaves no partial output. Returns the
    number of rows scored.
    """
    from vrm.finetune import load_reward_model

    records = read_jsonl(input_path)
    prompts = [require_str(record, "prompt") for record in records]
    responses = [require_str(record, "response") for record in records]
    model = load_reward_model(model_dir, device=device)
    cut = sum(model.tokens.pair(p, r).truncated for p, r in zip(prompts, responses))
    rewards = model.rewards(prompts, responses, batch_size=batch_size)
    lines = [json.dumps({**record.data, "reward": float(reward)}, ensure_ascii=False)
             for record, reward in zip(records, rewards)]
    atomic_write(output_path, lambda path: Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8"))
    log.info("scored %d rows of %s into %s; %d longer than %d tokens were cut from the left",
             len(records), input_path, output_path, cut, model.tokens.max_length)
    return len(records)
