"""Every command README.md and docs/*.md show exists and parses as typed: make targets by a dry run (and their
experiment by ``--print_config``), medlab commands by ``--print_config`` or ``--help``, benchmark scripts and the
wandb CLI by ``--help``. A command a reader cannot run as typed (``python -m ...`` or ``wandb ...`` outside the
environment) fails here."""

import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from research.cli import main
from research.tracking import finish_wandb
from tests.conftest import EXPERIMENTS, REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"(make |\.venv/bin/|medlab (run|fit|validate|test|predict|compare|sweep)\b|python -m |wandb )")
# runs/<exp>/<id>, ARGS=..., fit|test, [--seeds 0 1 2], an example run folder, files of the reader's own
PLACEHOLDER = re.compile(r"<|\.\.\.|\||\[--|runs/|scan\.nii")
LIGHTNING = ("run", "fit", "validate", "test", "predict")


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line and not line.startswith("#"):
                    found.append((doc.name, line))
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for span in re.findall(r"`([^`]+)`", prose):
            span = " ".join(span.split())
            if COMMAND.match(span):
                found.append((doc.name, span))
    return sorted(set(found))


COMMANDS = documented_commands()


def test_the_docs_show_commands() -> None:
    print(f"{len(COMMANDS)} documented commands")
    assert len(COMMANDS) > 30


def medlab(args: list[str]) -> None:
    """``medlab ARGS`` in this process must end with exit code 0 (``--help`` and ``--print_config`` exit)."""
    try:
        main(args)
    except SystemExit as stopped:
        assert stopped.code in (0, None), f"medlab {' '.join(args)} exited {stopped.code}"
    finally:
        finish_wandb()


@pytest.mark.parametrize(("doc", "command"), COMMANDS, ids=[f"{d}: {c[:60]}" for d, c in COMMANDS])
def test_documented_command_exists_and_parses(doc: str, command: str, capsys: pytest.CaptureFixture) -> None:
    assert not command.startswith(("python -m", "wandb ")), f"{doc}: `{command}` runs only in an activated venv"
    words = shlex.split(command.replace("[", "").replace("]", "")) if not PLACEHOLDER.search(command) else None
    if command.startswith("make "):
        parts = shlex.split(command)
        dry = subprocess.run(["make", "-n", *parts[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, f"{doc}: `{command}`: {dry.stderr}"
        settings = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        experiment = settings.get("EXP")
        if parts[1] in ("train", "sweep") and experiment and "<" not in experiment:
            assert (EXPERIMENTS / f"{experiment}.yaml").is_file(), f"{doc}: no experiment {experiment}"
        if parts[1] in ("train", "sweep") and not PLACEHOLDER.search(command):
            trainer = str(REPO / "experiments" / "trainer" / f"{settings.get('TRAINER', 'cpu')}.yaml")
            args = shlex.split(settings.get("ARGS", ""))
            medlab(["run", "--config", trainer, "--config", str(EXPERIMENTS / f"{experiment or 'quickstart'}.yaml"),
                    *args, "--print_config"])  # fmt: skip
        return
    command = command.removeprefix(".venv/bin/")
    if command.startswith("medlab"):
        sub = command.split()[1].split("|")[0]
        if words is None or sub not in LIGHTNING:
            medlab([sub, "--help"])
        else:
            medlab([*words[1:], "--print_config"] if "--config" in words else [sub, "--help"])
        return
    if command.startswith("python -m "):
        module = command.split()[2]
        with pytest.raises(SystemExit) as stopped, pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", [module, "--help"])
            runpy.run_module(module, run_name="__main__")
        assert stopped.value.code == 0, f"{doc}: `{command}`"
        return
    if command.startswith("wandb "):
        wandb = Path(sys.executable).parent / "wandb"
        result = subprocess.run([str(wandb), command.split()[1], "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{doc}: `{command}`: {result.stderr[-2000:]}"
        return
    if command.startswith("torchrun "):  # torchrun's own launcher, then medlab's command line
        assert (Path(sys.executable).parent / "torchrun").is_file(), f"{doc}: `{command}`: no torchrun in the venv"
        rest = command.split("-m research.cli ", 1)[1].split()
        medlab([*rest, "--print_config"] if words is not None else [rest[0], "--help"])
        return
    if "sbatch " in command:  # a SLURM job script (after its variables): it must parse
        subprocess.run(["bash", "-n", str(REPO / command.split("sbatch ", 1)[1].split()[0])], check=True)
        return
    pytest.fail(f"{doc}: `{command}` is of no kind this test knows")
