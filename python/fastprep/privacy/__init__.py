"""Privacy past the metadata: caption redaction (:mod:`.redact`),
account-level consent (:mod:`.accounts`), face obfuscation (:mod:`.faces`,
the ``fastprep[faces]`` extra), erasure from finished outputs
(:mod:`.forget`) and the generated datasheet (:mod:`.datasheet`).

The prep job calls :func:`fastprep.privacy.shards.privatize` on every shard
it writes (pass 2, on any engine) and
:func:`fastprep.privacy.accounts.account_consent` on every source batch
before decoding (pass 1)."""

from fastprep.privacy.redact import PLACEHOLDERS, redact_captions

__all__ = ["PLACEHOLDERS", "redact_captions"]
