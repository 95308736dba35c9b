"""One fine-tuning job from a JSON spec, for `torchrun --nproc_per_node N -m vrm.finetune_job SPEC`.

The DAG's finetune rule starts this module when `finetune.processes` is above 1; each
process logs to stderr and, when the spec names one, to the job's log file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
import sys

from vrm.errors import UserError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    rank = os.environ.get("RANK", "0")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if spec.get("log_path"):
        handlers.append(logging.FileHandler(spec["log_path"], mode="a"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format=f"%(asctime)s process {rank} %(name)s %(levelname)s: %(message)s")
    from vrm.pipeline import run_finetune_job

    try:
        run_finetune_job(spec)
    except UserError as error:
        logging.getLogger("vrm.finetune_job").error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
