"""Explanations of a classifier's decisions with ``monai.visualize``: Grad-CAM, Grad-CAM++ and occlusion sensitivity,
for 2D images, 3D volumes and 1D signals (ECG), each map oriented so that high means "supports the predicted class".

``medlab explain --config <run>/config.yaml --ckpt_path <ckpt> [--method gradcam|gradcampp|occlusion] [--layer NAME]``
writes ``<run>/explanations/<method>/``: ``explanations.csv`` (each item's prediction and where its map peaks),
``maps.npz`` (one map per item, in the input's pixels), ``overlays/`` (a picture per item) and ``panel.png`` (the
first items side by side, also logged to the run's W&B run).

Two things MONAI leaves to the caller, done here: its ``default_normalizer`` maps (min, max) to (1, 0), inverting the
map, so maps are scaled to [0, 1] with the maximum at 1 instead; and its bilinear upsampler assumes a layer whose
cells tile the input evenly ("same" padding). A layer after unpadded convolutions (LeNet's) covers only the middle of
the input, so its map is placed by the layer's receptive field (``receptive_field``): on the quickstart model that
moves the pointing game of the last convolution's map from 19 % to 78 % (``benchmarks/explanation_sanity.py``).
"""

import csv
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from monai.networks.nets import DenseNet, ResNet
from monai.visualize import GradCAM, GradCAMpp, OcclusionSensitivity
from PIL import Image
from torch import Tensor, nn

from research.models import LeNet
from research.runs import RunError, atomic_file, run_folder_of

Method = Literal["gradcam", "gradcampp", "occlusion"]
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)

# The Grad-CAM layer of each network family: the deepest one whose map still resolves small findings. LeNet's:
# chosen on the quickstart validation split by the pointing game (first block 96 %, last convolution 74 %).
DEFAULT_LAYERS: tuple[tuple[type, str], ...] = (
    (LeNet, "features.2"),  # after the first conv-ReLU-pool block: 14 x 14 cells over 32 px
    (ResNet, "layer4"),
    (DenseNet, "class_layers.relu"),
)


def default_layer(net: nn.Module) -> str:
    """The family's layer (``DEFAULT_LAYERS``), else the last convolution."""
    for family, layer in DEFAULT_LAYERS:
        if isinstance(net, family):
            return layer
    convolutions = [name for name, module in net.named_modules() if isinstance(module, CONVOLUTIONS)]
    if not convolutions:
        raise RunError(f"{type(net).__name__} has no convolution for Grad-CAM: use --method occlusion")
    return convolutions[-1]


def receptive_field(net: nn.Module, layer: str) -> tuple[float, float] | None:
    """``(offset, stride)``: the input position of the centre of the layer's cell m is ``offset + stride * m``, for a
    layer inside the chain of modules the network starts with (an ``nn.Sequential`` first child, as LeNet's
    ``features``); None elsewhere (MONAI's upsampler is then right for "same"-padded networks)."""
    parent_name, _, child = layer.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    first = next(iter(net.children()), None)
    if not isinstance(parent, nn.Sequential) or parent is not (net if isinstance(net, nn.Sequential) else first):
        return None
    offset, stride = 0.0, 1.0
    for name, module in parent.named_children():
        for part in module.modules():  # the module itself, then what it holds, in order
            if isinstance(part, (*CONVOLUTIONS, *POOLS)):
                kernel, step, pad = (first_of(getattr(part, key)) for key in ("kernel_size", "stride", "padding"))
                dilation = first_of(getattr(part, "dilation", 1))
                if isinstance(pad, str):  # "same" / "valid"
                    pad = (kernel - 1) * dilation // 2 if pad == "same" else 0
                offset, stride = offset + stride * ((kernel - 1) * dilation / 2 - pad), stride * step
        if name == child:
            return offset, stride
    return None


def first_of(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) else value


def place_by_receptive_field(offset: float, stride: float) -> Any:
    """An upsampler for ``monai.visualize``: each input pixel takes the map's value at its position in cells (linear
    between cell centres, the edge cell beyond them), along every spatial axis."""

    def upsampler(spatial_size: tuple[int, ...]) -> Any:
        def place(maps: Tensor) -> Tensor:
            for axis, size in enumerate(spatial_size, start=2):
                cells = maps.shape[axis]
                position = ((torch.arange(size, device=maps.device) - offset) / stride).clamp(0, cells - 1)
                low = position.floor().long()
                high = (low + 1).clamp(max=cells - 1)
                weight = (position - low).reshape([-1 if i == axis else 1 for i in range(maps.ndim)])
                maps = maps.index_select(axis, low) * (1 - weight) + maps.index_select(axis, high) * weight
            return maps

        return place

    return upsampler


