"""Shared settings for the app's native plots, so every tab reads the same way.

Times on an x axis are 24-hour with the date (Vega-Lite's default picks a 12-hour clock
without AM/PM, or milliseconds such as ".877" when points are seconds apart). A legend
lists exactly the series in the frame shown: Gradio otherwise keeps colours of series
from an earlier value. An empty frame is sent as no value: Gradio 6.31 does not draw the
first data a plot gets after an empty frame (it stays zero pixels high until the next).
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

__all__ = ["TIME_FORMAT", "with_legend"]

TIME_FORMAT = "%b %d, %H:%M"  # d3 time format: "Nov 30, 17:05"


def with_legend(frame: pd.DataFrame, column: str) -> dict:
    """A plot update showing ``frame`` with a legend of the values of ``column`` in it."""
    if frame.empty:
        return gr.update(value=None, colors_in_legend=None)
    return gr.update(value=frame, colors_in_legend=list(dict.fromkeys(frame[column].astype(str))))
