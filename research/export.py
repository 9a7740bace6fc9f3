"""``medlab export``: a run's checkpoint as an ONNX file (``torch.onnx``, dynamo exporter) or an exported program
(``torch.export``), checked against PyTorch on real inputs, with what it takes to use it without medlab beside it.

``medlab export --config <run>/config.yaml --ckpt_path <run>/checkpoints/best-epochNNN.ckpt [--format onnx|pt2]
[--output FILE]`` writes ``FILE`` (default ``<run>/export/model.onnx`` or ``model.pt2``) and ``FILE.json``: the
inputs and outputs with their dynamic axes, class names, input channels and size, the evaluation preprocessing
(intensity normalisation; orientation, spacing and label values for volumes), the checkpoint and the parity found.
"""

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from monai.utils import convert_to_tensor
from torch import Tensor, nn

from research.runs import RunError, run_folder_of, write_json_atomic
from research.tasks import FusionClassifier, ImageClassifier, Segmenter, SequenceClassifier

Format = Literal["onnx", "pt2"]


def exportable(model: nn.Module, batch: Any) -> tuple[nn.Module, list[Tensor], dict[str, Any]]:
    """The network to export, real example inputs from the test split (two, of different batch sizes; for a fully
    convolutional network also of another spatial size) and the axes that stay dynamic."""
    if isinstance(model, SequenceClassifier):
        signals, lengths = batch[0], batch[1]
        full = signals[lengths == signals.shape[-1]]  # those that fill the batch's length
        if len(full) < 2:
            full = signals[:1, :, : int(lengths[0])]
        # Traced with ``lengths=None``: packed variable-length batches do not trace through ``torch.export``. The
        # length stays the example's: both exporters specialise a bidirectional LSTM/GRU to it.
        return model.net, [full, full[:1]], {0: "batch"}
    if isinstance(model, Segmenter):
        image = convert_to_tensor(batch["image"][:1], track_meta=False).float()  # no MONAI metadata in the graph
        patch = image[(..., *(slice(0, size) for size in (model.roi_size or image.shape[2:])))]
        axes = {0: "batch", **{2 + i: name for i, name in enumerate("dhw"[-(image.ndim - 2) :])}}
        return model.net, [torch.cat([patch, patch]), image], axes  # an example batch of 1 would fix the batch
    if isinstance(model, FusionClassifier):
        raise RunError("medlab export exports one-input networks; FusionClassifier's takes an image and a table row")
    if isinstance(model, ImageClassifier):
        images = batch[0][:8].float()
        return model.net, [images, images[:3]], {0: "batch"}
    raise RunError(f"medlab export knows ImageClassifier, Segmenter and SequenceClassifier, not {type(model).__name__}")


