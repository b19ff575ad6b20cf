"""IPython magics and widgets: the only layer that imports IPython, traitlets or ipywidgets."""
