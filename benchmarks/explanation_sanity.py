"""Are the explanations about the model? The pointing game and model randomisation (Adebayo et al. 2018) on the
synthetic lesion scans, whose lesion masks are known exactly.

Among the test images with a lesion that the quickstart model detects, the share whose map peaks inside the lesion,
for the trained network and for the same network with every weight re-initialised, and the Spearman rank correlation
between the two maps (mean over images). A faithful method points at the lesion when trained and stops doing so, and
changes its map, when the weights are random. Also the last convolution's Grad-CAM placed by MONAI's bilinear
upsampler and by the layer's receptive field (``research.explain.receptive_field``).

    python -m benchmarks.explanation_sanity [--run runs/quickstart/<id>] [--split test|val]

Without ``--run`` it trains the quickstart experiment first (about 20 s).
"""

import argparse
import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.visualize import GradCAM
from scipy.stats import spearmanr

from benchmarks.common import print_rows, write_results
from research.cli import cli
from research.explain import Explainer
from research.tracking import finish_wandb

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def randomised(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A copy of ``net`` with every layer's weights re-initialised (Adebayo et al.'s full model randomisation)."""
    torch.manual_seed(seed)
    copied = copy.deepcopy(net)
    for module in copied.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return copied.eval()


def pointing(maps: np.ndarray, masks: np.ndarray) -> float:
    """The share of maps whose maximum lies inside the mask."""
    peaks = maps.reshape(len(maps), -1).argmax(axis=1)
    return float(np.mean(masks.reshape(len(masks), -1)[np.arange(len(masks)), peaks]))


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Mean Spearman correlation of paired maps; a constant map (all zero: nothing supports the class) correlates 0
    with anything, and is counted apart."""
    values = [spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(first, second, strict=True)]
    return float(np.mean(np.nan_to_num(values, nan=0.0)))


def sanity(net: torch.nn.Module, images: torch.Tensor, masks: np.ndarray, target: int, **method: Any) -> dict:
    """Pointing game of the trained and the randomised ``net`` and their maps' rank correlation, explaining class
    ``target`` on ``images`` (those the trained net predicts as ``target``)."""
    trained = Explainer(net, **method)(images, class_index=target)[2].numpy()
    random = Explainer(randomised(net), **method)(images, class_index=target)[2].numpy()
    return {"pointing": pointing(trained, masks), "pointing_randomised": pointing(random, masks),
            "spearman": rank_correlation(trained, random),
            "constant_randomised_maps": int((random.reshape(len(random), -1).std(axis=1) == 0).sum())}  # fmt: skip


def detected_lesions(medlab: Any, split: str) -> tuple[torch.nn.Module, torch.Tensor, np.ndarray]:
    """The run's network and the ``split`` images with a lesion it detects, with their lesion masks."""
    model, data = medlab.model, medlab.datamodule
    model.load_state_dict(medlab.checkpoint["state_dict"])
    net = model.net.eval()
    data.setup("fit" if split == "val" else "test")
    dataset = data.datasets[split]
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = data.arrays[split][1]
    with torch.no_grad():
        detected = net(images).argmax(dim=1).numpy() == 1
    chosen = np.flatnonzero(detected & (labels == 1))
    return net, images[chosen], data.lesion_masks(split)[chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a quickstart run folder (default: train one)")
    parser.add_argument("--split", default="test", choices=["test", "val"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run
        if run is None:
            config = str(EXPERIMENTS / "quickstart.yaml")
            run = cli(["run", "--config", config, f"--experiment.runs_dir={scratch}"]).run_dir
            finish_wandb()
        checkpoint = next((run / "checkpoints").glob("best-*.ckpt"))
        medlab = cli(["explain", "--config", str(run / "config.yaml"), f"--ckpt_path={checkpoint}"])
        net, images, masks = detected_lesions(medlab, args.split)
    methods = {
        "Grad-CAM (default layer)": {"method": "gradcam"},
        "Grad-CAM++ (default layer)": {"method": "gradcampp"},
        "occlusion sensitivity": {"method": "occlusion"},
        "Grad-CAM, last convolution": {"method": "gradcam", "layer": "features.4"},
    }
    results = [{"method": name, **sanity(net, images, masks, 1, **options)} for name, options in methods.items()]
    stock = GradCAM(net, target_layers="features.4", postprocessing=lambda maps: maps)(images, class_idx=1)
    results.append({"method": "Grad-CAM, last convolution, MONAI's upsampler",
                    "pointing": pointing(stock[:, 0].detach().numpy(), masks)})  # fmt: skip
    rows = [[r["method"], f"{r['pointing']:.3f}", f"{r.get('pointing_randomised', float('nan')):.3f}",
             f"{r.get('spearman', float('nan')):.3f}", str(r.get("constant_randomised_maps", ""))]
            for r in results]  # fmt: skip
    print_rows(f"Explanation sanity: {len(images)} detected lesions of the {args.split} split ({run})",
               ["method", "peak in lesion", "randomised weights", "Spearman trained/randomised",
                "constant randomised maps"], rows)  # fmt: skip
    write_results("explanation_sanity", [{**r, "images": len(images), "split": args.split} for r in results])


if __name__ == "__main__":
    main()
