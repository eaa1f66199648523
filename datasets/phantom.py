"""The embedded phantom: procedural data sets generated from a seed, so albench runs with no data.

Two families, chosen by the fixed parameter ``family``:

``brain``
    Axial slices through a head-like anatomy in two co-registered modalities, a T1ce-like main one
    and a FLAIR-like auxiliary one, with a tumour made of the three BraTS sub-regions (enhancing
    rim 4, necrotic core 1, oedema 2). The oedema is bright in the auxiliary modality and only
    faintly visible in the main one, so the auxiliary modality carries information the main one
    lacks, as in real MRI: that is what M-VAAL's second decoder is meant to exploit. Several slices
    per synthetic patient (at different heights through one 3-D tumour, so slices near the
    tumour's poles show only oedema), splits by patient. Variety: tumour size, position, shape and
    contrast, noise level, intensity bias fields, which sub-regions exist. Slices are kept only
    when the tumour covers more than the BraTS rule's share of the slice (1000 of 240x240 pixels)
    and go through BraTS' preprocessing (per-slice 1-99 percentile clip, max scaling, training
    z-score statistics in the manifest). Used by ``phantom-wt`` and ``phantom-ml``.

``chest``
    Chest-X-ray-like images (uint8) with the lung mask (uint8, 0/255) as the auxiliary modality and
    three classes, named like COVID-QU-Ex's and sorted the same way, told apart by subtle texture
    inside the lungs: granular peripheral ground glass (``COVID-19``), oriented streaks with a
    focal opacity in one lung (``Non-COVID``), or nothing beyond the normal vascular markings
    (``Normal``). Severity varies down to nearly invisible, so the task is neither trivial nor
    hopeless. Used by ``phantom-cls``.

Everything is vectorised numpy over chunks of slices, deterministic given the protocol (which
includes the seed). Sizes per preset: ``smoke`` (32 px, a few hundred training items, about a
second), ``quick`` (64 px, ~600 training items, a few seconds) and ``paper`` (128 px, counts like
the real sets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from albench import datasets
from albench.errors import ConfigError
from albench.prepared import SPLITS, PreparedDataset, building, find_prepared, open_prepared, write_prepared
from albench.datasets.common import (
    UINT8_TO_UNIT,
    PRESENCE_ORDER,
    Moments,
    clip_and_scale,
    presence,
    zscore_normalisation,
)

#: Bump when the generator changes in a way that changes its output: it is part of the cache key.
GENERATOR_VERSION = 3
DEFAULT_SEED = 20230101

_BRAIN_SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"patients": [24, 8, 8], "slices_per_patient": 10, "size": 32},
    "quick": {"patients": [64, 16, 16], "slices_per_patient": 10, "size": 64},
    "paper": {"patients": [135, 33, 42], "slices_per_patient": 28, "size": 128},
}
_CHEST_SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"items": [240, 60, 60], "size": 32},
    "quick": {"items": [640, 160, 160], "size": 64},
    "paper": {"items": [3728, 932, 1166], "size": 128},
}
#: COVID-QU-Ex's classes, sorted; the phantom mirrors them so ``phantom-cls`` reads like ``covidqu``.
CHEST_CLASSES = ("COVID-19", "Non-COVID", "Normal")
#: Class frequencies of COVID-QU-Ex's infection subset (train: 1864 / 932 / 932).
_CHEST_PRIOR = (0.5, 0.25, 0.25)
#: BraTS keeps slices whose tumour covers more than 1000 of 240 x 240 pixels; the same share here.
_TUMOUR_SHARE = 1000 / (240 * 240)
_CHUNK = 256
#: Tumour outline: radius * (1 + sum_k w_k a_k cos(order_k * theta + phase_k)); low orders dominate
#: so outlines are lobulated rather than polygonal.
_HARM_ORDER = (2, 3, 5)
_HARM_WEIGHT = (1.0, 0.7, 0.35)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in units of the image side, centred on 0: (u = x, v = y)."""
    c = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / size
    return c[None, None, :], c[None, :, None]


def _soft(distance: np.ndarray, size: int, width_px: float = 0.6) -> np.ndarray:
    """Partial-volume weight from a signed distance in side units (positive inside)."""
    return 1.0 / (1.0 + np.exp(np.clip(-distance * (size / width_px), -40, 40)))


