"""Testing layer 1: masking secrets in output that arrives in pieces (shared/secretmask.py)."""

import base64
import binascii
import urllib.parse

import pytest

from shared.secretmask import PARTIAL_MASK_CHARS, Masks, StreamMasker, forms

TOKEN = "s3cr3t-T0ken/with+odd=chars"
OTHER = "another-secret-value"


def streamed(secrets: dict[str, str], *pieces: str) -> str:
    masker = StreamMasker(Masks(secrets))
    return "".join(masker.feed(piece) for piece in pieces) + masker.flush()


def test_a_value_is_masked_alone_and_after_a_prefix():
    assert streamed({"TOKEN": TOKEN}, f"{TOKEN}\ntoken={TOKEN}\n") == "[secret TOKEN]\ntoken=[secret TOKEN]\n"


def test_a_value_split_over_two_pieces_is_masked_at_every_split_point():
    line = f"token={TOKEN}\n"
    for split in range(len(line) + 1):
        assert streamed({"TOKEN": TOKEN}, line[:split], line[split:]) == "token=[secret TOKEN]\n", split


def test_a_value_split_over_one_piece_per_character_is_masked():
    assert streamed({"TOKEN": TOKEN}, *f"a {TOKEN} b") == "a [secret TOKEN] b"


def test_text_that_cannot_begin_a_value_is_not_held_back():
    masker = StreamMasker(Masks({"TOKEN": TOKEN}))
    # A live log shows this at once: nothing in it could be the start of a form of the value.
    assert masker.feed("compiling module 1 of 3\n") == "compiling module 1 of 3\n"
    assert masker.feed("token=s3c") == "token="  # the value's beginning waits for the next piece
    assert masker.feed("ret, no: a different word\n") == "s3cret, no: a different word\n"


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_of_the_value_is_masked_padded_or_not(encode):
    encoded = encode(TOKEN.encode()).decode()
    assert streamed({"TOKEN": TOKEN}, f"{encoded}\n{encoded.rstrip('=')}\n") == "[secret TOKEN]\n[secret TOKEN]\n"


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
@pytest.mark.parametrize("before", [b"", b"x", b"xy", b"xyz", b"Authorization: Bearer "])
def test_the_value_inside_a_longer_base64_text_is_masked_at_each_alignment(encode, before):
    encoded = encode(before + TOKEN.encode() + b" and more after it").decode()

    masked = streamed({"TOKEN": TOKEN}, encoded[:17], encoded[17:])

    assert "[secret TOKEN]" in masked
    # What is left shows at most the characters that mix in a byte before or after the value.
    left = masked.replace("[secret TOKEN]", "")
    assert len(left) <= len(encoded) - len(encode(TOKEN.encode()).decode().rstrip("=")) + 4


def test_hex_and_percent_encoding_are_masked():
    text = binascii.hexlify(TOKEN.encode()).decode()
    assert streamed({"TOKEN": TOKEN}, text, " ", text.upper(), " ", urllib.parse.quote(TOKEN, safe="")) == (
        "[secret TOKEN] [secret TOKEN] [secret TOKEN]")


def test_several_secrets_are_each_masked_by_name():
    text = f"a={TOKEN} b={OTHER} c={base64.b64encode(OTHER.encode()).decode()}\n"
    assert streamed({"TOKEN": TOKEN, "OTHER": OTHER}, text[:9], text[9:30], text[30:]) == (
        "a=[secret TOKEN] b=[secret OTHER] c=[secret OTHER]\n")


@pytest.mark.parametrize("split", range(1, 30))
def test_a_secret_that_begins_another_does_not_leave_the_longer_ones_rest(split):
    short, long = "abcdefgh", "abcdefghIJKLMNOP"
    text = f"{long}|{short}|"

    assert streamed({"SHORT": short, "LONG": long}, text[:split], text[split:]) == "[secret LONG]|[secret SHORT]|"


def test_a_secret_inside_another_is_masked_with_it():
    inner, outer = "middle-part", "outer-middle-part-outer"
    assert streamed({"INNER": inner, "OUTER": outer}, f"{outer} {inner}") == "[secret OUTER] [secret INNER]"


def test_overlapping_occurrences_of_two_secrets_are_masked_together():
    first, second = "abcdefgh", "efghijklmn"
    assert streamed({"FIRST": first, "SECOND": second}, "abcd", "efghijklmn!") == "[secret FIRST]!"


def test_each_line_of_a_value_of_several_lines_is_masked():
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"
    assert streamed({"KEY": key}, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n") == "[secret KEY]\n"
    assert streamed({"KEY": key}, key + "\n") == "[secret KEY]\n"


def test_a_value_cut_off_by_the_end_of_the_output_is_masked_from_a_few_characters():
    assert streamed({"TOKEN": TOKEN}, "token=", TOKEN[:PARTIAL_MASK_CHARS]) == "token=[secret TOKEN]"
    # Fewer characters than that give nothing away, and would mask ordinary words.
    assert streamed({"TOKEN": TOKEN}, "token=", TOKEN[:PARTIAL_MASK_CHARS - 1]) == (
        "token=" + TOKEN[:PARTIAL_MASK_CHARS - 1])


def test_no_secrets_masks_nothing_and_holds_nothing():
    masker = StreamMasker(Masks({}))
    assert masker.feed("anything at all") == "anything at all"
    assert masker.flush() == ""


def test_every_form_is_at_least_the_shortest_value_long():
    assert min(len(form) for form in forms("12345678")) >= 8
    assert "12345678" in forms("12345678")


def test_encodings_wrapped_as_the_usual_tools_wrap_them_are_masked_line_by_line():
    long = "a-long-deploy-key-" * 5
    wrapped_base64 = base64.encodebytes(long.encode()).decode()  # lines of 76, as `base64` writes them
    hexadecimal = binascii.hexlify(long.encode()).decode()
    wrapped_hex = "\n".join(hexadecimal[start:start + 60] for start in range(0, len(hexadecimal), 60)) + "\n"

    for text in (wrapped_base64, wrapped_hex):
        masked = streamed({"KEY": long}, text)
        assert set(masked.splitlines()) == {"[secret KEY]"}, masked
