"""SCRAM-SHA-256 verifiers computed on the controller.

PostgreSQL stores a password as a SCRAM-SHA-256 verifier (RFC 5802, RFC
7677), and takes a ready verifier in CREATE ROLE ... PASSWORD as it is, the
way psql's \\password (libpq's PQencryptPasswordConn) sends one. The role
computes the verifier here, so the plaintext never leaves the controller:
no statement log, error context or extension on the server can record what
the server never receives. SASLprep follows PostgreSQL's own
(src/common/saslprep.c), quirks included, so a client's login matches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Callable

# PostgreSQL's defaults: scram_iterations, SCRAM_DEFAULT_SALT_LEN and
# MAX_PASSWORD_LENGTH (longer passwords fail SASLprep in libpq, so no client
# could log in with them).
ITERATIONS = 4096
SALT_BYTES = 16
MAX_PASSWORD_BYTES = 1024
VERIFIER = re.compile(
    r"SCRAM-SHA-256\$(?P<iterations>[0-9]+):(?P<salt>[A-Za-z0-9+/=]+)"
    r"\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+"
)

_PROHIBITED: tuple[Callable[[str], bool], ...] = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,
)


class PasswordError(ValueError):
    """A password that cannot become a verifier; the message never holds it."""


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL hashes: SASLprep'd, or the raw UTF-8 where SASLprep refuses."""
    raw = password.encode("utf-8")
    if password.isascii():
        return raw
    # 1) map: non-ASCII spaces to a space, "commonly mapped to nothing" dropped
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    if not mapped:
        return raw
    # PostgreSQL checks the mapped input, not the normalized output.
    if any(check(c) for c in mapped for check in _PROHIBITED):
        return raw
    if any(stringprep.in_table_d1(c) for c in mapped) and (
        any(stringprep.in_table_d2(c) for c in mapped)
        or not stringprep.in_table_d1(mapped[0])
        or not stringprep.in_table_d1(mapped[-1])
    ):
        return raw
    return unicodedata.normalize("NFKC", mapped).encode("utf-8")


def password_problem(password: object) -> str:
    """Why password cannot become a verifier a client can log in with; "" when it can."""
    if not isinstance(password, str) or not password:
        return "is empty"
    if "\x00" in password:
        return "contains a NUL character, which no client can send"
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return f"is longer than {MAX_PASSWORD_BYTES} bytes, PostgreSQL's limit"
    return ""


def scram_sha_256(password: object, verifier: object = None, iterations: object = None) -> str:
    """The verifier of password; with the salt and iterations of verifier when it is one.

    Reusing the stored salt gives the stored verifier back exactly when the
    password is unchanged, so comparing the two tells whether to set it.
    """
    problem = password_problem(password)
    if problem:
        raise PasswordError("the password " + problem)
    assert isinstance(password, str)
    match = VERIFIER.fullmatch(verifier) if isinstance(verifier, str) else None
    if match:
        rounds = int(match["iterations"])
        salt = base64.b64decode(match["salt"])
    else:
        rounds = int(iterations) if iterations else ITERATIONS  # type: ignore[call-overload]
        salt = secrets.token_bytes(SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, rounds)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return f"SCRAM-SHA-256${rounds}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


class FilterModule:
    """shipyard_scram_sha_256, a verifier; shipyard_scram_password_problem, why none can be."""

    def filters(self) -> dict[str, Callable[..., str]]:
        return {
            "shipyard_scram_sha_256": scram_sha_256,
            "shipyard_scram_password_problem": password_problem,
        }
