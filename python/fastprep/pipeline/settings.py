"""What a prep run does, as one frozen object: :class:`PrepSettings` (the
job's settings, recorded in the manifest and compared on resume) and
:class:`ShardSpec` (how one output shard is written). Engines never see
keyword lists: they get these objects, so an option is spelled once."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import fastprep
from fastprep.errors import SettingsError
from fastprep.hashtags import HashtagNormalizer
from fastprep.pipeline.stages import DEFAULT_RULES, ConsentRule

#: Caption redaction kinds (all on by default; see :mod:`fastprep.privacy`).
REDACT_KINDS = ("mentions", "emails", "phones", "urls")
FACE_MODES = ("blur", "pixelate")

IMAGE_FORMATS = ("tensor", "jpeg", "webp", "raw")
#: How images are stored: ``tensor`` (every image the same ``size`` by
#: ``mode``; pixels, or JPEG/WebP with ``image_format``), ``resized`` (each
#: keeps its aspect, shorter side ``short_side`` and longer at most
#: ``max_side``, never upscaled; re-encoded JPEG/WebP) or ``original`` (the
#: source bytes with their metadata removed without re-encoding).
STORES = ("tensor", "resized", "original")
SUBSAMPLINGS = ("420", "444")
#: What prep does with images that decode with warnings (corrupt entropy
#: data, stray bytes between markers): keep them (their ``warnings`` column
#: says what was wrong) or drop them as ``damaged``.
DAMAGED_POLICIES = ("keep", "drop")
SINKS = ("parquet", "arrow", "webdataset")
SHARD_SUFFIX = {"parquet": "parquet", "arrow": "arrow", "webdataset": "tar"}
IMAGE_COLUMN = {"tensor": "pixels", "jpeg": "jpg", "webp": "webp", "raw": "ppm"}
#: The encoder each image format uses (``raw``: pixels behind a PPM header).
ENCODER = {"jpeg": "jpeg", "webp": "webp", "raw": "ppm"}
#: The image column of an ``original`` store: each record's source format.
ORIGINAL_COLUMN = "image"

Size = Union[int, tuple[int, int]]


@dataclass(frozen=True)
class ShardSpec:
    """How a shard is written: the sink's file format, the image encoding
    (``tensor`` keeps pixels), its quality, the pixel size and Parquet's
    row-group size."""

    sink: str = "parquet"
    image_format: str = "tensor"
    quality: int = 90
    size: Size = 224
    row_group_size: int = 1_000
    hf_datasets: bool = True  # datasets' layout (fastprep.pipeline.hf); False: Arrow-canonical
    store: str = "tensor"

    @property
    def suffix(self) -> str:
        return SHARD_SUFFIX[self.sink]

    @property
    def image_column(self) -> str:
        if self.store == "original":
            return ORIGINAL_COLUMN
        return IMAGE_COLUMN[self.image_format]

    def shard_name(self, index: int) -> str:
        return f"shard-{index:05d}.{self.suffix}"


@dataclass(frozen=True)
class PrepSettings:
    """Every setting of a prep run that changes what it writes.

    Groups: images (``store``: ``tensor`` with ``size`` and ``mode``,
    ``resized`` with ``short_side``/``max_side``, or ``original``; see
    :data:`STORES`; ``subsampling`` of JPEG chroma), shards (``records_per_shard``,
    ``row_group_size``, ``sink``, ``image_format``, ``quality``),
    near-duplicates (``dedup_radius``: None turns it off, ``min_quality``),
    the eval set (``eval_source``, ``eval_radius``), takedowns
    (``opt_out_hashes``: hex xxh3-128 or PDQ, ``opt_out_radius``), the
    vocabulary (``normalizer``, ``top_k``, ``min_count``,
    ``drop_unlabeled``), consent (``consent_rules``, checked before any
    decoding), a given vocabulary (``vocabulary``: a vocab.json path, used
    instead of one built from the corpus) and ``single_pass`` (with a given
    vocabulary: the source is read, decided and written in one pass, keeping
    the first copy of duplicates; no pixels staged; see
    :mod:`fastprep.pipeline.single_pass`), damaged images (``on_damaged``: ``keep`` them with their
    ``warnings``, or ``drop`` them as ``damaged``), reading (``batch_size``, ``source_options`` for Parquet
    column names and ``absolute_paths``) and ``hf_datasets`` (default True:
    shards in the layout Hugging Face ``datasets`` loads,
    :mod:`fastprep.pipeline.hf`; False: Arrow-canonical types). How and where it runs (threads, engine, resume, report,
    progress) is not a setting: outputs do not depend on it.
    """

    size: Size = 224
    mode: str = "center_crop"
    records_per_shard: int = 10_000
    row_group_size: int = 1_000
    sink: str = "parquet"
    image_format: str = "tensor"
    quality: int = 90
    dedup_radius: int | None = 31
    min_quality: int = 50
    eval_source: Any = None
    eval_radius: int = 31
    opt_out_hashes: tuple[str, ...] = ()
    opt_out_radius: int = 31
    normalizer: HashtagNormalizer | None = None
    top_k: int | None = None
    min_count: int = 1
    drop_unlabeled: bool = True
    consent_rules: tuple[ConsentRule, ...] = DEFAULT_RULES
    batch_size: int = 256
    source_options: Mapping[str, Any] = field(default_factory=dict)
    # Privacy (fastprep.privacy): caption redaction per kind and column,
    # account-level consent, face obfuscation, source paths.
    redact: tuple[str, ...] = REDACT_KINDS
    redact_columns: tuple[str, ...] = ("caption",)
    account_column: str | None = None
    opt_out_accounts: tuple[str, ...] = ()
    accounts: str | None = None
    blur_faces: str | None = None
    absolute_sources: bool = False
    hf_datasets: bool = True
    on_damaged: str = "keep"
    store: str = "tensor"
    short_side: int | None = None
    max_side: int | None = None
    subsampling: str = "420"
    # A given vocabulary (a vocab.json of an earlier run or `fastprep vocab`)
    # instead of one built from this corpus's counts; with it, `single_pass`
    # decides and writes each batch as it is read (see FirstSeen).
    vocabulary: str | None = None
    single_pass: bool = False

    def __post_init__(self) -> None:
        # Normalised once, so equal settings compare (and record) equal.
        hashes = tuple(sorted(h.strip().lower() for h in self.opt_out_hashes if h.strip()))
        object.__setattr__(self, "opt_out_hashes", hashes)
        object.__setattr__(self, "consent_rules", tuple(self.consent_rules))
        object.__setattr__(self, "source_options", dict(self.source_options or {}))
        if isinstance(self.redact, str) or set(self.redact) - set(REDACT_KINDS):
            raise SettingsError(f"redact takes kinds out of {REDACT_KINDS}, got {self.redact!r}")
        object.__setattr__(self, "redact", tuple(k for k in REDACT_KINDS if k in self.redact))
        object.__setattr__(self, "redact_columns", tuple(self.redact_columns))
        accounts = tuple(sorted({str(a).strip() for a in self.opt_out_accounts} - {""}))
        object.__setattr__(self, "opt_out_accounts", accounts)
        if self.vocabulary is not None:
            object.__setattr__(self, "vocabulary", os.path.abspath(os.fspath(self.vocabulary)))
        if self.image_format == "tensor" and (self.sink == "webdataset" or self.store == "resized"):
            # WebDataset shards and resized stores hold encoded images: JPEG
            # unless WebP is asked.
            object.__setattr__(self, "image_format", "jpeg")

    # ------------------------------------------------------------------ building

    @classmethod
    def from_options(cls, **options: Any) -> PrepSettings:
        """From ``prep``'s keyword options (``jpeg_quality`` is an alias of
        ``quality``); unknown names raise ``TypeError``, bad values
        :class:`SettingsError`."""
        alias = options.pop("jpeg_quality", None)
        if alias:
            options["quality"] = alias
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(f"unknown prep setting(s): {', '.join(unknown)}")
        settings = cls(**options)
        settings.validate()
        return settings

    @classmethod
    def from_cli(cls, args: argparse.Namespace, opt_out_hashes: Iterable[str] = ()) -> PrepSettings:
        """From ``fastprep prep``'s parsed arguments."""
        return cls.from_options(
            size=args.size,
            mode=args.mode,
            records_per_shard=args.records_per_shard,
            row_group_size=args.row_group_size,
            dedup_radius=None if args.no_dedup else args.dedup_radius,
            min_quality=args.min_quality,
            eval_source=args.eval,
            eval_radius=args.eval_radius,
            opt_out_hashes=tuple(opt_out_hashes),
            opt_out_radius=args.opt_out_radius,
            top_k=args.top_k,
            min_count=args.min_count,
            drop_unlabeled=not args.keep_unlabeled,
            image_format=args.image_format,
            quality=args.quality,
            sink=args.sink,
            consent_rules=tuple(ConsentRule.parse(s) for s in args.drop_if)
            if args.drop_if
            else DEFAULT_RULES,
            batch_size=args.batch_size,
            hf_datasets=bool(getattr(args, "hf_datasets", True)),
            on_damaged=getattr(args, "on_damaged", "keep"),
            store=getattr(args, "store", "tensor"),
            short_side=getattr(args, "short_side", None),
            max_side=getattr(args, "max_side", None),
            subsampling=getattr(args, "subsampling", "420"),
            vocabulary=getattr(args, "vocabulary", None),
            single_pass=bool(getattr(args, "single_pass", False)),
            source_options={
                "image_column": args.image_column,
                "caption_column": args.caption_column,
                "key_column": args.key_column,
            },
        )

    def replace(self, **changes: Any) -> PrepSettings:
        settings = dataclasses.replace(self, **changes)
        settings.validate()
        return settings

    # ------------------------------------------------------------------ checks

    def validate(self) -> None:
        """Rejects bad values before any work."""
        if self.sink not in SINKS:
            raise SettingsError(f"sink must be one of {SINKS}, got {self.sink!r}")
        if self.image_format not in IMAGE_FORMATS:
            raise SettingsError(
                f"image_format must be one of {IMAGE_FORMATS}, got {self.image_format!r}"
            )
        if not 1 <= self.quality <= 100:
            raise SettingsError("quality must be within 1-100")
        if self.records_per_shard < 1 or self.batch_size < 1 or self.row_group_size < 1:
            raise SettingsError("records_per_shard, batch_size and row_group_size must be positive")
        for name in ("dedup_radius", "eval_radius", "opt_out_radius"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 256:
                raise SettingsError(f"{name} is a PDQ radius within 0-256 bits, got {value}")
        if self.store not in STORES:
            raise SettingsError(f"store must be one of {STORES}, got {self.store!r}")
        if self.subsampling not in SUBSAMPLINGS:
            raise SettingsError(
                f"subsampling must be one of {SUBSAMPLINGS}, got {self.subsampling!r}"
            )
        sides = (self.short_side, self.max_side)
        if self.store == "resized" and sides == (None, None):
            raise SettingsError("store 'resized' needs short_side and/or max_side")
        if self.store != "resized" and sides != (None, None):
            raise SettingsError("short_side and max_side apply to store 'resized'")
        if any(v is not None and v < 1 for v in sides):
            raise SettingsError("short_side and max_side must be positive")
        if self.image_format == "raw" and self.store != "resized":
            raise SettingsError(
                "image_format 'raw' (uncompressed pixels of each image's own size) is for "
                "store 'resized'; store 'tensor' keeps raw pixels as image_format 'tensor'"
            )
        if self.store != "tensor" and self.blur_faces:
            raise SettingsError(
                "blur_faces rewrites pixels: it needs store 'tensor' (an original store "
                "keeps the source bytes; a resized store is encoded in pass 1)"
            )
        if self.vocabulary is not None:
            if self.top_k is not None or self.min_count != 1:
                raise SettingsError(
                    "top_k and min_count shape a vocabulary built from the corpus; "
                    "a given vocabulary is used as it is"
                )
            if not os.path.isfile(self.vocabulary):
                raise SettingsError(f"vocabulary {self.vocabulary!r} is not a file")
        if self.single_pass and self.vocabulary is None:
            raise SettingsError(
                "single_pass needs a given vocabulary (vocabulary=, --vocabulary): "
                "building one needs the whole corpus's counts first"
            )
        if self.on_damaged not in DAMAGED_POLICIES:
            raise SettingsError(
                f"on_damaged must be one of {DAMAGED_POLICIES}, got {self.on_damaged!r}"
            )
        if self.blur_faces is not None and self.blur_faces not in FACE_MODES:
            raise SettingsError(f"blur_faces must be one of {FACE_MODES}, got {self.blur_faces!r}")
        if (self.opt_out_accounts or self.accounts) and not self.account_column:
            raise SettingsError("account opt-outs and account tables need account_column")
        for text in self.opt_out_hashes:
            if len(text) not in (32, 64) or any(c not in "0123456789abcdef" for c in text):
                raise SettingsError(
                    f"opt-out hash {text!r} is neither xxh3-128 (32 hex) nor PDQ (64 hex)"
                )

    # ------------------------------------------------------------------ views

    @property
    def shards(self) -> ShardSpec:
        return ShardSpec(
            sink=self.sink,
            image_format=self.image_format,
            quality=self.quality,
            size=self.size,
            row_group_size=self.row_group_size,
            hf_datasets=self.hf_datasets,
            store=self.store,
        )

    @property
    def encode_in_pass1(self) -> bool:
        """Whether staged parts hold encoded bytes (what will be written)
        rather than pixels: every encoded output but one whose pixels pass 2
        still rewrites (face obfuscation)."""
        if self.store != "tensor":
            return True
        return self.image_format != "tensor" and not self.blur_faces

    @property
    def hashtag_normalizer(self) -> HashtagNormalizer:
        return self.normalizer or HashtagNormalizer()

    # ------------------------------------------------------------------ record

    def to_record(self, source_label: str) -> dict:
        """The settings record of a run (manifest, resume check), exactly as
        it reads back from JSON."""
        record: dict[str, Any] = {"source": source_label}
        for f in dataclasses.fields(self):
            record[f.name] = getattr(self, f.name)
        normalizer = self.normalizer
        record.update(
            eval_source=os.fspath(self.eval_source)
            if isinstance(self.eval_source, (str, os.PathLike))
            else None,
            opt_out_hashes=list(self.opt_out_hashes),
            normalizer=None
            if normalizer is None
            else {
                "canonical": sorted(normalizer.canonical),
                "stoplist": sorted(normalizer.stoplist),
            },
            consent_rules=[vars(rule) for rule in self.consent_rules],
            # Who opted out is itself personal: the record keeps a count and a digest.
            opt_out_accounts=accounts_digest(self.opt_out_accounts),
            # Connection settings (endpoints, credentials) change where data is
            # read, not what is written: never recorded, never compared.
            source_options={k: v for k, v in self.source_options.items() if k != "storage_options"},
            fastprep=fastprep.__version__,
        )
        return json.loads(json.dumps(record))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PrepSettings:
        """Settings back from a manifest's record (``resume_settings``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in names}
        if isinstance(values.get("size"), list):
            values["size"] = tuple(values["size"])
        normalizer = values.get("normalizer")
        if normalizer is not None:
            values["normalizer"] = HashtagNormalizer(
                [(str(k), str(v)) for k, v in normalizer["canonical"]], normalizer["stoplist"]
            )
        values["consent_rules"] = tuple(
            ConsentRule(r["column"], tuple(r["drop_values"]), r["reason"], r["drop_missing"])
            for r in values.get("consent_rules", [])
        )
        values["opt_out_hashes"] = tuple(values.get("opt_out_hashes", ()))
        # Only the digest of the account opt-out list is recorded.
        values["opt_out_accounts"] = ()
        for name in ("redact", "redact_columns"):
            if name in values:
                values[name] = tuple(values[name])
        return cls.from_options(**values)


def accounts_digest(accounts: tuple[str, ...]) -> dict:
    """How a record names an account opt-out list: its size and a digest."""
    import hashlib

    joined = "\n".join(accounts).encode()
    return {"count": len(accounts), "sha256": hashlib.sha256(joined).hexdigest()}
