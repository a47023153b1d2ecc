"""The asset library on real services: every filter narrows, sorts, pagination, collections,
the trash (soft delete, restore, purge that really removes objects), lineage, download links,
and the query plans that keep the listing fast with thousands of assets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, select, update

from core.datasets import datasets
from core.db import get_engine, session_scope
from core.errors import Conflict, InvalidInput, NotFound
from core.infra.storage import get_object_store, reset_object_store
from core.jobs import lifecycle as jobs
from core.library import assets, collections
from core.library.assets import AssetFilter, AssetSource
from core.models import Asset, AssetKind, Character, CollectionItem, Job, JobStatus, LoraModel
from core.training import runs as training
from tests.factories import image_bytes
from tests.s3_server import S3Endpoint, reset_s3_server, run_s3_server

both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)

TODAY = datetime.now(UTC).date()


def _set(asset_id: int, **values: object) -> None:
    with session_scope() as session:
        session.execute(update(Asset).where(Asset.id == asset_id).values(**values))


def _generate_job(**payload: object) -> Job:
    """A generation job row as the Generate page leaves it (no worker runs here)."""
    with session_scope() as session:
        job = Job(kind="generate", queue="gpu", status=JobStatus.SUCCEEDED, payload=dict(payload))
        session.add(job)
    return job


def _lora(dataset_id: int, tmp_path, *, step: int = 10) -> LoraModel:
    job = training.submit_training(dataset_id=dataset_id, name="Ava v1")
    folder = tmp_path / f"{job.id}-{step}"
    folder.mkdir()
    (folder / training.WEIGHTS_FILE).write_bytes(b"weights")
    (folder / training.STATE_FILE).write_bytes(b"state")
    lora = training.register_checkpoint(jobs.get_job(job.id), step=step, directory=folder, final=True, loss=0.1)
    with session_scope() as session:  # the run is over: nothing queued uses this LoRA
        session.execute(update(Job).where(Job.id == job.id).values(status=JobStatus.SUCCEEDED))
    return lora


def _image(key: str, *, seed: int, source: str = AssetSource.GENERATED, **fields: object) -> Asset:
    return assets.store_image(key, image_bytes(64, 64, seed=seed), source=source, **fields)


def _meta(job: Job, lora: LoraModel, prompt: str, *, strength: float, seed: int, **extra: object) -> dict:
    """What core.generation.requests.image_metadata writes for an image."""
    return {"prompt": prompt, "negative_prompt": "blurry", "seed": seed, "steps": 20, "cfg": 7.0,
            "scheduler": "euler", "width": 64, "height": 64, "base_model": "tiny-sd15", "family": "sd15",
            "template": "tiny-lora", "job_id": job.id, "index": 0,
            "loras": [{"id": lora.id, "name": lora.name, "strength": strength, "trigger_word": "ohwx woman",
                       "dataset_id": lora.dataset_id, "job_id": lora.job_id, "step": lora.step}], **extra}


@dataclass
class Library:
    ava: int  # dataset ids
    mia: int
    lora: LoraModel
    lora_asset: Asset
    generate: Job
    beach: Asset  # generated, 3 days old, LoRA at 0.8, in the "Beach" collection
    cafe: Asset  # generated, LoRA at 1.0
    upload: Asset  # 10 days old, Mia's dataset, character Ava
    sample: Asset
    video: Asset
    audio: Asset
    trashed: Asset
    collection: int
    character: int

    def live(self) -> set[int]:
        return {a.id for a in (self.lora_asset, self.beach, self.cafe, self.upload, self.sample, self.video,
                               self.audio)}


@pytest.fixture
def library(studio, tmp_path) -> Library:
    ava = datasets.create_dataset(name="Ava", trigger_word="ohwx woman")
    datasets.import_files(ava.id, [("0.png", image_bytes(64, 64, seed=1))])
    mia = datasets.create_dataset(name="Mia")
    with session_scope() as session:
        character = Character(name="Ava")
        session.add(character)
        session.flush()
        character_id = character.id
    lora = _lora(ava.id, tmp_path)
    lora_asset = assets.find_asset(lora.key)
    generate = _generate_job(prompt="ohwx woman")
    beach_prompt = "ohwx woman on a beach, 50% zoom"
    beach = _image(f"jobs/{generate.id}/images/000.png", seed=2, job_id=generate.id, dataset_id=ava.id,
                   prompt=beach_prompt, meta=_meta(generate, lora, beach_prompt, strength=0.8, seed=7),
                   loras=[(lora.id, 0.8)])
    cafe_prompt = "OHWX WOMAN in a_cafe"
    cafe = _image(f"jobs/{generate.id}/images/001.png", seed=3, job_id=generate.id, dataset_id=ava.id,
                  prompt=cafe_prompt, meta=_meta(generate, lora, cafe_prompt, strength=1.0, seed=8),
                  loras=[(lora.id, 1.0)])
    upload = _image("uploads/ref.png", seed=4, source=AssetSource.UPLOAD, dataset_id=mia.id,
                    character_id=character_id, prompt="reference")
    sample = training.save_sample(jobs.get_job(lora.job_id), step=10, prompt_index=0, prompt="sample prompt",
                                  seed=1, png=image_bytes(64, 64, seed=5))
    store = get_object_store()
    store.put_bytes("videos/v1.mp4", b"\x00" * 4096, "video/mp4")
    video = assets.record_asset(key="videos/v1.mp4", kind=AssetKind.VIDEO, source=AssetSource.VIDEO,
                                content_type="video/mp4", size_bytes=4096, prompt="beach reel")
    store.put_bytes("voices/a1.wav", b"\x00" * 100, "audio/wav")
    audio = assets.record_asset(key="voices/a1.wav", kind=AssetKind.AUDIO, source=AssetSource.VOICE,
                                content_type="audio/wav", size_bytes=100)
    trashed = _image("uploads/old.png", seed=6, source=AssetSource.UPLOAD, prompt="ohwx woman, old")
    assets.trash_assets([trashed.id])
    now = datetime.now(UTC)
    _set(beach.id, created_at=now - timedelta(days=3))
    _set(upload.id, created_at=now - timedelta(days=10))
    collection = collections.create_collection(name="Beach")
    collections.add_to_collection(collection.id, [beach.id, video.id])
    return Library(ava=ava.id, mia=mia.id, lora=lora, lora_asset=lora_asset, generate=generate, beach=beach,
                   cafe=cafe, upload=upload, sample=sample, video=video, audio=audio, trashed=trashed,
                   collection=collection.id, character=character_id)


def _ids(filters: AssetFilter | None = None, **kwargs: object) -> set[int]:
    return {a.id for a in assets.list_assets(filters, page_size=100, **kwargs).items}


# --- filters ------------------------------------------------------------------------------------------


@both_databases
def test_every_filter_narrows_the_library_to_what_it_names(library: Library):
    lib = library
    assert _ids() == lib.live()
    assert _ids(AssetFilter(kind="image")) == {lib.beach.id, lib.cafe.id, lib.upload.id}  # not samples
    assert _ids(AssetFilter(kind="sample")) == {lib.sample.id}
    assert _ids(AssetFilter(kind="lora")) == {lib.lora_asset.id}
    assert _ids(AssetFilter(kind="video")) == {lib.video.id}
    assert _ids(AssetFilter(kind="audio")) == {lib.audio.id}
    assert _ids(AssetFilter(dataset_id=lib.ava)) == {lib.beach.id, lib.cafe.id, lib.sample.id, lib.lora_asset.id}
    assert _ids(AssetFilter(dataset_id=lib.mia)) == {lib.upload.id}
    # Through the lineage links: the images made with the LoRA, and the LoRA's own file.
    assert _ids(AssetFilter(lora_id=lib.lora.id)) == {lib.beach.id, lib.cafe.id, lib.lora_asset.id}
    assert _ids(AssetFilter(job_id=lib.generate.id)) == {lib.beach.id, lib.cafe.id}
    assert _ids(AssetFilter(collection_id=lib.collection)) == {lib.beach.id, lib.video.id}
    assert _ids(AssetFilter(character_id=lib.character)) == {lib.upload.id}
    assert _ids(AssetFilter(kind="image", dataset_id=lib.ava, lora_id=lib.lora.id)) == {lib.beach.id, lib.cafe.id}


@both_databases
def test_the_date_range_includes_whole_days(library: Library):
    lib = library
    three_days_ago = TODAY - timedelta(days=3)
    assert _ids(AssetFilter(created_from=three_days_ago, created_to=three_days_ago)) == {lib.beach.id}
    assert _ids(AssetFilter(created_to=TODAY - timedelta(days=4))) == {lib.upload.id}
    assert _ids(AssetFilter(created_from=TODAY)) == lib.live() - {lib.beach.id, lib.upload.id}
    with pytest.raises(InvalidInput, match="start date is after the end date"):
        assets.make_filter(created_from=TODAY, created_to=TODAY - timedelta(days=1))


@both_databases
def test_text_search_ignores_case_and_treats_wildcards_as_literals(library: Library):
    lib = library
    assert _ids(AssetFilter(text="ohwx woman")) == {lib.beach.id, lib.cafe.id}  # not the trashed one
    assert _ids(AssetFilter(text="%")) == {lib.beach.id}
    assert _ids(AssetFilter(text="50% z")) == {lib.beach.id}
    assert _ids(AssetFilter(text="_")) == {lib.cafe.id}
    assert _ids(AssetFilter(text="a_c")) == {lib.cafe.id}
    assert _ids(AssetFilter(text="a%c")) == set()
    assert _ids(AssetFilter(text="\\")) == set()


def test_a_filter_refuses_an_unknown_kind_or_sort(studio):
    with pytest.raises(InvalidInput, match="kind"):
        assets.make_filter(kind="caption")
    with pytest.raises(InvalidInput, match="unknown sort"):
        assets.list_assets(sort="name")


def test_filter_options_name_the_datasets_and_loras_that_made_something(library: Library):
    options = assets.filter_options()
    assert options.datasets == {library.ava: "Ava", library.mia: "Mia"}
    assert options.loras == {library.lora.id: library.lora.name}
    datasets.delete_dataset(library.mia)
    assert assets.filter_options().datasets[library.mia] == f"dataset #{library.mia} (deleted)"


# --- sorting and pages --------------------------------------------------------------------------------


def _bulk_assets(count: int, *, deleted_every: int = 0, prefix: str = "bulk") -> None:
    """Rows only (no objects): enough for listing, sorting and query plans."""
    start = datetime.now(UTC) - timedelta(days=30)
    rows = [dict(kind=("image", "lora", "video")[i % 3], source=("generated", "sample", "upload", "lora")[i % 4],
                 key=f"{prefix}/{i:05d}.png", content_type="image/png", size_bytes=(i * 7919) % 100_003,
                 prompt=f"prompt {i}", dataset_id=(i % 5) or None, meta={},
                 created_at=start + timedelta(minutes=i // 2),  # pairs share a time: the id breaks the tie
                 deleted_at=start if deleted_every and i % deleted_every == 0 else None)
            for i in range(count)]
    with session_scope() as session:
        session.execute(insert(Asset), rows)


@both_databases
def test_sort_orders_are_stable_with_the_id_as_tie_break(studio):
    _bulk_assets(30)
    rows = assets.list_assets(page_size=100).items
    newest = sorted(rows, key=lambda a: (a.created_at, a.id), reverse=True)
    assert [a.id for a in rows] == [a.id for a in newest]
    assert [a.id for a in assets.list_assets(sort="oldest", page_size=100).items] == [a.id for a in newest[::-1]]
    largest = assets.list_assets(sort="largest", page_size=100).items
    assert [a.id for a in largest] == [a.id for a in sorted(rows, key=lambda a: (a.size_bytes, a.id), reverse=True)]


@both_databases
def test_pages_cover_every_asset_once_and_sizes_are_clamped(studio):
    _bulk_assets(30, deleted_every=6)  # 5 in the trash
    pages = [assets.list_assets(page=n, page_size=12) for n in (1, 2, 3)]
    assert [p.total for p in pages] == [25, 25, 25] and pages[0].pages == 3
    assert [len(p.items) for p in pages] == [12, 12, 1]
    seen = [a.id for p in pages for a in p.items]
    assert len(seen) == len(set(seen)) == 25
    assert assets.list_assets(page=9, page_size=12).items == []
    clamped = assets.list_assets(page=0, page_size=10_000)
    assert (clamped.page, clamped.page_size) == (1, assets.MAX_PAGE_SIZE)
    trash = assets.list_assets(AssetFilter(trash=True))
    assert trash.total == 5 and all(a.deleted_at is not None for a in trash.items)


# --- collections --------------------------------------------------------------------------------------


@both_databases
def test_collections_are_created_renamed_listed_with_counts_and_deleted(library: Library):
    created = collections.create_collection(name="  Summer  ", description="for July")
    assert created.name == "Summer"
    with pytest.raises(Conflict, match="'Summer' already exists"):
        collections.create_collection(name="Summer")
    with pytest.raises(InvalidInput, match="name"):
        collections.create_collection(name="   ")
    with pytest.raises(InvalidInput, match="name"):
        collections.create_collection(name="x" * 121)
    renamed = collections.rename_collection(created.id, name="Summer 2027")
    assert (renamed.name, renamed.description) == ("Summer 2027", "for July")
    with pytest.raises(Conflict, match="already exists"):
        collections.rename_collection(created.id, name="Beach")

    collections.add_to_collection(created.id, [library.cafe.id, library.beach.id])
    assets.trash_assets([library.beach.id])  # trashed items do not count
    listed = collections.list_collections()
    assert [(c.name, c.item_count) for c in listed.items] == [("Beach", 1), ("Summer 2027", 1)]
    assert listed.total == 2

    assert collections.delete_collection(created.id) == 2
    with pytest.raises(NotFound):
        collections.get_collection(created.id)
    assert assets.get_asset(library.cafe.id).deleted_at is None  # the assets stay
    assert [c.name for c in collections.list_collections().items] == ["Beach"]


@both_databases
def test_membership_is_idempotent_and_refuses_trashed_or_missing_assets(library: Library):
    beach = library.collection
    assert collections.add_to_collection(beach, [library.beach.id, library.cafe.id, library.cafe.id]) == 1
    assert collections.add_to_collection(beach, [library.cafe.id]) == 0
    assert _ids(AssetFilter(collection_id=beach)) == {library.beach.id, library.cafe.id, library.video.id}
    with pytest.raises(Conflict, match=f"{library.trashed.id} are in the trash; restore them"):
        collections.add_to_collection(beach, [library.audio.id, library.trashed.id])
    with pytest.raises(NotFound, match="999999 do not exist"):
        collections.add_to_collection(beach, [999_999])
    with pytest.raises(NotFound, match="collection"):
        collections.add_to_collection(424_242, [library.audio.id])
    assert library.audio.id not in _ids(AssetFilter(collection_id=beach))  # all or nothing
    assert collections.remove_from_collection(beach, [library.video.id, library.audio.id]) == 1
    assert _ids(AssetFilter(collection_id=beach)) == {library.beach.id, library.cafe.id}
    assert [name for _, name in assets.lineage(library.beach).collections] == ["Beach"]


# --- trash, restore, purge ------------------------------------------------------------------------------


@both_databases
def test_trash_and_restore_round_trip(library: Library):
    ids = [library.beach.id, library.video.id]
    assert assets.trash_assets(ids) == 2
    assert assets.trash_assets(ids) == 0  # already there
    assert _ids() == library.live() - set(ids)
    assert _ids(AssetFilter(trash=True)) == {*ids, library.trashed.id}
    assert _ids(AssetFilter(trash=True, kind="video")) == {library.video.id}
    assert assets.restore_assets(ids) == 2
    assert _ids() == library.live()
    assert _ids(AssetFilter(collection_id=library.collection)) == set(ids)  # memberships survive the trash


@both_databases
def test_purge_removes_the_file_and_thumbnail_from_storage_for_real(library: Library):
    store = get_object_store()
    asset = library.beach
    assert store.exists(asset.key) and asset.thumbnail_key and store.exists(asset.thumbnail_key)
    with pytest.raises(Conflict, match="not in the trash"):
        assets.purge_assets([asset.id, library.trashed.id])
    assert store.exists(asset.key) and assets.get_asset(library.trashed.id)  # nothing was removed

    assets.trash_assets([asset.id])
    assert assets.purge_assets([asset.id, library.trashed.id]) == 2
    for gone in (asset, library.trashed):
        assert not store.exists(gone.key)
        assert not store.exists(gone.thumbnail_key or "")
        with pytest.raises(NotFound):
            assets.get_asset(gone.id)
    with session_scope() as session:
        assert session.execute(select(CollectionItem).where(CollectionItem.asset_id == asset.id)).first() is None
    assert assets.purge_assets([asset.id]) == 0  # already gone: nothing to do
    # What was made from it keeps its lineage; the LoRA is untouched.
    assert training.get_lora(library.lora.id)


@both_databases
def test_purging_a_lora_file_removes_its_lora_version_and_checkpoint(library: Library):
    store = get_object_store()
    lora = library.lora
    state_key = training.checkpoint_keys(lora.job_id, lora.step)[1]
    assert store.exists(lora.key) and store.exists(state_key)
    assets.trash_assets([library.lora_asset.id])
    assert assets.purge_assets([library.lora_asset.id]) == 1
    assert not store.exists(lora.key) and not store.exists(state_key)
    with pytest.raises(NotFound):
        training.get_lora(lora.id)
    with pytest.raises(NotFound):
        assets.get_asset(library.lora_asset.id)
    # The images it made stay, and still name it.
    lineage = assets.lineage(assets.get_asset(library.beach.id))
    assert [(x.name, x.strength, x.exists) for x in lineage.loras] == [(lora.name, 0.8, False)]


@both_databases
def test_a_promoted_lora_or_one_a_queued_job_uses_is_not_purged(library: Library):
    lora_asset = library.lora_asset
    assets.trash_assets([lora_asset.id])
    training.promote_lora(library.lora.id)
    with pytest.raises(Conflict, match="is promoted"):
        assets.purge_assets([lora_asset.id])
    with session_scope() as session:
        session.execute(update(LoraModel).where(LoraModel.id == library.lora.id).values(promoted=False))
    queued = _generate_job(prompt="x", loras=[{"lora_id": library.lora.id, "strength": 1.0}])
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == queued.id).values(status=JobStatus.QUEUED))
    with pytest.raises(Conflict, match=f"queued generate job {queued.id[:8]}"):
        assets.purge_assets([lora_asset.id])
    assert training.get_lora(library.lora.id) and get_object_store().exists(lora_asset.key)

    report = assets.empty_trash(batch_size=1)
    assert report.purged == 1  # the trashed upload
    assert len(report.kept) == 1 and "queued generate job" in report.kept[0]
    assert _ids(AssetFilter(trash=True)) == {lora_asset.id}


@both_databases
def test_empty_trash_purges_everything_in_batches(library: Library):
    store = get_object_store()
    doomed = [library.beach, library.cafe, library.sample, library.video, library.audio]
    assets.trash_assets([a.id for a in doomed])
    report = assets.empty_trash(batch_size=2)
    assert (report.purged, report.kept) == (6, [])
    assert all(not store.exists(a.key) for a in doomed)
    assert _ids(AssetFilter(trash=True)) == set()
    assert _ids() == {library.lora_asset.id, library.upload.id}


# --- lineage and downloads ------------------------------------------------------------------------------


@both_databases
def test_lineage_names_dataset_lora_job_and_prompt_and_survives_deletions(library: Library):
    lineage = assets.lineage(library.beach)
    assert (lineage.kind, lineage.dataset_id, lineage.dataset_name) == ("image", library.ava, "Ava")
    assert [(x.id, x.name, x.strength, x.step, x.exists) for x in lineage.loras] == [
        (library.lora.id, library.lora.name, 0.8, 10, True)]
    assert lineage.job is not None and (lineage.job.id, lineage.job.kind) == (library.generate.id, "generate")
    assert (lineage.prompt, lineage.negative_prompt, lineage.seed) == ("ohwx woman on a beach, 50% zoom", "blurry", 7)
    assert lineage.settings["steps"] == 20 and lineage.settings["template"] == "tiny-lora"
    assert lineage.init_asset_id is None

    img2img = _image("jobs/x/images/000.png", seed=9, prompt="again",
                     meta={"prompt": "again", "init_asset_id": library.cafe.id, "img2img_strength": 0.5})
    assert assets.lineage(img2img).init_asset_state == "in the library"
    assets.trash_assets([library.cafe.id])
    assert assets.lineage(img2img).init_asset_state == "in the trash"
    assets.purge_assets([library.cafe.id])
    assert assets.lineage(img2img).init_asset_state == "purged"

    datasets.delete_dataset(library.ava)
    assert assets.lineage(library.beach).dataset_name == "deleted"
    sample = assets.lineage(library.sample)
    assert sample.kind == "sample" and sample.settings["step"] == 10 and sample.job is not None


def test_download_url_is_a_signed_local_link(library: Library):
    url = assets.download_url(library.beach)
    assert f"/api/files/{library.beach.key}?expires=" in url and "signature=" in url


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[S3Endpoint]:
    with run_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_studio(studio, monkeypatch: pytest.MonkeyPatch, s3_endpoint: S3Endpoint):
    from core.config import reload_settings

    reset_s3_server(s3_endpoint)
    for name, value in {"STUDIO_STORAGE_BACKEND": "s3", "STUDIO_S3_ENDPOINT": s3_endpoint.endpoint,
                        "STUDIO_S3_BUCKET": "assets", "STUDIO_S3_ACCESS_KEY": s3_endpoint.access_key,
                        "STUDIO_S3_SECRET_KEY": s3_endpoint.secret_key, "STUDIO_S3_REGION": s3_endpoint.region}.items():
        monkeypatch.setenv(name, value)
    reload_settings()
    reset_object_store()
    get_object_store().ensure_bucket()
    yield studio
    reset_object_store()
    reset_s3_server(s3_endpoint)


def test_on_s3_the_download_link_is_presigned_and_purge_deletes_the_objects(s3_studio, s3_endpoint: S3Endpoint):
    data = image_bytes(64, 64, seed=11)
    asset = assets.store_image("uploads/s3.png", data, source=AssetSource.UPLOAD)
    url = assets.download_url(asset)
    assert url.startswith(f"http://{s3_endpoint.endpoint}/assets/uploads/s3.png?") and "X-Amz-Signature" in url
    assert httpx.get(url).content == data
    store = get_object_store()
    assets.trash_assets([asset.id])
    assets.purge_assets([asset.id])
    assert not store.exists(asset.key) and not store.exists(asset.thumbnail_key or "")


# --- query plans --------------------------------------------------------------------------------------


def _sqlite_plan(query) -> list[str]:
    engine = get_engine()
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        return [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()]


def test_the_default_listing_on_sqlite_walks_an_index_in_order(studio):
    _bulk_assets(2_000, deleted_every=10)
    plans = {
        "default": _sqlite_plan(assets.asset_query().limit(24)),
        "oldest": _sqlite_plan(assets.asset_query(sort="oldest").limit(24)),
        "largest": _sqlite_plan(assets.asset_query(sort="largest").limit(24)),
        "trash": _sqlite_plan(assets.asset_query(AssetFilter(trash=True)).limit(24)),
        "kind": _sqlite_plan(assets.asset_query(AssetFilter(kind="lora")).limit(24)),
        "dataset": _sqlite_plan(assets.asset_query(AssetFilter(dataset_id=2)).limit(24)),
        "likeness": _sqlite_plan(assets.asset_query(sort="likeness").limit(24)),
    }
    expected = {"default": "ix_asset_deleted_created", "oldest": "ix_asset_deleted_created",
                "likeness": "ix_asset_deleted_face",
                "largest": "ix_asset_deleted_size", "trash": "ix_asset_deleted_created",
                "kind": "ix_asset_kind_created", "dataset": "ix_asset_dataset_created"}
    for name, plan in plans.items():
        assert any(f"USING INDEX {expected[name]}" in step for step in plan), (name, plan)
        assert not any("TEMP B-TREE" in step or step.startswith("SCAN") for step in plan), (name, plan)
    count = _sqlite_plan(select(Asset.id).where(Asset.deleted_at.is_(None)))
    assert any("COVERING INDEX" in step for step in count), count
    page = assets.list_assets(page=50, page_size=24)
    assert page.total == 1_800 and len(page.items) == 24


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_default_listing_on_postgresql_walks_an_index_in_order(studio):
    _bulk_assets(2_000, deleted_every=10)
    engine = get_engine()
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE asset")
        for sort, index in (("newest", "ix_asset_deleted_created"), ("largest", "ix_asset_deleted_size")):
            query = assets.asset_query(sort=sort).limit(24)
            sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
            plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}").all())
            assert f"Index Scan Backward using {index}" in plan and "Seq Scan" not in plan, plan