def _lowfreq(rng: np.random.Generator, n: int, u: np.ndarray, v: np.ndarray, terms: int, fmin: float, fmax: float) -> np.ndarray:
    """A smooth random pattern per item: a sum of ``terms`` random plane waves, std about 1."""
    out = np.zeros((n, v.shape[1], u.shape[2]), np.float32)
    f = rng.uniform(fmin, fmax, (terms, n, 1, 1)).astype(np.float32)
    ang = rng.uniform(0, np.pi, (terms, n, 1, 1)).astype(np.float32)
    ph = rng.uniform(0, 2 * np.pi, (terms, n, 1, 1)).astype(np.float32)
    for t in range(terms):
        out += np.sin(2 * np.pi * f[t] * (np.cos(ang[t]) * u + np.sin(ang[t]) * v) + ph[t])
    return out * np.float32(np.sqrt(2.0 / terms))


# --------------------------------------------------------------------------------------- brain
def _brain_patients(rng: np.random.Generator, n: int, slices: int) -> dict[str, np.ndarray]:
    """Per-patient anatomy and tumour parameters (arrays of length ``n``)."""
    u = rng.uniform
    p: dict[str, np.ndarray] = {
        "head_a": u(0.34, 0.40, n), "head_b": u(0.40, 0.46, n), "head_rot": u(-0.15, 0.15, n),
        "head_cx": u(-0.02, 0.02, n), "head_cy": u(-0.02, 0.02, n), "skull": u(0.035, 0.05, n),
        "vent": u(0.6, 1.3, n),
        "z_head": u(70, 85, n),
        # tumour geometry (side units, slices)
        "r_ed": u(0.11, 0.22, n), "core_frac": u(0.35, 0.7, n), "rim": u(0.25, 0.55, n),
        "t_ang": u(0, 2 * np.pi, n), "t_dist": np.sqrt(u(0, 1, n)) * 0.5,
        "c_ang": u(0, 2 * np.pi, n), "c_off": u(0, 0.3, n),
        "has_et": rng.random(n) < 0.85, "has_ncr": rng.random(n) < 0.75, "has_ed": rng.random(n) < 0.9,
        # contrasts: main = T1ce-like, aux = FLAIR-like
        "tis_m": u(0.38, 0.46, n), "tis_a": u(0.32, 0.40, n),
        "ed_m": u(0.005, 0.04, n) * np.where(rng.random(n) < 0.7, -1, 1), "ed_a": u(0.72, 0.92, n),
        "et_m": u(0.72, 0.95, n), "et_a": u(0.50, 0.70, n),
        "ncr_m": u(0.10, 0.25, n), "ncr_a": u(0.35, 0.60, n),
        "noise_m": u(0.015, 0.05, n), "noise_a": u(0.015, 0.05, n),
    }
    p["has_ed"] |= ~(p["has_et"] | p["has_ncr"])  # every patient has some tumour
    p["harm_amp"] = u(0.0, 0.18, (n, 3))
    p["harm_ph"] = u(0, 2 * np.pi, (n, 3))
    p["charm_amp"] = u(0.0, 0.08, (n, 3))
    p["charm_ph"] = u(0, 2 * np.pi, (n, 3))
    # tumour extent across slices: the slices drawn lie within 85 % of the oedema's half-height
    rz_min = max(12.0, (slices + 1) / 1.7)
    p["rz"] = u(rz_min, rz_min + 12, n)
    p["z0"] = np.round(u(55, 100, n))
    return p


