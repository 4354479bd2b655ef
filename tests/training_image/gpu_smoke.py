"""GPU smoke run of the `train` entrypoint; not collected by pytest (CI has no GPU).

Run by `gpu_smoke.sh` on a machine with one or two GPUs and LLaMA-Factory's pins importable:
tiny random Llama, LoRA on one GPU (bf16, adapter merge), LoRA with DeepSpeed ZeRO-3 and with
FSDP on two, a ZeRO-3 restart that resumes, full SFT with ZeRO-3, and QLoRA when bitsandbytes
imports. Writes summary.json and logs.txt to the folder given.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from jobtree import alpaca_rows, build_tiny_model, write_job

FAST = {
    "template": "default",
    "logging_steps": "1",
    "per_device_train_batch_size": "2",
    "gradient_accumulation_steps": "1",
    "cutoff_len": "64",
    "packing": "false",
    "neat_packing": "false",
}
LOCAL = {"current_host": "localhost", "hosts": ["localhost"], "network_interface_name": "lo"}


def run_case(name, root, hyperparameters, gpus, model, work, logs, restart_steps=None):
    if restart_steps is None:
        write_job(root, {**FAST, **hyperparameters}, alpaca_rows(40), model, LOCAL)
    else:
        path = root / "input" / "config" / "hyperparameters.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "max_steps": str(restart_steps)}))
    env = {
        **os.environ,
        "LLMFT_OPT_ML": str(root),
        "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(gpus)),
        "HF_HOME": str(work / "hf"),
    }
    started = time.monotonic()
    result = subprocess.run(
        [shutil.which("train")], env=env, capture_output=True, text=True, timeout=480, check=False
    )
    output = result.stdout + result.stderr
    failure = root / "output" / "failure"
    metrics_path = root / "model" / "metrics.json"
    summary = {
        "case": name,
        "returncode": result.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "failure": failure.read_text().strip() if failure.exists() else None,
        "launch": next((line for line in output.splitlines() if line.startswith("llmft training:")), None),
        "progress": [line for line in result.stdout.splitlines() if line.startswith("llmft ")],
        "metrics": json.loads(metrics_path.read_text()) if metrics_path.exists() else None,
        "model_files": sorted(p.name for p in (root / "model").iterdir()) if metrics_path.exists() else [],
    }
    logs.write(f"===== {name} rc={result.returncode}\n" + "\n".join(output.splitlines()[-120:]) + "\n")
    print(json.dumps({k: summary[k] for k in ("case", "returncode", "seconds", "failure")}), flush=True)
    return summary


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/llmft-smoke")
    shutil.rmtree(work, ignore_errors=True)
    model = build_tiny_model(work / "model")
    import torch

    gpus = torch.cuda.device_count()
    cases = [("one_gpu_lora_bf16_merge", {"max_steps": "4", "save_steps": "2", "merge_adapter": "true"}, 1)]
    if gpus >= 2:
        cases += [
            ("two_gpu_lora_zero3", {"max_steps": "4", "save_steps": "2"}, 2),
            ("two_gpu_lora_fsdp", {"max_steps": "4", "save_steps": "2", "distributed": "fsdp"}, 2),
            ("two_gpu_full_sft_zero3", {"recipe": "full_sft", "max_steps": "2", "save_steps": "2"}, 2),
        ]
    try:
        import bitsandbytes  # noqa: F401

        cases.append(("one_gpu_qlora_4bit", {"recipe": "qlora_4bit", "max_steps": "4", "save_steps": "4"}, 1))
    except Exception as error:  # noqa: BLE001
        print(f"QLoRA skipped: bitsandbytes does not import ({error})", flush=True)
    summaries = []
    with (out / "logs.txt").open("w") as logs:
        for name, hyperparameters, count in cases:
            summaries.append(run_case(name, work / name, hyperparameters, count, model, work, logs))
        if gpus >= 2:
            root = work / "two_gpu_lora_zero3"
            summaries.append(
                run_case("two_gpu_zero3_resume", root, {}, 2, model, work, logs, restart_steps=6)
            )
    (out / "summary.json").write_text(json.dumps(summaries, indent=2))
    return 0 if all(s["returncode"] == 0 for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
