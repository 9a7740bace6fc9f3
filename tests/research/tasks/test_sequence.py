import pytest
import torch

from datamodules.sequences import SyntheticSequences, pad_collate
from datamodules.spec import DataSpec
from research.cli import cli
from research.models import RecurrentNet, ResNet1d, SliceRecurrentNet
from research.tasks import SequenceClassifier
from research.tracking import finish_wandb
from tests.conftest import read_item_results, read_summary
from tests.datamodules.test_ecg import write_record


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


def test_residual_cnn_gives_each_record_what_it_gives_alone() -> None:
    torch.manual_seed(0)
    net = ResNet1d(2, 4, channels=[8, 16], blocks=2, kernel=5).eval()
    items = _ragged_batch([301, 64, 157, 33])
    signals, lengths, _ = pad_collate(items)
    signals[1, :, 64:] = 1e3  # garbage where the second record has ended
    with torch.no_grad():
        batched = net(signals, lengths)
        alone = torch.cat([net(signal[None], torch.tensor([signal.shape[-1]])) for signal, _ in items])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    assert net(signals[:1, :, :301]).shape == (1, 4)  # without lengths: the whole signal


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


def test_a_refit_without_validation_tests_its_last_epoch_and_reports_se_and_p(run_medlab, tmp_path) -> None:
    """``experiment.monitor: null``: no validation split, the last epoch's checkpoint is tested (the refit of the
    inter-patient recipe); the external test records can be given to ``medlab test`` later."""
    for name in ("p0", "p1", "p2", "p3", "p4", "x0", "x1"):
        write_record(tmp_path / "ecg", name)
    pool = '--data.folds.records=["p0", "p1", "p2", "p3", "p4"]'
    run_dir = run_medlab("ecg/mitbih_ds1", f"--data.root={tmp_path}", "--data.folder=ecg", pool,
                         '--data.test_records=["x0"]', "--data.classes=[N, V]", "--trainer.max_epochs=2")  # fmt: skip
    summary = read_summary(run_dir)
    assert summary["monitor"] is None and summary["best_epoch"] == 1 and summary["epochs_trained"] == 2
    assert {"test/recall_V", "test/precision_V", "test/f1_V"} <= set(summary["test"])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert {row["item"].split(":")[0] for row in read_item_results(run_dir)} == {"x0"}
    try:  # the documented test of the refit on other records
        medlab = cli(
            [
                "test",
                "--config",
                str(run_dir / "config.yaml"),
                "--trainer.enable_progress_bar=false",
                f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
                '--data.test_records=["x1"]',
            ]
        )
    finally:
        finish_wandb()
    assert medlab.trainer.callback_metrics["test/recall_V"] >= 0
    assert {name.split(":")[0] for name in medlab.datamodule.item_names["test"]} == {"x1"}
