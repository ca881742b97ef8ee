"""One error scheme: every refusal's class carries its wire code and HTTP status."""

from __future__ import annotations

import typing

import pytest

from playhouse import errors
from playhouse.errors import CODES, ErrorCode, PlayhouseError, describe


def test_every_error_class_is_in_the_one_table_with_its_own_code() -> None:
    classes = {cls for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, PlayhouseError)}
    assert classes == set(CODES)
    codes = [code for code, _ in CODES.values()]
    assert len(codes) == len(set(codes)), "two classes share a code"
    assert set(codes) <= set(typing.get_args(ErrorCode))
    for code, status in CODES.values():
        assert 400 <= status <= 599, code


@pytest.mark.parametrize(("error", "code", "status"), [
    (errors.NotFound("no room"), "not_found", 404),
    (errors.Forbidden("private"), "forbidden", 403),
    (errors.LoginRequired("log in"), "login_required", 401),
    (errors.RateLimited("slow down"), "rate_limited", 429),
    (errors.TooLong("too long"), "too_long", 400),
    (errors.StorageUnavailable("down"), "overloaded", 503),
])
def test_an_error_maps_to_its_code_status_and_reason(error: PlayhouseError, code: str,
                                                     status: int) -> None:
    assert describe(error) == (code, status, str(error))


def test_anything_else_is_internal_and_says_nothing_of_its_insides() -> None:
    assert describe(KeyError("secret detail")) == (
        "internal", 500, "the server failed to handle that")
