"""Training of the two classifiers: one network per seed, and patient-wise CV."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ecgcore.beats import AAMI_CLASSES
from ecgcore.inference import JittedModel, keras
from training.architectures import SMALL_WIDE_RR, ArchConfig, build_classifier
from training.dataset import BeatSet, patient_folds


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes
    ----------
    epochs, batch_size, learning_rate
        Adam with a cosine decay to zero over the epochs.
    weight_power : float
        Class weight = (n_total / (k * n_class)) ** weight_power: 1 is "balanced", 0 none.
        Balanced weights turned thousands of N beats into F (F is nearly all one patient).
    weight_cap : float
        Largest class weight.
    normal_fraction : float
        Fraction of the N beats drawn (afresh) each epoch: faster epochs, and a milder
        imbalance without inflating the weight of the rare, one-patient classes.
    augment : bool
        Per epoch: Gaussian noise, baseline wander and amplitude scaling of the beats.
    rr_drop : tuple of int
        RR feature columns held at 1 in training (an ablation: the model cannot use them).
    s_waveform_swap : float
        Per epoch, this share of the S beats take the waveform of a random N beat of the
        same record (their RR features kept). A premature atrial beat is conducted like a
        normal one, so its timing is what marks it; the swap keeps the network from
        learning the particular shape of the few training patients' S beats.
    smote : float
        SMOTE (Chawla 2002): per epoch, each class rarer than ``smote`` times the N beats
        drawn is topped up to that count with synthetic beats, each a random point
        between one of its beats and one of that beat's :data:`SMOTE_NEIGHBOURS` nearest
        beats of the same class (any training patient), waveform and RR features alike.
        The synthetic beats take their class's weight. 0: none.
    logit_shift : tuple of float
        Added to the output layer's bias once trained, one value per class (empty: none):
        the class probabilities are multiplied by ``exp(shift)`` and renormalised, a
        correction of the class priors chosen on patient-wise CV predictions
        (``python -m training.experiments --shift-grid``). Inside the model, so serving
        and explanations see it alike.
    """

    epochs: int = 12
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_power: float = 0.5
    weight_cap: float = 20.0
    normal_fraction: float = 0.35
    augment: bool = True
    rr_drop: tuple[int, ...] = ()
    s_waveform_swap: float = 0.0
    smote: float = 0.0
    logit_shift: tuple[float, ...] = ()
    arch: ArchConfig = SMALL_WIDE_RR

    def to_dict(self) -> dict:
        """Plain-dict form (for cards and JSON)."""
        d = asdict(self)
        d["arch"] = self.arch.to_dict()
        d["rr_drop"] = list(self.rr_drop)
        d["logit_shift"] = list(self.logit_shift)
        return d


SERVED_CONFIGS: dict[str, TrainConfig] = {
    "binary": TrainConfig(),
    "aami": TrainConfig(s_waveform_swap=1.0),
}
"""What ``ecg train`` builds for each task, chosen by patient-wise CV inside DS1
(``training/EXPERIMENTS.md``): the highest score among the networks whose explanations
pass ``tests/test_explain.py``.

Both networks read the 13 RR features and the P coherence (``ecgcore.beats.p_coherence``,
whether the activity before the QRS is locked to it), which together tell a premature
atrial beat (its own P wave) from a short cycle of atrial fibrillation (none).

The five-class network is ``small_wide_rr_s_swap100_p_coherence``: every S training beat
shown with the waveform of an N beat of its own patient, so that S is read from timing and
P-wave context rather than from the few DS1 patients' beat shapes. With three seeds it
scored 0.764, 0.763 and 0.708, against 0.718, 0.692 and 0.689 for the same network
without the P coherence (``small_wide_rr_s_swap100``, served before; rerun reading the RR
features only it scored 0.688 with seed 0, which shows the run-to-run noise) and 0.682,
0.632 and 0.658 without the swap (``small_wide_rr``). The networks reading only how a beat
differs from the patient's median beat (``small_wide_rr_template_difference``) are not
served: on the clear V beat of record 119 that ``tests/test_explain.py`` explains, their
SHAP attributions agree in sign with integrated gradients on 7 of the top 10 features (the
test asks 8), so their explanations could not be trusted.

No logit shift (``TrainConfig.logit_shift``) is served. The grid over the S and V shifts
on the five-class network's held-out CV predictions (``training/EXPERIMENTS.md``, three
seeds) peaks at S -1, V -1 (fewer S and V calls) with a mean score of 0.751, and its rule
picks S -0.5, V -0.5 (0.749), against 0.745 unshifted: a gain measured on the very
predictions it was picked on, ten times smaller than the seed spread (0.708-0.764), and one
that would lower the S and V sensitivities that fall short on DS2.

No SMOTE (``TrainConfig.smote``) is served: topping the rarer classes up with synthetic
beats scored a mean of 0.726 with the class weights kept and 0.731 without them
(``small_wide_rr_s_swap100_p_coherence_smote25*``, three seeds each), below the recipe's
0.745. The noise, wander and scaling augmentation (``TrainConfig.augment``) is kept:
without it the recipe scored a mean of 0.748 (``*_no_augment``), no measurable difference,
and it stands for the noise of devices that MIT-BIH does not have.

The binary network is ``small_wide_rr_p_coherence_binary``: with both seeds tried its
abnormal sensitivity and specificity were both above ``small_wide_rr_binary``'s (80.4 /
94.8 and 81.4 / 96.3 against 79.5 / 94.0 and 80.0 / 94.7). The S waveform swap was not
clearly better for it (``small_wide_rr_s_swap100_binary``: above with seed 0, below with
seed 1)."""


