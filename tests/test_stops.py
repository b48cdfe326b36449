"""Stop strings: the answer is cut before the first one, and no part of one is ever sent."""

from __future__ import annotations

import time

import aiohttp

from streamchat.providers.stops import MAX_STOP_CHARS, MAX_STOPS, StopScanner

from .servers import ServerProcess


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


def test_a_stop_string_is_found_however_the_answer_is_cut() -> None:
    for pieces in (["abcd"], ["ab", "cd"], ["a", "b", "c", "d"]):
        sent, stopped = run(["bc", "abcdx"], pieces)
        assert stopped
        assert "".join(sent) == "a", pieces
    # One that repeats its own beginning: the match is found past a false start.
    sent, stopped = run(["aab"], ["a", "a", "a", "a", "b", "c"])
    assert stopped
    assert "".join(sent) == "aa"


def scan_seconds(stop: str, pieces: list[str]) -> float:
    """The processor time a scanner for `stop` takes to scan `pieces`."""
    scanner = StopScanner([stop])
    started = time.process_time()
    for piece in pieces:
        scanner.feed(piece)
    return time.process_time() - started


def test_the_scan_is_linear_in_a_stop_strings_length() -> None:
    # Each piece tried every length of overlap with every stop string, a slice each: the
    # square of a stop string's length per piece, on the engine thread.
    pieces = ["a" * 100_000] * 2  # never more than "a" of "abab…": every overlap fails
    short = scan_seconds("ab" * 500, pieces)
    long = scan_seconds("ab" * 50_000, pieces)  # a hundred times as long: the same work
    assert long < 3 * short + 0.05, (short, long)


async def test_stop_strings_are_bounded_in_count_and_length(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    for stop in (["x"] * (MAX_STOPS + 1), "x" * (MAX_STOP_CHARS + 1), ["y", "x" * 1000]):
        async with http.post(
            server.url + "/v1/chat/completions", json=body | {"stop": stop}
        ) as response:
            assert response.status == 400, stop
            assert (await response.json())["error"]["param"] == "stop"
