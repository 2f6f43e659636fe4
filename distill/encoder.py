"""An optional frozen sentence encoder for the MetaNet's rationale representation
(``--meta_encoder PATH``: a sentence-transformers model in a local folder; the ``[encoder]`` extra).

Every candidate is embedded once, before training (the encoder never changes): the text of its
first sample's completion, decoded from the student's tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from data_schemas import ContractError


def load_encoder(path: str) -> Any:
    """The sentence-transformers model at ``path``; a clear error naming the flag otherwise."""
    folder = Path(path)
    if not folder.is_dir() or not any((folder / f).exists() for f in ("modules.json", "config_sentence_transformers.json")):
        raise ContractError("--meta_encoder", f"{path} is not a sentence-transformers model folder (no modules.json)")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ContractError("--meta_encoder", "needs sentence-transformers: pip install 'mind-distill[encoder]'") from exc
    try:
        return SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any loading failure is the flag's problem
        raise ContractError("--meta_encoder", f"{path} could not be loaded as a sentence-transformers model: {exc}") from exc


def encode_candidates(encoder: Any, store: Any, tokenizer: Any, batch_size: int = 64) -> torch.Tensor:
    """``[num_candidates, D]`` float32 embeddings, row = candidate uid."""
    texts = [""] * store.num_candidates
    for q in store.questions:
        for v in q.views:
            texts[v.uid] = tokenizer.decode(v.samples[0][v.prompt_lens[0] :], skip_special_tokens=True)
    emb = encoder.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
    return emb.detach().to("cpu", torch.float32)
