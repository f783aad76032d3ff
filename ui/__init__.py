"""The Gradio app: one module per tab, composed by :func:`ui.app.build_demo`.

Only this package and ``app.py`` import Gradio; the tabs call ``selfspec``, ``study`` and
``db`` and hold no study or decoding logic of their own.
"""
