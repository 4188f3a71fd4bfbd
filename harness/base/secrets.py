"""What counts as a secret, and how a secret's value is kept out of everything xeonft writes (results, logs,
bundles, reports). One rule, read by the matrix's validation, the fingerprint and the store."""

from __future__ import annotations

import os
import re

SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)


def is_secret(name: str) -> bool:
    return bool(SECRET.search(name))


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of secret-named variables (long enough to be worth hiding), for scrubbing text before it is stored."""
    env = os.environ if environ is None else environ
    return sorted({v for k, v in env.items() if is_secret(k) and len(v) >= 6}, key=len, reverse=True)


# the password of a URL's user (`scheme://user:password@host`): RFC 3986 userinfo holds no "/", "@" or space
URL_PASSWORD = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):([^\s/@]+)@")


def redact(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace every secret value, the password of any `scheme://user:password@host` URL (a database's, in any
    variable or message) and anything shaped like a Hugging Face token with a mask."""
    for value in secret_values(environ):
        text = text.replace(value, "***")
    text = URL_PASSWORD.sub(lambda m: f"{m.group(1)}:***@", text)
    return re.sub(r"\bhf_[A-Za-z0-9]{20,}\b", "hf_***", text)
