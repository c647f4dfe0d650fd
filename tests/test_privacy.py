"""Privacy past the metadata (issue 18): caption redaction, account-level
consent, erasure from finished outputs, face obfuscation, the datasheet and
relative source paths."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import fastprep as fp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastprep.pipeline import PrepSettings, prep
from fastprep.privacy import forget as forget_module
from fastprep.privacy import redact_captions
from fastprep.privacy.forget import ErasedRecordsError, forget, screen_erased

CORPUS = Path(fp.__file__).parent / "sample_data" / "corpus"
STEMS = [
    "astronaut_portrait", "cameraman", "chelsea_cat", "coins_pompeii", "fig_bowl",
    "grace_hopper", "rocket_launchpad", "paint_brushes", "wine_evening", "forest_stream",
]  # fmt: skip
PII = {
    "astronaut_portrait": "Portrait day with @nasa_photo.team #space #portrait",
    "cameraman": "Shoot by jane.doe+work@studio-mail.com #camera #photography",
    "chelsea_cat": "Adopt her: call +1 (555) 123-4567 #cat #pets",
    "coins_pompeii": "Museum page https://museo.example.org/coins?id=77 #history",
    "fig_bowl": "Recipe at www.figrecipes.net and 020 7946 0958 #food",
    "grace_hopper": "Thanks ＠grace_fan and @hopper@mastodon.social #history #portrait",
}
SECRETS = [
    "nasa_photo", "jane.doe", "studio-mail", "555) 123-4567", "museo.example",
    "figrecipes", "7946 0958", "grace_fan", "mastodon.social",
]  # fmt: skip


def make_corpus(root: Path, stems=STEMS, accounts=None, broken=()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(stems):
        image = next(p for p in CORPUS.glob(f"{stem}.*") if p.suffix != ".json")
        meta = json.loads((CORPUS / f"{stem}.json").read_text())
        meta["caption"] = PII.get(stem, meta["caption"])
        meta["user"] = (accounts or {}).get(stem, f"u{i % 3}")
        meta.update(is_public=True, opt_out=False)  # consent is what each test sets
        if stem in broken:
            (root / f"{stem}.jpg").write_bytes(b"not an image at all")
        else:
            shutil.copy(image, root / image.name)
        (root / f"{stem}.json").write_text(json.dumps(meta))
    return root


def settings(**changes) -> PrepSettings:
    base = PrepSettings(size=48, batch_size=4, records_per_shard=3, account_column="user")
    return base.replace(**changes)


def rows(out: Path) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    tables = [pq.read_table(out / s["file"]) for s in manifest["outputs"]]
    return pa.concat_tables(tables).to_pylist() if tables else []


# ---------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("thanks @alice_b!", "thanks @user!"),
        ("with @john.doe.", "with @user."),
        ("RT@carol: wow", "RT@user: wow"),
        ("東京＠dave さん #旅行", "東京@user さん #旅行"),
        ("hi @alice@mastodon.social ok", "hi @user ok"),
        ("mail jo.doe+tag@mail.example.co.uk.", "mail <email>."),
        ("call +1 (555) 123-4567 now", "call <phone> now"),
        ("call 555-123-4567 now", "call <phone> now"),
        ("call 555.123.4567", "call <phone>"),
        ("ring +44 20 7946 0958", "ring <phone>"),
        ("ring 06 12 34 56 78 ☎️", "ring <phone> ☎️"),
        ("ring +33612345678", "ring <phone>"),
        ("see https://x.org/a?b=1.", "see <url>."),
        ("at www.example.net today", "at <url> today"),
        ("bit.ly/abc #link", "<url> #link"),
        ("#nature #café #2024 #a1", "#nature #café #2024 #a1"),
        ("on 2024-01-15, 1 000 000 views, 192.168.1.1, $1,234,567", None),
        ("e.g. node.js", None),
        ("a@b and x!@y", None),
    ],
)
def test_redaction_cases(text, expected):
    redacted, _ = redact_captions([text])
    assert redacted.to_pylist() == [text if expected is None else expected]
    assert (
        fp.extract_hashtags([redacted[0].as_py()]).to_pylist()
        == fp.extract_hashtags([text]).to_pylist()
    )


def test_redaction_kinds_switch_and_count():
    texts = ["@a b@c.io +1 555 123 4567 http://x.org/p", None, "plain #tag"]
    redacted, counts = redact_captions(texts, kinds=("mentions", "urls"))
    assert redacted.to_pylist() == ["@user b@c.io +1 555 123 4567 <url>", None, "plain #tag"]
    assert counts == {"mentions": 1, "emails": 0, "phones": 0, "urls": 1, "captions": 1}
    _, counts = redact_captions(texts)
    assert counts == {"mentions": 1, "emails": 1, "phones": 1, "urls": 1, "captions": 1}
    with pytest.raises(ValueError):
        redact_captions(texts, kinds=("names",))


@pytest.mark.parametrize("sink", ["parquet", "arrow", "webdataset"])
def test_written_bytes_never_contain_the_redacted_strings(tmp_path, sink):
    src = make_corpus(tmp_path / "src")
    out = tmp_path / "out"
    result = prep(str(src), out, settings(sink=sink, records_per_shard=4))
    everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    for secret in SECRETS:
        assert secret.encode() not in everything, secret
    assert str(tmp_path).encode() not in b"".join(p.read_bytes() for p in out.rglob("shard-*")), (
        "no local paths in the shards"
    )
    counts = result.manifest["privacy"]["redaction"]["counts"]
    assert counts == {"mentions": 3, "emails": 1, "phones": 2, "urls": 2, "captions": 6}
    if sink != "webdataset":
        tags = {r["key"]: r["hashtags"] for r in _shard_rows(out, result.manifest)}
        assert tags["grace_hopper"] == ["history", "portrait"], "hashtags from the original text"
        captions = {r["key"]: r["caption"] for r in _shard_rows(out, result.manifest)}
        assert captions["grace_hopper"] == "Thanks @user and @user #history #portrait"


def _shard_rows(out: Path, manifest: dict) -> list[dict]:
    from fastprep.pipeline.io import read_arrow

    tables = [
        read_arrow(str(out / s["file"]))
        if s["file"].endswith(".arrow")
        else pq.read_table(out / s["file"])
        for s in manifest["outputs"]
    ]
    return pa.concat_tables(tables).to_pylist()


def test_redaction_off_keeps_captions(tmp_path):
    src = make_corpus(tmp_path / "src", STEMS[:3])
    result = prep(str(src), tmp_path / "out", settings(redact=()))
    captions = {r["key"]: r["caption"] for r in rows(tmp_path / "out")}
    assert captions["astronaut_portrait"] == PII["astronaut_portrait"]
    assert result.manifest["privacy"]["redaction"]["counts"]["captions"] == 0


def test_sources_are_relative_unless_asked(tmp_path):
    src = make_corpus(tmp_path / "src", STEMS[:3])
    prep(str(src), tmp_path / "a", settings())
    assert sorted(r["source"] for r in rows(tmp_path / "a")) == [
        "astronaut_portrait.jpg", "cameraman.jpg", "chelsea_cat.jpg",
    ]  # fmt: skip
    prep(str(src), tmp_path / "b", settings(absolute_sources=True))
    assert all(r["source"].startswith(str(src)) for r in rows(tmp_path / "b"))


# ---------------------------------------------------------------------- accounts


def test_account_opt_out_drops_every_record_of_the_account_before_decoding(tmp_path):
    accounts = {s: ("gone" if s in ("cameraman", "fig_bowl", "wine_evening") else "stays")
                for s in STEMS}  # fmt: skip
    # The opted-out account's images are not even images: a decode would fail.
    src = make_corpus(tmp_path / "src", accounts=accounts, broken=("cameraman", "fig_bowl"))
    result = prep(str(src), tmp_path / "out", settings(opt_out_accounts=("gone",)))
    dropped = pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    reasons = {d["key"]: d["reason"] for d in dropped}
    assert {k for k, r in reasons.items() if r == "account_opt_out"} == {
        "cameraman", "fig_bowl", "wine_evening",
    }  # fmt: skip
    assert result.manifest["totals"]["dropped"]["account_opt_out"] == 3
    assert "decode_error" not in result.manifest["totals"]["dropped"], "never decoded"
    assert {r["user"] for r in rows(tmp_path / "out")} == {"stays"}
    assert "gone" not in json.dumps(result.manifest), "who opted out is not recorded"


def test_account_level_rules_from_an_accounts_table(tmp_path):
    private = {s for i, s in enumerate(STEMS) if i % 3 == 0}  # account u0
    # The private account's images (but one) are not even images: a decode would fail.
    broken = sorted(private)[:-1]
    src = make_corpus(tmp_path / "src", broken=broken)
    table = tmp_path / "accounts.csv"
    table.write_text("user,is_private\nu0,true\nu1,false\n")
    rule = fp.pipeline.stages.ConsentRule.parse("account.is_private=true:account_private")
    result = prep(
        str(src), tmp_path / "out",
        settings(accounts=str(table), consent_rules=(*fp.pipeline.stages.DEFAULT_RULES, rule)),
    )  # fmt: skip
    assert result.manifest["totals"]["dropped"]["account_private"] == len(private)
    dropped = pq.read_table(tmp_path / "out" / "dropped.parquet").to_pylist()
    reasons = {d["key"]: d["reason"] for d in dropped}
    assert {k for k, r in reasons.items() if r == "account_private"} == private
    assert all(reasons[k] == "account_private" for k in broken), "dropped by the rule"
    assert "decode_error" not in result.manifest["totals"]["dropped"], "never decoded"
    assert {r["user"] for r in rows(tmp_path / "out")} == {"u1", "u2"}
    assert not any(n.startswith("account.") for n in pq.read_schema(
        tmp_path / "out" / "shard-00000.parquet").names)  # fmt: skip


# ---------------------------------------------------------------------- forget


def _hash(stem: str, column: str) -> str:
    path = next(p for p in CORPUS.glob(f"{stem}.*") if p.suffix != ".json")
    return (
        fp.hash_images([path.read_bytes()], hashes=["xxh3", "pdq"]).column(column)[0].as_py().hex()
    )


SELECTORS = {
    "key": ({"keys": ["coins_pompeii"]}, {"coins_pompeii"}),
    "account": ({"accounts": ["u1"]}, {"cameraman", "fig_bowl", "paint_brushes"}),
    "xxh3": ({"xxh3": [_hash("grace_hopper", "xxh3_128")]}, {"grace_hopper"}),
    "pdq": ({"pdq": [_hash("paint_brushes", "pdq")], "radius": 10}, {"paint_brushes"}),
}


def _same_as_fresh(out: Path, fresh: Path) -> None:
    got, want = rows(out), rows(fresh)
    vocab_a = fp.load_vocabulary(out / "vocab.json").tags
    vocab_b = fp.load_vocabulary(fresh / "vocab.json").tags
    for r, vocab in [(r, vocab_a) for r in got] + [(r, vocab_b) for r in want]:
        r["labels"] = sorted(vocab[i] for i in r["labels"])
    assert got == want
    for name in ("hashtag_counts.parquet", "dropped.parquet"):
        assert pq.read_table(out / name).equals(pq.read_table(fresh / name)), name
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (out, fresh))
    assert ma["totals"]["written"] == mb["totals"]["written"]
    assert ma["totals"]["dropped"] == mb["totals"]["dropped"]
    assert ma["totals"]["input"] - ma["totals"]["erased"] == mb["totals"]["input"]
    assert ma["privacy"]["redaction"]["counts"] == mb["privacy"]["redaction"]["counts"]
    assert ma["privacy"]["licenses"] == mb["privacy"]["licenses"]


@pytest.mark.parametrize("selector", sorted(SELECTORS))
@pytest.mark.parametrize("interrupted", [False, True])
def test_forget_equals_a_fresh_run_without_the_records(
    tmp_path, selector, interrupted, monkeypatch
):
    options, erased = SELECTORS[selector]
    src = make_corpus(tmp_path / "src")
    out = tmp_path / "out"
    prep(str(src), out, settings())
    before = {p.name: p.read_bytes() for p in out.glob("shard-*")}
    held = {r["key"]: s["file"] for s in json.loads((out / "manifest.json").read_text())["outputs"]
            for r in pq.read_table(out / s["file"]).to_pylist()}  # fmt: skip
    vocab_before = (out / "vocab.json").read_bytes()
    labels_before = {r["key"]: r["labels"] for r in rows(out)}
    if interrupted:
        real, calls = forget_module._step, []

        def flaky(src_path, dst):
            calls.append(dst)
            if len(calls) == 2:
                raise KeyboardInterrupt
            real(src_path, dst)

        monkeypatch.setattr(forget_module, "_step", flaky)
        with pytest.raises(KeyboardInterrupt):
            forget(out, reason="request 42", **options)
        monkeypatch.setattr(forget_module, "_step", real)
        assert (out / "_forget" / "plan.json").exists()
    result = forget(out, reason="request 42", **options)
    assert result.erased == len(erased) or interrupted
    fresh_src = make_corpus(tmp_path / "fresh_src", [s for s in STEMS if s not in erased],
                            accounts={s: f"u{STEMS.index(s) % 3}" for s in STEMS})  # fmt: skip
    fresh = tmp_path / "fresh"
    prep(str(fresh_src), fresh, settings())
    _same_as_fresh(out, fresh)
    # Vocabulary ids stay stable: vocab.json is untouched and every remaining
    # record keeps its label ids (not only its tag names).
    assert (out / "vocab.json").read_bytes() == vocab_before
    left = {r["key"]: r["labels"] for r in rows(out)}
    assert set(left) == set(labels_before) - erased
    assert left == {k: labels_before[k] for k in left}
    touched = {held[k] for k in erased}
    for name, data in before.items():
        if name not in touched:
            assert (out / name).read_bytes() == data, f"{name} untouched, byte-identical"
        elif (out / name).exists():
            assert (out / name).read_bytes() != data
    log = [json.loads(line) for line in (out / "erasures.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["records"] == len(erased) and log[0]["reason"] == "request 42"
    text = (out / "erasures.jsonl").read_text() + (out / "manifest.json").read_text()
    for key in erased:
        assert key not in text, "the log holds no erased key"
    assert not (out / "_forget").exists()
    assert forget(out, **options).erased == 0, "a rerun finds nothing more"
    assert len((out / "erasures.jsonl").read_text().splitlines()) == 1
    page = (out / "report.html").read_text()
    assert 'id="privacy"' in page and all(k not in page for k in erased)


def test_forget_by_key_removes_dropped_records_too(tmp_path):
    src = make_corpus(tmp_path / "src", broken=("wine_evening",))
    out = tmp_path / "out"
    prep(str(src), out, settings())
    result = forget(out, keys=["wine_evening", "chelsea_cat"])
    assert result.erased == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert "decode_error" not in manifest["totals"]["dropped"]
    t = manifest["totals"]
    assert t["input"] == t["written"] + sum(t["dropped"].values()) + t["erased"] == 10


def test_the_loader_refuses_or_skips_erased_records_of_an_older_copy(tmp_path):
    pytest.importorskip("torch")
    from fastprep.torch import DataLoader

    src = make_corpus(tmp_path / "src", STEMS[:6])
    out = tmp_path / "out"
    prep(str(src), out, settings())
    old = tmp_path / "old_copy"
    shutil.copytree(out, old)
    forget(out, keys=["cameraman"])
    with pytest.raises(ErasedRecordsError):
        DataLoader(str(old), batch_size=2, erasures=str(out))
    loader = DataLoader(str(old), batch_size=2, erasures=str(out), on_erased="skip")
    keys = [k for batch in loader for k in batch["key"]]
    assert sorted(keys) == sorted(set(STEMS[:6]) - {"cameraman"})
    table = pa.table({"key": ["cameraman", "x"]})
    assert screen_erased(table, [out / "erasures.jsonl"], "skip").column("key").to_pylist() == ["x"]


def test_forget_command_line(tmp_path, capsys):
    from fastprep.cli import main

    src = make_corpus(tmp_path / "src", STEMS[:4])
    out = tmp_path / "out"
    prep(str(src), out, settings())
    assert main(["forget", str(out), "--key", "cameraman", "--reason", "takedown"]) == 0
    assert "1 record(s) erased" in capsys.readouterr().out
    assert "cameraman" not in {r["key"] for r in rows(out)}


def test_prep_command_line_privacy_options(tmp_path):
    """The privacy options of ``fastprep prep`` reach the job: a kind kept,
    an account opted out before decoding, sources written as read."""
    from fastprep.cli import main

    accounts = {s: ("gone" if s == "cameraman" else "stays") for s in STEMS}
    src = make_corpus(tmp_path / "src", accounts=accounts, broken=("cameraman",))
    opted = tmp_path / "accounts.txt"
    opted.write_text("gone  # asked on 2026-11-30\n")
    out = tmp_path / "out"
    code = main(["prep", str(src), "--out", str(out), "--size", "48", "--quiet", "--no-report",
                 "--no-redact", "urls", "--account-column", "user",
                 "--opt-out-accounts", str(opted), "--absolute-sources"])  # fmt: skip
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["redact"] == ["mentions", "emails", "phones"]
    assert manifest["totals"]["dropped"]["account_opt_out"] == 1
    captions = " ".join(r["caption"] for r in rows(out))
    assert "museo.example.org" in captions and "@user" in captions  # URLs kept, mentions not
    assert all(os.path.isabs(r["source"]) for r in rows(out))


# ---------------------------------------------------------------------- faces


def _only_boxes_changed(plain_dir, obfuscated_dir):
    """Per record (key, pixels before, after, detected boxes), having checked
    that pixels changed only inside the boxes, most of each box did, and the
    record's ``faces`` count is the number of boxes."""
    from fastprep.privacy.faces import detect_faces

    a = {r["key"]: r for r in rows(plain_dir)}
    b = {r["key"]: r for r in rows(obfuscated_dir)}
    for key in a:
        before = np.array(a[key]["pixels"], np.uint8).reshape(224, 224, 3)
        after = np.array(b[key]["pixels"], np.uint8).reshape(224, 224, 3)
        inside = np.zeros((224, 224), bool)
        boxes = detect_faces(before)
        for top, left, h, w in boxes:
            inside[top : top + h, left : left + w] = True
        diff = (before != after).any(axis=2)
        assert not (diff & ~inside).any(), f"{key}: pixels changed outside the boxes"
        assert b[key]["faces"] == len(boxes)
        if boxes:
            assert diff[inside].mean() > 0.5, f"{key}: the face is obfuscated"
        yield key, before, after, boxes


