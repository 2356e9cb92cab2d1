"""Streamlit-side helpers shared by ``app.py`` and ``app_pages/``: layout and state only, no numbers.

Every number shown by the app comes from ``rcl``; this package holds the sidebar run picker, the
current severity matrix kept in ``st.session_state``, empty states and the error guard that turns
any failure into a plain message.
"""
