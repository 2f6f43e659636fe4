"""Models named as the Hugging Face ecosystem names them: a local folder or a hub id (``Qwen/Qwen2.5-1.5B``).

A name is taken as a local path when it exists, or when it can only be one (absolute, ``./``, ``../``, ``~``,
more than one ``/``); anything else is a hub id for ``from_pretrained``, which reads the local Hugging Face
cache first and downloads only when the hub is reachable and ``HF_HUB_OFFLINE`` is not set. Loaders call
:func:`missing_model_message` to turn a failure into one line that names the id and the setting."""

from __future__ import annotations

from pathlib import Path

__all__ = ["hub_offline", "looks_local", "missing_model_message"]


def looks_local(name: str) -> bool:
    """``name`` is a filesystem path (existing, or unmistakably a path) rather than a hub id."""
    path = Path(name).expanduser()
    return path.exists() or path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1


def hub_offline() -> bool:
    """Whether the Hugging Face hub client is in offline mode (``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def missing_model_message(name: str, what: str, error: BaseException) -> str:
    """One line for a model ``name`` that could not be loaded: the local folder that does not exist, the hub id
    missing from the offline cache, or the hub's own error."""
    if looks_local(name):
        path = Path(name).expanduser()
        if not path.exists():
            return f"{what} folder {str(path)!r} does not exist"
        return f"could not load the {what} in {str(path)!r}: {error}"
    if hub_offline():
        return (f"{what} {name!r} is not a local folder and not in the Hugging Face cache; HF_HUB_OFFLINE is set, "
                f"so nothing is downloaded (download it where there is network, e.g. `hf download {name}`, or point "
                f"HF_HUB_CACHE at a cache that holds it)")  # fmt: skip
    return f"could not load the {what} {name!r} from the Hugging Face hub: {error}"
