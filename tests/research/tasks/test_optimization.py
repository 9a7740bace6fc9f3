import torch

from tests.conftest import RunMedlab

SMALL = ["--data.num_train=200", "--data.num_val=50", "--data.num_test=50", "--data.batch_size=50"]
ONE_CYCLE = [
    "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.OneCycleLR",
    "--model.init_args.lr_scheduler.init_args.max_lr=0.01",
    "--model.init_args.scheduler_interval=step",
]


def test_one_cycle_spans_the_whole_fit_without_being_told_its_length(run_medlab: RunMedlab) -> None:
    run_dir = run_medlab("quickstart", *SMALL, *ONE_CYCLE, "--trainer.max_epochs=3")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    (scheduler,) = checkpoint["lr_schedulers"]
    assert scheduler["total_steps"] == 3 * 4 and scheduler["last_epoch"] == 3 * 4  # 200 images, batches of 50