def scale_to_unit(maps: Tensor) -> Tensor:
    """Each map to [0, 1] by its maximum (all zero stays zero): high = supports the class, as the method computed
    it (MONAI's default normaliser would invert it)."""
    flat = maps.flatten(1)
    top = flat.max(dim=1).values.clamp(min=1e-12)
    return (flat.clamp(min=0) / top[:, None]).reshape(maps.shape)


class Explainer:
    """A network's prediction and an explanation map of the predicted class for each input.

    Args:
        net: the classification network (logits out).
        method: ``gradcam``, ``gradcampp`` (Grad-CAM++) or ``occlusion`` (occlusion sensitivity).
        layer: Grad-CAM's target layer by module name; default per network family (``default_layer``).
        mask_size: occlusion window in pixels or samples; default a sixth of the smallest side (at least 3).
        multilabel: sigmoid per label instead of a softmax over classes.
    """

    def __init__(
        self, net: nn.Module, method: Method = "gradcam", layer: str | None = None, mask_size: int | None = None,
        multilabel: bool = False,
    ) -> None:  # fmt: skip
        self.net, self.method, self.mask_size, self.multilabel = net.eval(), method, mask_size, multilabel
        self.layer, self.layer_checked = None, False
        if method != "occlusion":
            names = dict(net.named_modules())
            self.layer = layer or default_layer(net)
            if self.layer not in names:
                layers = [n for n, m in names.items() if isinstance(m, (*CONVOLUTIONS, *POOLS, nn.ReLU))]
                raise RunError(f"--layer {self.layer}: no such layer in {type(net).__name__}; its convolution, "
                               f"ReLU and pooling layers are {', '.join(layers[-12:])}")  # fmt: skip
            geometry = receptive_field(net, self.layer)
            options = {"upsampler": place_by_receptive_field(*geometry)} if geometry else {}
            cam = GradCAM if method == "gradcam" else GradCAMpp
            self.cam = cam(net, target_layers=self.layer, postprocessing=lambda maps: maps, **options)

    def probabilities(self, logits: Tensor) -> Tensor:
        return logits.sigmoid() if self.multilabel else logits.softmax(dim=1)

    def __call__(self, x: Tensor, class_index: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(probabilities (B, K), explained class (B,), maps (B, *spatial) in [0, 1])`` for a batch of inputs of
        one size; the class is the predicted one unless ``class_index`` names another."""
        with torch.no_grad():
            probabilities = self.probabilities(self.net(x))
        classes = probabilities.argmax(dim=1) if class_index is None else torch.full((len(x),), class_index)
        maps = torch.empty(len(x), *x.shape[2:])
        for index in classes.unique().tolist():
            chosen = (classes == index).nonzero().flatten()
            maps[chosen] = self.maps(x[chosen], index, probabilities[chosen, index])
        return probabilities, classes, scale_to_unit(maps)

    def maps(self, x: Tensor, index: int, probability: Tensor) -> Tensor:
        if self.method == "gradcam":
            self.check_layer(x)
            return self.cam(x, class_idx=index)[:, 0].detach()
        if self.method == "gradcampp":  # MONAI's Grad-CAM++ broadcasts the class score right only for one input
            self.check_layer(x)
            return torch.cat([self.cam(x[i : i + 1], class_idx=index) for i in range(len(x))])[:, 0].detach()
        # Occlusion: MONAI returns the class probability with each region hidden; the drop from the unoccluded
        # probability is the support (positive: hiding the region lowers the class).
        size = self.mask_size or max(3, round(min(x.shape[2:]) / 6))
        occlusion = OcclusionSensitivity(self.net, mask_size=size, n_batch=128, verbose=False, mode="gaussian",
                                         activate=self.probabilities)  # fmt: skip
        maps = [probability[i] - occlusion(x[i : i + 1])[0][0, index] for i in range(len(x))]
        return torch.stack(maps).detach()

    def check_layer(self, x: Tensor) -> None:
        """Refuse a layer whose output is not one map per input with the input's axes (a 2.5D network's slices);
        checked on the first input only, the layer's kind of output does not change."""
        if self.layer_checked:
            return
        seen: list[Tensor] = []
        hook = self.net.get_submodule(self.layer).register_forward_hook(lambda m, i, output: seen.append(output))
        with torch.no_grad():
            self.net(x[:1])
        hook.remove()
        shape = tuple(seen[0].shape) if seen and isinstance(seen[0], Tensor) else None
        self.layer_checked = shape is not None and shape[0] == 1 and len(shape) == x.ndim
        if not self.layer_checked:
            raise RunError(f"--layer {self.layer}: its output {shape} is not one map per input of shape "
                           f"{tuple(x.shape[1:])} ({type(self.net).__name__} reads inputs in parts, or the layer is "
                           "not spatial): use --method occlusion or another layer")  # fmt: skip


