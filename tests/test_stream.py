"""The stream runner and ``streamem stream``: checkpoint, SIGKILL and resume exactly once
against real Redis and NATS servers, SIGTERM, the published model, labels, file sources,
drift alarms."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

import streamem
from streamem.cli import main
from streamem.data.checkpoint import load_state
from streamem.stream import run
from streamem.stream.sources import encode_rows
from streamem.stream.sources.memory import MemorySource

from .helpers import free_port

D, K = 3, 2
ROWS_PER_RECORD = 10


def _data(n=30_000, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(-4, 1, (n // 2, D)), rng.normal(4, 1, (n - n // 2, D))])
    return X[rng.permutation(n)]


def _records(X):
    return [X[i : i + ROWS_PER_RECORD] for i in range(0, len(X), ROWS_PER_RECORD)]


def _cli(url, tmp_path, name, *extra):
    return [
        sys.executable,
        "-m",
        "streamem",
        "stream",
        url,
        "--n-features",
        str(D),
        "--n-components",
        str(K),
        "--checkpoint",
        str(tmp_path / f"{name}.ckpt"),
        "--out",
        str(tmp_path / f"{name}.zarr"),
        "--batch-size",
        "200",
        "--checkpoint-every",
        "3",
        "--stop-after-idle",
        "1.5",
        "--seed",
        "0",
        *extra,
    ]


def _assert_same_model(a, b):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-12)
    assert a.n_batches_ == b.n_batches_ and a.n_samples_seen_ == b.n_samples_seen_


def _kill_and_resume(command, checkpoint, rng, kills=2):
    """Run ``command`` to its end, killing it with SIGKILL ``kills`` times at random moments
    after its first checkpoint; the number of kills that landed mid-run."""
    landed = 0
    for _ in range(kills + 20):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if landed < kills:
            deadline = time.monotonic() + 60
            while not (checkpoint / "LATEST").exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.6))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                landed += 1
                continue
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
        return landed
    raise AssertionError("the run never finished")


def _uninterrupted_and_killed(url, tmp_path, seed, *extra):
    """The model of an uninterrupted run (``url`` + "reference") and of one killed with SIGKILL
    at least twice and resumed (``url`` + "killed"), over the same records."""
    reference = subprocess.run(_cli(url + "reference", tmp_path, "reference", *extra), capture_output=True, timeout=300)
    assert reference.returncode == 0, reference.stderr.decode()
    landed = _kill_and_resume(
        _cli(url + "killed", tmp_path, "killed", *extra), tmp_path / "killed.ckpt", np.random.default_rng(seed)
    )
    assert landed >= 2
    return streamem.load(tmp_path / "reference.zarr"), streamem.load(tmp_path / "killed.zarr")


@pytest.mark.long
def test_sigkill_and_resume_exactly_once_with_redis(redis_server, tmp_path):
    import redis

    client = redis.Redis(port=redis_server)
    X = _data()
    for record in _records(X):
        client.xadd("points", {"x": encode_rows(record)})
    client.xadd("points", {"x": b"broken"})
    a, b = _uninterrupted_and_killed(f"redis://127.0.0.1:{redis_server}/points?group=", tmp_path, 0)
    _assert_same_model(a, b)
    assert a.n_samples_seen_ == len(X)  # none lost, none twice
    assert client.xpending("points", "killed")["pending"] == 0  # everything acknowledged in the end
    assert client.xlen("points:dlq") >= 2  # the malformed entry, once per group (never looped)


@pytest.mark.long
def test_sigkill_and_resume_exactly_once_with_the_variational_model(redis_server, tmp_path):
    import redis

    client = redis.Redis(port=redis_server)
    X = _data(20_000, seed=2)
    for record in _records(X):
        client.xadd("points", {"x": encode_rows(record)})
    extra = ("--model", "bayesian", "--n-components", "5", "--weight-concentration-prior", "0.001")
    a, b = _uninterrupted_and_killed(f"redis://127.0.0.1:{redis_server}/points?group=", tmp_path, 2, *extra)
    assert type(a) is type(b) is streamem.BayesianGaussianMixture
    _assert_same_model(a, b)
    np.testing.assert_array_equal(a.weight_concentration_, b.weight_concentration_)
    assert a.n_samples_seen_ == len(X) and a.n_components_effective_ == 2  # two clusters, three faded out
    assert client.xpending("points", "killed")["pending"] == 0


@pytest.mark.long
def test_sigkill_and_resume_exactly_once_with_the_t_mixture(redis_server, tmp_path):
    # the command line finds the t mixture by its registered name (it has partial_fit), and
    # its running statistics resume from a checkpoint as the other stream models' do
    import redis

    client = redis.Redis(port=redis_server)
    X = _data(20_000, seed=3)
    for record in _records(X):
        client.xadd("points", {"x": encode_rows(record)})
    extra = ("--model", "t")
    a, b = _uninterrupted_and_killed(f"redis://127.0.0.1:{redis_server}/points?group=", tmp_path, 3, *extra)
    assert type(a) is type(b) is streamem.StudentTMixture
    _assert_same_model(a, b)
    np.testing.assert_array_equal(a.degrees_of_freedom_, b.degrees_of_freedom_)
    assert a.n_samples_seen_ == len(X)
    assert client.xpending("points", "killed")["pending"] == 0


@pytest.mark.long
def test_sigkill_and_resume_exactly_once_with_nats(nats_server, tmp_path):
    import nats

    X = _data(20_000, seed=1)

    async def publish():
        nc = await nats.connect(f"nats://127.0.0.1:{nats_server}")
        js = nc.jetstream()
        await js.add_stream(name="points", subjects=["points"])
        for record in _records(X):
            await js.publish("points", encode_rows(record))
        await nc.drain()

    asyncio.run(publish())
    a, b = _uninterrupted_and_killed(f"nats://127.0.0.1:{nats_server}/points?durable=", tmp_path, 1)
    _assert_same_model(a, b)
    assert a.n_samples_seen_ == len(X)


def test_sigterm_checkpoints_and_stops(redis_server, tmp_path):
    import redis

    client = redis.Redis(port=redis_server)
    X = _data(10_000)
    for record in _records(X):
        client.xadd("points", {"x": encode_rows(record)})
    command = _cli(f"redis://127.0.0.1:{redis_server}/points?group=g", tmp_path, "m")[:-4]  # no idle stop
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until everything is in a published model: it then waits for more
        time.sleep(0.1)
        try:
            if streamem.load(tmp_path / "m.zarr").n_samples_seen_ == len(X):
                break
        except ValueError:
            pass
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    assert "stopped (signal)" in out.decode()
    model = streamem.load(tmp_path / "m.zarr")
    assert model.n_samples_seen_ == len(X)
    assert client.xpending("points", "g")["pending"] == 0


def test_published_model_is_always_whole_while_the_runner_writes(tmp_path):
    X = _data(40_000)
    out = tmp_path / "model.zarr"
    failures, loads = [], [0]
    done = threading.Event()

    def reader():
        while not done.is_set():
            if out.exists():
                try:
                    assert streamem.load(out).means_.shape == (K, D)
                    loads[0] += 1
                except Exception as exc:  # any failure to read is what this test looks for
                    failures.append(exc)

    def slow_records():  # a stream that takes about 3 s
        for record in _records(X):
            time.sleep(0.00075)
            yield record

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = run(
            MemorySource(slow_records(), D),
            streamem.OnlineGaussianMixture(K, random_state=0),
            tmp_path / "ckpt",
            out,
            batch_size=100,
            checkpoint_every=1,
            stop_after_idle=0.0,
            poll_timeout=0.01,
        )
    finally:
        done.set()
        thread.join()
    assert result.checkpoints >= 10 and loads[0] >= 10
    assert failures == []
    assert len(list((tmp_path / ".model.zarr.versions").iterdir())) <= 3  # old versions are removed


@pytest.mark.parametrize("estimator", [streamem.OnlineGaussianMixture, streamem.BayesianGaussianMixture])
def test_checkpoint_resume_equals_uninterrupted_in_process(tmp_path, estimator):
    X = _data(20_000)
    records = _records(X)
    whole = run(
        MemorySource(records, D),
        estimator(K, random_state=0),
        tmp_path / "a",
        batch_size=300,
        stop_after_idle=0.0,
        poll_timeout=0.01,
    ).model
    first = run(
        MemorySource(records, D),
        estimator(K, random_state=0),
        tmp_path / "b",
        batch_size=300,
        max_batches=25,
        poll_timeout=0.01,
    )
    assert first.stopped == "max_batches" and first.position == 25 * 30
    second = run(
        MemorySource(records, D),
        estimator(K, random_state=0),
        tmp_path / "b",
        batch_size=300,
        stop_after_idle=0.0,
        poll_timeout=0.01,
    )
    assert second.resumed and second.rows == len(X)
    assert type(second.model) is estimator
    _assert_same_model(whole, second.model)
    with pytest.raises(ValueError, match="n_components=2"):
        run(MemorySource(records, D), estimator(3), tmp_path / "b", stop_after_idle=0.0)
    other = (
        streamem.BayesianGaussianMixture
        if estimator is streamem.OnlineGaussianMixture
        else (streamem.OnlineGaussianMixture)
    )
    with pytest.raises(ValueError, match=f"holds a model of class {estimator.__name__}, got {other.__name__}"):
        run(MemorySource(records, D), other(K), tmp_path / "b", stop_after_idle=0.0)


def test_labels_written_at_stream_indices(tmp_path):
    X = _data(6000)
    result = run(
        MemorySource(_records(X), D),
        streamem.OnlineGaussianMixture(K, random_state=0, warm_up=1000),
        tmp_path / "ckpt",
        labels=tmp_path / "labels.zarr",
        batch_size=500,
        stop_after_idle=0.0,
        poll_timeout=0.01,
    )
    labels = zarr.open_array(str(tmp_path / "labels.zarr"))[...]
    assert len(labels) == result.rows == len(X)
    truth = X[:, 0] > 0
    agreement = np.mean((labels == labels[truth][0]) == truth)
    assert agreement > 0.99


def test_zarr_source_appended_while_the_runner_reads(tmp_path):
    path = tmp_path / "x.zarr"
    array = zarr.create_array(str(path), shape=(0, D), chunks=(1000, D), dtype="f8", fill_value=np.nan)
    X = _data(12_000)

    def writer():
        for start in range(0, len(X), 1500):
            array.append(X[start : start + 1500])
            time.sleep(0.05)

    thread = threading.Thread(target=writer)
    thread.start()
    result = run(
        f"zarr:{path}",
        streamem.OnlineGaussianMixture(K, random_state=0),
        tmp_path / "ckpt",
        n_features=D,
        batch_size=1000,
        stop_after_idle=1.0,
        poll_timeout=0.05,
    )
    thread.join()
    assert result.rows == len(X) and result.position == len(X)


def test_dir_source_files_landing_and_a_corrupt_one(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    X = _data(8000)

    def writer():
        for i, start in enumerate(range(0, len(X), 2000)):
            np.save(folder / f".part-{i}.npy", X[start : start + 2000])
            os.replace(folder / f".part-{i}.npy", folder / f"part-{i}.npy")
            time.sleep(0.05)
        (folder / "part-9.npy").write_bytes(b"garbage")
        os.utime(folder / "part-9.npy", (time.time() - 60, time.time() - 60))  # old: not being written

    thread = threading.Thread(target=writer)
    thread.start()
    result = run(
        f"dir:{folder}",
        streamem.OnlineGaussianMixture(K, random_state=0),
        tmp_path / "ckpt",
        n_features=D,
        batch_size=1000,
        stop_after_idle=1.0,
        poll_timeout=0.05,
    )
    thread.join()
    assert result.rows == len(X) and result.rejected == 1
    assert (folder / "dlq" / "part-9.npy").exists() and (folder / "dlq" / "part-9.npy.reason").exists()


def test_cli_stream_errors(tmp_path):
    runner = CliRunner()
    base = [
        "stream",
        "--n-features",
        "3",
        "--n-components",
        "2",
        "--checkpoint",
        str(tmp_path / "c"),
        "--out",
        str(tmp_path / "m.zarr"),
    ]
    result = runner.invoke(main, [*base[:1], "ftp://nowhere/x", *base[1:]])
    assert result.exit_code == 2 and "expected a source URL" in result.output
    result = runner.invoke(main, [*base[:1], f"redis://127.0.0.1:{free_port()}/x?group=g", *base[1:]])
    assert result.exit_code == 1
    assert (
        result.output.strip().startswith("error: cannot read redis://") and len(result.output.strip().splitlines()) == 1
    )
    result = runner.invoke(main, [*base[:1], "zarr:" + str(tmp_path / "none.zarr"), *base[1:], "--batch-size", "0"])
    assert result.exit_code == 2
    result = runner.invoke(
        main, [*base[:1], "zarr:" + str(tmp_path / "none.zarr"), *base[1:], "--weight-concentration-prior", "0.1"]
    )
    assert result.exit_code == 2 and "--weight-concentration-prior does not apply to --model online" in result.output
    result = runner.invoke(main, [*base[:1], "zarr:" + str(tmp_path / "none.zarr"), *base[1:], "--model", "dp"])
    assert result.exit_code == 2 and "--model" in result.output


def test_python_m_streamem_stream_help():
    result = subprocess.run([sys.executable, "-m", "streamem", "stream", "--help"], capture_output=True, timeout=60)
    assert result.returncode == 0 and b"--checkpoint-every" in result.stdout
    assert b"--metrics-port" in result.stdout and b"--on-drift" in result.stdout and b"--model" in result.stdout


def test_cli_stream_from_zarr_then_info_and_predict(tmp_path):
    X = _data(5000)
    zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(1000, D), dtype="f8")[...] = X
    runner = CliRunner()
    args = [
        "stream",
        f"zarr:{tmp_path / 'x.zarr'}",
        "--n-features",
        "3",
        "--n-components",
        "2",
        "--checkpoint",
        str(tmp_path / "c"),
        "--out",
        str(tmp_path / "m.zarr"),
        "--stop-after-idle",
        "0.3",
        "--batch-size",
        "500",
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "stopped (idle) after 10 batches; 5000 rows in the model" in result.output
    again = runner.invoke(main, args)  # resumes: nothing new to read
    assert again.exit_code == 0 and "after 0 batches; 5000 rows in the model" in again.output
    info = runner.invoke(main, ["info", str(tmp_path / "m.zarr")])
    assert info.exit_code == 0 and "OnlineGaussianMixture" in info.output and "5000 rows seen" in info.output
    predicted = runner.invoke(
        main, ["predict", str(tmp_path / "m.zarr"), str(tmp_path / "x.zarr"), "--out", str(tmp_path / "labels.npy")]
    )
    assert predicted.exit_code == 0, predicted.output
    labels = np.load(tmp_path / "labels.npy")
    assert len(labels) == len(X) and set(np.unique(labels)) == {0, 1}


@pytest.mark.long
@pytest.mark.slow
def test_stream_bad_input_exit_codes_as_a_subprocess(tmp_path):
    def stream(*args):
        command = [
            sys.executable,
            "-m",
            "streamem",
            "stream",
            *args,
            "--n-features",
            "3",
            "--n-components",
            "2",
            "--checkpoint",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "m.zarr"),
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    usage = stream("ftp://nowhere/x")
    assert usage.returncode == 2 and "expected a source URL" in usage.stderr
    unreachable = stream(f"redis://127.0.0.1:{free_port()}/x?group=g")
    assert unreachable.returncode == 1
    assert (
        unreachable.stderr.strip().startswith("error: cannot read")
        and len(unreachable.stderr.strip().splitlines()) == 1
    )
    missing = stream(f"dir:{tmp_path / 'nowhere'}")  # a well-formed URL whose folder is not there: bad data, not usage
    assert missing.returncode == 1 and missing.stderr.startswith("error: expected an existing folder")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "junk.txt").write_text("not a checkpoint")
    foreign = stream(f"dir:{tmp_path}")
    assert foreign.returncode == 1 and "is not a streamem checkpoint" in foreign.stderr
    assert not (tmp_path / "m.zarr").exists()


def test_cli_stream_of_the_variational_model_then_info(tmp_path):
    X = _data(6000)
    zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(1000, D), dtype="f8")[...] = X
    runner = CliRunner()
    args = [
        "stream",
        f"zarr:{tmp_path / 'x.zarr'}",
        "--n-features",
        "3",
        "--n-components",
        "6",
        "--model",
        "bayesian",
        "--weight-concentration-prior",
        "0.001",
        "--checkpoint",
        str(tmp_path / "c"),
        "--out",
        str(tmp_path / "m.zarr"),
        "--stop-after-idle",
        "0.3",
        "--batch-size",
        "500",
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "after 12 batches; 6000 rows in the model" in result.output
    info = runner.invoke(main, ["info", str(tmp_path / "m.zarr")])
    assert info.exit_code == 0, info.output
    assert "BayesianGaussianMixture" in info.output and "running lower bound (ELBO)" in info.output
    assert "2 components in use" in info.output
    model = streamem.load(tmp_path / "m.zarr")
    assert model.n_samples_seen_ == len(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged in 100 iterations: the Dirichlet process prunes slowly
        batch = streamem.BayesianGaussianMixture(6, weight_concentration_prior=1e-3, random_state=0).fit(X)
    assert model.elbo(X) == pytest.approx(batch.elbo(X), rel=0.01)


def _jumping(n_before=24_000, n_after=12_000, seed=5):
    """Two clusters, which jump by 3 standard deviations in every feature after ``n_before`` rows."""
    rng = np.random.default_rng(seed)
    before = _data(n_before, seed)
    after = _data(n_after, seed + 1) + 3.0
    return np.concatenate([before, after[rng.permutation(len(after))]])


def test_a_jump_raises_a_drift_alarm_within_a_few_batches_and_none_before(tmp_path):
    X = _jumping()
    change = 24_000 // 300  # the last batch before the jump
    results = {}
    for on_drift in (None, "reset-step"):
        results[on_drift] = run(
            MemorySource(_records(X), D),
            streamem.OnlineGaussianMixture(K, random_state=0),
            tmp_path / str(on_drift),
            batch_size=300,
            stop_after_idle=0.0,
            poll_timeout=0.01,
            on_drift=on_drift,
        )
    plain, reset = results[None], results["reset-step"]
    assert len(plain.drifts) == 1 and change < plain.drifts[0] <= change + 3, plain.drifts
    assert reset.drifts == plain.drifts
    assert reset.detector.alarms == 1 and load_state(tmp_path / "reset-step")[1]["stream"]["drift"]["alarms"] == 1
    # the restarted steps follow the new stream: its last rows are explained better
    tail = X[-3000:]
    assert reset.model.score(tail) > plain.model.score(tail) + 0.05
    assert reset.model._step_origin == plain.drifts[0]


@pytest.mark.parametrize(
    ("params", "match"), [({"on_drift": "reset"}, "on_drift"), ({"drift_threshold": 0.0}, "drift_threshold")]
)
def test_bad_drift_settings_name_the_parameter(tmp_path, params, match):
    with pytest.raises(ValueError, match=match):
        run(MemorySource(_records(_data(1000)), D), streamem.OnlineGaussianMixture(K), tmp_path / "c", **params)
    assert not (tmp_path / "c").exists()


def test_no_drift_alarm_on_a_stationary_stream(tmp_path):
    X = _data(60_000, seed=7)
    result = run(
        MemorySource(_records(X), D),
        streamem.OnlineGaussianMixture(K, random_state=0),
        tmp_path / "c",
        batch_size=300,
        stop_after_idle=0.0,
        poll_timeout=0.01,
    )
    assert result.batches == 200 and result.drifts == []


def test_the_command_line_logs_a_drift_as_a_json_line(tmp_path):
    X = _jumping()
    zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(3000, D), dtype="f8")[...] = X
    args = [
        "stream",
        f"zarr:{tmp_path / 'x.zarr'}",
        "--n-features",
        "3",
        "--n-components",
        "2",
        "--checkpoint",
        str(tmp_path / "c"),
        "--out",
        str(tmp_path / "m.zarr"),
        "--stop-after-idle",
        "0.3",
        "--batch-size",
        "300",
        "--on-drift",
        "reset-step",
        "--log-json",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    drifts = [event for event in events if event["event"] == "drift"]
    assert len(drifts) == 1 and drifts[0]["action"] == "reset-step" and 24_000 < drifts[0]["rows"] <= 25_200
    assert events[-1]["event"] == "done" and events[-1]["drift_alarms"] == 1


def _scrape(port, path="/metrics"):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status, response.read().decode()


def _metric(text, name):
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert len(values) == 1, name
    return values[0]


def _in_thread(**kwargs):
    """``run(**kwargs)`` in a thread; its result in the returned dict once joined."""
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", run(**kwargs)))
    thread.start()
    return thread, out


def test_metrics_and_health_are_served_during_a_run(tmp_path):
    import urllib.error

    X = _data(20_000)
    port = free_port()
    thread, out = _in_thread(
        source=MemorySource(_records(X), D),
        model=streamem.OnlineGaussianMixture(K, random_state=0),
        checkpoint=tmp_path / "c",
        batch_size=500,
        checkpoint_interval=0.2,
        stop_after_idle=3.0,
        poll_timeout=0.05,
        metrics_port=port,
    )
    deadline, text = time.monotonic() + 30, ""
    while time.monotonic() < deadline:
        try:
            status, text = _scrape(port)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
            continue
        if _metric(text, "streamem_batches_total") >= 40 and _metric(text, "streamem_checkpoints_total") >= 1:
            break
        time.sleep(0.05)
    assert status == 200
    assert _metric(text, "streamem_records_read_total") == len(X)
    assert _metric(text, "streamem_records_rejected_total") == 0
    assert _metric(text, "streamem_batches_total") == 40
    assert _metric(text, "streamem_records_per_second") > 0
    assert _metric(text, "streamem_seconds_since_checkpoint") < 5
    assert -20 < _metric(text, "streamem_batch_log_likelihood") < 0
    assert _metric(text, "streamem_drift_alarms_total") == 0
    assert _scrape(port, "/healthz") == (200, "ok\n")
    thread.join()
    assert out["result"].rows == len(X)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _scrape(port)  # the server stops with the run


def test_health_fails_without_a_checkpoint_within_the_timeout(tmp_path):
    import urllib.error

    port = free_port()
    thread, _ = _in_thread(
        source=MemorySource(_records(_data(3000)), D),
        model=streamem.OnlineGaussianMixture(K),
        checkpoint=None,
        batch_size=500,
        stop_after_idle=2.0,
        poll_timeout=0.05,
        metrics_port=port,
        health_timeout=0.3,
    )
    time.sleep(1.0)
    with pytest.raises(urllib.error.HTTPError) as error:
        _scrape(port, "/healthz")
    assert error.value.code == 503
    thread.join()


def test_metrics_show_the_consumer_lag_of_a_growing_zarr_array(tmp_path):
    import urllib.error

    X = _data(20_000)
    array = zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(1000, D), dtype="f8")
    array[...] = X
    port = free_port()
    thread, out = _in_thread(
        source=f"zarr:{tmp_path / 'x.zarr'}",
        n_features=D,
        checkpoint=tmp_path / "c",
        model=streamem.OnlineGaussianMixture(K, random_state=0),
        batch_size=100,
        stop_after_idle=3.0,
        poll_timeout=0.05,
        metrics_port=port,
    )
    seen, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline and thread.is_alive():
        try:
            seen.append(_metric(_scrape(port)[1], "streamem_consumer_lag"))
        except (urllib.error.URLError, ConnectionError):
            pass
        if seen and seen[-1] == 0 and len(set(seen)) > 1:
            break
        time.sleep(0.05)
    thread.join()
    assert out["result"].rows == len(X)
    assert max(seen) > 0 and seen[-1] == 0  # rows waiting while the run reads, none once it caught up
    assert all(0 <= lag <= len(X) for lag in seen)
