"""Stage ``cache_latents``: encode every usable clip once with the VAE into ``data/processed/latents``.

Each ``<file_name>.npy`` is float16 ``(T, C, h, w)`` = posterior mean * scaling_factor, written
atomically. ``index.json`` beside them records the VAE they were made with (a hash of its folder)
and each clip's checksum, so a re-run only encodes what is missing or stale: a new VAE clears the
cache, a changed clip is re-encoded, a video no longer usable loses its latent file. A run killed
midway resumes from the files already written (the VAE hash is recorded before any file is).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lfmcdm.atomic import save_npy, write_json
from lfmcdm.data.tables import load_clip, read_videos
from lfmcdm.fingerprint import folder_hash
from lfmcdm.models.vae import encode_frames, latent_shape, load_vae
from lfmcdm.runtime import resolve_device
from lfmcdm.train.accel import log_curve

INDEX_FILE = "index.json"
LATENT_DTYPE = np.float16
INDEX_FLUSH_EVERY = 50  # videos between index rewrites (bounds re-work after a kill)


def read_index(latents: Path) -> dict:
    path = latents / INDEX_FILE
    return json.loads(path.read_text()) if path.exists() else {"vae": None, "entries": {}}


def is_current(path: Path, shape: tuple[int, ...], recorded_sha: str | None, sha: str) -> bool:
    """A latent file is reusable if it loads with the expected shape/dtype and its clip is unchanged."""
    if not path.exists() or recorded_sha not in (None, sha):
        return False
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError):
        return False
    return arr.shape == shape and arr.dtype == LATENT_DTYPE


def prune(latents: Path, keep: set[str]) -> int:
    """Delete latent files of videos not in ``keep`` (no longer usable, or made by another VAE)."""
    removed = 0
    for f in latents.glob("*.npy"):
        if f.stem not in keep:
            f.unlink()
            removed += 1
    return removed


def run(ctx) -> dict:
    layout = ctx.layout
    vae_dir = layout.model_dir("vae")
    if not (vae_dir / "config.json").exists():
        raise FileNotFoundError(f"{vae_dir}: no trained VAE; run `lfmcdm stage train_vae` first")
    vae = load_vae(vae_dir, resolve_device(ctx.params.train), ctx.params.train.channels_last)
    channels, h, w = latent_shape(vae)
    rows = read_videos(layout)
    latents = layout.latents
    latents.mkdir(parents=True, exist_ok=True)

    index = read_index(latents)
    vae_hash = folder_hash(vae_dir)
    if index["vae"] != vae_hash:  # new VAE: every cached latent is stale
        prune(latents, keep=set())
        index = {"vae": vae_hash, "scaling_factor": vae.config.scaling_factor, "entries": {}}
    pruned = prune(latents, keep={r["file_name"] for r in rows})
    entries = {r["file_name"]: index["entries"].get(r["file_name"]) for r in rows}
    write_json(latents / INDEX_FILE, {**index, "entries": {k: v for k, v in entries.items() if v}})

    start, encoded, frames = time.perf_counter(), 0, 0
    for row in tqdm(rows, desc="cache_latents", unit="video", disable=not ctx.progress):
        name, sha = row["file_name"], row["sha256"]
        path = latents / f"{name}.npy"
        if not is_current(path, (row["n_frames"], channels, h, w), entries[name], sha):
            z = encode_frames(vae, load_clip(layout, name), ctx.params.latents.batch_size)
            save_npy(path, z.astype(LATENT_DTYPE))
            encoded, frames = encoded + 1, frames + len(z)
        entries[name] = sha
        if encoded and encoded % INDEX_FLUSH_EVERY == 0:
            write_json(latents / INDEX_FILE, {**index, "entries": {k: v for k, v in entries.items() if v}})
    write_json(latents / INDEX_FILE, {**index, "entries": entries})
    elapsed = time.perf_counter() - start
    print(f"cache_latents: encoded {encoded}, reused {len(rows) - encoded}, pruned {pruned} "
          f"({frames / elapsed if elapsed > 0 else 0:.0f} frames/s)")
    log_curve({"latents_encoded": encoded, "latents_reused": len(rows) - encoded,
                          "latents_frames_per_s": frames / elapsed if encoded and elapsed > 0 else None})
    return {}
