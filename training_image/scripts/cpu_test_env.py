"""Make the pinned CPU test venv import LLaMA-Factory; run once after installing it.

torchaudio from PyPI is a CUDA build whose compiled libraries need CUDA's libraries, and
llamafactory imports torchaudio at module level (for audio datasets, which we never use).
torchaudio treats absent libraries as an optional extension (`_load_lib` returns False), so
removing them leaves its pure-Python part, enough for the import, working on the CPU.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

spec = importlib.util.find_spec("torchaudio")
if spec is None or spec.origin is None:
    sys.exit("torchaudio is not installed; install requirements-train.txt first")
for library in sorted((Path(spec.origin).parent / "lib").glob("*.so")):
    library.unlink()
    print(f"removed {library.name}: it needs CUDA libraries")

if importlib.util.find_spec("torchvision") is not None:
    sys.exit("torchvision is installed; its CUDA build breaks `import transformers`, uninstall it")

check = "import torchaudio, transformers; from llamafactory.train.tuner import run_exp"
subprocess.run([sys.executable, "-c", check], check=True)
print("llamafactory imports on the CPU")
