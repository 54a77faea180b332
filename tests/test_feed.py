"""The feed's sans-I/O core: numbering, resume and the slow-client policy, message by message."""
import json
import random
import re
from pathlib import Path

import pytest

from streamer import feed


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def make_log(n=0):
    clock = Clock()
    log = feed.SessionLog("s1", clock=clock)
    for i in range(n):
        clock.now += 0.5
        log.publish("status", {"i": i})
    return log, clock


def test_numbered_messages_count_from_one_with_session_and_time():
    log, clock = make_log()
    first = log.publish("status", {"level_db": -30})
    clock.now += 1.25
    second = log.publish("utterance", {"utterance_id": 1})
    assert [first.seq, second.seq] == [1, 2] and log.head == 2
    assert second.message == {"type": "utterance", "session": "s1", "seq": 2, "t": 1.25, "utterance_id": 1}
    assert json.loads(second.text) == second.message


def test_replies_are_unnumbered_and_carry_the_latest_seq():
    log, _ = make_log(3)
    reply = json.loads(log.reply("hello", {"schema": 1}))
    assert reply["seq"] == 3 and reply["reply"] is True and reply["type"] == "hello"
    assert log.head == 3  # a reply takes no number


def test_hello_is_not_a_numbered_type():
    log, _ = make_log()
    with pytest.raises(ValueError, match="not a numbered"):
        log.publish("hello", {})


def test_append_keeps_recorded_numbers_and_refuses_gaps_and_strangers():
    log, _ = make_log()
    log.append({"type": "status", "session": "s1", "seq": 1, "t": 7.5})
    assert log.after(0)[0].message["t"] == 7.5
    with pytest.raises(ValueError, match="does not follow"):
        log.append({"type": "status", "session": "s1", "seq": 3, "t": 8})
    with pytest.raises(ValueError, match="session"):
        log.append({"type": "status", "session": "other", "seq": 2, "t": 8})


def test_listeners_see_every_numbered_message_in_order():
    log, _ = make_log()
    seen = []
    log.listen(lambda entry: seen.append(entry.seq))
    for _ in range(4):
        log.publish("status", {})
    log.reply("hello", {})
    assert seen == [1, 2, 3, 4]


def test_messages_are_strict_json():
    log, _ = make_log()
    entry = log.publish("status", feed.status_body(float("nan"), False, 0.0, 0, 1, "mic", "listening"))
    assert entry.message["level_db"] is None
    with pytest.raises(ValueError):
        log.publish("status", {"x": float("inf")})


def test_resume_sends_exactly_what_follows_since():
    log, _ = make_log(10)
    sub = feed.Subscriber.at(log, since=4, limit=100)
    got = [json.loads(text)["seq"] for _, text in sub.take(log, limit=1000)]
    assert got == list(range(5, 11))
    log.publish("status", {})
    assert [json.loads(t)["seq"] for _, t in sub.take(log)] == [11]
    assert sub.take(log) == []


def test_without_since_only_live_messages_arrive():
    log, _ = make_log(5)
    sub = feed.Subscriber.at(log, since=None, limit=100)
    assert sub.take(log) == []
    log.publish("status", {})
    assert [json.loads(t)["seq"] for _, t in sub.take(log)] == [6]


def test_a_cursor_beyond_the_head_waits_for_the_log_to_reach_it():
    """A dashboard that saw seq 7 of a replay that restarted gets 8 onwards, nothing twice."""
    log, _ = make_log(3)
    sub = feed.Subscriber.at(log, since=7, limit=100)
    seen = []
    for _ in range(6):
        log.publish("status", {})
        seen += [json.loads(t)["seq"] for _, t in sub.take(log)]
    assert seen == [8, 9]


def test_random_interleaving_of_publish_and_take_loses_and_repeats_nothing():
    rng = random.Random(5)
    log, _ = make_log(20)
    subs = {since: feed.Subscriber.at(log, since, limit=10_000) for since in (None, 0, 7, 20, 25)}
    heads = {since: log.head for since in subs}
    received = {since: [] for since in subs}
    for _ in range(500):
        if rng.random() < 0.5:
            log.publish("status", {})
        since = rng.choice(list(subs))
        received[since] += [seq for seq, _ in subs[since].take(log, limit=rng.randint(1, 5))]
    for since, sub in subs.items():
        received[since] += [seq for seq, _ in sub.take(log, limit=100_000)]
        first = heads[since] if since is None else since
        assert received[since] == list(range(first + 1, log.head + 1)), since


