"""The optional Weights & Biases writer (icl_jax/wandb_writer.py), in offline mode: no network.

An offline W&B run is read back from its `.wandb` file: wandb's record log (LevelDB's log
format: 32 KiB blocks of checksummed chunks, after a 7-byte ':W&B' header) of protobuf
Records, the same records `wandb sync` uploads."""

import json
import os
import pathlib
import struct
import subprocess
import sys

import pytest

from icl_jax import config as config_lib
from icl_jax.errors import UserError
from icl_jax.evaluation import run as evaluation, scorers
from icl_jax.training import loop
from icl_jax.training.metrics_writer import MetricsWriter
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(180)
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """wandb quiet, and its per-user folders in the test's folder."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home" / name.lower()))
    for name in ("WANDB_MODE", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()  # stops wandb's service process


def offline_config(steps: int):
    c = small_config()
    c.train.steps, c.train.log_every, c.train.checkpoint_every = steps, 2, 4
    c.train.schedule = "constant"  # so that train.steps may grow when the run resumes
    c.wandb.project, c.wandb.mode, c.wandb.group = "icl-test", "offline", "g"
    return config_lib.validate(c)


def read_records(path: pathlib.Path):
    """The protobuf Records of a .wandb file, in order."""
    from wandb.proto import wandb_internal_pb2

    block, header, data = 32 * 1024, 7, path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B record log"
    pos, pieces, records = header, b"", []
    while pos + header <= len(data):
        if block - pos % block < header:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos:pos + header])
        if kind == 0 and length == 0:  # zero fill: the writer stopped here
            break
        pieces += data[pos + header:pos + header + length]
        pos += header + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
            pieces = b""
    return records


def _merge(into: dict, items) -> dict:
    """Items of a record (a key, or a nested_key path for a value inside a dict) into `into`."""
    for item in items:
        *parents, last = [item.key] if item.key else list(item.nested_key)
        place = into
        for name in parents:
            place = place.setdefault(name, {})
        place[last] = json.loads(item.value_json)
    return into


class OfflineRun:
    """What one session (one wandb.init) wrote: WORKDIR/wandb/offline-run-*/run-<id>.wandb."""

    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        [path] = folder.glob("run-*.wandb")
        records = read_records(path)
        kinds = [r.WhichOneof("record_type") for r in records]
        assert kinds.count("run") == 1 and kinds[-1] == "exit", f"{path} holds {kinds}"
        [self.run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        self.config = _merge({}, self.run.config.update)
        self.history = {}  # step -> {key: value}
        self.summary = {}
        for r in records:
            kind = r.WhichOneof("record_type")
            if kind == "history":
                row = _merge({}, r.history.item)
                self.history[row.pop("_step")] = row
            elif kind == "summary":
                _merge(self.summary, r.summary.update)
            elif kind == "config":
                _merge(self.config, r.config.update)


def new_offline_runs(workdir: pathlib.Path, seen: set) -> list[OfflineRun]:
    """The offline-run folders under WORKDIR/wandb not in `seen` (which is updated). wandb's
    service may still be writing a finished run's file: it is stopped first (the next
    wandb.init starts another), which writes out everything."""
    import wandb

    wandb.teardown()
    folders = set((workdir / "wandb").glob("offline-run-*")) - seen
    seen |= folders
    return [OfflineRun(f) for f in sorted(folders)]


def cheap_scorer(config, task, model, x_NxKxD, y_NxK, w_NxD, counts_RxN, probe_prompts) -> scorers.Scores:
    """The model and one baseline (zero), without the family's baselines to compile: what
    W&B receives does not depend on which predictors a family has."""
    yhat_NxK = model(x_NxKxD, y_NxK)
    errors = {"model": (yhat_NxK - y_NxK) ** 2, "zero": y_NxK ** 2}
    return scorers.Scores(errors, {"model": yhat_NxK, "zero": 0 * y_NxK}, {"model": 0.0, "zero": 0.0},
                          {"metric": "squared error"})


def test_train_resume_and_evaluate_log_into_one_offline_run(tmp_path, wandb_env, monkeypatch):
    monkeypatch.setattr(scorers, "for_family", lambda family: cheap_scorer)
    workdir, seen = tmp_path / "linear_run", set()
    c = offline_config(steps=4)
    loop.train(c, workdir)
    run_id = json.loads((workdir / "wandb_run.json").read_text())["id"]

    [first] = new_offline_runs(workdir, seen)
    assert (first.run.run_id, first.run.project, first.run.run_group, first.run.display_name) == (
        run_id, "icl-test", "g", "linear_run")
    assert first.config["train"]["steps"] == 4 and first.config["model"]["n_embd"] == 32
    assert first.config["wandb"] == {"project": "icl-test", "entity": "", "group": "g", "mode": "offline"}
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert sorted(first.history) == [2, 4] == [r["step"] for r in logged]
    for record in logged:
        row = first.history[record["step"]]
        assert row["train/loss"] == pytest.approx(record["loss"])
        assert row["train/active_points"] == record["active_points"]
        assert "train/steps_per_sec" in row

    c.train.steps = 8  # a resumed run: the same W&B run, the later steps
    loop.train(c, workdir)
    [second] = new_offline_runs(workdir, seen)
    assert second.run.run_id == run_id and second.run.run_group == "g"
    assert sorted(second.history) == [6, 8]
    assert json.loads((workdir / "wandb_run.json").read_text())["id"] == run_id

    result = evaluation.evaluate(workdir, num_prompts=16, verbose=False, probe_prompts=16)
    [third] = new_offline_runs(workdir, seen)
    assert third.run.run_id == run_id
    last_k = c.task.n_points - 1
    assert third.summary[f"eval/model_at_k{last_k}"] == pytest.approx(result["curves"]["model"]["mean"][-1])
    assert third.summary["eval/step"] == 8
    [row] = third.history.values()
    chart = third.config["_wandb"]["visualize"]["eval/step_8"]  # the line plot, of eval/step_8_table
    assert chart["panel_config"]["panelDefId"] == "wandb/lineseries/v0"
    plotted = json.loads((third.folder / "files" / row["eval/step_8_table"]["path"]).read_text())
    assert len(plotted["data"]) == len(result["curves"]) * c.task.n_points  # a line per predictor
    table = json.loads((third.folder / "files" / row["eval/curves"]["path"]).read_text())
    assert table["columns"] == ["step", "predictor", "k", "value"]
    assert len(table["data"]) == len(result["curves"]) * c.task.n_points
    curves = {}
    for step, predictor, k, value in table["data"]:
        assert step == 8
        curves.setdefault(predictor, {})[k] = value
    assert set(curves) == set(result["curves"]) == {"model", "zero"}  # the model and every baseline
    for name, curve in result["curves"].items():
        assert [curves[name][k] for k in range(c.task.n_points)] == pytest.approx(curve["mean"])


def test_without_a_project_wandb_is_never_imported(tmp_path):
    """Training's writer and evaluation's call, with the default config, in a fresh process."""
    script = (
        "import sys\n"
        "from icl_jax import config as config_lib, wandb_writer\n"
        "from icl_jax.evaluation import run\n"
        "from icl_jax.training import loop\n"
        "from icl_jax.training.metrics_writer import MetricsWriter\n"
        "c = config_lib.validate(config_lib.default_config())\n"
        f"w = MetricsWriter({str(tmp_path)!r}, c, resumed_step=None)\n"
        "w.write(1, {'loss': 1.0}, 1.0)\n"
        "w.close()\n"
        "result = {'step': 1, 'k': [0], 'curves': {'model': {'mean': [1.0]}}}\n"
        f"wandb_writer.log_evaluation(c, {str(tmp_path)!r}, result)\n"
        "print('wandb' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "False"
    assert not (tmp_path / "wandb_run.json").exists() and not (tmp_path / "wandb").exists()


def test_a_bad_mode_names_the_key():
    c = small_config()
    c.wandb.mode = "cloud"
    with pytest.raises(UserError, match=r"wandb\.mode must be one of online, offline, disabled, got 'cloud'"):
        config_lib.validate(c)


def test_a_project_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    c = offline_config(steps=4)
    with pytest.raises(UserError, match=r'pip install -e "\.\[wandb\]"'):
        MetricsWriter(tmp_path, c, resumed_step=None)
    c.wandb.mode = "disabled"  # no W&B logging: no package needed
    MetricsWriter(tmp_path, c, resumed_step=None).close()
    assert not (tmp_path / "wandb").exists()


def test_wandb_keys_may_change_when_a_run_resumes(tmp_path):
    from icl_jax import files

    c = offline_config(steps=4)
    files.record_run_config(tmp_path, c)
    c.wandb.project, c.wandb.group, c.wandb.mode = "", "other", "online"
    files.record_run_config(tmp_path, c)  # refused before wandb.* was resumable
