"""The run's metrics writer: JSON lines and TensorBoard events agree."""

import glob
import json
import os
import struct

import numpy as np
from tensorboardX.proto import event_pb2

from experiments import report


def read_events(logdir):
  """Every Event in the TFRecord files under ``logdir`` (length, CRC,
  payload, CRC per record), oldest file first."""
  events = []
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.*"))):
    with open(path, "rb") as f:
      data = f.read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      payload = data[pos + 12:pos + 12 + length]
      pos += 12 + length + 4
      events.append(event_pb2.Event.FromString(payload))
  return events


def scalars(events):
  return {(e.step, v.tag): v.simple_value for e in events
          for v in e.summary.value}


def test_metrics_go_to_json_lines_and_tensorboard(tmp_path):
  writer = report.MetricsWriter(str(tmp_path))
  for step in (5, 10):
    writer.write_scalars(step, {"loss": 1.0 / step, "R": 2.0 * step},
                         phase="warmup")
  writer.write_scalars(10, {"acc": 0.75, "nmi": 0.5, "silhouette": None},
                       group="eval")
  writer.close()
  records = [json.loads(line) for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert records == [
      {"loss": 0.2, "R": 10.0, "step": 5, "phase": "warmup"},
      {"loss": 0.1, "R": 20.0, "step": 10, "phase": "warmup"},
      {"step": 10, "eval": {"acc": 0.75, "nmi": 0.5, "silhouette": None}}]
  got = scalars(read_events(str(tmp_path / "tensorboard")))
  assert got == {(5, "train/loss"): np.float32(0.2),
                 (5, "train/R"): 10.0, (10, "train/loss"): np.float32(0.1),
                 (10, "train/R"): 20.0, (10, "eval/acc"): 0.75,
                 (10, "eval/nmi"): 0.5}


def test_a_resumed_writer_drops_the_steps_it_will_redo(tmp_path):
  first = report.MetricsWriter(str(tmp_path))
  for step in (1, 2, 3, 4):
    first.write_scalars(step, {"loss": float(step)})
  first.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"loss": 5.0, "st')  # a line torn by a killed process
  resumed = report.MetricsWriter(str(tmp_path), resume_step=2)
  assert [r["step"] for r in resumed.read()] == [1, 2]
  resumed.write_scalars(3, {"loss": 30.0})
  resumed.close()
  assert [(r["step"], r["loss"]) for r in resumed.read()] == [
      (1, 1.0), (2, 2.0), (3, 30.0)]
  # TensorBoard hides the first session's events from step 3 on: the new
  # file starts with a session restart at that step.
  events = read_events(str(tmp_path / "tensorboard"))
  restarts = [e.step for e in events if e.session_log.status ==
              event_pb2.SessionLog.START]
  assert restarts[-1] == 3


def test_the_embedding_plot_maps_a_seeded_subset_keeping_clusters_apart():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, 3000)
  centres = 10.0 * np.eye(5, 16)
  features = centres[labels] + rng.normal(size=(3000, 16))
  xy, rows, how = report.embed_2d(features)
  assert how == "t-SNE of 1,000 of 3,000" and xy.shape == (1000, 2)
  assert np.all(np.diff(rows) > 0) and rows[-1] < 3000  # distinct rows
  np.testing.assert_array_equal(  # the subset is seeded
      report.embed_2d(features[:500], max_points=100)[1],
      report.embed_2d(features[:500], max_points=100)[1])
  # Each point's 10 nearest neighbours in the picture share its blob.
  from sklearn import neighbors  # pylint: disable=g-import-not-at-top
  knn = neighbors.KNeighborsClassifier(10).fit(xy, labels[rows])
  assert knn.score(xy, labels[rows]) > 0.99
  xy, rows, how = report.embed_2d(features[:50, :2])
  assert how == "PCA" and len(rows) == 50
