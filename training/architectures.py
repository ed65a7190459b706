"""Keras 3 architectures of the two beat classifiers (JAX backend)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ecgcore.beats import RR_FEATURE_NAMES, WAVEFORM_CHANNELS
from ecgcore.inference import keras  # sets KERAS_BACKEND=jax in one place


@dataclass(frozen=True)
class ArchConfig:
    """Settings of one classifier network.

    Attributes
    ----------
    channels : int
        Waveform channels used (1: the beat; 2: the beat and the beat minus the
        recording's median beat, see ``ecgcore.beats.WAVEFORM_CHANNELS``).
    filters : tuple of int
        Filters of each residual stage (each stage halves the time axis).
    kernel : int
        Kernel size of the residual convolutions.
    dropout : float
        Dropout before the dense head.
    rr_units : int
        Width of the RR-feature branch (0: no RR features).
    dense : int
        Width of the joint dense layer.
    stem_stride : int
        Stride of the first convolution: 3 looks at the beat at 120 Hz, which keeps the
        QRS shape and costs a third of the work of stride 2 at 360 Hz input.
    rr_used : tuple of str or None
        The RR features (names from ``ecgcore.beats.RR_FEATURE_NAMES``) the network reads;
        None: all. The model still takes every feature as input and picks these with a
        fixed, non-trainable selection layer saved in the model, so serving passes the
        same input whatever the choice.
    waveform_used : tuple of str or None
        The waveform channels (names from ``ecgcore.beats.WAVEFORM_CHANNELS``) the network
        reads, picked the same way; None: the first ``channels``.
    """

    channels: int = 2
    filters: tuple[int, ...] = (16, 32, 32)
    kernel: int = 5
    dropout: float = 0.3
    rr_units: int = 16
    dense: int = 32
    stem_stride: int = 2
    rr_used: tuple[str, ...] | None = None
    waveform_used: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        """Plain-dict form (for cards and JSON)."""
        d = asdict(self)
        d["filters"] = list(self.filters)
        for key in ("rr_used", "waveform_used"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d


SMALL_WIDE_RR = ArchConfig(filters=(8, 16, 32), stem_stride=3, rr_units=32, dense=48)
"""The ``small_wide_rr`` network of ``training/EXPERIMENTS.md``: small enough for >= 20,000
beats/s for both models on 2 cores."""


def selection_matrix(names: tuple[str, ...], all_names: tuple[str, ...]) -> np.ndarray:
    """0/1 matrix ``(len(all_names), len(names))`` picking the named columns, in order."""
    unknown = sorted(set(names) - set(all_names))
    if unknown:
        raise ValueError(f"unknown inputs: {', '.join(unknown)}; known: {', '.join(all_names)}")
    matrix = np.zeros((len(all_names), len(names)), dtype=np.float32)
    for column, name in enumerate(names):
        matrix[all_names.index(name), column] = 1.0
    return matrix


def _residual_stage(x, filters: int, kernel: int, name: str):
    layers = keras.layers
    shortcut = layers.Conv1D(filters, 1, padding="same", name=f"{name}_proj")(x)
    y = layers.Conv1D(filters, kernel, padding="same", use_bias=False, name=f"{name}_c1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_r1")(y)
    y = layers.Conv1D(filters, kernel, padding="same", use_bias=False, name=f"{name}_c2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    y = layers.Activation("relu", name=f"{name}_r2")(y)
    return layers.MaxPooling1D(2, name=f"{name}_pool")(y)


def build_classifier(
    n_classes: int, window: int, n_rr: int, config: ArchConfig, name: str = "classifier"
):
    """One residual 1-D CNN over the beat plus a dense branch over the RR features.

    Inputs: ``waveform`` (window, config.channels) and ``rr`` (n_rr,). Output: softmax
    over ``n_classes``.
    """
    layers = keras.layers
    wave_in = keras.Input((window, config.channels), name="waveform")
    rr_in = keras.Input((n_rr,), name="rr")
    x = wave_in
    if config.waveform_used is not None:
        names = WAVEFORM_CHANNELS[: config.channels]
        select = layers.Conv1D(len(config.waveform_used), 1, use_bias=False, trainable=False,
                               name="waveform_select")
        x = select(x)
        select.set_weights([selection_matrix(config.waveform_used, names)[None]])
    x = layers.Conv1D(config.filters[0], 7, strides=config.stem_stride, padding="same",
                      use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for i, f in enumerate(config.filters):
        x = _residual_stage(x, f, config.kernel, name=f"stage{i}")
    x = layers.Concatenate(name="pools")(
        [layers.GlobalAveragePooling1D(name="gap")(x), layers.GlobalMaxPooling1D(name="gmp")(x)]
    )
    parts = [x]
    if config.rr_units:
        r = rr_in
        if config.rr_used is not None:
            select = layers.Dense(len(config.rr_used), use_bias=False, trainable=False,
                                  name="rr_select")
            r = select(r)
            if n_rr != len(RR_FEATURE_NAMES):
                raise ValueError(f"{n_rr} RR features; ecgcore.beats has {len(RR_FEATURE_NAMES)}")
            select.set_weights([selection_matrix(config.rr_used, RR_FEATURE_NAMES)])
        r = layers.BatchNormalization(name="rr_bn")(r)
        r = layers.Dense(config.rr_units, activation="relu", name="rr_dense")(r)
        parts.append(r)
    h = layers.Concatenate(name="joint")(parts) if len(parts) > 1 else parts[0]
    h = layers.Dropout(config.dropout, name="drop")(h)
    h = layers.Dense(config.dense, activation="relu", name="head")(h)
    h = layers.Dropout(config.dropout / 2, name="drop2")(h)
    out = layers.Dense(n_classes, activation="softmax", name="probs")(h)
    return keras.Model([wave_in, rr_in], out, name=name)