def reason(error: Exception) -> str:
    """The line of an exporter's report that says what failed (the operator, the constraint)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "## Exception summary" in lines:
        return lines[lines.index("## Exception summary") + 1]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}"
    return lines[0] if lines else type(error).__name__


def export_onnx(net: nn.Module, inputs: list[Tensor], axes: dict[str, Any], path: Path, metadata: dict) -> Any:
    import onnx
    import onnxruntime

    try:
        program = torch.onnx.export(net, (inputs[0],), dynamo=True, input_names=["input"], output_names=["output"],
                                    dynamic_shapes=(axes,), verbose=False, optimize=True)  # fmt: skip
    except Exception as error:  # the exporter says which operator it could not convert
        raise RunError(f"{type(net).__name__} cannot be exported to ONNX: {reason(error)}") from error
    model = program.model_proto
    onnx.helper.set_model_props(model, {"medlab": json.dumps(metadata)})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x.numpy()})[0]


def export_program(net: nn.Module, inputs: list[Tensor], axes: dict[str, Any], path: Path) -> Any:
    dims = {axis: torch.export.Dim.DYNAMIC for axis in axes}  # constraints (a UNet's multiples of 16) inferred
    try:
        program = torch.export.export(net, (inputs[0],), dynamic_shapes=(dims,))
    except Exception as error:
        raise RunError(f"{type(net).__name__} cannot be exported with torch.export: {reason(error)}") from error
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path)
    module = torch.export.load(path).module()
    return lambda x: module(x).detach().numpy()


def export(model: nn.Module, batch: Any, format: Format, path: Path, metadata: dict, tolerance: float) -> dict:
    """Export, then run the exported model on the real inputs: a difference from PyTorch above ``tolerance`` is
    an error (the file stays, for a look); returns the parity and timing found."""
    net, inputs, axes = exportable(model.eval(), batch)
    net.eval()
    started = time.perf_counter()
    with torch.no_grad():
        expected = [net(x).numpy() for x in inputs]
    names = {str(axis): name for axis, name in axes.items()}
    metadata = {**metadata, "input": {"shape": list(inputs[0].shape), "dynamic_axes": names, "dtype": "float32"},
                "output": {"dynamic_axes": {"0": "batch"} if not isinstance(model, Segmenter) else names}}  # fmt: skip
    with torch.no_grad():
        run = (
            export_onnx(net, inputs, axes, path, metadata)
            if format == "onnx"
            else export_program(net, inputs, axes, path)
        )
        differences = [float(np.abs(run(x) - y).max()) for x, y in zip(inputs, expected, strict=True)]
    parity = {"max_abs_difference": max(differences), "inputs": [list(x.shape) for x in inputs], "tolerance": tolerance,
              "export_s": round(time.perf_counter() - started, 1)}  # fmt: skip
    write_json_atomic(path.with_name(path.name + ".json"), {**metadata, "parity": parity})
    if parity["max_abs_difference"] > tolerance:
        raise RunError(f"{path}: the exported model differs from PyTorch by {parity['max_abs_difference']:.2e} "
                       f"(> {tolerance:g}) on the test inputs {parity['inputs']}")  # fmt: skip
    return parity


OUTPUTS = {
    "binary": "logits (batch, 2): softmax over axis 1; class 1 is the positive class",
    "multiclass": "logits (batch, classes): softmax over axis 1",
    "multilabel": "logits (batch, labels): a sigmoid per label",
    "segmentation": "logits (batch, classes, *spatial): argmax over axis 1 is the class index; "
    "preprocessing.label_values maps it back to mask values",
    "regression": "predicted values (batch, outputs)",
}


def export_run(medlab: Any) -> Path:
    """``medlab export``: the model of a run's config with the checkpoint's weights, exported and checked on the
    first batch of the run's test split; prints where it went and the parity found."""
    config = medlab.config
    if medlab.checkpoint is None:
        raise RunError(f"--ckpt_path {config.ckpt_path}: name a checkpoint file, e.g. <run>/checkpoints/last.ckpt")
    model = medlab.model
    model.load_state_dict(medlab.checkpoint["state_dict"])  # checked to fit the config before
    folder = run_folder_of(config.ckpt_path)
    if config.output is None and folder is None:
        raise RunError(f"--ckpt_path {config.ckpt_path} is outside a run folder: say where to write with --output")
    path = Path(config.output) if config.output else folder / "export" / f"model.{config.format}"
    data = medlab.datamodule
    if data.split_size("test") == 0:
        raise RunError(f"{type(data).__name__} has no test split: medlab export checks the model on test inputs")
    spec = model.data
    metadata = {
        "format": config.format,
        "task": spec.task,
        "class_names": spec.class_names,
        "in_channels": spec.in_channels,
        "spatial_dims": spec.spatial_dims,
        "patch_size": spec.patch_size,
        "outputs": OUTPUTS[spec.task],
        "preprocessing": data.preprocessing,
        "network": config.model.init_args.net.class_path if "net" in config.model.init_args else None,
        "checkpoint": str(Path(config.ckpt_path).resolve()),
        "run": str(folder) if folder else None,
    }
    parity = export(model, next(iter(data.test_dataloader())), config.format, path, metadata, config.tolerance)
    difference = parity["max_abs_difference"]
    print(f"medlab export: {path} (+ {path.name}.json): max |difference| from PyTorch {difference:.2e} on test "
          f"inputs {parity['inputs']}, {parity['export_s']:.1f} s")  # fmt: skip
    return path
