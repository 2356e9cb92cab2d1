"""State that survives a browser refresh: values kept in the URL's query string.

``st.session_state`` lives as long as the browser tab's session; a refresh (or a link sent to a
colleague) starts a new one. A value set with :func:`set_param` is kept in both: the session (the
truth while it lasts) and the URL (``?run=...&alpha=5``), from which :func:`get_param` restores it
in a new session. Streamlit clears the query string when the user switches pages, so
:func:`get_param` writes the session's value back into the URL on every page that reads it.

Values are stored as text: ``parse`` turns the text into the value (``float``, ``int``,
``json.loads``...), ``format`` the value into text; text that does not parse gives the default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

_PREFIX = "url_param:"


def _mirror(name: str, raw: str | None) -> None:
    """Make the URL show ``raw`` for ``name`` (removed when None), writing only on a change."""
    if raw is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != raw:
        st.query_params[name] = raw


def get_param(name: str, default: Any = None, parse: Callable[[str], Any] = str) -> Any:
    """The value of ``name``: this session's, else the URL's, else ``default``.

    Text in the URL that ``parse`` refuses (ValueError, TypeError) gives ``default`` and is removed
    from the URL. The value found is written back into the URL, so it survives a refresh.
    """
    key = _PREFIX + name
    if key not in st.session_state:
        st.session_state[key] = st.query_params.get(name)
    raw = st.session_state[key]
    if raw is None:
        _mirror(name, None)
        return default
    try:
        value = parse(raw)
    except (ValueError, TypeError):
        st.session_state[key] = None
        _mirror(name, None)
        return default
    _mirror(name, raw)
    return value


def set_param(name: str, value: Any, format: Callable[[Any], str] = str) -> None:  # noqa: A002
    """Keep ``value`` for ``name`` in the session and the URL; None forgets it."""
    raw = None if value is None else format(value)
    st.session_state[_PREFIX + name] = raw
    _mirror(name, raw)
