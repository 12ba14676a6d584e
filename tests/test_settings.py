"""One settings style for every server: the same knob has the same name on the feed server, the
QR-login app and the gateway's push tier, lives in ``app.settings``, and old names still work
for one release with a DeprecationWarning."""
from __future__ import annotations

import warnings

import pytest
import requests

from servers.feed.app import make_feed_app, start_feed
from servers.qrlogin import make_qrlogin_app, start_qrlogin
from servers.qrlogin.fixes.gateway_tier import GatewayApp
from servers.settings import PUSH_DEFAULTS, RENAMED

KNOBS = ("sse_retry_ms", "sse_heartbeat_s", "longpoll_max_s", "websocket_max_message_size", "websocket_ping_interval")


def apps(redis_url, **settings):
    """One of each, not listening (constructing one connects to nothing)."""
    return {"feed": make_feed_app("set-feed", **settings),
            "qrlogin": make_qrlogin_app("set-qr", redis_url=redis_url, **settings),
            "gateway": GatewayApp("set-gw", redis_url, **settings)}


def test_every_server_has_the_push_knobs_under_one_name_in_its_settings(redis_url):
    for kind, app in apps(redis_url).items():
        assert set(KNOBS) <= set(app.settings), kind
        for knob in ("sse_retry_ms", "sse_heartbeat_s", "longpoll_max_s", "websocket_max_message_size"):
            assert app.settings[knob] == PUSH_DEFAULTS[knob], (kind, knob)
        for old in RENAMED:
            assert old not in app.settings, (kind, old)
    assert apps(redis_url)["feed"].settings["websocket_ping_interval"] is None  # lesson 04 counts frames
    assert apps(redis_url)["qrlogin"].settings["websocket_ping_interval"] == 20


def test_a_keyword_overrides_the_default_on_every_server(redis_url):
    for kind, app in apps(redis_url, sse_retry_ms=250, sse_heartbeat_s=2, longpoll_max_s=9).items():
        assert (app.settings["sse_retry_ms"], app.settings["sse_heartbeat_s"], app.settings["longpoll_max_s"]) \
            == (250, 2.0, 9.0), kind


@pytest.mark.parametrize("old,new", sorted(RENAMED.items()))
def test_old_names_still_work_with_a_deprecation_warning_naming_the_caller(redis_url, old, new):
    for kind, app_of in (("feed", lambda: make_feed_app("dep-feed", **{old: 7})),
                         ("qrlogin", lambda: make_qrlogin_app("dep-qr", redis_url=redis_url, **{old: 7})),
                         ("gateway", lambda: GatewayApp("dep-gw", redis_url, **{old: 7}))):
        with pytest.warns(DeprecationWarning, match=f"'{old}' is now called '{new}'") as caught:
            app = app_of()
        assert app.settings[new] == 7 and old not in app.settings, kind
        ours = [w for w in caught if f"'{old}'" in str(w.message)]
        assert ours[0].filename == __file__, "the warning points at the caller's line, not at servers/"


def test_old_and_new_name_together_is_refused(redis_url):
    with pytest.raises(TypeError, match="pass only sse_heartbeat_s"):
        make_feed_app("both", sse_heartbeat=1, sse_heartbeat_s=2)
    with pytest.raises(TypeError, match="pass only longpoll_max_s"):
        make_qrlogin_app("both", redis_url=redis_url, longpoll_max=1, longpoll_max_s=2)


@pytest.mark.parametrize("knob,value", [("sse_retry_ms", -1), ("sse_heartbeat_s", 0), ("longpoll_max_s", "10"),
                                        ("sse_retry_ms", True)])
def test_a_value_no_server_could_use_fails_at_construction(redis_url, knob, value):
    with pytest.raises(ValueError, match=knob):
        make_feed_app("bad", **{knob: value})
    with pytest.raises(ValueError, match=knob):
        make_qrlogin_app("bad", redis_url=redis_url, **{knob: value})


def test_new_names_warn_about_nothing(redis_url):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        apps(redis_url, sse_heartbeat_s=1, longpoll_max_s=5)


def test_the_long_poll_ceiling_is_the_same_setting_on_both_servers(redis_url):
    with start_feed(name="ceiling-feed", longpoll_max_s=2) as feed:
        refused = requests.get(feed.url + "/feed/longpoll", params={"timeout": 3}, timeout=10)
        assert refused.status_code == 400 and refused.json()["error"] == "bad_argument"
        assert requests.get(feed.url + "/feed/longpoll", params={"timeout": 0}, timeout=10).status_code == 200
    with start_qrlogin("ceiling-qr", redis_url=redis_url, longpoll_max_s=2) as qr:
        ticket = requests.post(qr.url + "/api/tickets", timeout=10).json()["ticket"]
        refused = requests.get(f"{qr.url}/api/tickets/{ticket}/longpoll", params={"timeout": 3}, timeout=10)
        assert refused.status_code == 400 and refused.json()["error"] == "bad_argument"