def test_replies_go_first_and_count_against_the_limit():
    log, _ = make_log(2)
    sub = feed.Subscriber.at(log, since=0, limit=3)
    sub.replies.append(log.reply("hello", {}))
    out = [json.loads(t) for _, t in sub.take(log)]
    assert [m["type"] for m in out] == ["hello", "status", "status"]
    for _ in range(4):
        sub.replies.append(log.reply("error", {}))
    assert sub.overflowed(log.head)


def test_a_client_that_stops_reading_overflows_after_limit_live_messages():
    log, _ = make_log(50)  # a long backlog asked for with since=0 does not count
    sub = feed.Subscriber.at(log, since=0, limit=5)
    assert not sub.overflowed(log.head)
    for _ in range(5):
        log.publish("status", {})
        assert not sub.overflowed(log.head)
    log.publish("status", {})
    assert sub.overflowed(log.head) and sub.dropped
    assert sub.overflowed(log.head)  # dropped stays dropped


def test_a_client_that_keeps_up_never_overflows():
    log, _ = make_log()
    sub = feed.Subscriber.at(log, since=None, limit=2)
    for _ in range(100):
        log.publish("status", {})
        assert not sub.overflowed(log.head)
        for seq, text in sub.take(log):
            sub.wrote(seq, len(text))
        sub.acknowledged(0)


def test_messages_taken_but_still_in_the_socket_count_until_the_client_has_them():
    """What the connection and the kernel still hold for a client is not delivered: a client that
    stops reading while its socket buffers fill is dropped after `limit` messages, not megabytes."""
    log, _ = make_log()
    sub = feed.Subscriber.at(log, since=None, limit=3)
    sizes = []
    for _ in range(3):
        log.publish("status", {})
        for seq, text in sub.take(log):
            sub.wrote(seq, len(text))
            sizes.append(len(text))
    assert sub.sent == 0 and sub.cursor == 3  # the server sets `sent` as it hands frames over
    sub.acknowledged(sum(sizes))  # nothing has reached the client yet
    assert sub.delivered == 0 and sub.pending(log.head) == 3
    sub.acknowledged(sizes[2])  # the first two arrived
    assert sub.delivered == 2 and sub.pending(log.head) == 1
    for _ in range(2):
        log.publish("status", {})
    assert not sub.overflowed(log.head)  # 3 undelivered: the limit; a 4th is too many
    log.publish("status", {})
    assert sub.overflowed(log.head)


@pytest.mark.parametrize("raw", ["-1", "abc", "1.5", ""])
def test_since_must_be_a_whole_number(raw):
    with pytest.raises(ValueError, match="since="):
        feed.parse_since([raw])


def test_since_absent_or_valid():
    assert feed.parse_since([]) is None
    assert feed.parse_since(["0"]) == 0 and feed.parse_since(["12"]) == 12


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not an object"),
        ('{"type": "subscribe"}', "unknown message type 'subscribe'"),
        (b"\x00\x01", "binary frames"),
    ],
)
def test_malformed_client_frames_get_an_error_that_says_what_to_send(frame, fragment):
    type_, body = feed.answer(frame)
    assert type_ == "error" and body["code"] == "bad_frame"
    assert fragment in body["message"] and "ping" in body["message"]


def test_ping_gets_pong():
    assert feed.answer('{"type": "ping"}') == ("pong", {})


def test_session_end_reasons_are_the_documented_ones():
    assert feed.session_end_body("source ended", 3, 12.3456)["duration"] == 12.346
    with pytest.raises(ValueError, match="unknown end reason"):
        feed.session_end_body("crashed", 0, 0)


def test_session_ids_sort_by_time_and_are_folder_safe():
    from datetime import datetime

    a = feed.new_session_id(datetime(2026, 5, 9, 10, 0, 0))
    b = feed.new_session_id(datetime(2026, 5, 9, 10, 0, 1))
    assert a < b and a.replace("-", "").isalnum()


def test_docs_list_every_latency_key_an_utterance_can_carry():
    from streamer.analyzer import LATENCY_KEYS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "feed.md").read_text(encoding="utf-8")
    section = doc.split("### `utterance`")[1].split("\n### ")[0]
    rows = re.findall(r"^\| (.+?) \|", section.split("`latency_ms`:")[1], flags=re.M)
    documented = {key for row in rows for key in re.findall(r"`(\w+)`", row)}
    assert documented == {"asr", "emotion", *LATENCY_KEYS.values(), "total", "end_to_message"}
    assert '"filtered": null' in section
