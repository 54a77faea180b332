"""Golden tests of the label rules, starting with the twelve annotator rows the seed report shows."""
import pytest

from trainer.label_rules import EMOTIONS, decide, normalise_emotion, parse_intensity

A, D, F, H, N, S, U = "angry", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"

# The seed report's table of annotators 1..5 (emotion, intensity), in its order, with what the
# seed rule makes of each row and why.
SEED_ROWS = [
    ([(A, 2), (U, 2), (H, 2), (H, 2), (H, 2)], H),  # happiness 6 > angry 2, surprise 2
    ([(N, 0), (H, 2), (H, 2), (H, 2), (H, 2)], H),  # happiness 8
    ([(A, 2), (H, 2), (H, 2), (H, 2), (H, 2)], H),  # happiness 8 > angry 2
    ([(A, 2), (H, 2), (H, 2), (H, 2), (H, 1)], H),  # happiness 7 > angry 2
    ([(H, 2), (H, 1), (H, 2), (H, 1), (H, 1)], H),  # unanimous, 7
    ([(N, 0), (H, 2), (H, 1), (H, 1), (N, 0)], H),  # happiness 4 > neutral 0
    ([(H, 2), (H, 1), (S, 1), (S, 1), (S, 1)], S),  # 3 = 3: sadness chosen 3 times, happiness 2
    ([(N, 0), (H, 2), (H, 2), (H, 1), (S, 1)], H),  # happiness 5 > sadness 1
    ([(N, 0), (H, 1), (S, 1), (S, 1), (N, 0)], S),  # sadness 2 > happiness 1
    ([(N, 0), (H, 1), (N, 0), (N, 0), (N, 0)], H),  # four neutral votes sum to 0 < happiness 1
    ([(S, 2), (S, 2), (S, 2), (S, 1), (S, 2)], S),  # unanimous, 9
    ([(N, 0), (S, 1), (S, 2), (S, 1), (S, 2)], S),  # sadness 6
]


@pytest.mark.parametrize("row,expected", SEED_ROWS)
def test_seed_rule_reproduces_the_seed_rows(row, expected):
    decision = decide(row, "seed")
    assert decision.label == expected
    assert decision.drop_reason is None
    assert not decision.unresolved_tie


def test_seed_rule_count_tiebreak_row_seven_is_a_tie_on_sums():
    decision = decide(SEED_ROWS[6][0], "seed")
    assert (decision.label, decision.unresolved_tie) == (S, False)


def test_all_neutral_row_is_neutral():
    assert decide([(N, 0)] * 5, "seed").label == N


def test_neutral_wins_the_count_tiebreak_when_every_sum_is_zero():
    # sadness chosen once at intensity 0: sums tie at 0, neutral has four votes.
    assert decide([(N, 0), (N, 0), (S, 0), (N, 0), (N, 0)], "seed").label == N


def test_three_way_tie_on_sums_goes_to_most_chosen():
    row = [(A, 2), (S, 2), (H, 1), (H, 1), (N, 0)]
    decision = decide(row, "seed")
    assert (decision.label, decision.unresolved_tie) == (H, False)


def test_unresolved_tie_goes_to_first_annotators_choice_and_is_flagged():
    row = [(N, 0), (S, 2), (A, 2), (N, 0), (N, 0)]
    decision = decide(row, "seed")
    assert (decision.label, decision.unresolved_tie) == (S, True)
    swapped = [(N, 0), (A, 2), (S, 2), (N, 0), (N, 0)]
    assert decide(swapped, "seed").label == A


def test_seed_rule_drops_other_emotions_and_all7_keeps_them():
    row = [(U, 2), (U, 2), (H, 1), (N, 0), (U, 1)]
    assert decide(row, "seed").label is None
    assert decide(row, "seed").drop_reason == "winner_surprise"
    assert decide(row, "all7").label == U
    # all7 agrees with seed wherever seed keeps the row
    for annotations, expected in SEED_ROWS:
        assert decide(annotations, "all7").label == expected


def test_other_emotion_winning_is_not_replaced_by_runner_up():
    row = [(F, 2), (F, 2), (S, 2), (S, 1), (N, 0)]
    assert decide(row, "seed").drop_reason == "winner_fear"


def test_majority_rule():
    assert decide([(N, 0), (H, 1), (N, 0), (N, 0), (N, 0)], "majority").label == N
    assert decide([(H, 2), (H, 1), (S, 1), (S, 1), (S, 1)], "majority").label == S
    two_two = [(H, 2), (H, 2), (S, 1), (S, 1), (N, 0)]
    assert decide(two_two, "majority").drop_reason == "below_min_agreement"
    # with min_agreement 2 the vote tie goes to the larger intensity sum
    assert decide(two_two, "majority", min_agreement=2).label == H
    assert decide([(D, 1)] * 4 + [(N, 0)], "majority").drop_reason == "winner_disgust"
    full_tie = [(H, 1), (S, 1), (S, 1), (H, 1), (N, 0)]
    decision = decide(full_tie, "majority", min_agreement=2)
    assert (decision.label, decision.unresolved_tie) == (H, True)


def test_unknown_rule():
    with pytest.raises(ValueError, match="unknown label rule"):
        decide([(N, 0)], "vote")


@pytest.mark.parametrize(
    "raw,emotion,truncated",
    [
        ("Happiness", H, False),
        (" happiness", H, False),
        ("HAPPINESS", H, False),
        ("Hap piness ", H, False),
        ("happines:", H, True),
        ("sad", S, True),
        ("Surpris", U, True),
        ("neutral", N, False),
    ],
)
def test_normalise_emotion(raw, emotion, truncated):
    match = normalise_emotion(raw)
    assert match is not None
    assert (match.emotion, match.truncated) == (emotion, truncated)


@pytest.mark.parametrize("raw", ["", "s", "ha", "happy", "joy", "행복", "angryy", "neutrality"])
def test_unknown_names_are_not_guessed(raw):
    assert normalise_emotion(raw) is None


def test_every_emotion_maps_to_itself():
    assert all(normalise_emotion(e).emotion == e for e in EMOTIONS)


@pytest.mark.parametrize(
    "raw,emotion,expected",
    [("2", H, 2), (" 1 ", S, 1), ("0", N, 0), ("2.0", A, 2), ("", N, 0),
     ("", H, None), ("3", H, None), ("-1", H, None), ("1.5", H, None), ("high", H, None)],
)
def test_parse_intensity(raw, emotion, expected):
    assert parse_intensity(raw, emotion) == expected
