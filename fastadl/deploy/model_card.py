"""The README.md model card of a model folder (pretrained.py), and the figures it reports.

The card has the Hugging Face Hub's YAML header (library, task, tags, dataset, metric), then the
genotype (the cell as text: each block's two edges with their ops, the concatenated output; the
path as levels and downsample rates, and as a small trellis), the dataset, validation mIoU,
the search and training cost, and how to load the folder. The run's plots (RUN/plots/*.png,
*.svg) are copied into the folder's plots/ and shown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastadl.runtime.rundir.metrics_log import read
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype

PAPER_SEARCH_COST = "3 P100 GPU-days (the paper's search, as the paper reports it)"
HUB_DATASETS = {"cityscapes": "cityscapes", "voc": "pascal_voc", "ade20k": "ade20k"}


def input_name(index: int) -> str:
    return {0: "H^{l-2}", 1: "H^{l-1}"}.get(index, f"block {index - 2}")


def cell_text(genotype: Genotype) -> list[str]:
    """One line per block, ``block i = op(input) + op(input)``, then the output."""
    lines = [
        f"block {b} = {a[0]}({input_name(a[1])}) + {c[0]}({input_name(c[1])})"
        for b, (a, c) in enumerate(genotype.blocks())
    ]
    blocks = ", ".join(str(b) for b in range(genotype.block_multiplier))
    return [*lines, f"output = concat(blocks {blocks})  # B·C channels"]


def path_text(genotype: Genotype) -> list[str]:
    """The path as a trellis: one row per level (/32 at the top), ● where the path is."""
    top = max(3, *genotype.path)
    rows = []
    for level in range(top, -1, -1):
        marks = " ".join("●" if lvl == level else "·" for lvl in genotype.path)
        rows.append(f"/{4 * 2**level:<3d} {marks}")
    rows.append(f"{'layer':>4} " + " ".join(str((i + 1) % 10) for i in range(len(genotype.path))))
    return rows


def estimated_seconds(records: list[dict], kind: str, batch: int) -> float | None:
    """Compute time from the logged throughput: Σ over epochs of steps · batch / images/s.

    images_per_s is the running average since the epoch (or resume) began; validation and
    checkpoints are not counted; batch is per process, so a torchrun run's wall clock is this
    times the process count. None when the log holds no step records.
    """
    last_rate: dict[int, float] = {}
    steps: dict[int, int] = {}
    for r in records:
        if r.get("kind") == kind and r.get("images_per_s"):
            steps[r["epoch"]] = steps.get(r["epoch"], 0) + 1
            last_rate[r["epoch"]] = r["images_per_s"]
    if not steps:
        return None
    return sum(steps[e] * batch / last_rate[e] for e in steps)


def run_summary(run_dir: Path | None, batch: int, kind: str = "train") -> dict[str, Any]:
    """Steps, epochs, last validation and estimated compute time of a run's metrics.jsonl."""
    records = read(run_dir / "metrics.jsonl") if run_dir is not None else []
    epochs = [r for r in records if r.get("kind") == "epoch"]
    out: dict[str, Any] = {"steps": None, "epochs": None, "seconds_estimate": None}
    if epochs:
        last = epochs[-1]
        out.update(steps=last.get("step"), epochs=last.get("epoch"))
        for key in ("val_miou", "val_pixel_acc"):
            if key in last:
                out[key] = last[key]
    out["seconds_estimate"] = estimated_seconds(records, kind, batch)
    return out