def _brain_slices(rng: np.random.Generator, p: dict[str, np.ndarray], pid: np.ndarray, z: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render slices ``z`` of patients ``pid`` (same length): main, aux (float32), mask (uint8)."""
    n = len(pid)
    u, v = _grid(size)

    def col(key: str) -> np.ndarray:
        return p[key][pid].astype(np.float32)[:, None, None]

    # head: rotated ellipse shrinking towards the top and bottom of the head
    zf = np.sqrt(np.clip(1 - ((z - p["z_head"][pid]) / 110.0) ** 2, 0.3, 1)).astype(np.float32)[:, None, None]
    rot = col("head_rot")
    du, dv = u - col("head_cx"), v - col("head_cy")
    ru, rv = np.cos(rot) * du + np.sin(rot) * dv, -np.sin(rot) * du + np.cos(rot) * dv
    a, b = col("head_a") * zf, col("head_b") * zf
    ell = np.sqrt((ru / a) ** 2 + (rv / b) ** 2)
    minor = np.minimum(a, b)
    head_d = (1 - ell) * minor  # signed distance to the scalp surface
    skull = col("skull")
    head_w = _soft(head_d, size)
    brain_d = head_d - skull
    brain_w = _soft(brain_d, size)
    bone_w = _soft(head_d - skull * 0.35, size) - brain_w  # inner bone band (dark on MR)
    scalp_w = head_w - brain_w - bone_w

    # ventricles: two small ellipses either side of the midline
    vs = col("vent") * zf
    vent_d = np.full_like(ell, -1.0)
    for side in (-1, 1):
        e = np.sqrt(((ru - side * 0.045 * vs) / (0.03 * vs)) ** 2 + ((rv + 0.01) / (0.09 * vs)) ** 2)
        vent_d = np.maximum(vent_d, (1 - e) * 0.03 * vs)
    vent_w = _soft(vent_d, size) * brain_w

    # tumour: an irregular 3-D blob; its cross-section shrinks away from the centre slice
    tcu = col("head_cx") + col("t_dist") * np.cos(col("t_ang")) * a * 0.8
    tcv = col("head_cy") + col("t_dist") * np.sin(col("t_ang")) * b * 0.8
    dz = ((z - p["z0"][pid]) / p["rz"][pid]).astype(np.float32)[:, None, None]
    r_ed = col("r_ed") * np.sqrt(np.clip(1 - dz**2, 0, 1))
    tu, tv = u - tcu, v - tcv
    rho, theta = np.hypot(tu, tv), np.arctan2(tv, tu)
    harm = 1 + sum(_HARM_WEIGHT[k] * p["harm_amp"][pid, k].astype(np.float32)[:, None, None] * np.cos(_HARM_ORDER[k] * theta + p["harm_ph"][pid, k].astype(np.float32)[:, None, None]) for k in range(3))
    ed_d = r_ed * harm - rho
    cf = col("core_frac")
    r_core = col("r_ed") * cf * np.sqrt(np.clip(1 - (dz / cf) ** 2, 0, 1))
    off = col("c_off") * (col("r_ed") - col("r_ed") * cf)
    cu, cv = tu - off * np.cos(col("c_ang")), tv - off * np.sin(col("c_ang"))
    crho, ctheta = np.hypot(cu, cv), np.arctan2(cv, cu)
    charm = 1 + sum(_HARM_WEIGHT[k] * p["charm_amp"][pid, k].astype(np.float32)[:, None, None] * np.cos(_HARM_ORDER[k] * ctheta + p["charm_ph"][pid, k].astype(np.float32)[:, None, None]) for k in range(3))
    core_d = r_core * charm - crho
    ncr_d = r_core * (1 - col("rim")) * charm - crho
    in_brain = brain_d > 0.5 / size

    has_et = p["has_et"][pid][:, None, None]
    has_ncr = p["has_ncr"][pid][:, None, None]
    has_ed = p["has_ed"][pid][:, None, None]
    core = (core_d > 0) & (r_core > 0) & in_brain
    mask = np.zeros(ell.shape, np.uint8)
    mask[(ed_d > 0) & in_brain & has_ed] = 2
    mask[core & has_et] = 4
    mask[core & ~has_et & has_ncr] = 1
    mask[(ncr_d > 0) & (r_core > 0) & in_brain & has_et & has_ncr] = 1

    ed_w = _soft(ed_d, size) * (r_ed > 0) * brain_w
    core_w = _soft(core_d, size) * (r_core > 0) * brain_w
    ncr_w = _soft(ncr_d, size) * (r_core > 0) * brain_w
    et_w = np.where(has_et, core_w - np.where(has_ncr, ncr_w, 0), 0)
    nc_w = np.where(has_et, np.where(has_ncr, ncr_w, 0), np.where(has_ncr, core_w, 0))
    core_any = et_w + nc_w
    ed_only = np.clip(ed_w - core_any, 0, 1) * has_ed

    texture = 0.035 * _lowfreq(rng, n, u, v, 4, 2.0, 7.0)  # grey/white matter pattern, shared by both
    images = []
    for m, vals in (("m", (0.62, 0.12, 0.13)), ("a", (0.45, 0.10, 0.06))):
        scalp, bone, csf = vals
        tissue = col(f"tis_{m}") + texture
        ed_val = tissue + col(f"ed_{m}") if m == "m" else col("ed_a") + 0.3 * texture
        img = scalp_w * scalp + bone_w * bone
        healthy = brain_w - vent_w - np.clip(ed_only + core_any, 0, None)
        img = img + np.clip(healthy, 0, None) * tissue + vent_w * csf
        img = img + ed_only * ed_val + et_w * col(f"et_{m}") + nc_w * col(f"ncr_{m}")
        # smooth multiplicative bias field, independent per modality (different coils/sequences)
        c = rng.normal(0, 1, (n, 5)).astype(np.float32)
        bias = np.exp(0.35 * c[:, 0, None, None] * u + 0.35 * c[:, 1, None, None] * v + 0.6 * c[:, 2, None, None] * u * v + 0.5 * c[:, 3, None, None] * (u**2 - v**2) + 0.05 * c[:, 4, None, None])
        img = img * bias
        sigma = col(f"noise_{m}")
        # Rician magnitude noise, as in magnitude MR images
        img = np.sqrt((img + sigma * rng.standard_normal(img.shape, dtype=np.float32)) ** 2 + (sigma * rng.standard_normal(img.shape, dtype=np.float32)) ** 2)
        images.append((img * 1000).astype(np.float32))
    return images[0], images[1], mask


def _make_brain(params: Mapping[str, Any]) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    size = int(params["size"])
    slices = int(params["slices_per_patient"])
    n_per_split = [int(n) for n in params["patients"]]
    rng = np.random.default_rng(int(params["seed"]))
    n_pat = sum(n_per_split)
    p = _brain_patients(rng, n_pat, slices)
    # distinct slice positions per patient within 85 % of the oedema's half-height, sorted
    z = np.empty((n_pat, slices), np.float32)
    for i in range(n_pat):
        half = int(np.floor(0.85 * p["rz"][i]))
        z[i] = np.sort(rng.choice(np.arange(-half, half + 1), size=slices, replace=False)) + p["z0"][i]
    pid = np.repeat(np.arange(n_pat), slices)
    zs = z.reshape(-1)
    main = np.empty((len(pid), size, size), np.float32)
    aux = np.empty_like(main)
    mask = np.empty((len(pid), size, size), np.uint8)
    for start in range(0, len(pid), _CHUNK):
        sl = slice(start, start + _CHUNK)
        main[sl], aux[sl], mask[sl] = _brain_slices(rng, p, pid[sl], zs[sl], size)
    keep = (mask > 0).sum(axis=(1, 2)) > _TUMOUR_SHARE * size * size
    split_of = np.repeat(np.repeat(np.arange(3), n_per_split), slices)
    case_ids = np.array([f"brain-{i:04d}" for i in range(n_pat)])
    out: dict[str, dict[str, np.ndarray]] = {}
    moments = {"main": Moments(), "aux": Moments()}
    for s, split in enumerate(SPLITS):
        sel = keep & (split_of == s)
        m = clip_and_scale(main[sel])
        x = clip_and_scale(aux[sel])
        if split == "train":
            moments["main"].add(m)
            moments["aux"].add(x)
        k = mask[sel]
        slice_idx = zs[sel].astype(np.int32)
        cases = case_ids[pid[sel]]
        out[split] = {
            "main": m, "aux": x, "mask": k, "presence": presence(k), "slice": slice_idx,
            "names": np.array([f"{c}:{i}" for c, i in zip(cases, slice_idx)]), "cases": cases,
        }
    stats = {key: mo.result() for key, mo in moments.items()}
    extra = {
        "modalities": {"main": "T1ce-like", "aux": "FLAIR-like"},
        "zscore": stats,
        "normalisation": {key: zscore_normalisation(st) for key, st in stats.items()},
        "sampler_crop": 1.0,
        "targets": {"mask": "BraTS coding {0,1,2,4}; whole tumour = mask > 0", "presence": list(PRESENCE_ORDER)},
        "preprocessing": "per-slice 1-99 percentile clip, divide by maximum; z-score with training statistics",
        "source": {"kind": "procedural phantom", "family": "brain", "generator_version": GENERATOR_VERSION},
    }
    return out, extra


# --------------------------------------------------------------------------------------- chest
def _bandpass(rng: np.random.Generator, n: int, size: int, lo: float, hi: float, angle: np.ndarray | None = None, spread: float = 0.35) -> np.ndarray:
    """Band-limited noise per item (std 1): frequencies ``lo..hi`` cycles per side, optionally
    concentrated around one orientation per item (``angle``) to make oriented streaks."""
    white = rng.standard_normal((n, size, size), dtype=np.float32)
    spec = np.fft.rfft2(white)
    fy = np.fft.fftfreq(size)[:, None] * size
    fx = np.fft.rfftfreq(size)[None, :] * size
    radius = np.hypot(fx, fy)
    filt = ((radius >= lo) & (radius <= hi)).astype(np.float32)[None]
    if angle is not None:
        phi = np.arctan2(fy, fx)[None]
        filt = filt * np.exp(-(np.sin(phi - angle[:, None, None]) ** 2) / (2 * spread**2))
    out = np.fft.irfft2(spec * filt, s=(size, size)).astype(np.float32)
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-6
    return out


def _chest_items(rng: np.random.Generator, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render chest images (uint8) and lung masks (uint8 0/255) for the given labels."""
    n = len(labels)
    u, v = _grid(size)

    def r(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, n).astype(np.float32)[:, None, None]

    cx, cy, scale = r(-0.02, 0.02), r(-0.02, 0.03), r(0.9, 1.08)
    uu, vv = (u - cx) / scale, (v - cy) / scale
    body_d = (1 - np.sqrt((uu / 0.47) ** 2 + (vv / 0.56) ** 2)) * 0.47
    lungs_d = np.full(body_d.shape, -1.0, np.float32)
    for side in (-1, 1):
        lcx, lcy = side * r(0.16, 0.2), r(-0.05, 0.0)
        la, lb, tilt = r(0.10, 0.135), r(0.25, 0.30), side * r(0.0, 0.15)
        du, dv = uu - lcx, vv - lcy
        ru, rv = np.cos(tilt) * du + np.sin(tilt) * dv, -np.sin(tilt) * du + np.cos(tilt) * dv
        d = (1 - np.sqrt((ru / la) ** 2 + (rv / lb) ** 2)) * la
        lungs_d = np.maximum(lungs_d, d)
    heart_d = (1 - np.sqrt(((uu - r(0.03, 0.08)) / r(0.11, 0.15)) ** 2 + ((vv - r(0.12, 0.17)) / r(0.10, 0.13)) ** 2)) * 0.1
    lungs_d = np.minimum(lungs_d, -heart_d)
    lung_mask = lungs_d > 0
    lung_w = _soft(lungs_d, size)
    body_w = _soft(body_d, size)
    spine_w = _soft(0.035 - np.abs(uu), size) * body_w

    img = 0.08 + body_w * r(0.40, 0.50) + spine_w * 0.15 + _soft(heart_d, size) * 0.1
    img = img - lung_w * r(0.22, 0.30)
    ribs = np.sin(2 * np.pi * r(8.5, 11.0) * (vv + 0.9 * uu**2) + r(0, 2 * np.pi))
    img = img + body_w * 0.06 * np.clip((ribs - 0.2) / 0.8, 0, 1)
    img = img + lung_w * 0.018 * _bandpass(rng, n, size, 2.0, size / 6)  # vascular markings, every class

    # class texture inside the lungs; severity varies, from faint to clear
    severity = rng.uniform(0.45, 1.0, n).astype(np.float32)[:, None, None]
    covid = (labels == CHEST_CLASSES.index("COVID-19"))[:, None, None]
    other = (labels == CHEST_CLASSES.index("Non-COVID"))[:, None, None]
    periphery = np.clip(1 - lungs_d / 0.06, 0, 1) * lung_w * (0.6 + 0.8 * np.clip(vv + 0.1, 0, 1))
    glass = np.clip(_bandpass(rng, n, size, size / 10, size / 4), 0, None)
    img = img + covid * severity * 0.42 * periphery * glass
    angle = rng.uniform(0, np.pi, n).astype(np.float32)
    streaks = _bandpass(rng, n, size, size / 12, size / 4, angle=angle, spread=0.25)
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)[:, None, None]
    focus = np.exp(-(((uu - side * 0.18) ** 2 + (vv - r(-0.1, 0.15)) ** 2) / (2 * r(0.05, 0.09) ** 2)))
    img = img + other * severity * lung_w * (0.20 * np.abs(streaks) * (0.4 + focus) + 0.22 * focus)

    img = img * (1 + 0.15 * _lowfreq(rng, n, u, v, 2, 0.5, 1.5) * 0.3)  # exposure non-uniformity
    gamma = r(0.85, 1.15)
    img = np.clip(img, 0, 1) ** gamma
    img = img + r(0.01, 0.03) * rng.standard_normal(img.shape, dtype=np.float32)
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image, lung_mask.astype(np.uint8) * 255


