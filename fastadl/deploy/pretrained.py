"""A trained network as a model folder, in the layout the Hugging Face Hub serves:

    DIR/config.json         genotype, class names, palette, the training config that builds the
                            network (model preset, input norm, BN settings), the run's figures
    DIR/model.safetensors   the weights (the network's state_dict)
    DIR/README.md           the model card (model_card.py)
    DIR/plots/              the training run's plots, when it had any

``save_pretrained(run_dir_or_loaded, DIR)`` writes it (``python -m fastadl.export --format
pretrained`` too); ``from_pretrained(DIR)`` rebuilds the network, bitwise the same, without the
training run or its dataset; every command that takes ``--checkpoint`` takes such a folder.
Plain functions rather than huggingface_hub's PyTorchModelHubMixin: the mixin's config is a
module's constructor arguments, but what rebuilds this network is its training config, genotype
and class names. Publishing is ``hf upload USER/REPO DIR``; a downloaded snapshot is a folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from fastadl.deploy.inference import LoadedModel, model_from_checkpoint
from fastadl.deploy.model_card import card_text, run_summary, search_summary
from fastadl.runtime.rundir.checkpoint import CheckpointError, atomic_write, load_module_state
from fastadl.space.genotype import Genotype
from fastadl.train.config import TrainConfig
from fastadl.train.model import build_model

FOLDER_FORMAT = 1  # config.json's "fastadl_model_folder"; bump when its keys change
CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
PLOT_SUFFIXES = (".png", ".svg")


def is_model_folder(path: str | os.PathLike) -> bool:
    """A directory holding config.json and model.safetensors (a training run has no weights
    file at its top level, so the two never mix)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def folder_config(loaded: LoadedModel, results: dict | None = None) -> dict:
    """config.json's content for a loaded network (figures from its run directory if known,
    else ``results``)."""
    cfg = loaded.config
    training = run_summary(loaded.run_dir, cfg.batch_size)
    results = results or {
        "dataset": cfg.data,
        "val_miou": training.pop("val_miou", None),
        "val_pixel_acc": training.pop("val_pixel_acc", None),
        "training": training if loaded.run_dir is not None else "not recorded",
        "search": search_summary(cfg.genotype, loaded.genotype),
    }
    return {
        "fastadl_model_folder": FOLDER_FORMAT,
        "architecture": "AutoDeepLab",
        "model": cfg.model,
        "num_classes": len(loaded.class_names),
        "genotype": loaded.genotype.to_dict(),
        "class_names": list(loaded.class_names),
        "palette": [list(c) for c in loaded.palette],
        "step": loaded.step,
        "train_config": cfg.to_dict(),
        "results": results,
    }


def save_pretrained(source: LoadedModel | str | os.PathLike, directory: str | os.PathLike) -> Path:
    """Write the model folder of ``source`` (a LoadedModel, a training run directory, a
    checkpoint file or another model folder) into ``directory`` (created; our files in it are
    replaced). Returns the directory."""
    results, plots_from = None, None
    if isinstance(source, LoadedModel):
        loaded = source
    else:
        loaded = model_from_checkpoint(source, "cpu")
        if is_model_folder(source):  # a copy keeps the figures and plots its run gave
            results = read_config(Path(source)).get("results")
            plots_from = Path(source)
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out} is a file, not a folder for the model")
    out.mkdir(parents=True, exist_ok=True)
    config = folder_config(loaded, results)
    plots = copy_plots(plots_from or loaded.run_dir, out)
    state = {k: v.detach().cpu().contiguous() for k, v in loaded.model.state_dict().items()}
    write_weights(state, out / WEIGHTS)
    write_text(out / CONFIG, json.dumps(config, indent=2) + "\n")
    write_text(out / CARD, card_text(config, plots, out.name))
    return out


def write_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save

    data = save(state, metadata={"format": "pt"})
    atomic_write(path, lambda f: f.write(data))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def copy_plots(run_dir: Path | None, out: Path) -> list[str]:
    """The run's plots/*.png and *.svg into out/plots/; their paths relative to ``out``."""
    if run_dir is None or not (run_dir / "plots").is_dir():
        return []
    names = []
    for p in sorted((run_dir / "plots").iterdir()):
        if p.suffix in PLOT_SUFFIXES and p.is_file():
            (out / "plots").mkdir(exist_ok=True)
            if not (out / "plots" / p.name).exists() or not p.samefile(out / "plots" / p.name):
                shutil.copyfile(p, out / "plots" / p.name)
            names.append(f"plots/{p.name}")
    return names


def read_config(folder: Path) -> dict:
    path = folder / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not readable as JSON ({e})") from None
    version = config.get("fastadl_model_folder") if isinstance(config, dict) else None
    if not isinstance(version, int):
        raise CheckpointError(f"{path} is not a fastadl model folder's config")
    if version > FOLDER_FORMAT:
        raise CheckpointError(
            f"{path}: model folder format {config['fastadl_model_folder']} is newer than this "
            f"fastadl reads ({FOLDER_FORMAT}); upgrade fastadl"
        )
    missing = [k for k in ("genotype", "class_names", "train_config") if k not in config]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    return config


def from_pretrained(
    directory: str | os.PathLike, device: str | torch.device = "cpu"
) -> LoadedModel:
    """The network of a model folder, in eval mode on ``device``, with its config, genotype,
    class names and palette (run_dir None). Raises CheckpointError / GenotypeError /
    ConfigError naming the file."""
    folder = Path(directory)
    if not is_model_folder(folder):
        raise CheckpointError(
            f"{folder} is not a model folder (it needs {CONFIG} and {WEIGHTS}; write one with "
            "python -m fastadl.export --format pretrained)"
        )
    config = read_config(folder)
    cfg = TrainConfig.from_dict(config["train_config"], source=f"{folder / CONFIG} (train_config)")
    genotype = Genotype.from_dict(config["genotype"], source=f"{folder / CONFIG} (genotype)")
    names = [str(n) for n in config["class_names"]]
    model = build_model(cfg, genotype, len(names))
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(folder / WEIGHTS)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{folder / WEIGHTS}: not a readable safetensors file ({e})"
        ) from None
    try:
        load_module_state(model, state, "model")
    except CheckpointError as e:
        raise CheckpointError(f"{folder / WEIGHTS}: {e}") from None
    model.to(device).eval()
    palette = [tuple(int(v) for v in c) for c in config.get("palette", [])]
    return LoadedModel(model, cfg, genotype, names, palette, None, int(config.get("step", 0)))
