"""One training process: `python -m llmft_train.worker train|export <config.yaml>`.

Started by the launcher directly (one device) or by torchrun (one per GPU).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from llmft_train.failure import failure_line, write_failure
from llmft_train.paths import JobPaths

MODES = ("train", "export")


def run(mode: str, config: dict) -> None:
    if mode == "train":
        import torch
        from llamafactory.train.tuner import run_exp

        from llmft_train import speedups
        from llmft_train.callbacks import ProgressCallback
        from llmft_train.log_privacy import withhold_dataset_text

        withhold_dataset_text()

        names = speedups.planned_speedups(
            config, has_cuda=torch.cuda.is_available(), world_size=int(os.environ.get("WORLD_SIZE", "1"))
        )
        speedups.prepare(names)
        if names:
            print(f"llmft speedups: {', '.join(names)}", flush=True)
        run_exp(args=config, callbacks=[ProgressCallback(), speedups.speedup_callback(names)])
    else:
        from llamafactory.train.tuner import export_model

        export_model(args=config)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in MODES:
        print(f"usage: python -m llmft_train.worker {{{'|'.join(MODES)}}} CONFIG", file=sys.stderr)
        return 2
    mode, config_path = args
    try:
        run(mode, yaml.safe_load(Path(config_path).read_text()))
    except Exception as error:
        # Every rank may fail; the first line written is the cause, later ones are echoes.
        line = failure_line(error, [os.environ.get("HF_TOKEN")])
        write_failure(JobPaths.from_env(os.environ).failure_file, line, keep_existing=True)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
