"""``ui.state``: values that survive a refresh through the URL's query string."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def script():
    import streamlit as st

    from ui.state import get_param, set_param

    alpha = get_param("alpha", 5.0, parse=float)
    st.write(f"alpha={alpha!r}")
    if st.button("set", key="set"):
        set_param("alpha", 7.5)
    if st.button("forget", key="forget"):
        set_param("alpha", None)


def shown(at) -> str:
    return at.markdown[0].value


def test_default_when_the_url_has_nothing():
    at = AppTest.from_function(script).run()
    assert shown(at) == "alpha=5.0"
    assert "alpha" not in at.query_params


def test_a_new_session_restores_the_value_from_the_url():
    at = AppTest.from_function(script)
    at.query_params["alpha"] = "12.5"
    at.run()
    assert shown(at) == "alpha=12.5"


def test_set_param_writes_the_url_and_the_session():
    at = AppTest.from_function(script).run()
    at.button(key="set").click().run()
    assert at.query_params["alpha"] == "7.5"
    at.run()  # the next rerun reads the session's value
    assert shown(at) == "alpha=7.5"
    fresh = AppTest.from_function(script)  # a refresh: a new session with the same URL
    fresh.query_params["alpha"] = at.query_params["alpha"]
    assert shown(fresh.run()) == "alpha=7.5"


def test_text_that_does_not_parse_gives_the_default_and_leaves_the_url():
    at = AppTest.from_function(script)
    at.query_params["alpha"] = "five"
    at.run()
    assert shown(at) == "alpha=5.0"
    assert "alpha" not in at.query_params


def test_none_forgets_the_value():
    at = AppTest.from_function(script)
    at.query_params["alpha"] = "9"
    at.run()
    at.button(key="forget").click().run()
    assert "alpha" not in at.query_params
    assert shown(at.run()) == "alpha=5.0"


def test_the_url_gets_the_session_value_back_after_a_page_switch_cleared_it():
    at = AppTest.from_function(script)
    at.query_params["alpha"] = "3"
    at.run()
    at.query_params.clear()  # what Streamlit does to the query string on a page switch
    at.run()
    assert at.query_params["alpha"] == "3"
