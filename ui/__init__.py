"""Streamlit widgets shared by the app's pages (``app.py``, ``pages/``).

UI only: every number comes from :mod:`qcore`, and nothing here calls torch directly. This
package is outside ``qcore`` so that ``import qcore`` never pulls in streamlit or plotly.
"""
