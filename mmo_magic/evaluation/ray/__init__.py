"""Batches on Ray (``engine="ray"``): options, the shared limiter, the workers, the driver.

The only code of the package that imports ``ray`` (inside functions). A local
batch never imports this subpackage.
"""
