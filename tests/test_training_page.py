"""The Training page under AppTest, on real services: the new-run wizard through submission, the
run view of a run with recorded metrics, samples and checkpoints, and the configs section.

No worker runs here: submitted runs stay queued, and what a trainer would have recorded is
written through the same core functions the trainer uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update
from streamlit.testing.v1 import AppTest

from core.datasets import datasets
from core.db import session_scope
from core.infra.storage import get_object_store
from core.jobs import lifecycle as jobs
from core.models import LoraModel
from core.training import runs as training
from core.training import views as training_views
from core.training.configs import get_config_by_name, get_default_config, list_configs, params_of
from core.training.params import LoraParams, available_optimizers
from tests.factories import image_bytes
from ui.training.param_form import GROUPS

ROOT = Path(__file__).resolve().parent.parent


def _training_page(**session: object) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    for key, value in session.items():
        at.session_state[key] = value
    at.switch_page("pages/training.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _texts(elements) -> list[str]:
    return [element.value for element in elements]


@pytest.fixture
def ava(studio):
    dataset = datasets.create_dataset(name="Ava", trigger_word="ohwx woman")
    datasets.import_files(dataset.id, [(f"{i}.png", image_bytes(seed=40 + i)) for i in range(3)])
    return datasets.get_dataset(dataset.id)


def _to_parameters(at: AppTest, config_name: str | None = None) -> int:
    """Walk steps 1 and 2; returns the chosen config's id."""
    _click(at, "training.wizard.next.1")
    config = get_config_by_name(config_name) if config_name else get_default_config()
    if config_name:
        at.selectbox(key="training.wizard.config").set_value(config.id).run()
    assert at.selectbox(key="training.wizard.config").value == config.id
    _click(at, "training.wizard.next.2")
    return int(config.id or 0)


def test_the_wizard_submits_a_run_with_the_chosen_dataset_config_and_edited_rank(ava):
    at = _training_page(**{"training.dataset_id": ava.id})
    assert at.selectbox(key="training.open").value == ava.id
    assert {m.label: m.value for m in at.metric} == {"Images": "3", "Captioned": "0", "Reviewed": "0"}
    assert any("3 image(s) without a caption" in w for w in _texts(at.warning))

    config_id = _to_parameters(at, "SD 1.5 High Quality")
    rank = at.number_input(key=f"training.wizard.p{config_id}.rank")
    assert (rank.value, rank.min, rank.max) == (16, 1, 512)  # range from LoraParams' field metadata
    rank.set_value(32).run()
    _click(at, "training.wizard.next.3")

    assert {m.label for m in at.metric} >= {"Steps", "Time", "GPU memory (estimate)"}
    assert any("unknown until a first run" in c.value for c in at.caption)
    assert any("No GPU worker is online" in i.value for i in at.info)
    assert {"setting": "Rank", "config": "16", "this run": "32"} in at.dataframe[-1].value.to_dict("records")
    at.text_input(key="training.wizard.name").input("Ava v1").run()
    _click(at, "training.wizard.next.4")

    runs = training.list_runs().items
    assert len(runs) == 1
    run = runs[0]
    assert run.kind == "train" and run.status == "queued"
    assert run.payload["dataset_id"] == ava.id and run.payload["config_id"] == config_id
    assert run.payload["params"]["rank"] == 32 and run.payload["params"]["resolution"] == 768
    assert run.payload["name"] == "Ava v1"
    # The page switched to the new run's live view.
    assert at.session_state["training.section"] == "runs"
    assert at.selectbox(key="training.runs.open").value == run.id
    assert any("Ava v1 queued" in s.value for s in at.success)
    assert at.button(key="training.run.cancel")


def test_back_keeps_the_edited_parameters(ava):
    at = _training_page()
    config_id = _to_parameters(at)
    at.number_input(key=f"training.wizard.p{config_id}.rank").set_value(8).run()
    _click(at, "training.wizard.next.3")
    _click(at, "training.wizard.back.4")
    assert at.number_input(key=f"training.wizard.p{config_id}.rank").value == 8


def test_invalid_parameters_show_the_error_and_queue_nothing(ava):
    at = _training_page()
    config_id = _to_parameters(at)  # SD 1.5 Standard: constant learning rate
    at.number_input(key=f"training.wizard.p{config_id}.warmup_steps").set_value(100).run()
    _click(at, "training.wizard.next.3")
    assert any("warm-up needs a scheduler" in e.value for e in at.error)
    assert at.session_state["training.wizard.step"] == 3
    assert jobs.list_jobs().total == 0


