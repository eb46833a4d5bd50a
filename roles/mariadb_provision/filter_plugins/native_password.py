"""mysql_native_password hashes computed on the controller.

MariaDB stores a mysql_native_password credential as "*" and the upper-case
hex of SHA1(SHA1(password)), what PASSWORD() returns, and takes a ready hash
in CREATE USER ... IDENTIFIED VIA mysql_native_password USING '<hash>'. The
role computes it here, so the plaintext never leaves the controller: no
general log, slow log, binlog or audit plugin on the server can record what
the server never receives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable


class PasswordError(ValueError):
    """A password that cannot become a hash; the message never holds it."""


def mysql_native_password(password: object) -> str:
    """The authentication string of password for the mysql_native_password plugin."""
    if not isinstance(password, str) or not password:
        raise PasswordError("the password is empty or not a string")
    # Clients hash the bytes they are given; UTF-8 is what the mariadb client,
    # PyMySQL and PHP's mysqlnd send for a str password.
    stage1 = hashlib.sha1(password.encode("utf-8")).digest()  # noqa: S324 (the plugin's definition)
    return "*" + hashlib.sha1(stage1).hexdigest().upper()  # noqa: S324


class FilterModule:
    """shipyard_mysql_native_password: the plugin's authentication string."""

    def filters(self) -> dict[str, Callable[..., str]]:
        return {"shipyard_mysql_native_password": mysql_native_password}
