import pytest
import torch

from datamodules.sequences import SyntheticSequences, pad_collate
from datamodules.spec import DataSpec
from research.models import RecurrentNet, SliceRecurrentNet
from research.tasks import SequenceClassifier
from tests.conftest import read_item_results, read_summary


def _ragged_batch(lengths: list[int], channels: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    return [(torch.randn(channels, length), torch.tensor(i % 2)) for i, length in enumerate(lengths)]


@pytest.mark.parametrize(
    "settings",
    [
        {"rnn": "lstm"},
        {"rnn": "gru", "bidirectional": True, "num_layers": 2},
        {"rnn": "lstm", "bidirectional": True, "conv_channels": 8, "conv_stride": 3},
        {"rnn": "gru", "conv_channels": 8, "conv_stride": 2, "conv_layers": 3},
    ],
)
def test_packed_batches_give_what_each_sequence_gives_alone(settings: dict) -> None:
    net = RecurrentNet(2, 4, **settings).eval()
    items = _ragged_batch([50, 17, 33, 8])
    signals, lengths, _ = pad_collate(items)
    with torch.no_grad():
        batched = net(signals, lengths)
        alone = torch.cat([net(signal[None], torch.tensor([signal.shape[-1]])) for signal, _ in items])
    assert torch.allclose(batched, alone, atol=1e-6)


def test_padding_values_never_reach_the_output() -> None:
    net = RecurrentNet(2, 3, rnn="gru", conv_channels=4).eval()
    signals, lengths, _ = pad_collate(_ragged_batch([30, 12]))
    noisy = signals.clone()
    noisy[1, :, 12:] = 1e3  # garbage where the second sequence has ended
    with torch.no_grad():
        assert torch.allclose(net(signals, lengths)[1], net(noisy, lengths)[1], atol=1e-6)


def test_slice_recurrent_net_reads_a_volume_slice_by_slice() -> None:
    assert SliceRecurrentNet(1, 3)(torch.randn(2, 1, 12, 28, 28)).shape == (2, 3)


def test_class_weights_are_inverse_training_frequencies() -> None:
    data = SyntheticSequences(num_classes=3, num_train=300)
    data.setup()
    counts = torch.bincount(data.datasets["train"].targets, minlength=3).float()
    weights = torch.tensor(data.spec.class_weights)
    assert torch.allclose(weights * counts, torch.full((3,), counts.sum() / 3))


def test_sequence_classifier_refuses_an_image_datamodule() -> None:
    with pytest.raises(ValueError, match="learns multiclass, regression tasks; the DataModule's task is 'binary'"):
        SequenceClassifier(RecurrentNet, data=DataSpec("binary", 2, 1, 2, ["a", "b"]).as_dict())


def test_synthetic_sequence_experiment_runs_end_to_end(run_medlab) -> None:
    run_dir = run_medlab("sequence/synthetic_lstm", "--data.num_train=120", "--data.num_val=30",
                         "--data.num_test=30", "--trainer.max_epochs=1")  # fmt: skip
    assert {"test/f1", "test/auc", "test/recall_band0", "test/recall_band2"} <= set(read_summary(run_dir)["test"])
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == ["confusion_matrix.png", "roc.png"]
    rows = read_item_results(run_dir)
    assert len(rows) == 30 and list(rows[0]) == ["item", "true", "predicted", "p_band0", "p_band1", "p_band2"]
    accuracy = sum(row["true"] == row["predicted"] for row in rows) / len(rows)
    assert accuracy == pytest.approx(read_summary(run_dir)["test"]["test/acc"], abs=1e-6)
    (wandb_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    assert len(list(wandb_file.parent.glob("files/media/images/test/*.png"))) == 2


def test_forecast_experiment_reports_regression_errors(run_medlab) -> None:
    run_dir = run_medlab("sequence/synthetic_forecast_lstm", "--data.num_train=120", "--data.num_val=30",
                         "--data.num_test=30", "--trainer.max_epochs=1")  # fmt: skip
    summary = read_summary(run_dir)
    assert set(summary["test"]) == {"test/loss", "test/mae", "test/mse"} and summary["monitor"] == "val/mae"
    assert [p.name for p in (run_dir / "figures").iterdir()] == ["forecast.png"]
