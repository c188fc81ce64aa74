"""Fail when a pip resolution report would install onnxruntime-gpu (or any GPU ONNX Runtime).

``pip install --dry-run --ignore-installed --report FILE '.[modelopt]'`` writes the report; the
CPU ``onnxruntime`` and a GPU build overwrite each other's files in one environment.
Usage: python tools/ci/check_no_ort_gpu.py FILE  (exit 0: clean, 1: a GPU build would install)
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> int:
    with open(path, encoding="utf-8") as fh:
        report = json.load(fh)
    names = sorted(
        str(item["metadata"]["name"]).lower().replace("_", "-") for item in report["install"]
    )
    bad = [n for n in names if n.startswith("onnxruntime-") and n != "onnxruntime"]
    if bad:
        print(f"this resolution would install {', '.join(bad)} beside onnxruntime", flush=True)
        return 1
    ort = [n for n in names if n == "onnxruntime"]
    print(f"modelopt extra resolves to {len(names)} packages; ONNX Runtime: {ort or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