def groups(batch: Any, sequences: bool) -> Iterator[tuple[Tensor, Tensor | None]]:
    """What the network reads at once, with the targets: a batch of images, or the sequences of one length."""
    if not sequences:
        images, targets = (batch[0], batch[1]) if isinstance(batch, (list, tuple)) else (batch, None)
        yield images.float(), targets
        return
    signals, lengths, targets = batch
    for length in lengths.unique().tolist():
        chosen = (lengths == length).nonzero().flatten()
        yield signals[chosen, :, :length], targets[chosen]


def colour(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as RGB uint8 (matplotlib's ``inferno``)."""
    from matplotlib import colormaps

    return (colormaps["inferno"](values)[..., :3] * 255).astype(np.uint8)


def grey(image: np.ndarray) -> np.ndarray:
    """The channels' mean, scaled to [0, 1]."""
    image = image.mean(axis=0)
    low, high = image.min(), image.max()
    return (image - low) / (high - low + 1e-8)


def overlay(image: np.ndarray, saliency: np.ndarray, scale: int) -> np.ndarray:
    """The image (grey) beside it with the map blended over it (opaque where the map is high), enlarged ``scale``
    times: RGB uint8."""
    picture = np.repeat((grey(image)[..., None] * 255).astype(np.uint8), 3, axis=-1)
    opacity = 0.75 * saliency[..., None]
    blended = ((1 - opacity) * picture + opacity * colour(saliency)).astype(np.uint8)
    both = np.concatenate([picture, np.full((picture.shape[0], 2, 3), 255, np.uint8), blended], axis=1)
    return both.repeat(scale, axis=0).repeat(scale, axis=1)


def signal_picture(signal: np.ndarray, saliency: np.ndarray, height: int = 160) -> np.ndarray:
    """The first channel drawn as a line coloured by the map over time, on a dark background: RGB uint8."""
    from PIL import ImageDraw

    width = max(2 * len(signal[0]), 400)
    trace = signal[0]
    low, high = trace.min(), trace.max()
    ys = (1 - (trace - low) / (high - low + 1e-8)) * (height - 20) + 10
    xs = np.linspace(0, width - 1, len(trace))
    picture = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(picture)
    colours = colour(0.25 + 0.75 * saliency)  # the lowest still shows on the dark background
    for i in range(len(trace) - 1):
        draw.line([(xs[i], ys[i]), (xs[i + 1], ys[i + 1])], fill=tuple(int(c) for c in colours[i]), width=3)
    return np.asarray(picture)


def picture(image: np.ndarray, saliency: np.ndarray) -> np.ndarray:
    """An item's overlay: 2D image and map; a volume's three orthogonal slices through the map's peak; a signal."""
    if saliency.ndim == 1:
        return signal_picture(image, saliency)
    scale = max(1, 128 // max(saliency.shape))
    if saliency.ndim == 2:
        return overlay(image, saliency, scale)
    peak = np.unravel_index(saliency.argmax(), saliency.shape)
    views = []
    for axis in range(3):
        take = [slice(None)] * 3
        take[axis] = peak[axis]
        views.append(overlay(image[(slice(None), *take)], saliency[tuple(take)], scale))
    width = max(v.shape[1] for v in views)
    views = [np.pad(v, ((0, 4), (0, width - v.shape[1]), (0, 0)), constant_values=255) for v in views]
    return np.concatenate(views, axis=0)


def panel(pictures: list[np.ndarray], titles: list[str], title: str) -> Any:
    """Up to 16 overlays in a grid, each titled (prediction, probability, truth)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(pictures))
    rows = -(-len(pictures) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 1.9 * rows + 0.4), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, text in zip(axes.flat, pictures, titles, strict=False):
        axis.imshow(image)
        axis.set_title(text, fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def explain_run(medlab: Any) -> Path:
    """``medlab explain``: the run's model with the checkpoint's weights explains each test item (or each input of
    ``data.prediction.paths``); writes the folder described in the module's docstring and logs the panel to W&B."""
    from research.tasks import FusionClassifier, ImageClassifier, SequenceClassifier
    from research.tracking import log_images_to_run

    config = medlab.config
    model = medlab.model
    one_input = not isinstance(model, FusionClassifier)  # MONAI's explainers take one input tensor
    if not isinstance(model, (ImageClassifier, SequenceClassifier)) or model.data.task == "regression" or not one_input:
        raise RunError(f"medlab explain explains one-input classifiers (ImageClassifier, SequenceClassifier), "
                       f"not {type(model).__name__} ({model.data.task})")  # fmt: skip
    model.load_state_dict(medlab.checkpoint["state_dict"])  # checked to fit the config before
    folder = run_folder_of(config.ckpt_path)
    if config.output is None and folder is None:
        raise RunError(f"--ckpt_path {config.ckpt_path} is outside a run folder: say where to write with --output")
    output = (Path(config.output) if config.output else folder / "explanations") / config.method
    data = medlab.datamodule
    split = medlab.explained_split
    if data.split_size(split) == 0:
        raise RunError(f"{type(data).__name__} has no {split} items to explain")
    started = time.perf_counter()
    explainer = Explainer(model.net, config.method, config.layer, config.mask_size, model.data.task == "multilabel")
    names = model.data.class_names or [str(i) for i in range(model.data.num_outputs)]
    items = data.item_names.get(split)
    if split == "predict":  # files: named by their path (an ECG beat also by its R peak's sample)
        items = [":".join(str(v) for k, v in row.items() if k in ("input", "sample")) for row in data.predicted_inputs]
    loader = data.predict_dataloader() if split == "predict" else data.test_dataloader()
    rows, maps, pictures = [], {}, []
    for batch in loader:
        for x, targets in groups(batch, isinstance(model, SequenceClassifier)):
            if config.limit is not None and len(rows) >= config.limit:
                break
            x = x[: None if config.limit is None else config.limit - len(rows)]
            probabilities, classes, saliency = explainer(x)
            (output / "overlays").mkdir(parents=True, exist_ok=True)  # once the method has worked on an input
            for i in range(len(x)):
                row = len(rows)
                name = items[row] if items else str(row)
                peak = np.unravel_index(int(saliency[i].argmax()), saliency[i].shape)
                true = None if targets is None or targets[i] < 0 else names[int(targets[i])]
                rows.append({"item": name, "true": true, "predicted": names[int(classes[i])],
                             **{f"p_{n}": f"{float(p):.6f}" for n, p in zip(names, probabilities[i], strict=True)},
                             "peak": " ".join(str(int(p)) for p in peak)})  # fmt: skip
                maps[f"{row:05d}"] = saliency[i].numpy().astype(np.float32)
                image = picture(x[i].numpy(), maps[f"{row:05d}"])
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[-60:]
                Image.fromarray(image).save(output / "overlays" / f"{row:05d}_{safe}.png")
                if len(pictures) < 16:
                    pictures.append(image)
    with atomic_file(output / "explanations.csv") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with atomic_file(output / "maps.npz", "wb") as handle:
        np.savez_compressed(handle, **maps)
    what = f"{config.method}" + (f" of {explainer.layer}" if explainer.layer else "")
    titles = [f"{r['predicted']} {max(float(v) for k, v in r.items() if k.startswith('p_')):.2f}"
              + (f" (true {r['true']})" if r["true"] else "") for r in rows[: len(pictures)]]  # fmt: skip
    figure = panel(pictures, titles, f"{what}: high = supports the predicted class")
    figure.savefig(output / "panel.png", dpi=110)
    elapsed = time.perf_counter() - started
    if folder is not None:
        log_images_to_run(folder, medlab.checkpoint.get("medlab", {}).get("wandb_run_id"),
                          config.experiment.project, {f"explain/{config.method}": output / "panel.png"})  # fmt: skip
    print(f"medlab explain: {len(rows)} items, {what}, in {elapsed:.1f} s -> {output}")
    return output
