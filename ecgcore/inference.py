"""The two beat classifiers: loading the committed weights and running them.

``model.predict`` is not thread-safe under JAX (two concurrent calls break the model for
good), and a Dash server is threaded. So each model is run through one ``jax.jit`` of its
pure ``stateless_call`` with its variables passed in: no shared mutable state, safe from
any number of threads.

This module is the one place that sets ``KERAS_BACKEND`` (before importing keras).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from ecgcore.beats import AAMI_CLASSES, BINARY_CLASSES, BeatInputs  # noqa: E402
from ecgcore.errors import ModelError  # noqa: E402

MODELS_DIR = Path(__file__).resolve().parent / "models"
"""The packaged weights and model cards."""
MODEL_FILES = {"binary": "binary.keras", "aami": "aami.keras"}

_BUCKETS = (32, 128, 512, 4096)
"""Batch sizes the jitted functions are compiled for; inputs are padded up to one of
them (and cut into chunks of the largest), so a new recording length never recompiles."""


class JittedModel:
    """A Keras model as one pure, jitted, thread-safe function of its inputs.

    Calling it with ``(waveforms, rr)`` numpy arrays returns the softmax probabilities as
    numpy. :meth:`raw` is the jitted JAX function ``(waveforms, rr) -> probs`` itself
    (for ``jax.grad`` in integrated gradients).
    """

    def __init__(self, model, name: str):
        import jax

        self.name = name
        self.model = model
        self.channels = int(model.inputs[0].shape[-1])
        self.window = int(model.inputs[0].shape[1])
        self.n_rr = int(model.inputs[1].shape[-1])
        self.n_classes = int(model.outputs[0].shape[-1])
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def forward(waveforms, rr):
            out, _ = model.stateless_call(trainable, non_trainable, [waveforms, rr],
                                          training=False)
            return out

        self.raw = jax.jit(forward)

    def __call__(self, waveforms: np.ndarray, rr: np.ndarray) -> np.ndarray:
        waveforms = np.asarray(waveforms, dtype=np.float32)[..., : self.channels]
        rr = np.asarray(rr, dtype=np.float32)
        n = rr.shape[0]
        if n == 0:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        largest = _BUCKETS[-1]
        outs = []
        for start in range(0, n, largest):
            w, r = waveforms[start:start + largest], rr[start:start + largest]
            m = r.shape[0]
            size = next(b for b in _BUCKETS if b >= m)
            if size != m:
                w = np.concatenate([w, np.zeros((size - m,) + w.shape[1:], np.float32)])
                r = np.concatenate([r, np.ones((size - m,) + r.shape[1:], np.float32)])
            outs.append(np.asarray(self.raw(w, r))[:m])
        return np.concatenate(outs).astype(np.float32)

    def compile_all(self) -> None:
        """Compile the function for every batch size it pads to, now rather than at a
        user's first recording (about half a second each here)."""
        for size in _BUCKETS:
            self(np.zeros((size, self.window, self.channels), np.float32),
                 np.ones((size, self.n_rr), np.float32))


@dataclass
class Classifiers:
    """Both loaded models and their cards.

    Attributes
    ----------
    binary, aami : JittedModel
        Normal/abnormal and five-class AAMI models.
    cards : dict
        Model card (dict) per model name, where a card file is present.
    models_dir : Path
        Where they were loaded from.
    """

    binary: JittedModel
    aami: JittedModel
    cards: dict = field(default_factory=dict)
    models_dir: Path = MODELS_DIR

    def model(self, name: str) -> JittedModel:
        """The model called ``"binary"`` or ``"aami"``."""
        if name not in MODEL_FILES:
            raise ModelError(f"unknown model {name!r}: choose 'binary' or 'aami'")
        return getattr(self, name)


_cache: dict[str, Classifiers] = {}
_lock = threading.Lock()


def load_model_file(path: Path):
    """Load one ``.keras`` file with ``safe_mode=True``; :class:`ModelError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"model file {path} is missing: run `ecg train` to build the classifiers, or "
            "restore ecgcore/models/ from the repository"
        )
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for a bad archive
        raise ModelError(
            f"model file {path} cannot be loaded ({type(exc).__name__}: {exc}); it may be "
            "corrupt or from an incompatible version: rebuild it with `ecg train`"
        ) from None


def load_classifiers(models_dir: str | Path | None = None) -> Classifiers:
    """Load both classifiers (cached per folder, thread-safe).

    Parameters
    ----------
    models_dir : path or None
        Folder holding ``binary.keras`` and ``aami.keras`` (default: the packaged
        ``ecgcore/models/``).

    Raises
    ------
    ModelError
        A model file is missing, corrupt, or does not take the expected inputs.
    """
    folder = Path(models_dir) if models_dir is not None else MODELS_DIR
    key = str(folder.resolve())
    with _lock:
        if key in _cache:
            return _cache[key]
        models = {}
        for name, file in MODEL_FILES.items():
            jm = JittedModel(load_model_file(folder / file), name)
            expected = len(BINARY_CLASSES) if name == "binary" else len(AAMI_CLASSES)
            if jm.n_classes != expected:
                raise ModelError(
                    f"model file {folder / file} has {jm.n_classes} outputs, expected "
                    f"{expected}: it is not the {name} classifier"
                )
            models[name] = jm
        cards = {}
        for name in MODEL_FILES:
            card = folder / f"{name}.json"
            if card.is_file():
                try:
                    cards[name] = json.loads(card.read_text())
                except (OSError, ValueError):
                    cards[name] = {}
        classifiers = Classifiers(models["binary"], models["aami"], cards, folder)
        _cache[key] = classifiers
        return classifiers


def clear_cache() -> None:
    """Forget loaded classifiers (after retraining into the same folder)."""
    with _lock:
        _cache.clear()


def classify_beats(classifiers: Classifiers, inputs: BeatInputs) -> dict:
    """Run both models on the beats of a recording.

    Parameters
    ----------
    classifiers : Classifiers
        From :func:`load_classifiers`.
    inputs : BeatInputs
        From :func:`ecgcore.beats.beat_inputs`.

    Returns
    -------
    dict
        ``binary_p_abnormal`` (n,) float32; ``binary`` (n,) labels ``"normal"`` /
        ``"abnormal"``; ``aami_probs`` (n, 5) float32 in the order of
        :data:`AAMI_CLASSES`; ``aami`` (n,) labels ``"N"``, ``"S"``, ``"V"``, ``"F"``,
        ``"Q"``; ``classes`` the AAMI order.
    """
    for jm in (classifiers.binary, classifiers.aami):
        if inputs.waveforms.shape[1] != jm.window or inputs.rr_features.shape[1] != jm.n_rr:
            raise ModelError(
                f"the {jm.name} model expects windows of {jm.window} samples and {jm.n_rr} "
                f"RR features, got {inputs.waveforms.shape[1]} and "
                f"{inputs.rr_features.shape[1]}: the weights do not match ecgcore.beats"
            )
    p_bin = classifiers.binary(inputs.waveforms, inputs.rr_features)
    p_aami = classifiers.aami(inputs.waveforms, inputs.rr_features)
    p_abnormal = p_bin[:, 1] if p_bin.size else np.zeros(0, np.float32)
    return {
        "binary_p_abnormal": p_abnormal.astype(np.float32),
        "binary": np.where(p_abnormal >= 0.5, "abnormal", "normal"),
        "aami_probs": p_aami,
        "aami": np.asarray(AAMI_CLASSES)[np.argmax(p_aami, axis=1)] if len(p_aami)
        else np.zeros(0, dtype="<U1"),
        "classes": AAMI_CLASSES,
    }
