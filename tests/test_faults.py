"""Fault injection: for each fault × fix, the counts of lost, duplicated and late logins.

The scenarios are lockstep (``lab.lessons.faults``): every browser holds its channel before the fault,
the phone acts after it, and a browser whose channel died reconnects once the phone is done. So
which logins are hit is known from where their channels were, and each count below is exact:

* the browser's server dies before the scan: ``streams`` (SSE, WebSocket) replays what was
  missed and loses nothing; ``pubsub`` hands the resuming browser only the current state, so
  every browser that was on the dead server lost ``scanned`` - exactly those, no others;
* it dies between scan and confirm: the confirm published to nobody is still not lost with
  ``pubsub``, because a reopened channel reads the current state (the confirm *is* it);
* Redis restarts from a snapshot: nothing lost; Redis restarts empty: every login in flight fails;
* a backend is drained: ``ticket_hash`` strands exactly the logins whose channel was on it;
* a slow browser: late, not lost; a reconnect storm: all back, nothing lost, and jitter spreads it.
"""
from __future__ import annotations

import random

import pandas as pd
import pytest

from lab.lessons import faults
from servers.cluster import start_cluster
from lab.plots import UnitMissing

N = 6  # logins per scenario: enough that both servers hold channels


def cluster(redis_url, fix, **kwargs):
    return start_cluster(2, fix=fix, redis_url=redis_url, name="faults-test", **kwargs)


def counts(run) -> dict:
    r = run.records
    return {"completed": int(r["completed"].sum()), "lost_logins": int((r["lost"] > 0).sum()),
            "duplicated": int(r["duplicated"].sum())}  # not "late": that depends on the machine's speed


def explain(run) -> str:
    cols = ["login", "channel_server", "completed", "lost", "missed", "duplicated", "late", "dropped", "error"]
    return f"\n{run.info}\n{run.records[cols].to_string()}"


# -- the browser's server dies mid-login ---------------------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_streams_loses_nothing_when_the_browsers_server_crashes(redis_url, transport):
    with cluster(redis_url, "streams") as c:
        run = faults.crash_browser_server(c, N, transport)
    hit = run.info["channels_on_target"]
    assert hit > 0, "the crashed server should have held some browser channels" + explain(run)
    assert int(run.records["dropped"].sum()) == hit, "exactly the channels on the dead server drop" + explain(run)
    assert counts(run) == {"completed": N, "lost_logins": 0, "duplicated": 0}, (
        "streams: every browser resumes from its last id and gets 'scanned' and 'confirmed' once" + explain(run))


def test_pubsub_loses_the_scan_of_exactly_the_browsers_on_the_crashed_server(redis_url):
    with cluster(redis_url, "pubsub") as c:
        run = faults.crash_browser_server(c, N, "sse")
    hit = run.info["channels_on_target"]
    lost = run.records[run.records["lost"] > 0]
    assert 0 < hit < N + 1
    assert len(lost) == hit, f"pubsub should lose a state for the {hit} browsers on the dead server" + explain(run)
    assert set(lost["channel_server"]) == {run.info["target"]} and set(lost["missed"]) == {"scanned"}, explain(run)
    assert counts(run)["completed"] == N, "the current state on reconnect still completes every login" + explain(run)


def test_pubsub_crash_between_scan_and_confirm_is_saved_by_the_state_read(redis_url):
    with cluster(redis_url, "pubsub") as c:
        run = faults.crash_browser_server(c, N, "sse", scan_before_fault=True)
    assert run.info["channels_on_target"] > 0
    assert counts(run) == {"completed": N, "lost_logins": 0, "duplicated": 0}, (
        "the confirm went to nobody, but the reopened channel's first message is the current state" + explain(run))


