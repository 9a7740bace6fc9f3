"""Where datasets live: ``data.root`` in config, else ``$MEDLAB_DATA``, else ``../shared/data`` beside the checkout."""

import os
from pathlib import Path

ENV_VAR = "MEDLAB_DATA"
_CHECKOUT = Path(__file__).resolve().parents[1]


def default_data_roots() -> list[Path]:
    """Candidates for the shared data folder, checked in order when nothing is configured."""
    return [_CHECKOUT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]


def resolve_data_root(root: str | Path | None = None) -> Path:
    """The data root to read from, or a ``FileNotFoundError`` that says how to set it."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    for candidate in default_data_roots():
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(p) for p in default_data_roots())
    raise FileNotFoundError(
        f"No data root: set `data.root` in the experiment (or --data.root=...) or the {ENV_VAR} environment "
        f"variable; the default ../shared/data was not found (tried {tried})."
    )


def data_path(path: str | Path, root: str | Path | None = None) -> Path:
    """``path`` as given when absolute, else under the data root (``resolve_data_root(root)``)."""
    path = Path(path)
    return path if path.is_absolute() else resolve_data_root(root) / path
