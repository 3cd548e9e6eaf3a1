"""Content fingerprints of saved model folders: the one hash every stage, manifest and registry tag uses.

``train_diffusion`` records the VAE's hash in ``mcdm.json``, synthesis refuses a mismatched pair,
cohort manifests name ``*_version`` and the MLflow registry tags ``lfmcdm.content_version``: all
must agree byte for byte, so the hash is defined here once (docs/design.md, "Model registry").
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def folder_hash(path: Path) -> str:
    """SHA-256 over the files of a saved model folder (names and contents)."""
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f.relative_to(path).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def content_version(folder: str | Path) -> str:
    """A model folder's content version: ``sha256:<16 hex>`` of its files (the form of ``mafe_version``)."""
    return f"sha256:{folder_hash(Path(folder))[:16]}"