def test_a_reconnect_without_resume_duplicates_the_state_it_had(redis_url):
    with cluster(redis_url, "streams") as c:
        run = faults.crash_browser_server(c, N, "sse", scan_before_fault=True, resume=False)
    hit = run.info["channels_on_target"]
    dup = run.records[run.records["duplicated"] > 0]
    assert len(dup) == hit > 0, "without Last-Event-ID the server replays from the start: 'scanned' twice" + explain(run)
    assert counts(run)["lost_logins"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("fix, loses", [("streams", False), ("pubsub", True)])
def test_sigkill_of_a_server_process(redis_url, fix, loses):
    with cluster(redis_url, fix, processes=True) as c:
        run = faults.crash_browser_server(c, 4, "sse")
        assert not c.servers[run.info["target"]].running, "the process should be dead (SIGKILL)"
    hit = run.info["channels_on_target"]
    assert run.info["how"] == "SIGKILL" and hit > 0, explain(run)
    assert counts(run)["completed"] == 4, explain(run)
    assert counts(run)["lost_logins"] == (hit if loses else 0), explain(run)


# -- Redis restarts ------------------------------------------------------------------------------


@pytest.mark.parametrize("fix", ["pubsub", "streams"])
def test_redis_restart_from_a_snapshot_loses_no_login(redis_server, redis_url, fix):
    """Every login completes with both fixes. ``streams`` also loses no state (its follow loops
    resume from their last id); ``pubsub`` may miss ``scanned`` when the phone scans before its
    subscriber connection is back (a PUBLISH nobody hears is gone), and its catch-up read then
    finds ``confirmed`` already: the login is saved, the intermediate state is not."""
    with cluster(redis_url, fix) as c:
        run = faults.restart_redis(c, 4, "sse", redis_handle=redis_server)
    assert {k: v for k, v in counts(run).items() if k != "lost_logins"} == {"completed": 4, "duplicated": 0}, explain(run)
    missed = set(",".join(run.records["missed"]).split(",")) - {""}
    assert missed <= ({"scanned"} if fix == "pubsub" else set()), explain(run)
    assert run.info["recover_s"] is not None, "a fresh login should complete after the restart"


def test_redis_restart_without_data_fails_every_login_in_flight(redis_server, redis_url):
    with cluster(redis_url, "streams") as c:
        run = faults.restart_redis(c, 3, "sse", redis_handle=redis_server, keep_data=False, give_up_s=1.0)
    assert counts(run)["completed"] == 0, "the tickets lived in Redis only: none can complete" + explain(run)
    assert run.records["error"].str.contains("unknown_ticket").all(), explain(run)
    assert run.info["recover_s"] is not None, "new logins work again once Redis is back"


# -- a backend drained from the balancer ---------------------------------------------------------


def test_draining_a_backend_strands_ticket_hash_logins_on_it(redis_url):
    with cluster(redis_url, "ticket_hash") as c:
        run = faults.stop_backend(c, N, "sse", give_up_s=1.0)
    hit = run.info["channels_on_target"]
    failed = run.records[~run.records["completed"]]
    assert len(failed) == hit > 0, "the confirm of a ticket whose server left the ring lands elsewhere" + explain(run)
    assert set(failed["channel_server"]) == {run.info["target"]}, explain(run)


@pytest.mark.parametrize("fix", ["pubsub", "streams"])
def test_draining_a_backend_is_harmless_with_a_backplane(redis_url, fix):
    with cluster(redis_url, fix) as c:
        run = faults.stop_backend(c, 4, "sse")
    assert run.info["channels_on_target"] > 0
    assert counts(run) == {"completed": 4, "lost_logins": 0, "duplicated": 0}, explain(run)


# -- slow consumer and reconnect storm -----------------------------------------------------------


def test_a_slow_browser_is_late_not_lost(redis_url):
    with cluster(redis_url, "streams") as c:
        run = faults.slow_consumer(c, 4, "sse", count=1, stall_s=2.0, deadline_s=0.5)
    assert counts(run) == {"completed": 4, "lost_logins": 0, "duplicated": 0}, explain(run)
    stalled = run.records[run.records["stalled"]]
    assert len(stalled) == 1 and stalled["late"].all(), "the stalled browser hears the confirm late" + explain(run)


def test_reconnect_storm_all_back_nothing_lost_and_jitter_flattens_the_peak(redis_url):
    peaks = {}
    for name, backoff in (("fixed", faults.EVENTSOURCE_LIKE), ("jittered", faults.JITTERED)):
        with cluster(redis_url, "streams") as c:
            run = faults.reconnect_storm(c, 30, "sse", backoff=backoff)
        assert run.info["dropped_connections"] >= 30, run.info
        assert counts(run) == {"completed": 30, "lost_logins": 0, "duplicated": 0}, explain(run)
        assert run.records["dropped"].all(), "every browser's channel was dropped" + explain(run)
        load = faults.requests_per_bin(run.requests, 0.1, until_s=run.info["all_back_s"])
        assert load["requests"].sum() >= 30, load
        peaks[name] = int(load["requests"].max())
    assert peaks["jittered"] < peaks["fixed"], f"jitter should spread the reconnects: peaks per 100 ms {peaks}"


# -- the pieces without servers ------------------------------------------------------------------


def test_backoff_schedules():
    rng = random.Random(1)
    assert [faults.EVENTSOURCE_LIKE.delay(a, rng) for a in range(3)] == [1.0, 1.0, 1.0]
    capped = faults.Backoff(0.5, 2.0, 3.0, jitter=False)
    assert [capped.delay(a, rng) for a in range(4)] == [0.5, 1.0, 2.0, 3.0]
    draws = [faults.JITTERED.delay(0, rng) for _ in range(200)]
    assert 0 <= min(draws) and max(draws) <= 2.0 and len(set(draws)) == 200


def test_summary_and_heatmap_say_what_they_count():
    records = pd.DataFrame({"fault": ["crash"] * 2, "fix": ["pubsub"] * 2, "transport": ["sse"] * 2, "login": [0, 1],
                            "completed": [True, True], "lost": [1, 0], "duplicated": [0, 0], "late": [False, True],
                            "dropped": [True, False], "reconnected_s": [0.3, None], "recover_s": [0.2, 0.2]})
    summary = faults.summarize(records)
    row = summary.iloc[0]
    assert (row["logins"], row["lost_logins"], row["late"], row["lost_pct"]) == (2, 1, 1, 50.0)
    ax = faults.plot_heatmap(summary)
    assert ax.figure.axes[-1].get_ylabel() == "logins that lost a state (%)"
    with pytest.raises(UnitMissing):
        faults.plot_heatmap(summary, label="lost")


# -- how the balancer learns of a crash, and a Redis killed --------------------------------------


def test_the_balancer_learns_of_the_crash_from_a_failed_request_not_from_being_told(redis_url):
    with cluster(redis_url, "pubsub") as c:
        run = faults.crash_browser_server(c, 4, "sse")
        window = faults.dead_server_window(c, run)
        backends = [b.name for b in c.balancer.backends]
    assert run.info["target"] in backends, "the crash fault must not remove the server from the balancer"
    met = window[window["who"] != "balancer"]
    assert len(met) >= 1 and (met["status"] == 502).all(), window
    verdicts = list(window[window["who"] == "balancer"]["what"])
    assert verdicts[:1] == ["health: down"], window
    first_down = window.index[window["what"] == "health: down"][0]
    assert (window.loc[:first_down, "t_ms"] >= 0).all() and counts(run)["completed"] == 4, explain(run)


def test_redis_killed_is_the_matrix_fault_without_a_snapshot():
    assert "redis_killed" in faults.FAULTS
    fault = faults.FAULTS["redis_killed"](None, object())
    assert fault.fault_name == "redis_killed"