def class_weights(labels: np.ndarray, n_classes: int, power: float, cap: float) -> np.ndarray:
    """Tempered inverse-frequency weights, normalised to a mean of 1 per beat."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = (counts.sum() / (present.sum() * counts[present])) ** power
    w = np.minimum(w, cap)
    mean = float(np.dot(w, counts) / counts.sum())
    return w / mean


SMOTE_NEIGHBOURS = 5
"""Same-class neighbours a synthetic SMOTE beat may be drawn towards."""


def smote_neighbours(beats: BeatSet, n_classes: int) -> dict[int, np.ndarray]:
    """Per class, the :data:`SMOTE_NEIGHBOURS` nearest beats of each of its beats.

    Distances are taken over the beat (first channel, every fourth sample) and the
    standardised RR features. Returns ``{class: (n_class, k) indices into beats}``;
    classes with fewer than 2 beats are left out.
    """
    from sklearn.neighbors import NearestNeighbors

    rr = beats.rr.astype(np.float64)
    rr = (rr - rr.mean(axis=0)) / np.maximum(rr.std(axis=0), 1e-6)
    space = np.concatenate([beats.waveforms[:, ::4, 0].astype(np.float64), rr], axis=1)
    out = {}
    for c in range(n_classes):
        members = np.flatnonzero(beats.labels == c)
        if members.size < 2:
            continue
        k = min(SMOTE_NEIGHBOURS, members.size - 1)
        nn = NearestNeighbors(n_neighbors=k + 1).fit(space[members])
        _, near = nn.kneighbors(space[members])
        out[c] = members[near[:, 1:]]
    return out


def smote_rows(
    idx: np.ndarray, labels: np.ndarray, neighbours: dict[int, np.ndarray], target: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic beats topping each class of ``neighbours`` (but N) up to ``target``.

    ``idx`` holds the beats of this epoch (every beat of a class in ``neighbours`` must
    be in it). Returns, per synthetic beat, the epoch rows of its two parents and the
    interpolation weight of the second.
    """
    where = {int(b): r for r, b in enumerate(idx)}
    first, second, weight = [], [], []
    for c, near in neighbours.items():
        members = np.flatnonzero(labels == c)
        missing = target - members.size
        if c == 0 or missing <= 0:
            continue
        pick = rng.integers(0, members.size, missing)
        mate = near[pick, rng.integers(0, near.shape[1], missing)]
        first.append([where[int(b)] for b in members[pick]])
        second.append([where[int(b)] for b in mate])
        weight.append(rng.random(missing))
    if not first:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    return (np.concatenate(first).astype(np.int64), np.concatenate(second).astype(np.int64),
            np.concatenate(weight))