def test_saving_as_an_existing_config_name_fails_at_submit_and_queues_nothing(ava):
    at = _training_page()
    _to_parameters(at)
    at.text_input(key="training.wizard.save_as").input("SDXL Standard").run()
    _click(at, "training.wizard.next.3")
    _click(at, "training.wizard.next.4")
    assert any("already exists" in e.value for e in at.error)
    assert jobs.list_jobs().total == 0


def test_saving_as_a_new_config_submits_the_run_from_it(ava):
    at = _training_page()
    config_id = _to_parameters(at)
    at.number_input(key=f"training.wizard.p{config_id}.rank").set_value(4).run()
    at.text_input(key="training.wizard.save_as").input("Ava rank 4").run()
    _click(at, "training.wizard.next.3")
    _click(at, "training.wizard.next.4")
    saved = get_config_by_name("Ava rank 4")
    assert saved.params["rank"] == 4
    assert training.list_runs().items[0].payload["config_id"] == saved.id


def test_a_dataset_without_images_cannot_go_on(studio):
    datasets.create_dataset(name="Empty")
    at = _training_page()
    assert at.button(key="training.wizard.next.1").disabled
    assert any("no images" in i.value for i in at.info)


def test_every_lora_param_has_a_place_in_the_form():
    grouped = [name for names in GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(LoraParams.model_fields)
    specs = training_views.field_specs()
    assert specs["resolution"].step == 8 and specs["learning_rate"].number_format == "%.1e"
    assert specs["optimizer"].options == tuple(available_optimizers())  # only what this install can run


@pytest.fixture
def finished_run(ava):
    """A run as a worker would have left it: metrics, one sample step, two checkpoints."""
    job = training.submit_training(dataset_id=ava.id, name="Ava v1")
    training.record_metrics(job.id, [
        training.MetricPoint(step=s, epoch=0, loss=1.0 / s, lr=1e-4) for s in range(1, 41)
    ])
    for index in range(2):
        training.save_sample(jobs.get_job(job.id), step=20, prompt_index=index, prompt=f"<b>prompt {index}</b>",
                             seed=1, png=image_bytes(64, 64, seed=index))
    store = get_object_store()
    with session_scope() as session:
        for step, final in ((20, False), (40, True)):
            key = training.checkpoint_keys(job.id, step)[0]
            store.put_bytes(key, b"weights-%d" % step, "application/octet-stream")
            session.add(LoraModel(name=f"Ava v1 · step {step}", job_id=job.id, step=step, final=final,
                                  family="sd15", base_model="tiny-sd15", key=key, size_bytes=9, loss=0.05))
    return job


def test_the_run_view_shows_the_loss_chart_samples_checkpoints_and_promotes(finished_run):
    at = _training_page(**{"training.run": finished_run.id, "training.section": "runs"})
    assert len(at.get("plotly_chart")) == 1  # the Loss tab is open first

    at.session_state["training.run.tab"] = "Samples"
    at.run()
    assert "<b>prompt 0</b>" in _texts(at.text)  # prompts are plain text
    assert len(at.get("image")) == 2 and not at.get("plotly_chart")  # only the open tab is drawn

    at.session_state["training.run.tab"] = "Checkpoints"
    at.run()
    texts = _texts(at.text)
    assert texts.index("40") < texts.index("20") and "0.0500" in texts  # the checkpoint rows, newest first
    assert any("final" in m.value for m in at.markdown)  # the final checkpoint's badge
    assert len(at.get("download_button")) == 4  # each checkpoint: diffusers and kohya/A1111
    assert at.get("download_button")[1].proto.label == "kohya / A1111"
    lora = training.list_loras(job_id=finished_run.id).items[0]
    _click(at, f"training.run.promote.{lora.id}")
    assert training.get_lora(lora.id).promoted
    assert any("Step 40 is now the LoRA generation uses" in t.value for t in at.toast)
    assert at.button(key=f"training.run.promote.{lora.id}").disabled
    assert any("Generation uses 'Ava v1 · step 40' by default" in c.value for c in at.caption)


def test_a_dit_checkpoint_offers_its_kohya_file_for_comfyui(finished_run):
    with session_scope() as session:
        session.execute(update(LoraModel).where(LoraModel.job_id == finished_run.id).values(family="z_image"))
    at = _training_page(**{"training.run": finished_run.id, "training.section": "runs",
                           "training.run.tab": "Checkpoints"})
    kohya = [button.proto for button in at.get("download_button")][1::2]
    assert [b.label for b in kohya] == ["kohya / ComfyUI"] * 2 and "kohya-style" in kohya[0].help


def test_a_run_link_opens_its_view_and_cancel_stops_a_queued_run(finished_run):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.query_params["run"] = finished_run.id
    at.run().switch_page("pages/training.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state["training.section"] == "runs"
    assert at.selectbox(key="training.runs.open").value == finished_run.id
    _click(at, "training.run.cancel")
    assert jobs.get_job(finished_run.id).status == "cancelled"
    assert at.button(key="training.run.retry")
    at.session_state["training.run.tab"] = "Log"
    at.run()
    assert any("cancel requested" in c.value for c in at.code)  # the log tail


def test_the_runs_list_filters_by_status(finished_run, ava):
    other = training.submit_training(dataset_id=ava.id, name="Ava v2")
    jobs.cancel_job(other.id)
    at = _training_page(**{"training.section": "runs"})
    assert set(at.selectbox(key="training.runs.open").options) >= {"Ava v1 (queued)", "Ava v2 (cancelled)"}
    at.multiselect(key="training.runs.status").set_value(["cancelled"]).run()
    assert at.dataframe[0].value["name"].tolist() == ["Ava v2"]


def _configs_page() -> AppTest:
    return _training_page(**{"training.section": "configs"})


def test_cloning_a_config_selects_the_copy(studio):
    at = _configs_page()
    default = get_default_config()
    assert at.selectbox(key="training.configs.open").value == default.id
    _click(at, "training.configs.clone")
    assert "Cloned as 'SD 1.5 Standard (copy)'." in _texts(at.success)
    copy = get_config_by_name("SD 1.5 Standard (copy)")
    assert copy.params == default.params and not copy.is_default
    assert at.selectbox(key="training.configs.open").value == copy.id


def test_making_another_config_the_default(studio):
    at = _configs_page()
    sdxl = get_config_by_name("SDXL Standard")
    at.selectbox(key="training.configs.open").set_value(sdxl.id).run()
    _click(at, "training.configs.default")
    assert "'SDXL Standard' is now the default config." in _texts(at.success)
    assert get_default_config().id == sdxl.id


def test_deleting_the_default_config_is_refused_and_another_is_deleted(studio):
    at = _configs_page()
    assert at.button(key="training.configs.delete").disabled  # until confirmed
    seeded = list_configs().total  # the presets of every family (migrations 0003 and 0010)
    default = get_default_config()
    at.checkbox(key=f"training.configs.confirm.{default.id}").check().run()
    _click(at, "training.configs.delete")
    assert any("is the default config" in e for e in _texts(at.error))
    assert list_configs().total == seeded

    tiny = get_config_by_name("Tiny (offline demo)")
    at.selectbox(key="training.configs.open").set_value(tiny.id).run()
    at.checkbox(key=f"training.configs.confirm.{tiny.id}").check().run()
    _click(at, "training.configs.delete")
    assert "Deleted 'Tiny (offline demo)'." in _texts(at.success)
    assert list_configs().total == seeded - 1


def test_creating_and_editing_a_config_from_the_form(studio):
    at = _configs_page()
    default = get_default_config()
    at.text_input(key="training.configs.new_name").input("Ava fast").run()
    at.number_input(key=f"training.configs.new.{default.id}.steps").set_value(300).run()
    _click(at, "training.configs.create")
    created = get_config_by_name("Ava fast")
    assert created.params["steps"] == 300 and "Created 'Ava fast'." in _texts(at.success)
    assert at.selectbox(key="training.configs.open").value == created.id

    at.number_input(key=f"training.configs.edit.{created.id}.rank").set_value(64).run()
    _click(at, "training.configs.save")
    assert get_config_by_name("Ava fast").params["rank"] == 64


def test_the_smoothed_loss_starts_at_the_first_value_and_follows_a_constant():
    assert training_views.ema([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    assert training_views.ema([1.0, 0.0], 0.0) == [1.0, 0.0]
    assert training_views.format_duration(3725) == "1 h 02 min" and training_views.format_duration(42) == "42 s"


def test_the_loss_chart_axes_never_go_below_zero(finished_run):
    at = _training_page(**{"training.run": finished_run.id, "training.section": "runs"})
    [chart] = at.get("plotly_chart")
    layout = json.loads(chart.proto.spec)["layout"]
    assert layout["yaxis"].get("rangemode") == "nonnegative"  # the loss
    assert layout["yaxis2"]["range"][0] == 0  # the learning rate


def test_the_import_section_offers_a_safetensors_upload_and_asks_for_a_file_first(studio):
    at = _training_page(**{"training.section": "import"})
    assert not at.exception
    assert len(at.get("file_uploader")) == 1
    assert at.text_input(key="training.import.base_model").value == params_of(get_default_config()).base_model
    at.button[0].click().run()
    assert any("Choose a .safetensors file first." in e.value for e in at.error)