def test_face_blurring_changes_pixels_only_inside_detected_boxes(tmp_path):
    pytest.importorskip("skimage")

    src = make_corpus(tmp_path / "src", ["astronaut_portrait", "grace_hopper", "coins_pompeii"])
    plain = prep(str(src), tmp_path / "plain", settings(size=224, records_per_shard=10))
    blurred = prep(str(src), tmp_path / "blur", settings(size=224, records_per_shard=10,
                                                         blur_faces="blur"))  # fmt: skip
    b = {r["key"]: r for r in rows(tmp_path / "blur")}
    changed_any = False
    for _key, _before, _after, boxes in _only_boxes_changed(tmp_path / "plain", tmp_path / "blur"):
        changed_any = changed_any or bool(boxes)
    assert changed_any and b["astronaut_portrait"]["faces"] >= 1
    faces = blurred.manifest["privacy"]["faces"]
    assert faces["boxes"] == sum(r["faces"] for r in b.values()) and faces["examples"]
    assert plain.manifest["privacy"]["faces"] is None
    assert "obfuscated example" in (tmp_path / "blur" / "report.html").read_text()


def test_face_pixelation_changes_pixels_only_inside_detected_boxes_into_blocks(tmp_path):
    pytest.importorskip("skimage")

    src = make_corpus(tmp_path / "src", ["astronaut_portrait", "grace_hopper", "coins_pompeii"])
    prep(str(src), tmp_path / "plain", settings(size=224, records_per_shard=10))
    pixelated = prep(str(src), tmp_path / "pix", settings(size=224, records_per_shard=10,
                                                          blur_faces="pixelate"))  # fmt: skip
    b = {r["key"]: r for r in rows(tmp_path / "pix")}
    cells_checked = 0
    for key, before, after, boxes in _only_boxes_changed(tmp_path / "plain", tmp_path / "pix"):
        for n, (top, left, h, w) in enumerate(boxes):
            others = np.zeros((224, 224), bool)  # cells another box also covers are skipped
            for t2, l2, h2, w2 in boxes[:n] + boxes[n + 1 :]:
                others[t2 : t2 + h2, l2 : l2 + w2] = True
            # Cells of side max(2, min(h, w) // 8) from the box's corner: each
            # becomes one colour, the (rounded) mean of its original pixels.
            block = max(2, min(h, w) // 8)
            for y in range(top, top + h, block):
                for x in range(left, left + w, block):
                    y1, x1 = min(y + block, top + h), min(x + block, left + w)
                    if others[y:y1, x:x1].any():
                        continue
                    cell, original = after[y:y1, x:x1], before[y:y1, x:x1]
                    assert (cell == cell[0, 0]).all(), f"{key}: cell at {y},{x} is not one colour"
                    mean = original.reshape(-1, 3).astype(np.float64).mean(axis=0)
                    assert np.abs(cell[0, 0].astype(np.float64) - mean).max() <= 0.5 + 1e-9, key
                    cells_checked += 1
    assert cells_checked and b["astronaut_portrait"]["faces"] >= 1
    faces = pixelated.manifest["privacy"]["faces"]
    assert faces["mode"] == "pixelate"
    assert faces["boxes"] == sum(r["faces"] for r in b.values()) and faces["examples"]


# ---------------------------------------------------------------------- datasheet


def _datasheet_numbers(text: str) -> dict:
    grab = lambda label: int(re.search(rf"- {label}: \*\*(\d+)\*\*", text).group(1))  # noqa: E731
    drops = dict(re.findall(r"^\| ([a-z_]+) \| (\d+) \|$", text.split("Drops by reason:")[1]
                            .split("## Collection")[0], re.M))  # fmt: skip
    return {
        "input": grab("Records in the source"),
        "written": grab("Records written"),
        "dropped": grab("Records dropped"),
        "erased": grab("Records erased since preparation"),
        "vocab": grab("Vocabulary"),
        "by_reason": {k: int(v) for k, v in drops.items()},
    }


def _section(text: str, heading: str) -> str:
    """The body of the datasheet's ``## <heading>`` section."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _md_table(section: str) -> dict[str, str]:
    """The two-column Markdown table of a section, as ``{first: second}``."""
    found = re.findall(r"^\| (.+?) \| (.*?) \|$", section, re.M)
    return {a.replace("\\|", "|"): b.replace("\\|", "|") for a, b in found[2:]}


EVAL = Path(fp.__file__).parent / "sample_data" / "eval"


def test_the_datasheet_numbers_equal_the_manifest(tmp_path):
    src = make_corpus(tmp_path / "src", broken=("fig_bowl",))
    out = tmp_path / "out"
    # Radii off their defaults, so the datasheet can only have them from the manifest.
    run = settings(opt_out_accounts=("u2",), eval_source=str(EVAL), eval_radius=24,
                   dedup_radius=20)  # fmt: skip
    prep(str(src), out, run)
    leaked_before = json.loads((out / "manifest.json").read_text())["totals"]["dropped"]
    assert leaked_before.get("eval_leak", 0) > 0, "the eval set's planted leak is found"
    for _ in range(2):
        manifest = json.loads((out / "manifest.json").read_text())
        text = (out / "datasheet.md").read_text()
        got = _datasheet_numbers(text)
        t = manifest["totals"]
        conf = manifest["settings"]
        assert got == {
            "input": t["input"], "written": t["written"], "dropped": sum(t["dropped"].values()),
            "erased": t.get("erased", 0), "vocab": manifest["vocabulary"]["size"],
            "by_reason": t["dropped"],
        }  # fmt: skip
        for kind, n in manifest["privacy"]["redaction"]["counts"].items():
            assert f"| {kind} | {n} |" in text
        for licence, n in manifest["privacy"]["licenses"].items():
            assert f"| {licence} | {n} |" in text
        # Sources: the source folder, how `source` paths are written, the licences.
        collection = _section(text, "Collection process")
        source = re.search(r"^- Source: `([^`]*)`; `source` paths are written (.+)\.$",
                           collection, re.M)  # fmt: skip
        assert source.groups() == (
            os.path.basename(manifest["source"].rstrip("/")), manifest["privacy"]["sources"],
        )  # fmt: skip
        assert source.group(1) == src.name
        licences = _md_table(_section(text, "Distribution"))
        assert {k: int(v) for k, v in licences.items()} == manifest["privacy"]["licenses"]
        # Eval-set leaks: which set, within which radius, how many records dropped.
        leak = re.search(r"^- Eval-set leak check: against `([^`]*)` within (\d+) bits: "
                         r"(\d+) record\(s\) dropped as leaks$",
                         _section(text, "Preprocessing"), re.M)  # fmt: skip
        assert leak.groups() == (
            os.path.basename(conf["eval_source"].rstrip("/")), str(conf["eval_radius"]),
            str(t["dropped"].get("eval_leak", 0)),
        )  # fmt: skip
        assert leak.group(1) == EVAL.name
        near = re.search(r"^- Near-duplicates: PDQ within (\d+) bits \(min quality (\d+)\)",
                         _section(text, "Preprocessing"), re.M)  # fmt: skip
        assert near.groups() == (str(conf["dedup_radius"]), str(conf["min_quality"]))
        # Versions and settings.
        versions = _section(text, "Versions and settings")
        listed = ", ".join(f"{k} {v}" for k, v in manifest["versions"].items())
        assert versions.strip().splitlines()[0] == f"- fastprep {manifest['fastprep']}, {listed}"
        table = _md_table(versions)
        assert table["dedup_radius"] == str(conf["dedup_radius"])
        assert table["eval_radius"] == str(conf["eval_radius"])
        assert table["eval_source"] == str(conf["eval_source"])
        assert set(table) == set(conf) - {"opt_out_hashes"}
        assert html_escape(text.splitlines()[0]) in (out / "report.html").read_text()
        # The second pass: after erasing a written record and the leaked (dropped) one.
        forget(out, keys=["astronaut_portrait", "rocket_launchpad"], reason="why not")
    assert t["dropped"].get("eval_leak", 0) < leaked_before["eval_leak"], "the leak was erased"
    assert "why not" in text or "why not" in (out / "datasheet.md").read_text()


def test_the_datasheet_names_an_eval_set_given_in_memory(tmp_path):
    from fastprep.pipeline.sources import open_source

    src = make_corpus(tmp_path / "src")
    out = tmp_path / "out"
    prep(str(src), out, settings(eval_source=list(open_source(str(EVAL)))))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["eval_source"] is None, "no path to record"
    line = next(ln for ln in (out / "datasheet.md").read_text().splitlines()
                if ln.startswith("- Eval-set leak check:"))  # fmt: skip
    assert line == (
        "- Eval-set leak check: against an eval set given in memory within "
        f"{manifest['settings']['eval_radius']} bits: "
        f"{manifest['totals']['dropped'].get('eval_leak', 0)} record(s) dropped as leaks"
    )
    assert manifest["totals"]["dropped"].get("eval_leak", 0) > 0


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


@pytest.mark.parametrize("sink", ["webdataset", "arrow"])
def test_forget_rewrites_tar_and_arrow_shards(tmp_path, sink):
    src = make_corpus(tmp_path / "src")
    out = tmp_path / "out"
    prep(str(src), out, settings(sink=sink))
    before = {p.name: p.read_bytes() for p in out.glob("shard-*")}
    held = {
        s["file"]: forget_module._read_shard(str(out / s["file"])).column("key").to_pylist()
        for s in json.loads((out / "manifest.json").read_text())["outputs"]
    }
    assert forget(out, keys=["fig_bowl"], accounts=["u0"]).erased == 5
    manifest = json.loads((out / "manifest.json").read_text())
    left = []
    for shard in manifest["outputs"]:
        table = forget_module._read_shard(str(out / shard["file"]))
        assert table.num_rows == shard["records"]
        left += table.column("key").to_pylist()
    assert sorted(left) == sorted(s for i, s in enumerate(STEMS) if s != "fig_bowl" and i % 3 != 0)
    assert manifest["totals"]["written"] == 5 and manifest["totals"]["erased"] == 5
    erased = {"fig_bowl"} | {s for i, s in enumerate(STEMS) if i % 3 == 0}
    for name, data in before.items():
        if erased & set(held[name]):
            assert not (out / name).exists() or (out / name).read_bytes() != data, name
        else:
            assert (out / name).read_bytes() == data, f"{name} untouched, byte-identical"
    assert any(not erased & set(keys) for keys in held.values()), "one shard stays as it was"