def augment(waveforms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise, baseline wander and amplitude scaling, applied alike to both channels.

    The second channel is the beat minus the recording's template; scaling the beat by
    ``a`` adds ``(a - 1) * beat`` to it, noise and wander add to both.
    """
    n, length, channels = waveforms.shape
    out = waveforms.copy()
    beat = waveforms[..., 0]
    scale = rng.uniform(0.8, 1.2, size=(n, 1)).astype(np.float32)
    t = np.arange(length, dtype=np.float32)[None, :] / 360.0
    freq = rng.uniform(0.1, 0.6, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    wander = (rng.uniform(0, 0.15, size=(n, 1)) * np.sin(2 * np.pi * freq * t + phase))
    noise = rng.normal(0, 1, size=(n, length)) * rng.uniform(0, 0.04, size=(n, 1))
    extra = ((scale - 1.0) * beat + wander + noise).astype(np.float32)
    for c in range(channels):
        out[..., c] += extra
    return out


def swap_s_waveforms(
    waveforms: np.ndarray, idx: np.ndarray, beats: BeatSet, share: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """``waveforms`` (the beats ``idx`` of ``beats``) with a ``share`` of the S beats given
    the waveform of a random N beat of their own record (records without N beats: kept)."""
    out = waveforms.copy()
    s_rows = np.flatnonzero((beats.labels[idx] == 1) & (rng.random(idx.size) < share))
    for record in np.unique(beats.record[idx[s_rows]]):
        normal = np.flatnonzero((beats.record == record) & (beats.labels == 0))
        if normal.size == 0:
            continue
        rows = s_rows[beats.record[idx[s_rows]] == record]
        out[rows] = beats.waveforms[rng.choice(normal, rows.size)][..., : out.shape[-1]]
    return out


def _targets(beats: BeatSet, task: str) -> np.ndarray:
    return beats.binary if task == "binary" else beats.labels


def n_classes_of(task: str) -> int:
    """2 for ``"binary"``, 5 for ``"aami"``."""
    return 2 if task == "binary" else len(AAMI_CLASSES)


def train_one(
    beats: BeatSet,
    task: str,
    config: TrainConfig,
    seed: int,
    *,
    on_epoch: Callable[[int, dict], None] | None = None,
    validation: BeatSet | None = None,
):
    """Train one network on ``beats`` for ``task`` (``"binary"`` or ``"aami"``).

    Returns
    -------
    model : keras.Model
    history : list of dict
        Per epoch: loss, accuracy, seconds, and validation figures when ``validation``
        is given (only for curves; never used to pick a model or an epoch).
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    n_classes = n_classes_of(task)
    y_all = _targets(beats, task)
    channels = config.arch.channels
    model = build_classifier(
        n_classes, beats.waveforms.shape[1], beats.rr.shape[1], config.arch, name=task
    )
    cw = class_weights(beats.labels, len(AAMI_CLASSES), config.weight_power, config.weight_cap)
    # Weights follow the five AAMI classes even for the binary task, so that rare
    # abnormal kinds (S, F) are not drowned among the V beats of the abnormal class.
    sample_w_all = cw[beats.labels].astype(np.float32)
    normal = np.flatnonzero(beats.labels == 0)
    other = np.flatnonzero(beats.labels != 0)
    n_normal = max(1, int(round(config.normal_fraction * normal.size)))
    neighbours, smote_target, n_synthetic = {}, 0, 0
    if config.smote > 0:
        neighbours = smote_neighbours(beats, len(AAMI_CLASSES))
        smote_target = int(round(config.smote * n_normal))
        n_synthetic = sum(max(0, smote_target - int(np.sum(beats.labels == c)))
                          for c in neighbours if c != 0)
    steps = config.epochs * int(np.ceil((n_normal + other.size + n_synthetic)
                                        / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, max(1, steps))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=True,
    )
    history = []
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        idx = np.concatenate([rng.choice(normal, n_normal, replace=False), other])
        rng.shuffle(idx)
        w = beats.waveforms[idx][..., :channels]
        if config.s_waveform_swap > 0:
            w = swap_s_waveforms(w, idx, beats, config.s_waveform_swap, rng)
        if config.augment:
            w = augment(w, rng)
        # N beats are subsampled, so their weight is scaled back up to keep the prior.
        sw = sample_w_all[idx] * np.where(
            beats.labels[idx] == 0, 1.0 / config.normal_fraction, 1.0
        ).astype(np.float32)
        rr = beats.rr[idx]
        y = y_all[idx]
        if neighbours:
            a, b, u = smote_rows(idx, beats.labels, neighbours, smote_target, rng)
            uw = u[:, None, None].astype(np.float32)
            w = np.concatenate([w, w[a] + uw * (w[b] - w[a])])
            rr = np.concatenate([rr, rr[a] + u[:, None].astype(np.float32) * (rr[b] - rr[a])])
            y = np.concatenate([y, y[a]])
            sw = np.concatenate([sw, sw[a]])
            order = rng.permutation(y.size)
            w, rr, y, sw = w[order], rr[order], y[order], sw[order]
        sw = sw / sw.mean()
        if config.rr_drop:
            rr = rr.copy()
            rr[:, list(config.rr_drop)] = 1.0
        h = model.fit(
            [w, rr], y, sample_weight=sw,
            batch_size=config.batch_size, epochs=1, verbose=0, shuffle=False,
        )
        row = {
            "epoch": epoch + 1,
            "loss": float(h.history["loss"][-1]),
            "accuracy": float(h.history["accuracy"][-1]),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if validation is not None and len(validation):
            p = JittedModel(model, task)(validation.waveforms, validation.rr)
            row["val_accuracy"] = float(np.mean(p.argmax(1) == _targets(validation, task)))
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row)
    if config.logit_shift:
        shift_logits(model, config.logit_shift)
    return model, history


def shift_logits(model, shift: tuple[float, ...] | list[float]) -> None:
    """Add ``shift`` to the bias of the softmax layer ``probs`` of ``model``, in place.

    Softmax(z + shift) is softmax(z) times ``exp(shift)``, renormalised: a change of the
    class priors that leaves everything the network learned as it is.
    """
    layer = model.get_layer("probs")
    kernel, bias = layer.get_weights()
    if len(shift) != bias.size:
        raise ValueError(f"{len(shift)} logit shifts for {bias.size} classes")
    layer.set_weights([kernel, bias + np.asarray(shift, dtype=bias.dtype)])


def shift_probabilities(probs: np.ndarray, shift: tuple[float, ...] | list[float]) -> np.ndarray:
    """What :func:`shift_logits` does to a model's outputs, applied to outputs already
    computed (rows of class probabilities)."""
    p = np.asarray(probs, dtype=np.float64) * np.exp(np.asarray(shift, dtype=np.float64))
    return p / p.sum(axis=1, keepdims=True)


def predict(model, beats: BeatSet, task: str) -> np.ndarray:
    """Softmax outputs of ``model`` on ``beats`` through the serving code path."""
    return JittedModel(model, task)(beats.waveforms, beats.rr)


@dataclass
class CrossValidation:
    """Held-out predictions of a patient-wise cross-validation.

    Attributes
    ----------
    folds : list of list of str
        The held-out records of each fold.
    true : np.ndarray
        Pooled held-out targets (binary or five-class, as the task).
    probs : np.ndarray
        Pooled held-out softmax outputs, in the order of ``true``.
    fold_of : np.ndarray
        Fold index of each pooled beat.
    histories : list of list of dict
        Training history of each fold's network.
    models : list
        Each fold's network (Keras), to classify its held-out patients' beats as
        ``ecg analyze`` would (``bench/rhythm.py`` finds DS1's rhythms with them).
    """

    folds: list[list[str]]
    true: np.ndarray
    probs: np.ndarray
    fold_of: np.ndarray
    histories: list
    models: list


def cross_validate(
    beats: BeatSet,
    task: str,
    config: TrainConfig,
    *,
    n_folds: int = 4,
    seed: int = 0,
    on_fold: Callable[[int, list[str]], None] | None = None,
) -> CrossValidation:
    """Train on all but one fold of patients and predict the held-out one, for each fold.

    Records are grouped by :func:`training.dataset.patient_folds`, so no patient is on
    both sides. Used to choose settings inside DS1 without looking at DS2.
    """
    folds = patient_folds(beats, n_folds)
    records = sorted(set(beats.record.tolist()))
    trues, probs, fold_of, histories, models = [], [], [], [], []
    for k, held in enumerate(folds):
        train = beats.of_records([r for r in records if r not in held])
        val = beats.of_records(held)
        if config.rr_drop:
            val.rr = val.rr.copy()
            val.rr[:, list(config.rr_drop)] = 1.0
        model, history = train_one(train, task, config, seed + k)
        trues.append(_targets(val, task))
        probs.append(predict(model, val, task))
        fold_of.append(np.full(len(val), k))
        histories.append(history)
        models.append(model)
        if on_fold is not None:
            on_fold(k, held)
    return CrossValidation(folds, np.concatenate(trues), np.concatenate(probs),
                           np.concatenate(fold_of), histories, models)

