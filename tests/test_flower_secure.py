"""Secure aggregation through the Flower adapters: equality, privacy, refusals, dropout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fed_harness import make_grid, make_plan, max_rel_diff, run_local

from fedplug import FedAvg, PolicyRefusal, SecureAggregationError, SecureAggregator
from fedplug._flower import LocalGrid, run_plan
from fedplug._flower import _wire as wire


@pytest.mark.parametrize(
    ("strategy", "params"),
    [("fedavg", {}), ("fedavgm", {"server_momentum": 0.5}), ("fedadam", {"eta": 0.01})],
)
def test_secure_equals_plaintext_for_inner_strategies(fed_pods, strategy, params) -> None:
    pods = fed_pods(3)
    plain, _ = run_local(pods, FedAvg(), strategy=strategy, strategy_params=params)
    secure, _ = run_local(pods, SecureAggregator(), strategy=strategy, strategy_params=params)
    assert max_rel_diff(secure.weights, plain.weights) < 1e-6
    np.testing.assert_allclose(secure.task.mean, plain.task.mean, rtol=1e-6)
    np.testing.assert_allclose(secure.task.std, plain.task.std, rtol=1e-6)
    for s, p in zip(secure.history, plain.history, strict=True):
        assert s["evaluate"]["accuracy"] == pytest.approx(p["evaluate"]["accuracy"], abs=1e-6)
        assert s["train"]["train_loss"] == pytest.approx(p["train"]["train_loss"], rel=1e-6)


def _uploads(grid) -> list:  # noqa: ANN001
    return [r for r in grid.replies if not r.has_error()]


def test_pods_send_no_plaintext_update_count_or_metric(fed_pods) -> None:
    pods = fed_pods(2, rows=300)
    plain, plain_grid = run_local(pods, FedAvg(), rounds=1)
    secure, grid = run_local(pods, SecureAggregator(), rounds=1)
    # What each pod sent in plaintext mode: its updates, counts and metrics.
    plain_numbers = set()
    for reply in _uploads(plain_grid):
        if "metrics" in reply.content:
            plain_numbers |= {float(v) for v in reply.content["metrics"].values()}
    plain_arrays = [
        a
        for r in _uploads(plain_grid)
        if "arrays" in r.content
        for a in r.content["arrays"].to_numpy_ndarrays()
    ]
    for reply in _uploads(grid):
        kinds = set(reply.content.keys())
        assert kinds <= {"schema", "bundle", "masked", "layout", "sealed", "unmasked"}, kinds
        if "masked" in reply.content:
            (masked,) = reply.content["masked"].to_numpy_ndarrays()
            assert masked.dtype == np.uint64
            for array in plain_arrays:
                flat = array.astype(np.float64).ravel()
                assert not np.isin(flat[flat != 0], masked.astype(np.float64)).any()
            layout = reply.content["layout"]
            assert set(layout.keys()) == {"metric-keys", "length"}
            assert all(isinstance(k, str) for k in json.loads(str(layout["metric-keys"])))
        if "schema" in reply.content:
            metadata = json.loads(str(reply.content["schema"]["schema"]))
            assert "num_rows" not in metadata
        for record in reply.content.values():
            values = getattr(record, "values", None)
            if values and not hasattr(record, "to_numpy_ndarrays"):
                for v in record.values():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        assert float(v) not in plain_numbers, (reply.content.keys(), v)
    assert max_rel_diff(secure.weights, plain.weights) < 1e-6


def test_masked_uploads_of_equal_updates_are_unrelated(fed_pods, tmp_path) -> None:
    # Pods a and b hold the same data and train to the same update; their uploads must
    # look unrelated. (With only two pods the released sum ties the two uploads together
    # by design, so the third pod is what makes the pair's masks independent.)
    import shutil

    pods = fed_pods(3, rows=300)
    shutil.copy(tmp_path / "pod-a.csv", tmp_path / "pod-b.csv")
    _, grid = run_local(pods, SecureAggregator(), rounds=1)
    uploads = [
        r.content["masked"].to_numpy_ndarrays()[0]
        for r in _uploads(grid)
        if "masked" in r.content and r.metadata.message_type == wire.SECURE_TRAIN
    ]
    from fedplug.secagg._field import unpack

    # Pods send their field vectors packed (61 bits an element); compare the elements.
    by_node = {
        r.metadata.src_node_id: unpack(
            r.content["masked"].to_numpy_ndarrays()[0], int(r.content["layout"]["length"])
        )
        for r in _uploads(grid)
        if "masked" in r.content and r.metadata.message_type == wire.SECURE_TRAIN
    }
    assert len(uploads) >= 3
    first, second = by_node[1], by_node[2]
    assert first.shape == second.shape
    assert not np.array_equal(first, second)
    q = float(2**61 - 1)
    corr = np.corrcoef(first.astype(np.float64) / q, second.astype(np.float64) / q)[0, 1]
    assert abs(corr) < 0.1
    # Uniform-looking: mean near q/2 for uniform values over the field.
    assert abs(first.astype(np.float64).mean() / q - 0.5) < 0.05


def test_unapproved_pod_is_refused_and_both_pods_named(fed_pods) -> None:
    pods = fed_pods(2, policies={"pod-a": {"approved_pods": ["someone-else"]}})
    with pytest.raises(PolicyRefusal, match="pod-a") as info:
        run_local(pods, SecureAggregator(), rounds=1)
    assert {"pod-a", "pod-b"} <= set(info.value.pods)
    assert "pod-b" in str(info.value)
    assert info.value.reason == "unapproved-pod"


def test_roster_below_min_pods_is_refused(fed_pods) -> None:
    pods = fed_pods(2, policies={"pod-a": {"policy": {"min_pods": 3}}})
    with pytest.raises(PolicyRefusal, match="min_pods|at least 3") as info:
        run_local(pods, SecureAggregator(), rounds=1)
    assert info.value.reason == "too-few-pods"


def test_pod_requiring_secure_refuses_plaintext(fed_pods) -> None:
    policy = {"policy": {"min_pods": 2, "require_secure_aggregation": True}}
    pods = fed_pods(2, policies={"pod-b": policy})
    with pytest.raises(PolicyRefusal, match="pod-b.*secure") as info:
        run_local(pods, FedAvg(), rounds=1)
    assert info.value.pods == ["pod-b"]
    # The pod refuses on its own too, whatever the server decided.
    grid = make_grid(pods)
    plan = make_plan(pods, FedAvg(), rounds=1)
    from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

    message = Message(
        RecordDict(
            {
                "arrays": ArrayRecord([np.asarray(w) for w in plan.initial_weights]),
                "config": ConfigRecord({wire.TASK_KEY: plan.task.to_json()}),
            }
        ),
        dst_node_id=2,
        message_type=wire.TRAIN,
    )
    (reply,) = grid.send_and_receive([message])
    assert reply.has_error() and reply.error.code == wire.POLICY_REFUSAL
    assert "requires secure aggregation" in reply.error.reason
    # ... and the secure run with the same pod goes through.
    secure, _ = run_local(pods, SecureAggregator(), rounds=1)
    assert secure.history


def _secure_train_messages(grid):  # noqa: ANN001
    return [m for m in grid.sent if m.metadata.message_type == wire.SECURE_TRAIN]


def test_tampered_roster_signature_is_refused(fed_pods) -> None:
    pods = fed_pods(2, rows=200)
    _, grid = run_local(pods, SecureAggregator(), rounds=1)
    # A fresh pod process receiving a roster whose signature was altered refuses it.
    fresh = make_grid(pods)
    from flwr.app import ConfigRecord, Message, RecordDict

    setup = Message(
        RecordDict(
            {
                "config": ConfigRecord(
                    {
                        "run": "r1",
                        "q": str(2**61 - 1),
                        wire.PODS_KEY: json.dumps(["pod-a", "pod-b"]),
                    }
                )
            }
        ),
        dst_node_id=1,
        message_type=wire.SECAGG_SETUP,
    )
    (bundle_reply,) = fresh.send_and_receive([setup])
    own = json.loads(str(bundle_reply.content["bundle"]["bundle"]))
    template = _secure_train_messages(grid)[0]
    secure = template.content[wire.SECURE_KEY]
    roster = json.loads(str(secure["roster"]))
    other = next(b for b in roster if b["pod"] != own["pod"])
    other["signature"] = own["signature"]  # a signature that does not match its key
    record = ConfigRecord(dict(secure.items()))
    record["run"] = "r1"
    record["roster"] = json.dumps([own, other])
    content = RecordDict(dict(template.content.items()))
    content[wire.SECURE_KEY] = record
    (reply,) = fresh.send_and_receive(
        [Message(content, dst_node_id=1, message_type=wire.SECURE_TRAIN)]
    )
    assert reply.has_error() and reply.error.code == wire.POLICY_REFUSAL
    payload = json.loads(reply.error.reason)
    assert payload["reason"] == "bad-signature"
    assert other["pod"] in payload["pods"]


def test_replayed_round_is_refused(fed_pods) -> None:
    pods = fed_pods(2, rows=200)
    _, grid = run_local(pods, SecureAggregator(), rounds=1)
    replay = _secure_train_messages(grid)[-1]
    from flwr.app import Message

    again = Message(
        replay.content, dst_node_id=replay.metadata.dst_node_id, message_type=wire.SECURE_TRAIN
    )
    (reply,) = grid.send_and_receive([again])
    assert reply.has_error() and reply.error.code == wire.POLICY_REFUSAL
    assert json.loads(reply.error.reason)["reason"] == "replayed-round"


def _silent_in_round(pod_node: int, server_round: int):  # noqa: ANN202
    """A delivery filter: ``pod_node`` misses the first train message of ``server_round``."""
    state = {"dropped": False}

    def deliver(node_id: int, message) -> bool:  # noqa: ANN001
        config = message.content.get("config")
        is_round = config is not None and int(config.get("server-round", -1)) == server_round
        train = message.metadata.message_type in (wire.TRAIN, wire.SECURE_TRAIN)
        if node_id == pod_node and is_round and train and not state["dropped"]:
            state["dropped"] = True
            return False
        return True

    return deliver


def _silent_from_round(pod_node: int, server_round: int):  # noqa: ANN202
    """A delivery filter: ``pod_node`` answers nothing from ``server_round`` on."""

    def deliver(node_id: int, message) -> bool:  # noqa: ANN001
        config = message.content.get("config")
        later = config is not None and int(config.get("server-round", -1)) >= server_round
        return not (node_id == pod_node and later)

    return deliver


def test_dropout_result_equals_plaintext_mean_over_survivors(fed_pods, caplog) -> None:
    pods = fed_pods(3)
    # A pod that dropped out of a secure run stays out (its peers accept only sets that
    # shrink): the same as plain FedAvg with that pod gone from then on.
    plain, _ = run_local(pods, FedAvg(), deliver=_silent_from_round(3, 1))
    with caplog.at_level("WARNING", logger="fedplug.server"):
        secure, grid = run_local(pods, SecureAggregator(), deliver=_silent_in_round(3, 1))
    assert max_rel_diff(secure.weights, plain.weights) < 1e-6
    assert "pod-c" in caplog.text and "dropped out" in caplog.text
    # It missed one message, and was never asked again in that run.
    to_c = [m for m in grid.sent if m.metadata.dst_node_id == 3]
    assert to_c[-1].metadata.message_type == wire.SECURE_TRAIN
    assert not any(r.has_error() for r in grid.replies)


def test_history_reports_the_runs_clipped_values(fed_pods, caplog) -> None:
    pods = fed_pods(2, rows=200)
    with caplog.at_level("WARNING", logger="fedplug.server"):
        secure, _ = run_local(pods, SecureAggregator(clip=1e-6), rounds=2)
    # What the server logged per exchange of the rounds (round 0, the scaling statistics,
    # goes through its own strategy and is not a round of the history).
    logged: dict[int, int] = {}
    for record in caplog.records:
        if "were clipped" in record.getMessage():
            what, count = str(record.args[0]), int(record.args[1])
            n = int(what.split()[2])
            logged[n] = logged.get(n, 0) + count
    assert [h["round"] for h in secure.history] == [1, 2]
    for entry in secure.history:
        expected = sum(c for n, c in logged.items() if 1 <= n <= entry["round"])
        assert entry["clipped"] == expected
    assert secure.history[0]["clipped"] > 0
    assert secure.history[-1]["clipped"] > secure.history[0]["clipped"]
    plain, _ = run_local(pods, FedAvg(), rounds=1)
    assert all("clipped" not in h for h in plain.history)


def test_client_sampling_is_refused_under_secure_aggregation(fed_pods) -> None:
    from fedplug import ConfigError

    pods = fed_pods(3, rows=200)
    grid = make_grid(pods)
    plan = make_plan(pods, SecureAggregator(), strategy_params={"fraction_train": 0.67})
    with pytest.raises(ConfigError, match=r"fraction_train=0.67.*fraction_train=1.0"):
        run_plan(grid, plan)
    assert not any(m.metadata.message_type == wire.SECAGG_SETUP for m in grid.sent)


def test_skipping_evaluation_is_not_sampling(fed_pods) -> None:
    pods = fed_pods(3, rows=200)
    grid = make_grid(pods)
    plan = make_plan(pods, SecureAggregator(), strategy_params={"fraction_evaluate": 0.0}, rounds=1)
    result = run_plan(grid, plan)
    assert result.history[0]["evaluate"] == {} and result.history[0]["train"]
    assert not any(m.metadata.message_type == wire.SECURE_EVALUATE for m in grid.sent)


def test_too_few_survivors_is_a_clear_error(fed_pods) -> None:
    pods = fed_pods(3)

    def two_silent(node_id: int, message) -> bool:  # noqa: ANN001
        return not (node_id in (2, 3) and message.metadata.message_type == wire.SECURE_TRAIN)

    grid = make_grid(pods, deliver=two_silent)
    with pytest.raises(SecureAggregationError, match="pod-b.*pod-c|min_pods"):
        run_plan(grid, make_plan(pods, SecureAggregator(), rounds=1))


def test_secure_aggregator_settings_are_checked(fed_pods) -> None:
    from fedplug import ConfigError

    pods = fed_pods(2, rows=200)
    with pytest.raises(ConfigError, match="min_pods"):
        run_local(pods, SecureAggregator(min_pods=1), rounds=1)
    with pytest.raises(ConfigError, match="prime_q"):
        run_local(pods, SecureAggregator(prime_q=97), rounds=1)


def test_unapproved_pods_are_refused_at_key_setup(fed_pods) -> None:
    # The refusal comes before the pod publishes a key for a roster it would not accept.
    pods = fed_pods(2, policies={"pod-a": {"approved_pods": ["someone-else"]}})
    grid = make_grid(pods)
    with pytest.raises(PolicyRefusal, match="pod-a"):
        run_plan(grid, make_plan(pods, SecureAggregator(), rounds=1))
    setups = [r for r in grid.replies if r.metadata.message_type == wire.SECAGG_SETUP]
    refused = [r for r in setups if r.has_error()]
    assert refused and json.loads(refused[0].error.reason)["reason"] == "unapproved-pod"


def test_malformed_upload_names_the_pod() -> None:
    from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

    from fedplug._flower._flower_internals import ensure_task_identity
    from fedplug._flower._secure_strategy import _upload
    from fedplug.secagg._field import pack

    ensure_task_identity(1, 0, 0)  # Flower's Message needs a task, as on a Grid

    def reply(array: np.ndarray, length: int) -> Message:
        content = RecordDict(
            {
                "masked": ArrayRecord([array]),
                "layout": ConfigRecord({"length": length, "metric-keys": '["loss"]'}),
            }
        )
        return Message(content, dst_node_id=1, message_type="train.secure")

    words = pack(np.arange(50, dtype=np.uint64))
    upload = _upload("pod-a", reply(words, 50))
    assert upload.length == 50 and upload.metric_keys == ["loss"]
    assert np.array_equal(upload.words, words)  # read in place, not copied
    with pytest.raises(
        SecureAggregationError, match=r"pod 'pod-b': a masked upload is malformed.*float"
    ):
        _upload("pod-b", reply(np.zeros(5, dtype=np.float32), 5))


def test_pod_upload_bytes_are_what_flower_would_write() -> None:
    from flwr.app import Array

    from fedplug._flower._flower_internals import npy_array
    from fedplug.secagg._field import pack, padded_size

    buffer = np.zeros(padded_size(1000), dtype=np.uint64)
    buffer[:1000] = np.arange(1000, dtype=np.uint64) * np.uint64(2**50)
    words = pack(buffer, in_place=True)  # a view into the pod's buffer, as sent
    array = npy_array(words)
    assert array.data == Array(words.copy()).data
    np.testing.assert_array_equal(array.numpy(), words)


def test_uploads_of_different_lengths_are_refused(fed_pods, monkeypatch) -> None:
    import fedplug._flower._pod_app as pod_app

    real = pod_app.handle_secure

    def longer_for_pod_b(message, context, runtime, kind):  # noqa: ANN001, ANN202
        reply = real(message, context, runtime, kind)
        if runtime.name == "pod-b" and not reply.has_error():
            reply.content["layout"]["length"] = int(reply.content["layout"]["length"]) + 1
        return reply

    monkeypatch.setattr(pod_app, "handle_secure", longer_for_pod_b)
    with pytest.raises(SecureAggregationError, match="uploaded vectors of different lengths"):
        run_local(fed_pods(2, rows=200), SecureAggregator(), rounds=1)


# -- dropouts: double masking, one unmask exchange (issue 13) -------------------------------
class _LateGrid(LocalGrid):
    """A grid on which ``late_node``'s upload of exchange ``exchange`` arrives too late: the
    pod computes and sends it, the server holds it (``late``), the round goes on without."""

    def __init__(self, *args, late_node: int, exchange: int, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.late_node, self.exchange = late_node, exchange
        self.late: list = []

    def send_and_receive(self, messages, *, timeout=None):  # noqa: ANN001, ANN201
        replies = list(super().send_and_receive(messages, timeout=timeout))
        kept = []
        for reply in replies:
            sent = next(m for m in messages if m.metadata.dst_node_id == reply.metadata.src_node_id)
            params = sent.content.get(wire.SECURE_KEY)
            if (
                reply.metadata.src_node_id == self.late_node
                and params is not None
                and int(params["seq"]) == self.exchange
            ):
                self.late.append((sent, reply))
            else:
                kept.append(reply)
        return kept


def test_a_late_upload_stays_hidden_and_the_round_completes(fed_pods, caplog) -> None:
    """(a) and (b) end to end: pod-c's upload of the first training exchange is late; the
    round completes with the survivors' exact mean, and the server, holding that upload and
    every unmask answer, cannot remove its self-mask."""
    from fedplug._flower import build_client_app
    from fedplug.secagg import FixedPointCodec, KeyBundle
    from fedplug.secagg._field import unpack
    from fedplug.secagg._keys import session_id
    from fedplug.secagg._masks import apply_masks, participants_digest

    pods = fed_pods(3)
    plain, _ = run_local(pods, FedAvg(), deliver=_silent_from_round(3, 1))
    apps = {i + 1: build_client_app() for i in range(3)}
    configs = {i + 1: {"pod": str(p)} for i, p in enumerate(pods)}
    grid = _LateGrid(apps, node_configs=configs, late_node=3, exchange=3)  # 1, 2: statistics
    with caplog.at_level("WARNING", logger="fedplug.server"):
        secure = run_plan(grid, make_plan(pods, SecureAggregator()))
    assert max_rel_diff(secure.weights, plain.weights) < 1e-6
    assert "pod-c" in caplog.text and "dropped out" in caplog.text
    # What the server holds: pod-c's late upload and every unmask answer of that exchange.
    ((sent, late),) = grid.late
    params = wire.SecureParams.from_message(sent)
    upload = wire.read_upload(late)
    answers = [
        wire.read_unmask_reply(r)
        for r in grid.replies
        if wire.UNMASKED in r.content
        and r.metadata.reply_to_message_id
        in {
            m.metadata.message_id
            for m in grid.sent
            if m.metadata.message_type == wire.SECURE_UNMASK
            and int(m.content["unmask"]["seq"]) == params.seq
        }
    ]
    assert len(answers) == 2 and all("pod-c" not in shares for shares, _ in answers)
    session = session_id(params.run, [KeyBundle.from_dict(b) for b in params.roster])
    digest = participants_digest(params.participants)
    residual = unpack(upload.words, upload.length)
    # Every mask the server can compute: the pair keys pod-a and pod-b revealed with pod-c.
    keys = [pair_keys["pod-c"] for _, pair_keys in answers]
    apply_masks(
        residual,
        [(k, True) for k in keys],  # pod-c sorts after both: it subtracted both masks
        run_id=session,
        round=params.seq,
        attempt=0,
        participants_digest=digest,
    )
    codec = FixedPointCodec(params.clip, params.max_weight, params.n_pods, params.q)
    u = residual.astype(np.float64) / params.q
    assert abs(u.mean() - 0.5) < 0.05  # uniform-looking: no small encoded values show
    assert not 0 < codec.decode_int(residual[-2]) <= params.max_weight  # the count is hidden
    # Only the self-mask hides it: its seed, from pod-c's own memory (never sent), opens it.
    state = json.loads(str(grid._contexts[3].state["fedplug-secagg"]["state"]))
    seed = __import__("base64").b64decode(state["pending_secrets"][0]["b64"])
    apply_masks(
        residual,
        [(seed, False)],
        run_id=session,
        round=params.seq,
        attempt=0,
        participants_digest=digest,
    )
    assert 0 < codec.decode_int(residual[-2]) <= 400  # pod-c's example count


def test_nothing_of_an_exchange_is_written_to_disk(fed_pods, tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    pods = fed_pods(3, rows=200)
    before = sorted(p for p in tmp_path.rglob("*"))
    run_local(pods, SecureAggregator(), deliver=_silent_in_round(3, 1), rounds=2)
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_dropout_abort_ends_the_run_naming_the_pod_and_reruns_nothing(fed_pods) -> None:
    pods = fed_pods(3)
    grid = make_grid(pods, deliver=_silent_in_round(3, 1))
    with pytest.raises(SecureAggregationError, match=r"pod-c.*dropout='abort'"):
        run_plan(grid, make_plan(pods, SecureAggregator(dropout="abort")))
    # One exchange per round and no unmask exchange: nothing was asked twice.
    assert not any(m.metadata.message_type == wire.SECURE_UNMASK for m in grid.sent)
    seqs = [
        (m.metadata.dst_node_id, int(m.content[wire.SECURE_KEY]["seq"]))
        for m in grid.sent
        if wire.SECURE_KEY in m.content
    ]
    assert len(seqs) == len(set(seqs))


def test_unmasking_that_cannot_complete_fails_the_round_cleanly(fed_pods, caplog) -> None:
    """pod-c drops before uploading and pod-b does not answer the unmask request: only
    pod-b holds its pair key with pod-c, so the round is dropped; the run goes on with
    fresh masks as long as the threshold (3 of 5) is met."""
    pods = fed_pods(5, rows=300)
    state = {"unmask": False}

    def deliver(node_id: int, message) -> bool:  # noqa: ANN001
        config = message.content.get("config")
        if node_id == 3 and config is not None and int(config.get("server-round", -1)) >= 1:
            return False  # pod-c is gone from training round 1 on
        unmask = message.metadata.message_type == wire.SECURE_UNMASK
        if node_id == 2 and unmask and not state["unmask"]:
            survivors = json.loads(str(message.content["unmask"]["survivors"]))
            if "pod-c" not in survivors:
                state["unmask"] = True
                return False  # pod-b misses the first unmask request with pod-c gone
        return True

    with caplog.at_level("WARNING", logger="fedplug.server"):
        result, grid = run_local(pods, SecureAggregator(), deliver=deliver, rounds=2)
    assert "unmasking could not complete" in caplog.text
    assert result.history[0]["train"] == {}  # the failed round left the model as it was
    assert result.history[1]["train"]  # the next round, over pod-a and pod-d, went through
    last = [m for m in grid.sent if wire.SECURE_KEY in m.content][-1]
    assert json.loads(str(last.content[wire.SECURE_KEY]["participants"])) == [
        "pod-a",
        "pod-d",
        "pod-e",
    ]


def test_secure_aggregator_threshold_and_dropout_are_checked() -> None:
    from fedplug import ConfigError

    with pytest.raises(ConfigError, match=r"dropout='sometimes' is not one of"):
        SecureAggregator(dropout="sometimes").validate()
    with pytest.raises(ConfigError, match=r"threshold must be an integer >= 2"):
        SecureAggregator(threshold=1).validate()
    settings = SecureAggregator(threshold=2).settings()
    with pytest.raises(
        ConfigError, match=r"between a majority of the 5 pods that hold one pod's shares \(3\)"
    ):
        settings.threshold_for(5)
    assert SecureAggregator().settings().threshold_for(5) == 3


def test_a_pod_refuses_a_threshold_below_its_policy(fed_pods) -> None:
    pods = fed_pods(3, policies={"pod-a": {"policy": {"min_pods": 2, "min_threshold": 3}}})
    with pytest.raises(PolicyRefusal, match="threshold") as info:
        run_local(pods, SecureAggregator(), rounds=1)
    assert "pod-a" in info.value.pods


def test_a_harary_run_equals_plaintext_and_survives_a_dropout(fed_pods) -> None:
    """Eight pods on a Harary graph (each masks with 6 of its 7 peers): the same model as
    plain FedAvg, with a pod dropping out of training round 1."""
    pods = fed_pods(8, rows=100)
    plain, _ = run_local(pods, FedAvg(), deliver=_silent_from_round(5, 1), rounds=1)
    secure, grid = run_local(
        pods, SecureAggregator(neighbours="harary"), deliver=_silent_in_round(5, 1), rounds=1
    )
    assert max_rel_diff(secure.weights, plain.weights) < 1e-6
    sent = [m for m in grid.sent if wire.SECURE_KEY in m.content]
    assert {str(m.content[wire.SECURE_KEY]["graph"]) for m in sent} == {"harary"}
    # Each upload deals sealed shares to its neighbours among the participants: 6 of 7
    # peers while all eight take part, fewer once pod-e is gone; never all 7.
    dealt = [
        len(json.loads(str(r.content[wire.SEALED]["shares"])))
        for r in grid.replies
        if wire.SEALED in r.content
    ]
    assert max(dealt) == 6
