"""The password forms the roles send instead of passwords.

PostgreSQL: SCRAM-SHA-256 verifiers with PostgreSQL's own SASLprep (the
provision scenario checks them against verifiers the server computed);
MariaDB: mysql_native_password hashes, as PASSWORD() gives them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from password_forms import native, scram

FORM = re.compile(r"SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=")


def test_a_verifier_has_postgresqls_form_and_a_new_salt_each_time() -> None:
    first, second = scram.scram_sha_256("pass word"), scram.scram_sha_256("pass word")
    assert FORM.fullmatch(first) and FORM.fullmatch(second)
    assert first != second


def test_the_stored_salt_gives_the_stored_verifier_back_only_for_the_same_password() -> None:
    stored = scram.scram_sha_256("pass word", iterations=1000)
    assert stored.startswith("SCRAM-SHA-256$1000:")
    assert scram.scram_sha_256("pass word", stored) == stored
    assert scram.scram_sha_256("pass wordx", stored) != stored
    # Something else stored (md5, none): a new verifier.
    assert FORM.fullmatch(scram.scram_sha_256("pass word", "md5abcdef"))


def test_the_keys_prove_the_password_as_rfc_5802_defines() -> None:
    verifier = scram.scram_sha_256("pencil")
    iterations, salt, keys = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$(.+)", verifier).groups()
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", base64.b64decode(salt), int(iterations))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    assert hashlib.sha256(client_key).digest() == stored_key
    assert hmac.digest(salted, b"Server Key", "sha256") == server_key


@pytest.mark.parametrize(
    ("password", "prepared"),
    [
        ("plain ascii \x07 stays", b"plain ascii \x07 stays"),  # ASCII: as it is
        ("I\u00adX", b"IX"),  # soft hyphen: mapped to nothing
        ("a\u00a0b", b"a b"),  # no-break space: a space
        ("\u2168", b"IX"),  # NFKC
        ("\u00e9\u0007", "\u00e9\u0007".encode()),  # a control character: prohibited, so raw
        ("\u05d0a", "\u05d0a".encode()),  # RandALCat with LCat: prohibited, so raw
        ("\u00ad", "\u00ad".encode()),  # nothing left: raw
    ],
)
def test_saslprep_follows_postgresql(password: str, prepared: bytes) -> None:
    assert scram.saslprep(password) == prepared


@pytest.mark.parametrize(
    ("password", "problem"),
    [("", "is empty"), ("a\x00b", "NUL"), ("x" * 1025, "longer than 1024 bytes"), ("ok", "")],
)
def test_unusable_passwords_are_named_not_hashed(password: str, problem: str) -> None:
    found = scram.password_problem(password)
    assert (problem in found) if problem else found == ""
    if problem:
        with pytest.raises(scram.PasswordError) as err:
            scram.scram_sha_256(password)
        assert password not in str(err.value) or not password


def test_native_hash_is_what_password_gives() -> None:
    # SELECT PASSWORD('plainSECRETxyz') on MariaDB 11.8.
    assert (
        native.mysql_native_password("plainSECRETxyz")
        == "*291ED5E77AEEBAF8C51369FA5F5B6AE546EC8AC5"
    )
    with pytest.raises(native.PasswordError):
        native.mysql_native_password("")
