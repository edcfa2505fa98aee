"""Typed, frozen configuration of the audio front end and the DVAN model.

A checkpoint stores :class:`ModelConfig` as JSON next to its weights, so the exact model and
its preprocessing can be rebuilt from the checkpoint alone (nanoGPT's ``model_args`` habit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

# Bumped whenever a field changes meaning; loading refuses other versions with a message.
FORMAT_VERSION = 1

Representation = Literal["mfcc", "delta", "delta2", "spectrogram", "mfcc_stack"]
AudioLayout = Literal["flat", "grid"]
AudioBranchName = Literal["paper1d", "tconv"]
BackboneName = Literal["efficientnet-lite0", "vgg16-fc7"]

#: Feature width of each supported image backbone.
BACKBONE_DIMS: dict[str, int] = {"efficientnet-lite0": 1280, "vgg16-fc7": 4096}


@dataclass(frozen=True)
class AudioConfig:
    """How a waveform becomes the audio branch's input (section V.A.2 of the paper).

    The paper's ``flat`` layout is frame-major: coefficient c of frame t sits at index
    ``t * n_coefficients + c`` so that truncating the vector truncates time. With the defaults,
    12 coefficients x 2000 frames of 5 ms = 10 s of speech = the paper's d2 = 24000.
    """

    # Rate every input is resampled to before analysis, in Hz.
    sample_rate: int = 16000
    # FFT size and analysis window in samples: 256 at 16 kHz = the paper's 16 ms window.
    n_fft: int = 256
    # Hop between frames in samples: 80 at 16 kHz = the paper's 5 ms shift.
    hop_length: int = 80
    # Mel bands behind the MFCC; with n_fft=256 more than 64 leaves empty filters.
    n_mels: int = 40
    # Cepstral coefficients kept per frame (rows of the feature grid); 12 gives d2 = 24000.
    n_coefficients: int = 12
    # What each row holds: "mfcc" (M), "delta" (first derivative of M alone, the paper's ΔM),
    # "delta2" (second derivative alone, Δ²M), "spectrogram" (log-mel energies in
    # n_coefficients bands, the CNN+SPEC baseline) or "mfcc_stack" (M, ΔM, Δ²M as 3 channels).
    representation: Representation = "mfcc"
    # Frames kept: longer audio is truncated, shorter zero-padded (2000 x 5 ms = 10 s).
    max_frames: int = 2000
    # "flat" gives one vector of channels*n_coefficients*max_frames (the paper's 1-D input);
    # "grid" gives (channels, n_coefficients, max_frames) for time-frequency convolutions.
    layout: AudioLayout = "flat"
    # Per-utterance mean/variance normalisation of each row over its valid frames. The paper
    # does not say; raw c0 is in the hundreds, which makes unnormalised training brittle.
    normalize: bool = True
    # Leading/trailing audio quieter than this many dB below the peak is trimmed before analysis.
    trim_db: float = 40.0

    @property
    def channels(self) -> int:
        """Number of stacked feature maps (3 for mfcc_stack, else 1)."""
        return 3 if self.representation == "mfcc_stack" else 1

    @property
    def flat_length(self) -> int:
        """Length of the flattened vector (the paper's d2)."""
        return self.channels * self.n_coefficients * self.max_frames

    @property
    def max_seconds(self) -> float:
        """Seconds of audio that fit in max_frames."""
        return self.max_frames * self.hop_length / self.sample_rate


@dataclass(frozen=True)
class ModelConfig:
    """Everything that rebuilds a DVAN model and its preprocessing."""

    # Image backbone; its ImageNet features are V_I of equation 1.
    backbone: BackboneName = "efficientnet-lite0"
    # Audio front end feeding the audio branch.
    audio: AudioConfig = field(default_factory=AudioConfig)
    # "paper1d" is Table I over the flat vector; "tconv" convolves the (coefficient, time) grid over time.
    audio_branch: AudioBranchName = "paper1d"
    # d3: width of the audio feature V_S.
    audio_dim: int = 1024
    # d4: width of the fusion feature h of equation 4.
    fusion_dim: int = 512
    # Dropout on V_I and V_S during training.
    dropout: float = 0.0
    # Version of this schema; see FORMAT_VERSION.
    format_version: int = FORMAT_VERSION

    @property
    def image_dim(self) -> int:
        """d1: width of the backbone's image feature V_I."""
        return BACKBONE_DIMS[self.backbone]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output, validated by :func:`validate_config`.

        Raises:
            ValueError: unknown keys, or a field of the wrong type or out of range; the message
                names the field.
        """
        if not isinstance(data, dict):
            raise ValueError(f"the config must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        audio_data = data.pop("audio", {})
        if not isinstance(audio_data, dict):
            raise ValueError(f"field 'audio' must be a JSON object, got {type(audio_data).__name__}")
        audio_names = {f.name for f in dataclasses.fields(AudioConfig)}
        model_names = {f.name for f in dataclasses.fields(cls)}
        unknown = (set(audio_data) - audio_names) | (set(data) - model_names)
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        config = cls(audio=AudioConfig(**audio_data), **data)
        validate_config(config)
        return config


# Sanity bounds of each numeric field: (type, lowest, highest). They are far beyond any useful
# model yet small enough that a config inside them never asks for an absurd allocation.
_AUDIO_LIMITS: dict[str, tuple[type, float, float]] = {
    "sample_rate": (int, 1000, 384000),
    "n_fft": (int, 16, 65536),
    "hop_length": (int, 1, 65536),
    "n_mels": (int, 1, 1024),
    "n_coefficients": (int, 1, 1024),
    "max_frames": (int, 8, 200000),
    "trim_db": (float, 1.0, 200.0),
}
_MODEL_LIMITS: dict[str, tuple[type, float, float]] = {
    "audio_dim": (int, 1, 65536),
    "fusion_dim": (int, 1, 65536),
    "dropout": (float, 0.0, 0.99),
}
#: Largest flat audio input (channels x coefficients x frames) the paper's 1-D branch is built for.
MAX_FLAT_LENGTH = 4_000_000
_CHOICES: dict[str, tuple[str, ...]] = {
    "representation": ("mfcc", "delta", "delta2", "spectrogram", "mfcc_stack"),
    "layout": ("flat", "grid"),
    "audio_branch": ("paper1d", "tconv"),
    "backbone": tuple(BACKBONE_DIMS),
}


def _check_number(name: str, value: Any, kind: type, low: float, high: float) -> None:
    # bool is an int to Python, never a size or a rate to us
    wanted = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise ValueError(f"field {name!r} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if not low <= value <= high:  # also false for NaN
        raise ValueError(f"field {name!r} is {value!r}, outside {low:g}..{high:g}")


def validate_config(config: ModelConfig) -> None:
    """Check every field's type and range, so a config can never build an absurd model.

    Raises:
        ValueError: the first bad field, named (``audio.hop_length``, ``dropout``, ...).
    """
    audio = config.audio
    for name, (kind, low, high) in _AUDIO_LIMITS.items():
        _check_number(f"audio.{name}", getattr(audio, name), kind, low, high)
    for name, (kind, low, high) in _MODEL_LIMITS.items():
        _check_number(name, getattr(config, name), kind, low, high)
    for name, choices in _CHOICES.items():
        holder = audio if hasattr(audio, name) else config
        value = getattr(holder, name)
        if value not in choices:
            label = f"audio.{name}" if holder is audio else name
            raise ValueError(f"field {label!r} is {value!r}; use one of {', '.join(choices)}")
    if not isinstance(audio.normalize, bool):
        raise ValueError(f"field 'audio.normalize' must be true or false, got {audio.normalize!r}")
    if audio.hop_length > audio.n_fft:
        raise ValueError(f"field 'audio.hop_length' ({audio.hop_length}) is larger than audio.n_fft ({audio.n_fft})")
    if audio.flat_length > MAX_FLAT_LENGTH:
        raise ValueError(f"fields 'audio.n_coefficients' x 'audio.max_frames' give {audio.flat_length} inputs, "
                         f"more than {MAX_FLAT_LENGTH}")
    if config.audio_branch == "paper1d" and (audio.layout != "flat" or audio.flat_length % 64):
        raise ValueError("field 'audio_branch' is 'paper1d', which needs audio.layout 'flat' and "
                         "channels x n_coefficients x max_frames a multiple of 64")
    if config.audio_branch == "tconv" and audio.layout != "grid":
        raise ValueError("field 'audio_branch' is 'tconv', which needs audio.layout 'grid'")


def paper_config(representation: Representation = "mfcc", backbone: BackboneName = "efficientnet-lite0") -> ModelConfig:
    """The paper's DVAN: flat 1-D audio input of d2 = 24000 into Table I, d3 = 1024, d4 = 512."""
    return ModelConfig(backbone=backbone, audio=AudioConfig(representation=representation, layout="flat"))


@dataclass(frozen=True)
class AugmentConfig:
    """Data augmentation of the training captions (validation and test are never augmented)."""

    # Waveform copies made once per training caption (and cached): each is played faster or slower
    # by a random factor (tempo and pitch change together, as in Kaldi's speed perturbation) with
    # white noise added. Each step picks the original or one copy at random. 0 = no copies.
    speed_copies: int = 0
    # Speed factors are drawn uniformly from [1 - speed_range, 1 + speed_range].
    speed_range: float = 0.15
    # Signal-to-noise ratio of the added noise is drawn uniformly from this range, in dB.
    noise_snr_db: tuple[float, float] = (15.0, 40.0)
    # On-the-fly time stretch of the feature grid by a factor in [1 - stretch, 1 + stretch]; 0 = off.
    time_stretch: float = 0.0
    # SpecAugment: number of time masks per caption, each up to this many frames wide.
    time_masks: int = 0
    time_mask_frames: int = 20
    # SpecAugment: number of feature-row masks per caption, each up to this many rows high.
    freq_masks: int = 0
    freq_mask_rows: int = 3

    @property
    def active(self) -> bool:
        """Whether any augmentation is switched on."""
        return bool(self.speed_copies or self.time_stretch or self.time_masks or self.freq_masks)