def search_summary(genotype_spec: str, genotype: Genotype) -> dict[str, Any] | str:
    """The search behind the genotype: its run's summary when its directory is at hand."""
    if genotype_spec == "paper" or genotype_spec.startswith("paper:"):
        return PAPER_SEARCH_COST if genotype.cell == PAPER_GENOTYPE.cell else "not recorded"
    run = Path(genotype_spec)
    run = run if run.is_dir() else run.parent
    config = run / "config.json"
    if not (run / "metrics.jsonl").is_file() or not config.is_file():
        return "not recorded (the search's run directory was not at hand)"
    try:
        batch = int(json.loads(config.read_text()).get("batch_size", 0))
    except (ValueError, OSError, AttributeError):
        batch = 0
    return {"run": str(run), **run_summary(run, batch, kind="step")} if batch else "not recorded"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    if seconds < 120:
        return f"≈ {seconds:.0f} s"
    return f"≈ {seconds / 60:.0f} min" if seconds < 7200 else f"≈ {seconds / 3600:.1f} h"


def cost_lines(name: str, summary: dict[str, Any] | str) -> list[str]:
    if isinstance(summary, str):
        return [f"- {name}: {summary}"]
    return [
        f"- {name}: {summary.get('steps')} steps, {summary.get('epochs')} epochs, compute "
        f"{duration(summary.get('seconds_estimate'))} (from metrics.jsonl's images/s: one "
        "process, validation and checkpoints not counted)"
    ]


def figure(value: Any) -> str:
    return "not recorded" if value is None else f"{value:.4f}"


def card_text(config: dict[str, Any], plots: list[str], folder_name: str) -> str:
    """The README.md of a model folder from its config.json dict."""
    genotype = Genotype.from_dict(config["genotype"], source="config.json (genotype)")
    train = config["train_config"]
    results = config["results"]
    data = train.get("data", "?")
    header = [
        "---",
        "library_name: fastadl",
        "pipeline_tag: image-segmentation",
        "tags: [auto-deeplab, neural-architecture-search, semantic-segmentation]",
        *([f"datasets: [{HUB_DATASETS[data]}]"] if data in HUB_DATASETS else []),
        "metrics: [mean_iou]",
        "---",
    ]
    body = [
        f"# Auto-DeepLab {config['model']} ({data}, {config['num_classes']} classes)",
        "",
        "An Auto-DeepLab network (cell and network-level path found by architecture search, "
        "then retrained from scratch) trained with fastadl.",
        "",
        "## Figures",
        "",
        f"- dataset: {data}, {config['num_classes']} classes; crop {train.get('crop_size')}, "
        f"batch {train.get('batch_size')}",
        f"- validation mIoU: {figure(results.get('val_miou'))} "
        f"(pixel accuracy {figure(results.get('val_pixel_acc'))}), single scale, at step "
        f"{config['step']}",
        *cost_lines("search cost", results.get("search", "not recorded")),
        *cost_lines("training cost", results.get("training", "not recorded")),
        "",
        "## Genotype",
        "",
        "Cell (inputs H^{l-2} and H^{l-1}, the outputs of the two previous cells):",
        "",
        "```",
        *cell_text(genotype),
        "```",
        "",
        "Network path (downsample rate per layer):",
        "",
        "```",
        *path_text(genotype),
        "```",
        "",
        "As JSON (`genotype` in config.json):",
        "",
        "```json",
        json.dumps(genotype.to_dict()),
        "```",
        "",
        *(["## Plots", "", *[f"![{p}]({p})" for p in plots], ""] if plots else []),
        "## Load it",
        "",
        "```python",
        "from fastadl.deploy.pretrained import from_pretrained",
        "",
        f'loaded = from_pretrained("{folder_name}")  # a local folder (e.g. a Hub snapshot)',
        "logits = loaded.model(images)  # ImageNet-normalised (N, 3, H, W) -> (N, K, H, W)",
        "```",
        "",
        "or on the command line:",
        "",
        "```",
        f"python -m fastadl.evaluate --checkpoint {folder_name} --data-root DATA",
        f"python -m fastadl.predict image.png --checkpoint {folder_name} --out pred/",
        f"python -m fastadl.export --checkpoint {folder_name} --size 1024x2048 --out model.pt2",
        "```",
        "",
        "Files: `config.json` (genotype, class names, palette, the training config that builds "
        "the network), `model.safetensors` (weights), this card.",
        "",
    ]
    return "\n".join(header + [""] + body)