def _make_chest(params: Mapping[str, Any]) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    size = int(params["size"])
    rng = np.random.default_rng(int(params["seed"]))
    out: dict[str, dict[str, np.ndarray]] = {}
    for split, n in zip(SPLITS, params["items"]):
        n = int(n)
        labels = rng.choice(len(CHEST_CLASSES), size=n, p=_CHEST_PRIOR).astype(np.int64)
        main = np.empty((n, size, size), np.uint8)
        aux = np.empty_like(main)
        for start in range(0, n, _CHUNK):
            sl = slice(start, start + _CHUNK)
            main[sl], aux[sl] = _chest_items(rng, labels[sl], size)
        names = np.array([f"chest-{split}-{i:05d}" for i in range(n)])
        out[split] = {"main": main, "aux": aux, "label": labels, "names": names, "cases": names}
    extra = {
        "modalities": {"main": "X-ray-like", "aux": "lung mask"},
        "classes": list(CHEST_CLASSES),
        "normalisation": {"main": dict(UINT8_TO_UNIT), "aux": dict(UINT8_TO_UNIT)},
        "sampler_crop": 1.0,
        "source": {"kind": "procedural phantom", "family": "chest", "generator_version": GENERATOR_VERSION},
    }
    return out, extra


_FAMILIES = {"brain": (_BRAIN_SIZES, _make_brain), "chest": (_CHEST_SIZES, _make_chest)}


