"""Stop strings: the answer is cut before the first one, and no part of one is ever sent."""

from __future__ import annotations

from streamchat.providers.stops import StopScanner


def run(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    scanner = StopScanner(stops)
    sent: list[str] = []
    for piece in pieces:
        text, stopped = scanner.feed(piece)
        sent.append(text)
        if stopped:
            return sent, True
    sent.append(scanner.flush(""))
    return sent, False


def test_without_stop_strings_text_passes_through() -> None:
    assert run([], ["Hel", "lo"]) == (["Hel", "lo", ""], False)


def test_the_answer_is_cut_where_a_stop_string_begins() -> None:
    sent, stopped = run(["END"], ["one ", "two E", "ND three"])
    assert stopped
    assert "".join(sent) == "one two "


def test_text_that_may_begin_a_stop_string_is_held_back_until_it_cannot() -> None:
    scanner = StopScanner(["</s>"])
    assert scanner.feed("a <") == ("a ", False)
    assert scanner.feed("/") == ("", False)
    assert scanner.feed("x") == ("</x", False)  # not a stop string after all: sent
    assert scanner.flush("") == ""


def test_held_back_text_is_sent_at_the_end() -> None:
    scanner = StopScanner(["STOP"])
    assert scanner.feed("go ST") == ("go ", False)
    assert scanner.flush("") == "ST"


def test_the_earliest_of_several_stop_strings_wins() -> None:
    sent, stopped = run(["world", "lo"], ["hello world"])
    assert stopped
    assert sent == ["hel"]
