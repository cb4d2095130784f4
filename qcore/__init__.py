"""qcore: quantize a torchvision image classifier and measure what it costs and what it saves.

``import qcore`` is light: it pulls in neither streamlit nor plotly (nor torch until a
submodule that needs it is used).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
