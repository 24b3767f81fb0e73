"""The peer's OpenVINO path, run inside its own environment (scripts/peer_openvino_env.sh).

sentence-transformers' ``backend="openvino"`` needs optimum-intel, which pins an older
transformers than ours, so bench/encode.py runs this script with that environment's python:
it times sentence-transformers torch fp32 (the reference, again in this process), its OpenVINO
fp32, and its static int8 (``export_static_quantized_openvino_model``, calibrated on the same
texts ours uses instead of the hub's glue/sst2, which this offline machine cannot fetch), and
writes each one's embeddings for the cosine check. One JSON line per implementation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--texts", type=Path, required=True, help="JSON list of texts to encode")
    p.add_argument("--calibration", type=Path, required=True, help="JSON list of calibration texts")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, required=True, help="folder for the .npy embeddings")
    args = p.parse_args()

    import datasets
    import sentence_transformers
    import torch
    from optimum.intel import OVQuantizationConfig, OVQuantizer
    from sentence_transformers import SentenceTransformer, export_static_quantized_openvino_model

    texts = json.loads(args.texts.read_text(encoding="utf8"))
    calibration = json.loads(args.calibration.read_text(encoding="utf8"))
    folder = Path(tempfile.mkdtemp(prefix="peer-ov-")) / "model"
    shutil.copytree(args.model, folder, ignore=shutil.ignore_patterns("onnx", "openvino"))

    def local_calibration(self, dataset_name, dataset_config_name=None, preprocess_function=None, num_samples=300,
                          dataset_split="train", **kwargs):  # the hub's glue/sst2, swapped for local texts
        ds = datasets.Dataset.from_dict({"sentence": calibration[:num_samples]})
        return ds.map(preprocess_function, batched=True, remove_columns=["sentence"])

    OVQuantizer.get_calibration_dataset = local_calibration
    models = {"st": SentenceTransformer(str(folder), device="cpu")}
    exported = SentenceTransformer(str(folder), device="cpu", backend="openvino")
    exported.save_pretrained(str(folder))  # keeps the exported IR beside the weights
    t0 = time.perf_counter()
    export_static_quantized_openvino_model(exported, OVQuantizationConfig(), str(folder))
    quantize_s = time.perf_counter() - t0
    # the quantizer swaps the int8 graph into the model it was given: load fp32 afresh
    models["st_openvino"] = SentenceTransformer(str(folder), device="cpu", backend="openvino",
                                                model_kwargs={"file_name": "openvino/openvino_model.xml"})
    models["st_openvino_int8"] = SentenceTransformer(
        str(folder), device="cpu", backend="openvino",
        model_kwargs={"file_name": "openvino/openvino_model_qint8_quantized.xml"})
    for m in models.values():
        m.encode(texts[:64], batch_size=args.batch_size)  # warm-up
    best = dict.fromkeys(models, 0.0)
    outs = {}
    for _ in range(args.repeats):
        for name, m in models.items():
            started = time.perf_counter()
            outs[name] = m.encode(texts, batch_size=args.batch_size)
            best[name] = max(best[name], len(texts) / (time.perf_counter() - started))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in models:
        np.save(args.out / f"{name}.npy", outs[name])
        print(json.dumps({"key": name, "sentences_per_s": round(best[name], 1),
                          "ratio_vs_st_in_process": round(best[name] / best["st"], 3),
                          "quantize_s": round(quantize_s, 1) if name.endswith("int8") else None,
                          "versions": {"sentence_transformers": sentence_transformers.__version__,
                                       "torch": torch.__version__}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
