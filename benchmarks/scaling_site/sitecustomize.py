"""Bench-only: `benchmarks/scaling.py` puts this folder first on the training processes' PYTHONPATH.

Each training worker (`python -m llmft_train.worker train ...`, one per rank) writes its peak memory to
$LLMFT_SCALING_MEM_DIR/rank<RANK>.json when it exits: the CUDA caching allocator's peaks on its device
(`torch.cuda.max_memory_reserved` / `max_memory_allocated`, the figures bench_lora.py reports) and the
process's peak resident set. Nothing else changes; the next `sitecustomize` on the path, if any, still runs.
"""

import atexit
import importlib.machinery
import importlib.util
import json
import os
import sys

_OUT = os.environ.get("LLMFT_SCALING_MEM_DIR")
_PID = os.getpid()


def _is_training_worker() -> bool:
    # Forked data-loader workers inherit the handler; only the rank itself reports.
    worker = os.path.join("llmft_train", "worker.py")
    return os.getpid() == _PID and sys.argv[0].endswith(worker) and sys.argv[1:2] == ["train"]


def _record() -> None:
    if not _is_training_worker():
        return
    import resource

    record = {
        "rank": int(os.environ.get("RANK", "0")),
        "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
        "node_rank": int(os.environ.get("GROUP_RANK", "0")),
        "max_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        record.update(
            cuda_device=torch.cuda.current_device(),
            peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2),
            peak_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
        )
    os.makedirs(_OUT, exist_ok=True)
    with open(os.path.join(_OUT, f"rank{record['rank']}.json"), "w") as fh:
        json.dump(record, fh)


if _OUT:
    atexit.register(_record)

# Chain to the sitecustomize this one shadows (a distribution's, say).
_here = os.path.dirname(os.path.abspath(__file__))
_rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _rest)
if _spec is not None and _spec.loader is not None:
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
