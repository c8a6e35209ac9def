"""Caption pretraining (PIGEON's synthetic captions): fine-tune a CLIP backbone on geotagged photos.

Each training photo gets a caption built from its labels ("A Street View photo close to {city} in the
region of {admin1}, {country}. The climate is {climate}. Taken in {month}.", parts whose labels are
missing left out), and the CLIP image tower is trained so that photo and caption embeddings match,
with CLIP's symmetric InfoNCE loss (photos that share a caption, such as the views of one panorama,
are all positives of each other). What is trained (:class:`FinetuneConfig`): the whole image tower,
only its projection, or a LoRA adapter on its attention (``peft``; merged into the weights at the end),
each optionally with the text tower too.

Runs resume: every ``save_every`` steps the trainable tensors, the optimizer state and the run's state
are written atomically to ``OUT/checkpoint.safetensors``; a rerun of the same command continues from
the last checkpoint and, because the data order and learning rate are functions of the step number,
ends with the same weights as an uninterrupted run. The result, ``OUT/``, is a Hugging Face CLIP
folder (``model.safetensors``, config, preprocessor and tokenizer files, ``finetune.json``): use it
as ``hf:OUT`` with ``embed``, ``train`` and ``locate``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInput, PhotoFailure, failure_of

__all__ = [
    "CLIMATE_NAMES",
    "FinetuneConfig",
    "FinetuneResult",
    "build_captions",
    "caption",
    "finetune",
]

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")  # fmt: skip
#: Köppen-Geiger classes in words (Kottek et al. 2006), for captions
CLIMATE_NAMES = {
    "Af": "tropical rainforest", "Am": "tropical monsoon", "As": "tropical savanna with a dry summer",
    "Aw": "tropical savanna", "BSh": "hot semi-arid", "BSk": "cold semi-arid", "BWh": "hot desert",
    "BWk": "cold desert", "Cfa": "humid subtropical", "Cfb": "temperate oceanic", "Cfc": "subpolar oceanic",
    "Csa": "hot-summer Mediterranean", "Csb": "warm-summer Mediterranean", "Csc": "cold-summer Mediterranean",
    "Cwa": "monsoon-influenced humid subtropical", "Cwb": "subtropical highland", "Cwc": "cold subtropical highland",
    "Dfa": "hot-summer humid continental", "Dfb": "warm-summer humid continental", "Dfc": "subarctic",
    "Dfd": "extremely cold subarctic", "Dsa": "hot dry-summer continental", "Dsb": "warm dry-summer continental",
    "Dsc": "dry-summer subarctic", "Dsd": "extremely cold dry-summer subarctic",
    "Dwa": "monsoon-influenced hot-summer continental", "Dwb": "monsoon-influenced warm-summer continental",
    "Dwc": "monsoon-influenced subarctic", "Dwd": "monsoon-influenced extremely cold subarctic",
    "EF": "ice cap", "ET": "tundra",
}  # fmt: skip
TRAIN_MODES = ("image", "projection", "lora")
CHECKPOINT = "checkpoint.safetensors"
RESULT = "finetune.json"
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "preprocessor_config.json",
)


# ------------------------------------------------------------------------------------------ captions
def _text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    s = str(v).strip()
    return s or None


def caption(
    *, country: Any = None, admin1: Any = None, city: Any = None, climate: Any = None, month: Any = None
) -> str:
    """PIGEON's synthetic caption from labels; parts whose labels are missing are left out.

    ``climate`` is a Köppen class ('Cfb') or words; ``month`` 1..12 or a name.
    >>> caption(country="Croatia", admin1="Istria", city="Pula", climate="Csa", month=7)
    'A Street View photo close to Pula in the region of Istria, Croatia. The climate is hot-summer Mediterranean. Taken in July.'
    """
    country, admin1, city, climate = _text(country), _text(admin1), _text(city), _text(climate)
    s = "A Street View photo"
    if city:
        s += f" close to {city}"
    if admin1:
        s += f" in the region of {admin1}" + (f", {country}" if country else "")
    elif country:
        s += f" in {country}"
    s += "."
    if climate:
        s += f" The climate is {CLIMATE_NAMES.get(climate, climate)}."
    m = _text(month)
    if m:
        try:
            s += f" Taken in {MONTHS[int(float(m)) - 1]}." if 1 <= int(float(m)) <= 12 else ""
        except ValueError:
            s += f" Taken in {m}."
    return s


def build_captions(frame: Any, *, aux_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """One caption per row of a manifest frame, from its label columns (``country_name`` or ``country``,
    ``admin1``, ``city``, ``climate``, ``month`` or ``captured_at``). Place labels that a frame lacks
    entirely are looked up offline from ``lat``/``lon``; climate is read from ``aux_dir`` when given."""
    from .places import reverse_geocode
    from .places.aux import month_of

    f = frame.reset_index(drop=True)
    n = len(f)
    cols = {c: f[c].tolist() for c in ("country_name", "admin1", "city", "climate", "month") if c in f.columns}
    if "country_name" not in cols and "country" in f.columns:
        from .places.countries import country_label_points

        names = dict(zip(*(country_label_points()[k] for k in ("country", "name"))))
        cols["country_name"] = [names.get(c, c) for c in f["country"]]
    if not {"country_name", "admin1", "city"} <= set(cols):
        info = reverse_geocode(f["lat"].to_numpy(dtype=np.float64), f["lon"].to_numpy(dtype=np.float64))
        for ours, theirs in (("country_name", "country_name"), ("admin1", "admin1"), ("city", "city")):
            cols.setdefault(ours, info[theirs].tolist())
    if "climate" not in cols and aux_dir is not None:
        from .places.aux import AuxRasters

        cols["climate"] = list(AuxRasters(aux_dir).climate(f["lat"].to_numpy(), f["lon"].to_numpy()))
    if "month" not in cols and "captured_at" in f.columns:
        cols["month"] = month_of(f["captured_at"].to_numpy(dtype=object)).tolist()
    get = lambda c, i: cols[c][i] if c in cols else None  # noqa: E731
    out = [
        caption(
            country=get("country_name", i),
            admin1=get("admin1", i),
            city=get("city", i),
            climate=get("climate", i),
            month=get("month", i),
        )
        for i in range(n)
    ]
    return out


# ------------------------------------------------------------------------------------------ config
@dataclass
class FinetuneConfig:
    """What and how to fine-tune.

    ``train``: ``image`` (vision tower + its projection), ``projection`` (the image projection only),
    ``lora`` (LoRA adapters of rank ``lora_rank`` on the vision tower's attention, merged at the end);
    ``text`` also trains the text tower (in ``lora`` mode: adapters on it too). ``max_steps`` caps the
    run (default: ``epochs`` full passes). The learning rate warms up linearly over ``warmup`` (a share
    of the steps) and then follows a cosine to zero. ``val_fraction`` of the locations (or the
    manifest's ``val`` split) is held out and its loss reported, never trained on.
    """

    train: str = "image"
    text: bool = False
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 1e-5
    weight_decay: float = 0.1
    warmup: float = 0.05
    lora_rank: int = 8
    lora_alpha: int = 16
    seed: int = 0
    save_every: int = 50
    val_fraction: float = 0.05
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.train not in TRAIN_MODES:
            raise InvalidInput(f"train={self.train!r}: expected one of {', '.join(TRAIN_MODES)}")
        for name in ("epochs", "batch_size", "save_every", "lora_rank"):
            if int(getattr(self, name)) < 1:
                raise InvalidInput(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.batch_size < 2:
            raise InvalidInput("batch_size must be >= 2: InfoNCE contrasts the photos of a batch")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidInput(f"max_steps must be >= 1, got {self.max_steps!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InvalidInput(f"lr must be a positive number, got {self.lr!r}")
        if not (0 <= self.warmup < 1 and 0 <= self.val_fraction < 1 and self.weight_decay >= 0):
            raise InvalidInput("warmup and val_fraction must be in [0, 1), weight_decay >= 0")

    def plan(self) -> dict[str, Any]:
        """The settings that change the result (a resumed run must use the same)."""
        d = asdict(self)
        d.pop("save_every")
        d.pop("device")
        return d


@dataclass
class FinetuneResult:
    """What a run did: ``out`` folder, ``steps``, per-step ``losses`` (None: skipped batch), validation
    losses ``val_losses`` as (step, loss), the photos that could not be read (``failed``: image id ->
    :class:`~geoscout.errors.PhotoFailure`), and whether it ``resumed``."""

    out: Path
    steps: int
    losses: list[float | None]
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    failed: dict[str, PhotoFailure] = field(default_factory=dict)
    n_train: int = 0
    n_val: int = 0
    resumed_from: int = 0
    seconds: float = 0.0

    def epoch_means(self, steps_per_epoch: int) -> list[float]:
        out = []
        for s in range(0, len(self.losses), steps_per_epoch):
            v = [x for x in self.losses[s : s + steps_per_epoch] if x is not None]
            if v:
                out.append(float(np.mean(v)))
        return out


# ------------------------------------------------------------------------------------------ data
def _hf_dir(backbone: str, weights: Any) -> Path:
    from .backbones import HF_ALIASES
    from .backbones.clip import resolve_hf_files

    if backbone.startswith("hf:"):
        return resolve_hf_files(backbone[3:], weights)
    if backbone in HF_ALIASES:
        return resolve_hf_files(HF_ALIASES[backbone], weights)
    raise InvalidInput(
        f"{backbone}: caption fine-tuning needs a transformers CLIP backbone with a text tower "
        "(hf:DIR, hf:REPO, streetclip, clip-vit-b32, clip-vit-l14)"
    )


def _training_rows(datasets: Sequence[Any], config: FinetuneConfig, aux_dir: Any) -> tuple[Any, Any]:
    """(train frame, val frame) with ``abs_path``, ``image_id`` and ``caption`` columns."""
    import pandas as pd

    from .data import Dataset, load_dataset, split_for_training

    frames = []
    for item in datasets:
        ds = item if isinstance(item, Dataset) else load_dataset(item)
        f = ds.frame.reset_index(drop=True).copy()
        f["abs_path"] = [str(p) for p in ds.image_paths()]
        f["caption"] = build_captions(f, aux_dir=aux_dir)
        f["dataset"] = ds.name
        loc = f["location_id"] if "location_id" in f.columns else f["image_id"]
        f["group"] = ds.name + "/" + loc.where(loc.notna(), f["image_id"]).astype(str)
        frames.append(f)
    if not frames:
        raise InvalidInput("no datasets given; pass at least one dataset folder or CSV")
    frame = pd.concat(frames, ignore_index=True)
    split, _ = split_for_training(frame, val_fraction=config.val_fraction, seed=config.seed, group_column="group")
    train = frame[split == "train"].reset_index(drop=True)
    val = frame[split == "val"].reset_index(drop=True)
    if len(train) < config.batch_size:
        raise InvalidInput(
            f"{len(train)} training photos for batch_size {config.batch_size}; lower --batch-size or add photos"
        )
    return train, val


# ------------------------------------------------------------------------------------------ training
class _Run:
    """The model, optimizer and batches of one fine-tuning run."""

    def __init__(self, src: Path, config: FinetuneConfig, train: Any, val: Any, device: str) -> None:
        import torch
        from transformers import AutoTokenizer

        from .backbones import create_backbone

        self.config = config
        self.device = device
        self.backbone = create_backbone(f"hf:{src}", device=device)  # its image decoding + preprocessing
        if not any((src / f).is_file() for f in ("tokenizer.json", "vocab.json")):
            raise InvalidInput(
                f"{src}: no tokenizer files (tokenizer.json or vocab.json); captions need the text tower"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(str(src))
        self.model = self.backbone.clip_model  # type: ignore[attr-defined]
        self.peft = None
        model = self.model
        for p in model.parameters():
            p.requires_grad_(False)
        if config.train == "lora":
            try:
                from peft import LoraConfig, get_peft_model
            except ModuleNotFoundError:
                raise InvalidInput("--train lora needs peft: pip install 'geoscout[finetune]'") from None
            towers = "(vision_model|text_model)" if config.text else "vision_model"
            self.peft = get_peft_model(
                model,
                LoraConfig(
                    r=config.lora_rank,
                    lora_alpha=config.lora_alpha,
                    lora_dropout=0.0,
                    target_modules=rf".*{towers}\..*\.(q_proj|k_proj|v_proj|out_proj)",
                ),
            )
        else:
            prefixes = ["visual_projection."] + (["vision_model."] if config.train == "image" else [])
            if config.text:
                prefixes += ["text_projection."] + (["text_model."] if config.train == "image" else [])
            for name, p in model.named_parameters():
                if name.startswith(tuple(prefixes)):
                    p.requires_grad_(True)
        model.logit_scale.requires_grad_(True)
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        decay = [p for n, p in self.params if p.ndim >= 2]
        no_decay = [p for n, p in self.params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr,
            betas=(0.9, 0.98),
            eps=1e-6,
        )
        self.train, self.val = train, val
        self.captions = sorted(set(train["caption"]) | set(val["caption"]))
        index = {c: i for i, c in enumerate(self.captions)}
        self.train_cap = np.array([index[c] for c in train["caption"]], dtype=np.int64)
        self.val_cap = np.array([index[c] for c in val["caption"]], dtype=np.int64)
        self._text_cache = None if config.text else self._encode_texts(self.captions)
        self.failed: dict[str, PhotoFailure] = {}

    # -- pieces ------------------------------------------------------------------------------
    def _encode_texts(self, texts: list[str], grad: bool = False) -> Any:
        import torch

        out = []
        for i in range(0, len(texts), 256):
            tok = self.tokenizer(texts[i : i + 256], padding=True, truncation=True, return_tensors="pt")
            with torch.set_grad_enabled(grad):
                pooled = self.model.text_model(
                    input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device)
                ).pooler_output
                out.append(torch.nn.functional.normalize(self.model.text_projection(pooled), dim=-1))
        return torch.cat(out)

    def _pixels(self, frame: Any, rows: np.ndarray) -> tuple[Any, np.ndarray]:
        """Preprocessed pixels of ``rows`` (decoding failures dropped and recorded) and the rows kept."""
        from concurrent.futures import ThreadPoolExecutor

        import torch

        def load(i: int) -> Any:
            path = frame["abs_path"].iat[i]
            try:
                return self.backbone.preprocess(self.backbone.load_image(path))
            except Exception as exc:  # a bad photo costs its row, not the run
                return failure_of(exc, source=str(path), image_id=str(frame["image_id"].iat[i]))

        with ThreadPoolExecutor(2) as pool:
            arrays = list(pool.map(load, [int(i) for i in rows]))
        keep = [k for k, a in enumerate(arrays) if not isinstance(a, PhotoFailure)]
        for a in arrays:
            if isinstance(a, PhotoFailure):
                self.failed[str(a.image_id)] = a
        if not keep:
            return None, rows[:0]
        return torch.from_numpy(np.stack([arrays[k] for k in keep])).to(self.device), rows[keep]

    def step(self, step: int, total: int, steps_per_epoch: int) -> float | None:
        """One optimiser step (0-based ``step`` of ``total``) on its batch of training photos; its loss, or
        None when the batch was skipped (fewer than two readable photos)."""
        import torch

        for g in self.optimizer.param_groups:
            g["lr"] = self.lr_at(step, total)
        rows = self.batch_rows(step, steps_per_epoch)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.train, self.train_cap, rows, grad=True)
        if loss is None:
            return None
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(max=math.log(100.0))
        return float(loss.detach())

    def loss(self, frame: Any, caps: np.ndarray, rows: np.ndarray, grad: bool) -> Any:
        import torch

        px, rows = self._pixels(frame, rows)
        if px is None or len(rows) < 2:
            return None
        with torch.set_grad_enabled(grad):
            img = self.model.visual_projection(self.model.vision_model(pixel_values=px).pooler_output)
            img = torch.nn.functional.normalize(img, dim=-1)
            cid = torch.from_numpy(caps[rows]).to(self.device)
            if self._text_cache is not None:
                txt = self._text_cache[cid]
            else:
                uniq, inv = torch.unique(cid, return_inverse=True)
                txt = self._encode_texts([self.captions[int(u)] for u in uniq], grad=grad)[inv]
            scale = self.model.logit_scale.exp().clamp(max=100.0)
            logits = scale * img @ txt.T
            same = (cid[:, None] == cid[None, :]).float()
            target = same / same.sum(dim=1, keepdim=True)
            li = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
            lt = -(target * torch.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
            return (li + lt) / 2

    def batch_rows(self, step: int, steps_per_epoch: int) -> np.ndarray:
        """Row indices of ``step``: a permutation per epoch seeded by (seed, epoch), so any step can be replayed."""
        epoch, k = divmod(step, steps_per_epoch)
        perm = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.train))
        bs = self.config.batch_size
        return np.sort(perm[k * bs : (k + 1) * bs])

    def lr_at(self, step: int, total: int) -> float:
        warm = max(1, round(self.config.warmup * total))
        if step < warm:
            return self.config.lr * (step + 1) / warm
        return self.config.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    def val_loss(self) -> float | None:
        if len(self.val) < 2:
            return None
        was = self.model.training
        self.model.eval()
        vals, weights = [], []
        bs = self.config.batch_size
        for s in range(0, len(self.val), bs):
            rows = np.arange(s, min(s + bs, len(self.val)))
            lv = self.loss(self.val, self.val_cap, rows, grad=False)
            if lv is not None:
                vals.append(float(lv))
                weights.append(len(rows))
        self.model.train(was)
        return float(np.average(vals, weights=weights)) if vals else None

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path: Path, state: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        from ._io import atomic_path

        tensors = {}
        opt = self.optimizer.state
        for name, p in self.params:
            tensors[f"param/{name}"] = p.detach().cpu().contiguous()
            for k, v in opt.get(p, {}).items():
                tensors[f"opt/{name}/{k}"] = v.detach().cpu().reshape(v.shape).contiguous()
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"geoscout_finetune": json.dumps(state)})

    def load(self, path: Path) -> dict[str, Any]:
        import torch
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            state = json.loads((fh.metadata() or {})["geoscout_finetune"])
            keys = set(fh.keys())
            with torch.no_grad():
                for name, p in self.params:
                    p.copy_(fh.get_tensor(f"param/{name}").to(p.device))
                    st = {
                        k.rsplit("/", 1)[1]: fh.get_tensor(k).to(p.device)
                        for k in keys
                        if k.startswith(f"opt/{name}/") and k.count("/") == name.count("/") + 2
                    }
                    if st:
                        if "step" in st:
                            st["step"] = st["step"].cpu()
                        self.optimizer.state[p] = st
        return state

    def merged_model(self) -> Any:
        return self.peft.merge_and_unload() if self.peft is not None else self.model


def _data_sha(train: Any, val: Any) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in (train, val):
        for i, c in zip(f["image_id"].astype(str), f["caption"]):
            h.update(f"{i}\t{c}\n".encode())
        h.update(b"--\n")
    return h.hexdigest()[:16]


def finetune(
    datasets: Any,
    backbone: str,
    out: str | os.PathLike[str],
    config: FinetuneConfig | None = None,
    *,
    weights: Any = None,
    aux_dir: str | os.PathLike[str] | None = None,
    restart: bool = False,
    keep_checkpoint: bool = False,
    on_step: Callable[[int, float | None], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``backbone`` (``hf:DIR``, ``hf:REPO`` or an alias) on captioned ``datasets``; write ``out``.

    Resumes from ``out/checkpoint.safetensors`` when it holds the same run (``restart`` discards it);
    a finished ``out`` of the same run is returned as it is. ``on_step(step, loss)`` is called after
    every step (after that step's checkpoint, if one is due).
    """
    import torch

    config = config or FinetuneConfig()
    t0 = time.time()
    if isinstance(datasets, (str, os.PathLike)):
        datasets = [datasets]
    src = _hf_dir(backbone, weights)
    out = Path(out).expanduser()
    if out.resolve() == src.resolve():
        raise InvalidInput(f"-o {out}: is the backbone's own folder; write the fine-tuned model elsewhere")
    device = _device(config.device)
    done = out / RESULT
    ckpt = out / CHECKPOINT
    _check_out(out)
    train, val = _training_rows(list(datasets), config, aux_dir)
    plan = _plan(backbone, src, config, train, val)
    if out.is_dir() and any(out.iterdir()):
        if restart:
            for f in (done, ckpt):
                f.unlink(missing_ok=True)
        elif done.is_file():
            return _finished(out, plan, len(train), len(val))
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(config.seed)
    run = _Run(src, config, train, val, device)
    steps_per_epoch = max(1, len(train) // config.batch_size)
    total = config.max_steps or config.epochs * steps_per_epoch
    state: dict[str, Any] = {"plan": plan, "step": 0, "losses": [], "val_losses": [], "failed": {}}
    if ckpt.is_file() and not restart:
        state = _resumed(run, ckpt, plan)
    resumed_from = int(state["step"])
    if resumed_from == 0 and not state["val_losses"]:
        v = run.val_loss()
        if v is not None:
            state["val_losses"].append([0, v])
    _train_steps(run, state, (total, steps_per_epoch), ckpt, on_step)
    state["failed"] = {k: f.to_dict() for k, f in run.failed.items()}
    _check_failed(run.failed, len(train))
    _write_result(run, src, out, state, total, steps_per_epoch, backbone)
    if not keep_checkpoint:
        ckpt.unlink(missing_ok=True)
    return FinetuneResult(
        out,
        total,
        list(state["losses"]),
        [tuple(v) for v in state["val_losses"]],
        dict(run.failed),
        len(train),
        len(val),
        resumed_from,
        time.time() - t0,
    )


def _train_steps(
    run: _Run,
    state: dict[str, Any],
    schedule: tuple[int, int],
    ckpt: Path,
    on_step: Callable[[int, float | None], None] | None,
) -> None:
    """Run the steps from ``state["step"]`` to the ``total`` of ``schedule`` (total, steps per epoch), recording
    losses in ``state``: the validation loss after each epoch and the last step, a checkpoint every
    ``save_every`` steps and after the last, then ``on_step``."""
    total, steps_per_epoch = schedule
    run.model.train()
    for step in range(int(state["step"]), total):
        value = run.step(step, total, steps_per_epoch)
        state["losses"].append(value)
        state["step"] = step + 1
        if (step + 1) % steps_per_epoch == 0 or step + 1 == total:
            v = run.val_loss()
            if v is not None:
                state["val_losses"].append([step + 1, v])
        if (step + 1) % run.config.save_every == 0 or step + 1 == total:
            state["failed"] = {k: f.to_dict() for k, f in run.failed.items()}
            run.save(ckpt, state)
        if on_step is not None:
            on_step(step + 1, value)


def _plan(backbone: str, src: Path, config: FinetuneConfig, train: Any, val: Any) -> dict[str, Any]:
    """What makes a run the same run (a checkpoint or result of another plan is not resumed): the backbone and
    its weights, the training options and the data."""
    from .backbones.base import weights_sha256

    src_files = sorted(src.glob("*.safetensors")) or sorted(src.glob("pytorch_model*.bin"))
    return {
        "backbone": backbone,
        "source_weights_sha256": weights_sha256(src_files),
        "config": config.plan(),
        "data_sha": _data_sha(train, val),
        "n_train": len(train),
        "n_val": len(val),
    }


def _check_failed(failed: dict[str, PhotoFailure], n_train: int) -> None:
    """Refuse a run in which more than half of the training photos could not be read."""
    if len(failed) > n_train // 2:
        raise InvalidInput(
            f"{len(failed)} of {n_train} training photos could not be read (first: "
            f"{next(iter(failed.values())).message}); fix the dataset and rerun (the checkpoint is kept)"
        )


def _check_out(out: Path) -> None:
    """Refuse an output that is a file, or a non-empty folder holding neither a finished run nor a checkpoint."""
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"-o {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not ((out / RESULT).is_file() or (out / CHECKPOINT).is_file()):
        raise InvalidInput(f"-o {out}: folder exists and is not a finetune output; choose a new or empty folder")


def _resumed(run: _Run, ckpt: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """The state of the checkpoint ``ckpt`` of this run (``plan``), loaded into ``run`` (weights, optimiser,
    failures so far); a checkpoint of another run is refused."""
    prev = run.load(ckpt)
    if prev.get("plan") != plan:
        raise InvalidInput(
            f"-o {ckpt.parent}: holds a checkpoint of a different run ({_differs(prev.get('plan'), plan)}); "
            "pass --restart to discard it or choose another folder"
        )
    run.failed.update(_failures(prev.get("failed", {})))
    return prev


def _device(device: str) -> str:
    """``device`` with ``auto`` resolved (CUDA when torch has it); a CUDA device torch lacks is refused."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput(f"--device {device}: no CUDA device is available to torch here; use --device cpu")
    return device


def _finished(out: Path, plan: dict[str, Any], n_train: int, n_val: int) -> FinetuneResult:
    """The finished run in ``out`` (its result file) when it is the run ``plan`` describes; else refused."""
    prev = json.loads((out / RESULT).read_text())
    if prev.get("plan") != plan:
        raise InvalidInput(
            f"-o {out}: holds a finished fine-tune of a different run ({_differs(prev.get('plan'), plan)}); "
            "pass --restart to replace it or choose another folder"
        )
    return FinetuneResult(
        out,
        int(prev["steps"]),
        prev["losses"],
        [tuple(v) for v in prev["val_losses"]],
        _failures(prev.get("failed", {})),
        n_train,
        n_val,
        int(prev["steps"]),
        0.0,
    )


def _failures(records: dict[str, Any]) -> dict[str, PhotoFailure]:
    """The ``failed`` record of a checkpoint or result (image id -> failure dict; a plain string in runs
    written before the kinds) as typed failures."""
    return {k: PhotoFailure.from_dict(v, image_id=k) for k, v in records.items()}


def _differs(a: Any, b: dict[str, Any]) -> str:
    if not isinstance(a, dict):
        return "unreadable plan"
    keys = [k for k in b if a.get(k) != b[k]]
    if "config" in keys:
        keys.remove("config")
        keys += [k for k in b["config"] if (a.get("config") or {}).get(k) != b["config"][k]]
    return "differs in " + ", ".join(keys) if keys else "differs"


def _write_result(
    run: _Run, src: Path, out: Path, state: dict[str, Any], total: int, steps_per_epoch: int, backbone: str
) -> None:
    """Save the (merged) model and the source's preprocessor/tokenizer files into ``out``; ``finetune.json`` last."""
    from ._io import atomic_write_json

    model = run.merged_model()
    model.eval()
    tmp = out / ".writing"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(str(tmp), safe_serialization=True)
    run.tokenizer.save_pretrained(str(tmp))
    for name in _TOKENIZER_FILES:
        if (src / name).is_file() and not (tmp / name).is_file():
            shutil.copy2(src / name, tmp / name)
    if (src / "preprocessor_config.json").is_file():
        shutil.copy2(src / "preprocessor_config.json", tmp / "preprocessor_config.json")
    for f in tmp.iterdir():
        os.replace(f, out / f.name)
    tmp.rmdir()
    epochs = FinetuneResult(out, total, state["losses"]).epoch_means(steps_per_epoch)
    atomic_write_json(
        out / RESULT,
        {
            "plan": state["plan"],
            "steps": total,
            "steps_per_epoch": steps_per_epoch,
            "epoch_mean_loss": epochs,
            "losses": state["losses"],
            "val_losses": state["val_losses"],
            "failed": state["failed"],
            "base": backbone,
            "use": f"--backbone hf:{out}",
        },
    )