@datasets.register("phantom")
class Phantom:
    """Procedural phantom data (brain MRI-like or chest X-ray-like), no files needed."""

    requires_root: ClassVar[bool] = False

    def protocol(self, preset: str, fixed: Mapping[str, Any]) -> dict[str, Any]:
        """The full generation parameters for ``preset``; ``fixed`` picks the family and may
        override any size parameter or the seed (e.g. ``{"family": "brain", "size": 48}``)."""
        family = fixed.get("family", "chest")
        if family not in _FAMILIES:
            raise ConfigError(f"phantom family {family!r} is unknown (expected: {', '.join(_FAMILIES)})")
        sizes = _FAMILIES[family][0]
        if preset not in sizes:
            raise ConfigError(f"unknown preset {preset!r} (expected: {', '.join(sizes)})")
        protocol: dict[str, Any] = {"family": family, "generator": GENERATOR_VERSION, "seed": DEFAULT_SEED, **sizes[preset]}
        for key, value in fixed.items():
            if key not in protocol:
                raise ConfigError(f"phantom ({family}) has no parameter {key!r} (it has: {', '.join(sorted(protocol))})")
            protocol[key] = list(value) if isinstance(value, tuple) else value
        if protocol["generator"] != GENERATOR_VERSION:
            raise ConfigError(f"phantom generator version {protocol['generator']} is not this albench's ({GENERATOR_VERSION})")
        counts = protocol["patients" if family == "brain" else "items"]
        if len(counts) != 3 or min(int(c) for c in counts) < 1:
            raise ConfigError(f"phantom counts must be three positive numbers (train, val, test), got {counts}")
        return protocol

    def prepare(self, *, cache: Path, params: Mapping[str, Any], root: Path | None = None, jobs: int = 1, force: bool = False) -> Path:
        """Generate and cache the set (a no-op when it is already cached, unless ``force``)."""
        existing = find_prepared(cache, "phantom", params)
        if existing and not force:
            return existing
        family = params.get("family", "chest")
        if family not in _FAMILIES:
            raise ConfigError(f"phantom family {family!r} is unknown (expected: {', '.join(_FAMILIES)})")
        expected = {"family", "generator", "seed", *_FAMILIES[family][0]["smoke"]}
        if set(params) != expected:
            raise ConfigError(
                f"phantom ({family}) parameters must be exactly {', '.join(sorted(expected))}, got {', '.join(sorted(params))} "
                f"(build them with protocol(preset, {{'family': {family!r}}}))"
            )
        splits, extra = _FAMILIES[family][1](params)
        with building(cache, "phantom", params, force=force) as tmp:
            write_prepared(tmp, dataset="phantom", protocol=params, splits=splits, extra=extra)
        path = find_prepared(cache, "phantom", params)
        assert path is not None
        return path

    def load(self, *, cache: Path, params: Mapping[str, Any]) -> PreparedDataset:
        """Open the cached set, generating it first when needed."""
        return open_prepared(self.prepare(cache=cache, params=params))
