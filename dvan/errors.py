"""Domain errors of dvan, one tree so callers can catch as broadly or narrowly as they need.

Every message names the file or setting at fault and says what to change.

    DvanError
    ├── AudioError                  an audio file cannot be turned into features
    │   ├── AudioDecodeError        not audio, empty, truncated, unsupported encoding
    │   └── SilentAudioError        decodes fine but holds no signal (digital silence)
    ├── ImageError                  an image or raster cannot be read
    │   ├── UnsafeRasterError       refers to the network or to files outside the folders given
    │   └── RasterTooLargeError     more pixels than the import's limit (--max-pixels)
    ├── WeightsNotFoundError        backbone weights are missing; says where to put them
    ├── CheckpointError             a model checkpoint is unreadable or does not fit
    │   ├── CheckpointMismatchError config of the checkpoint disagrees with what was asked
    │   └── UntrainedModelError     a model not marked trained was asked to present results
    ├── ManifestError               a collection manifest line is invalid (names the line)
    ├── SpeechError                 captions cannot be spoken: TTS engine missing, unknown voice, bad caption file
    ├── LibraryError                a tile library cannot be opened or changed
    │   ├── BackboneMismatchError   library built with another backbone: re-index
    │   ├── LibraryDamagedError     an array file is shorter than recorded, or holds NaN/Inf
    │   ├── ReadOnlyLibraryError    a write was asked of a library on a read-only folder or mount
    │   └── MountError              a mount of shard libraries is unreadable, or a shard is missing or does not fit
    ├── InvalidValueError           a numeric option is out of range (tile size, overlap, --top, --bbox)
    ├── ExportError                 search results cannot be written (unknown format, unwritable file)
    ├── TrainingError               training stopped (divergence, NaN, no data)
    ├── DiskFullError               a write (library, checkpoint, report) ran out of space; what was saved is intact
    ├── EmptyQueryError             a typed query holds no words
    ├── QueryModelError             a query-understanding model cannot be used
    │   ├── ModelPackageMissingError its package (recogniser, sentence encoder, VAD) is not installed
    │   └── TextBranchMissingError  a text or hybrid query on a checkpoint without a text branch
    ├── ClusterError                the cluster cannot be used
    │   ├── ClusterMissingError     Ray is not installed (pip install ".[cluster]")
    │   └── WorkerFailedError       a batch's features could not be computed on the workers (names its files)
    └── Cancelled                   a long job was cancelled through its cancel token
"""

from __future__ import annotations


class DvanError(Exception):
    """Base class of every error dvan raises on purpose."""


class AudioError(DvanError):
    """An audio file cannot be turned into features."""


class AudioDecodeError(AudioError):
    """The file is not decodable audio (empty, truncated, wrong format)."""


class SilentAudioError(AudioError):
    """The audio decodes but contains no signal."""


class ImageError(DvanError):
    """An image or raster cannot be read."""


class UnsafeRasterError(ImageError):
    """A raster refers to the network or to files outside the folders it was imported from."""


class RasterTooLargeError(ImageError):
    """A raster declares more pixels than the import's limit."""


class WeightsNotFoundError(DvanError):
    """Pretrained backbone weights are not installed or not found."""


class CheckpointError(DvanError):
    """A model checkpoint cannot be read."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's config disagrees with what the caller expects."""


class UntrainedModelError(CheckpointError):
    """A model whose info lacks ``"trained": true`` was asked to present search results."""


class ManifestError(DvanError):
    """A collection manifest is invalid."""


class SpeechError(DvanError):
    """Captions cannot be turned into speech (engine missing, unknown voice, invalid caption file)."""


class LibraryError(DvanError):
    """A tile library cannot be opened or changed."""


class BackboneMismatchError(LibraryError):
    """The library's stored features come from another backbone than the model's."""


class LibraryDamagedError(LibraryError):
    """A library file is shorter than its records say, missing, or holds non-finite values."""


class ReadOnlyLibraryError(LibraryError):
    """A write was asked of a library whose folder or files cannot be written."""


class MountError(LibraryError):
    """A mount of shard libraries is unreadable, or one of its shards is missing or does not fit the others."""


class InvalidValueError(DvanError):
    """A numeric option or argument is out of its range."""


class ExportError(DvanError):
    """Search results cannot be exported (unknown file type, folder missing or not writable)."""


class TrainingError(DvanError):
    """Training cannot go on."""


class DiskFullError(DvanError):
    """A write ran out of disk space; earlier saved files are untouched (every write is atomic)."""


class EmptyQueryError(DvanError):
    """A typed query (or a transcript searched as text) holds no words."""


class QueryModelError(DvanError):
    """A query-understanding model (speech recogniser, sentence encoder, voice activity detector) cannot be used."""


class ModelPackageMissingError(QueryModelError):
    """The Python package that ships a query model's code or weights is not installed; names it."""


class TextBranchMissingError(QueryModelError):
    """A text or hybrid query was asked of a checkpoint that holds no trained text branch."""


class ClusterError(DvanError):
    """The cluster (Ray) cannot be used: not installed, not reachable, or without workers."""


class ClusterMissingError(ClusterError):
    """Ray is not installed; the message gives the install command."""


class WorkerFailedError(ClusterError):
    """A batch could not be computed on the cluster's workers (they died more often than retried); names its files."""


class Cancelled(DvanError):
    """A long job was cancelled by its caller."""
